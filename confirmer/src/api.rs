//! The confirmer's HTTP API: hard finality, accounts with proofs against the verified root,
//! transactions, batches and alarms. Errors are `{code, message}` with a 4xx/5xx status, as the
//! coordinator's are; `/openapi.json` describes it.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bridge::commitment::StateProof;
use bridge::{Address, StateKey};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use utoipa::{OpenApi, ToSchema};

use crate::alarm::Alarm;
use crate::follower::Follower;
use crate::watchman::{StuckLeaf, StuckWithdrawals};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError(status, ErrorBody { code: code.into(), message: message.into() })
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed inside the confirmer");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the confirmer failed to answer; its logs say why")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// Everything a handler can reach.
pub struct ApiContext {
    pub follower: Arc<RwLock<Follower>>,
    pub metrics: Option<PrometheusHandle>,
    /// The coordinator's API, to report how far behind it this confirmer is.
    pub coordinator: Option<String>,
    /// How deep this confirmer checks L1 facts and batches, for `GET /info`.
    pub confirmations: ConfirmationsView,
    /// The client that asks the coordinator (built by `chains::http`, so an https coordinator
    /// behind a private CA works).
    pub http: reqwest::Client,
    /// The Ethereum deposit verifier's finality rule and heights; `None` without an Ethereum node.
    pub eth_finality: Option<chains::eth_finality::FinalityProbe>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext").field("coordinator", &self.coordinator).finish_non_exhaustive()
    }
}

type Ctx = State<Arc<ApiContext>>;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// The last batch replayed (0: none).
    pub replayed: u64,
    /// The last hard-final batch (0: none).
    pub hard_final: u64,
    /// Why the batch after `hard_final` is not hard-final, if it replayed.
    pub unverified: Option<String>,
    /// Why the next batch does not replay yet, if this confirmer's own L1 node cannot confirm
    /// one of its facts (not deep enough, or the node has not reached the batch's block): the
    /// node's height and the height it needs. Waiting is not an alarm.
    pub waiting: Option<crate::follower::Waiting>,
    /// Batches on the DA not yet replayed (unknown if the DA cannot be read now).
    pub behind_da: Option<u64>,
    /// Batches the coordinator has sealed that are not yet replayed here (if configured).
    pub behind_coordinator: Option<u64>,
    pub alarms: usize,
    /// What this confirmer counts as a final Ethereum deposit: `configured` and `in_force` rule
    /// (`finalized`, or `depth` when so configured or while the node lacks the tag),
    /// `depth_blocks`, and its node's `head`, `finalized` and `safe` block at the last check, or
    /// the node's `error`. Absent without an Ethereum node.
    #[schema(value_type = Option<Object>)]
    pub ethereum: Option<chains::eth_finality::FinalityStatus>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub address: String,
    /// The batch whose state this is, its state root, and whether it is hard-final.
    pub batch: u64,
    pub state_root: String,
    pub hard_final: bool,
    pub nonce: u64,
    pub balances: Vec<BalanceView>,
    /// One proof, of the account's entry (its nonce and every balance; exclusion for an account
    /// that has neither), against `state_root`. A list, so that a later commitment may prove
    /// more than one entry per account without changing the shape.
    #[schema(value_type = Vec<Object>)]
    pub proofs: Vec<StateProof>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub hash: String,
    pub batch: u64,
    pub hard_final: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    pub number: u64,
    pub hash: String,
    /// The header, every root of which this confirmer's replay reproduced.
    #[schema(value_type = Object)]
    pub header: bridge::batch::BatchHeader,
    pub locator: String,
    pub hard_final: bool,
    pub unverified: Option<String>,
}

/// The network this confirmer replays, as `GET /info` on the coordinator serves it: a replayer
/// can take its parameters from either and compare.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InfoView {
    pub network: String,
    /// `tagged("bridge/genesis", borsh(params))`: every header's `network`.
    pub genesis_hash: String,
    /// The Bitcoin vault's keys and fee-rate bounds; null when the network takes no bitcoin.
    pub btc_vault: Option<BtcVaultView>,
    /// The EIP-712 domain as `eth_signTypedData_v4` takes it: `name`, `version`, `chainId` (the
    /// vault's Ethereum chain) and `verifyingContract` (the vault).
    #[schema(value_type = Object)]
    pub eip712_domain: bridge::eip712::DomainFields,
    pub confirmations: ConfirmationsView,
    /// The complete network parameters, exactly the value whose borsh bytes hash to
    /// `genesis_hash`: all a replay needs from the network.
    #[schema(value_type = Object)]
    pub params: bridge::NetworkParams,
}

