//! The endpoints. Parsing and signature checks happen here, on the request's own task (so on
//! every core); only verified transactions reach the sequencer.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bridge::tx::VerifiedUserTx;
use bridge::{Address, SignedUserTx, Tx};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::net::SocketAddr;
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody};
use super::request::{self, Expected};
use super::views::{self, hex32};
use super::{ApiDoc, Ctx};

fn expected(context: &super::ApiContext) -> Expected {
    Expected { chain_id: context.params.chain_id, vault: context.params.eth_vault }
}

pub(super) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over this coordinator's limit (GET /info); split it into smaller requests",
            )
        } else {
            ApiError::bad_request("bad_body", format!("the request body could not be read: {rejection}"))
        }
    })
}

fn count(outcome: &str, code: &str) {
    metrics::counter!("bridge_coordinator_txs_total", "outcome" => outcome.to_owned(), "code" => code.to_owned())
        .increment(1);
}

/// Submit one signed transaction. Answered once it is durable (or refused, with nothing changed).
#[utoipa::path(post, path = "/tx", request_body = super::request::TxRequest, responses(
    (status = 200, description = "durably accepted", body = views::Accepted),
    (status = 400, description = "malformed: the code says which field and how", body = ErrorBody),
    (status = 401, description = "the signature does not authorize this transaction", body = ErrorBody),
    (status = 409, description = "the nonce was already used", body = ErrorBody),
    (status = 413, description = "the body is over the limit", body = ErrorBody),
    (status = 422, description = "refused by the ledger: overdraft, nonce gap, unknown asset, …", body = ErrorBody),
    (status = 429, description = "rate-limited", body = ErrorBody),
    (status = 503, description = "the sequencer has stopped", body = ErrorBody),
))]
pub async fn post_tx(
    State(context): Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<views::Accepted>, ApiError> {
    let started = Instant::now();
    let signed =
        request::parse_body(&body_of(body)?, expected(&context)).inspect_err(|e| count("malformed", &e.body.code))?;
    let verified = signed
        .verify(&context.domain)
        .map_err(|e| ApiError::refused(&e))
        .inspect_err(|e| count("refused", &e.body.code))?;
    let hash = verified.hash();
    let outcome = context.sequencer.submit(Tx::User(verified)).await?;
    match outcome {
        Ok(_) => {
            count("accepted", "");
            metrics::histogram!("bridge_coordinator_ack_seconds").record(started.elapsed().as_secs_f64());
            Ok(Json(views::Accepted { hash: hex32(&hash), status: "accepted".into() }))
        }
        Err(error) => {
            let error = ApiError::from(&error);
            count("refused", &error.body.code);
            Err(error)
        }
    }
}

use axum::extract::State;

/// Submit up to `max_txs_per_request` signed transactions, applied in the order given; each is
/// answered on its own (one refused transaction does not refuse the others).
#[utoipa::path(post, path = "/txs", request_body = Vec<super::request::TxRequest>, responses(
    (status = 200, description = "one result per transaction, in order", body = views::TxResults),
    (status = 400, description = "the body is not a JSON array, or holds too many", body = ErrorBody),
    (status = 413, description = "the body is over the limit", body = ErrorBody),
    (status = 429, description = "rate-limited", body = ErrorBody),
))]
pub async fn post_txs(
    State(context): Ctx,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<views::TxResults>, ApiError> {
    let client = super::client_of(peer.ip(), &headers, &context.limits.trusted_proxies);
    let Value::Array(items) = request::json_of(&body_of(body)?)? else {
        return Err(ApiError::bad_request("malformed_json", "POST /txs takes a JSON array of transactions"));
    };
    let max = context.limits.txs_per_request;
    if items.len() > max {
        return Err(ApiError::bad_request(
            "too_many_txs",
            format!("{} transactions in one request; the most is {max}", items.len()),
        ));
    }
    // The rate limit counts transactions: the request paid for one on the way in, and is charged
    // the rest whole (one larger than the burst leaves the client owing).
    if let Err(wait) = context.limiter.take_rest(client, 1.0, items.len().max(1) as f64) {
        return Err(super::rate_limited(client, wait));
    }
    let expected = expected(&context);
    let domain = context.domain.clone();
    // Signature recovery on every core, off the async workers.
    let checked: Vec<Result<VerifiedUserTx, ApiError>> = tokio::task::spawn_blocking(move || {
        items
            .into_par_iter()
            .map(|item| {
                let signed: SignedUserTx = request::parse_value(item, expected)?;
                signed.verify(&domain).map_err(|e| ApiError::refused(&e))
            })
            .collect()
    })
    .await
    .map_err(ApiError::internal)?;
    let mut results: Vec<views::TxResult> = Vec::with_capacity(checked.len());
    let mut to_submit = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in checked.into_iter().enumerate() {
        match item {
            Ok(user) => {
                results.push(views::TxResult {
                    hash: Some(hex32(&user.hash())),
                    status: "accepted".into(),
                    error: None,
                });
                slots.push(i);
                to_submit.push(Tx::User(user));
            }
            Err(error) => {
                count(if error.status == StatusCode::BAD_REQUEST { "malformed" } else { "refused" }, &error.body.code);
                results.push(views::TxResult { hash: None, status: "refused".into(), error: Some(error.body) })
            }
        }
    }
    let outcomes = context.sequencer.submit_many(to_submit).await?;
    for (slot, outcome) in slots.into_iter().zip(outcomes) {
        match outcome {
            Ok(_) => count("accepted", ""),
            Err(error) => {
                let error = ApiError::from(&error);
                count("refused", &error.body.code);
                results[slot].status = "refused".into();
                results[slot].error = Some(error.body);
            }
        }
    }
    Ok(Json(views::TxResults { results }))
}

/// The network, its fee rules, the latest batch and where batches are published.
#[utoipa::path(get, path = "/info", responses((status = 200, body = views::Info)))]
pub async fn get_info(State(context): Ctx) -> Result<Json<views::Info>, ApiError> {
    let params = &context.params;
    let (head, root) = context.sequencer.read(|state| (state.head(), state.state_root())).await?;
    let publication = context.store.publication().await?;
    Ok(Json(views::Info {
        network: params.name.clone(),
        genesis_hash: hex32(&params.genesis_hash()),
        chain_id: params.chain_id,
        eth_vault: params.eth_vault.to_string(),
        eip712_domain: bridge::eip712::DomainFields::of(params),
        btc_network: bitcoin_network_name(params.btc_network),
        coordinator_key: hex32(&params.coordinator_key),
        fee_account: params.fee_account.to_string(),
        fees: params
            .assets
            .iter()
            .map(|a| views::FeeRule { asset: a.asset.to_string(), min_fee: a.min_fee.to_string() })
            .collect(),
        latest_batch: views::LatestBatch {
            number: head.next_number - 1,
            hash: hex32(&head.last_hash),
            state_root: hex32(&root),
            published: publication.published,
        },
        da: context.da.clone(),
        max_txs_per_request: context.limits.txs_per_request,
        btc_vault: views::BtcVaultInfo::new(params),
        confirmations: context.confirmations,
        params: params.clone(),
    }))
}

pub(super) fn address_in(path: Result<Path<String>, PathRejection>) -> Result<Address, ApiError> {
    let Path(text) = path.map_err(|e| ApiError::bad_request("bad_path", e.to_string()))?;
    text.parse().map_err(|e: bridge::address::AddressError| ApiError::bad_request("bad_address", e.to_string()))
}

/// An account's balances and next nonce, counting every acknowledged transaction.
#[utoipa::path(get, path = "/accounts/{address}", params(("address" = String, Path, description = "0x and 40 hex digits", pattern = "^0x[0-9a-fA-F]{40}$")),
    responses((status = 200, body = views::Account), (status = 400, body = ErrorBody)))]