/// The Bitcoin vault's keys, named as `tss::GroupKey` names them, and its fee-rate bounds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BtcVaultView {
    /// `x(P)`: the watchmen's FROST group key, the Taproot internal key.
    pub group_key: String,
    /// `x(Q)`: `P` with BIP-341's tweak and no script tree; the vault's change goes to it.
    pub output_key: String,
    /// The Taproot address of `Q` on the network's Bitcoin chain.
    pub address: String,
    pub min_fee_rate: u64,
    pub max_fee_rate: u64,
}

/// The depths this confirmer checks at (its configuration, not the network's): null where it
/// checks nothing (no node for that chain, or a directory DA).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct ConfirmationsView {
    /// Ethereum blocks on top of a deposit's block.
    pub ethereum_blocks: Option<u64>,
    /// Bitcoin confirmations, the block itself counting as one.
    pub bitcoin_blocks: Option<u64>,
    /// Arweave confirmations a batch needs.
    pub arweave: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlarmView {
    #[schema(value_type = Object)]
    pub alarm: Alarm,
    /// The evidence file: `confirmer check-evidence` verifies it offline.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Settlement bridge confirmer",
        description = "Hard finality, verified state with proofs, and alarms."
    ),
    paths(get_info, get_status, get_account, get_tx, get_batch, get_alarms),
    components(schemas(
        ErrorBody,
        InfoView,
        BtcVaultView,
        ConfirmationsView,
        StatusView,
        crate::follower::Waiting,
        AccountView,
        BalanceView,
        TxView,
        BatchView,
        AlarmView
    ))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The OpenAPI document of a settling watchman's `/withdrawals/stuck`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Settlement bridge watchman: stuck withdrawals"),
    paths(get_stuck_withdrawals),
    components(schemas(StuckLeaf))
)]
#[derive(Debug)]
pub struct StuckApiDoc;

pub fn router(context: ApiContext) -> Router {
    Router::new()
        .route("/info", get(get_info))
        .route("/status", get(get_status))
        .route("/accounts/{address}", get(get_account))
        .route("/tx/{hash}", get(get_tx))
        .route("/batches/{number}", get(get_batch))
        .route("/alarms", get(get_alarms))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; GET /openapi.json lists them")
        })
        .with_state(Arc::new(context))
}

/// `GET /withdrawals/stuck`, served where Ethereum withdrawals are settled (a watchman with a
/// sender key, beside its `/metrics` and `/health`): the leaves the vault could not pay, each
/// with its proof. Not part of a plain confirmer's API (it settles nothing), so not in
/// [`ApiDoc`]: its document is [`StuckApiDoc`].
pub fn stuck_withdrawals_router(stuck: StuckWithdrawals) -> Router {
    Router::new().route("/withdrawals/stuck", get(get_stuck_withdrawals)).with_state(stuck)
}

/// Ethereum withdrawal leaves the vault could not pay (the recipient refused ether or burnt
/// its gas, or the token refused the transfer), oldest batch first, each with what `withdraw`
/// needs to claim it. Served by a watchman that settles Ethereum withdrawals.
#[utoipa::path(get, path = "/withdrawals/stuck", responses((status = 200, body = Vec<StuckLeaf>)))]
async fn get_stuck_withdrawals(State(stuck): State<StuckWithdrawals>) -> Json<Vec<StuckLeaf>> {
    Json(stuck.list())
}

fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn path_text(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(text)| text).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.to_string()))
}

/// The network this confirmer replays: its complete parameters and the depths it checks at.
#[utoipa::path(get, path = "/info", responses((status = 200, body = InfoView)))]
async fn get_info(State(context): Ctx) -> Json<InfoView> {
    let follower = context.follower.read().await;
    let params = follower.params().clone();
    let btc_vault = params.btc_vault.as_ref().map(|vault| BtcVaultView {
        group_key: hex32(&vault.group_key),
        output_key: hex32(&vault.output_key()),
        address: chains::bitcoin::vault_address(vault.internal_key(), params.btc_network).to_string(),
        min_fee_rate: vault.min_fee_rate,
        max_fee_rate: vault.max_fee_rate,
    });
    Json(InfoView {
        network: params.name.clone(),
        genesis_hash: hex32(&params.genesis_hash()),
        btc_vault,
        eip712_domain: bridge::eip712::DomainFields::of(&params),
        confirmations: context.confirmations,
        params,
    })
}

/// Hard finality and lag.
#[utoipa::path(get, path = "/status", responses((status = 200, body = StatusView)))]
async fn get_status(State(context): Ctx) -> Result<Json<StatusView>, ApiError> {
    let (status, da) = {
        let follower = context.follower.read().await;
        (follower.status(), follower.da().clone())
    };
    let behind_da = da.latest().await.ok().map(|latest| latest.saturating_sub(status.replayed));
    let mut behind_coordinator = None;
    if let Some(url) = &context.coordinator
        && let Ok(response) = context.http.get(format!("{url}/info")).send().await
        && let Ok(info) = response.json::<serde_json::Value>().await
        && let Some(sealed) = info["latest_batch"]["number"].as_u64()
    {
        behind_coordinator = Some(sealed.saturating_sub(status.replayed));
    }
    Ok(Json(StatusView {
        replayed: status.replayed,
        hard_final: status.hard_final,
        unverified: status.unverified,
        waiting: status.waiting,
        behind_da,
        behind_coordinator,
        alarms: status.alarms.len(),
        ethereum: match &context.eth_finality {
            Some(probe) => Some(probe.refresh().await),
            None => None,
        },
    }))
}

/// An account's nonce and balances in the replayed state, each with a proof against its root.
#[utoipa::path(get, path = "/accounts/{address}", params(("address" = String, Path, description = "0x and 40 hex digits", pattern = "^0x[0-9a-fA-F]{40}$")),
    responses((status = 200, body = AccountView), (status = 400, body = ErrorBody)))]
async fn get_account(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let text = path_text(path)?;
    let address: Address = text.parse().map_err(|e: bridge::address::AddressError| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_address", e.to_string())
    })?;
    let follower = context.follower.read().await;
    let state = follower.state();
    let proofs = vec![state.prove(&StateKey::Account(address)).map_err(ApiError::internal)?];
    let mut balances = Vec::new();
    for asset in follower.params().assets.iter().map(|a| a.asset) {
        let amount = state.balance(&address, &asset);
        if !amount.is_zero() {
            balances.push(BalanceView { asset: asset.to_string(), amount: amount.to_string() });
        }
    }
    let batch = follower.status().replayed;
    Ok(Json(AccountView {
        address: address.to_string(),
        batch,
        state_root: hex32(&state.state_root()),
        hard_final: follower.is_hard_final(batch),
        nonce: state.nonce(&address),
        balances,
        proofs,
    }))
}

/// Whether a transaction is in a replayed batch, and whether that batch is hard-final.
#[utoipa::path(get, path = "/tx/{hash}", params(("hash" = String, Path, description = "0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    responses((status = 200, body = TxView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_tx(State(context): Ctx, path: Result<Path<String>, PathRejection>) -> Result<Json<TxView>, ApiError> {
    let text = path_text(path)?;
    let hash = bridge::serde_hex::parse_fixed::<32>(&text).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", format!("a transaction hash is 0x and 64 hex digits: {e}"))
    })?;
    let follower = context.follower.read().await;
    let batch =
        follower.batch_of_tx(&hash).await.map_err(ApiError::internal)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_tx", format!("no replayed batch holds {text}"))
        })?;
    Ok(Json(TxView { hash: hex32(&hash), batch, hard_final: follower.is_hard_final(batch) }))
}

/// A replayed batch: its header (every root reproduced here) and its finality.
#[utoipa::path(get, path = "/batches/{number}", params(("number" = u64, Path, description = "from 1")),
    responses((status = 200, body = BatchView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_batch(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BatchView>, ApiError> {
    let text = path_text(path)?;
    let number: u64 = text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_batch_number",
            format!("a batch number is a whole number, got {text:?}"),
        )
    })?;
    let follower = context.follower.read().await;
    let stored = follower.store().replayed_batch(number).await.map_err(ApiError::internal)?;
    let stored = stored.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_batch", format!("batch {number} has not been replayed"))
    })?;
    Ok(Json(BatchView {
        number,
        hash: hex32(&stored.batch.hash()),
        header: stored.batch.header.clone(),
        locator: stored.locator,
        hard_final: follower.is_hard_final(number),
        unverified: stored.unverified,
    }))
}

/// Every alarm, with its evidence file.
#[utoipa::path(get, path = "/alarms", responses((status = 200, body = Vec<AlarmView>)))]
async fn get_alarms(State(context): Ctx) -> Result<Json<Vec<AlarmView>>, ApiError> {
    let follower = context.follower.read().await;
    let alarms = follower.store().alarms().await.map_err(ApiError::internal)?;
    Ok(Json(
        alarms
            .into_iter()
            .map(|(alarm, evidence)| AlarmView { alarm, evidence: serde_json::from_str(&evidence).unwrap_or_default() })
            .collect(),
    ))
}

async fn get_metrics(State(context): Ctx) -> Response {
    let text = context.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