pub async fn get_account(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<views::Account>, ApiError> {
    let address = address_in(path)?;
    let account = context
        .sequencer
        .read(move |state| views::Account {
            address: address.to_string(),
            nonce: state.nonce(&address),
            balances: state
                .balances_of(&address)
                .map(|(asset, amount)| views::Balance { asset: asset.to_string(), amount: amount.to_string() })
                .collect(),
        })
        .await?;
    Ok(Json(account))
}

/// The account's own Bitcoin deposit address, derived from the group key and the account as
/// every replayer derives it: under the newest group key the ledger has (after a key rotation,
/// the new key's; the old address is still credited during the grace, then swept). The account is
/// remembered in the ledger's deposit book (durably, before the answer), which the deposit
/// watcher indexes before it reads another block (`crate::deposit_book`).
#[utoipa::path(get, path = "/accounts/{address}/btc-deposit-address",
    params(("address" = String, Path, description = "0x and 40 hex digits", pattern = "^0x[0-9a-fA-F]{40}$")),
    responses((status = 200, body = views::BtcDepositAddress), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "the network has no Bitcoin vault"),
        (status = 429, body = ErrorBody, description = "over the client's rate limit (a new account costs more)")))]
pub async fn get_btc_deposit_address(
    State(context): Ctx,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<views::BtcDepositAddress>, ApiError> {
    let account = address_in(path)?;
    let client = super::client_of(peer.ip(), &headers, &context.limits.trusted_proxies);
    let params = &context.params;
    let vault = params.btc_vault.as_ref().ok_or_else(|| {
        ApiError::not_found("no_bitcoin_vault", "this network has no Bitcoin vault configured; it takes no bitcoin")
    })?;
    let genesis = vault.group_key;
    let newest = context
        .sequencer
        .read(move |state| bridge::rotation::latest_key(state).map_or(genesis, |k| k.key.internal_key))
        .await
        .map_err(|_| ApiError::unavailable())?;
    let key = chains::bitcoin::XOnlyPublicKey::from_slice(&newest)
        .map_err(|_| ApiError::internal("the ledger's group key is no x-only key"))?;
    let address = chains::bitcoin::deposit_address(key, params.btc_network, &account);
    // A new account is rows in the deposit book for good, and anyone may ask for any account:
    // it costs more of the client's rate limit (the request paid 1 on the way in).
    if !context.store.is_btc_deposit_account(&account).await? {
        let cost = context.limits.new_deposit_address_cost;
        if let Err(wait) = context.limiter.take_rest(client, 1.0, cost) {
            return Err(super::rate_limited(client, wait));
        }
    }
    // Durable before the answer: the deposit watcher indexes it before it reads another block.
    context.store.add_btc_deposit_account(&account).await?;
    Ok(Json(views::BtcDepositAddress {
        account: account.to_string(),
        address: address.to_string(),
        btc_network: bitcoin_network_name(params.btc_network),
    }))
}

fn bitcoin_network_name(network: bridge::BtcNetwork) -> String {
    serde_json::to_value(network).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    before: Option<u64>,
    limit: Option<u32>,
}

const PAGE_MAX: u32 = 500;

/// An account's transactions, newest first; page with `before` (the previous page's `next`).
#[utoipa::path(get, path = "/accounts/{address}/txs", params(
    ("address" = String, Path, description = "0x and 40 hex digits", pattern = "^0x[0-9a-fA-F]{40}$"),
    ("before" = Option<u64>, Query, description = "only transactions older than this sequence number"),
    ("limit" = Option<u32>, Query, description = "at most this many (default 50, at most 500)"),
), responses((status = 200, body = views::AccountTxs), (status = 400, body = ErrorBody)))]
pub async fn get_account_txs(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<views::AccountTxs>, ApiError> {
    let address = address_in(path)?;
    let Query(page) = page.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit > PAGE_MAX {
        return Err(ApiError::bad_request("bad_query", format!("limit must be 1 to {PAGE_MAX}")));
    }
    let txs = context.store.txs_of(&address, page.before.unwrap_or(u64::MAX), limit).await?;
    let next = (txs.len() == limit as usize).then(|| txs.last().map(|t| t.seq)).flatten();
    Ok(Json(views::AccountTxs { txs: txs.into_iter().map(views::TxStatus::from).collect(), next }))
}

/// Where a transaction stands: `accepted`, `batched` or `published`; a forced transaction (one
/// posted to Arweave) also says what its batch recorded: applied, or refused with the code.
#[utoipa::path(get, path = "/tx/{hash}", params(("hash" = String, Path, description = "0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    responses((status = 200, body = views::TxStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tx(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<views::TxStatus>, ApiError> {
    let Path(text) = path.map_err(|e| ApiError::bad_request("bad_path", e.to_string()))?;
    let hash = bridge::serde_hex::parse_fixed::<32>(&text)
        .map_err(|e| ApiError::bad_request("bad_hex", format!("a transaction hash is 0x and 64 hex digits: {e}")))?;
    if let Some(tx) = context.store.tx_by_hash(&hash).await? {
        return Ok(Json(tx.into()));
    }
    // A forced transaction never went through the API: its batch's record says what became of it.
    match views::TxStatus::forced(hash, &context.store.forced_by_hash(&hash).await?) {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::not_found(
            "unknown_tx",
            format!("no acknowledged transaction, and no forced transaction in a sealed batch, has hash {text}"),
        )),
    }
}

/// A sealed batch: its signed header, its transactions' hashes and where it was published.
#[utoipa::path(get, path = "/batches/{number}", params(("number" = u64, Path, description = "from 1")),
    responses((status = 200, body = views::Batch), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_batch(
    State(context): Ctx,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<views::Batch>, ApiError> {
    let Path(text) = path.map_err(|e| ApiError::bad_request("bad_path", e.to_string()))?;
    let number: u64 = text.parse().map_err(|_| {
        ApiError::bad_request("bad_batch_number", format!("a batch number is a whole number, got {text:?}"))
    })?;
    let Some(stored) = context.store.batch(number).await? else {
        return Err(ApiError::not_found("unknown_batch", format!("batch {number} has not been sealed")));
    };
    let hashes = context.store.tx_hashes_in(number).await?.iter().map(|h| hex32(h)).collect();
    Ok(Json(views::Batch::new(&stored.batch, stored.locator, hashes)))
}

/// Liveness: the sequencer answers and the ledger is readable.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "serving; `degraded` if batches wait or a task is restarting", body = views::Health),
    (status = 503, description = "a background task is dead (the process is stopping), or the sequencer or the ledger is down", body = views::Health)
))]
pub async fn get_health(State(context): Ctx) -> Result<(StatusCode, Json<views::Health>), ApiError> {
    use chains::task::TaskState;
    // A dead task answers before the sequencer is asked: it may be the sequencer.
    let tasks = context.tasks.health();
    let dead = tasks.iter().any(|t| t.state == TaskState::Dead);
    if !dead {
        context.sequencer.read(|_| ()).await?;
    }
    let publication = context.store.publication().await?;
    let (sealed, published) = (publication.sealed, publication.published);
    let restarting = tasks.iter().any(|t| t.state == TaskState::Restarting);
    let (code, status) = match (dead, restarting || sealed > published) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "dead"),
        (false, true) => (StatusCode::OK, "degraded"),
        (false, false) => (StatusCode::OK, "ok"),
    };
    let tasks = tasks.into_iter().map(views::TaskView::from).collect();
    Ok((code, Json(views::Health { status: status.into(), sealed, published, tasks })))
}

/// What the coordinator's chain watchers count as final: for Ethereum, the rule in force
/// (`finalized`, or `depth` when so configured or while the node lacks the tag) and the node's
/// heights at the last look.
#[utoipa::path(get, path = "/status", responses((status = 200, body = views::Status)))]
pub async fn get_status(State(context): Ctx) -> Json<views::Status> {
    let forced = context.forced.as_ref().map(|status| status.lock().map(|s| s.clone()).unwrap_or_default());
    Json(views::Status { ethereum: context.eth_finality.as_ref().map(|watch| watch.status()), forced })
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn get_metrics(State(context): Ctx) -> Response {
    let text = context.metrics.as_ref().map(|handle| handle.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn get_openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
