//! `POST /accounts/{address}/btc-deposits`: a Bitcoin deposit its payer points at
//! ([`crate::deposit_claim`]), for one the deposit scan passed by.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Ctx;
use super::error::{ApiError, ErrorBody};
use crate::deposit_claim::{ClaimError, ClaimOutcome, DepositClaim};

/// The coordinator's Bitcoin node as a claim reads it: the node and the depth a deposit needs.
#[derive(Debug, Clone)]
pub struct ClaimNode {
    pub node: Arc<dyn chains::bitcoin::BitcoinNode>,
    pub depth: u32,
}

/// The transaction that paid the account's deposit address, and the height of its block.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositClaimRequest {
    /// The paying transaction's id, 64 hex digits as block explorers show it.
    pub txid: String,
    /// The height of the block holding it.
    pub height: u64,
}

/// What the claim did with each output of the transaction that pays the account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepositClaimed {
    pub account: String,
    pub txid: String,
    pub height: u64,
    pub outputs: Vec<ClaimedOutputView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimedOutputView {
    pub vout: u32,
    pub sat: u64,
    /// `credited` (now), `already_credited` (by the scan or an earlier claim), `not_yet` (a
    /// coinbase output not mature, or a key not in force yet: claim again later), `refused`.
    pub outcome: String,
}

/// Credits a Bitcoin deposit the coordinator's scan passed by: an account that paid its address
/// (which anyone can derive from the group key) before asking for it here, in a block the scan
/// had already read. The coordinator reads the named block from its own node, at the depth its
/// scan needs, and credits every output of the transaction paying the account's address under a
/// key the vault watches; each confirmer checks the deposit on its own node as it checks any.
/// Claiming again changes nothing. A claim reads a whole block from the node: it costs the
/// client what a new deposit address does of the rate limit, and remembers the account, so its
/// later deposits are found by the scan.
#[utoipa::path(post, path = "/accounts/{address}/btc-deposits",
    params(("address" = String, Path, description = "0x and 40 hex digits", pattern = "^0x[0-9a-fA-F]{40}$")),
    request_body = DepositClaimRequest,
    responses((status = 200, body = DepositClaimed), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no Bitcoin vault, or the transaction is not in that block"),
        (status = 409, body = ErrorBody, description = "the block is not deep enough yet: claim again later"),
        (status = 422, body = ErrorBody, description = "the transaction pays none of the account's deposit addresses"),
        (status = 429, body = ErrorBody, description = "over the client's rate limit"),
        (status = 503, body = ErrorBody, description = "no Bitcoin node configured, or it did not answer")))]
pub async fn post_btc_deposit_claim(
    State(context): Ctx,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DepositClaimed>, ApiError> {
    let account = super::handlers::address_in(path)?;
    let body = super::handlers::body_of(body)?;
    let request: DepositClaimRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("a claim is {{\"txid\": \"64 hex digits\", \"height\": N}}: {e}"),
        )
    })?;
    let txid: chains::bitcoin::Txid = request
        .txid
        .parse()
        .map_err(|e| ApiError::bad_request("bad_txid", format!("a transaction id is 64 hex digits: {e}")))?;
    if context.params.btc_vault.is_none() {
        return Err(ApiError::not_found("no_bitcoin_vault", "this network has no Bitcoin vault; it takes no bitcoin"));
    }
    let Some(reads) = context.btc_claims.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_bitcoin_node",
            "this coordinator reads no Bitcoin node (bitcoin.rpc is not set), so it cannot check a claim",
        ));
    };
    // A claim reads a whole block from the node (the request paid 1 on the way in).
    let client = super::client_of(peer.ip(), &headers, &context.limits.trusted_proxies);
    if let Err(wait) = context.limiter.take_rest(client, 1.0, context.limits.new_deposit_address_cost) {
        return Err(super::rate_limited(client, wait));
    }
    // Remembered first, so the scan finds the account's later deposits whatever the claim finds.
    context.store.add_btc_deposit_account(&account).await?;
    let claim = DepositClaim { account, txid, height: request.height };
    let mut ledger = context.sequencer.clone();
    let outputs =
        crate::deposit_claim::claim(&*reads.node, &mut ledger, context.params.btc_network, reads.depth, claim)
            .await
            .map_err(claim_error)?;
    let outputs = outputs
        .into_iter()
        .map(|o| ClaimedOutputView {
            vout: o.vout,
            sat: o.sat,
            outcome: match o.outcome {
                ClaimOutcome::Credited => "credited",
                ClaimOutcome::AlreadyCredited => "already_credited",
                ClaimOutcome::NotYet => "not_yet",
                ClaimOutcome::Refused => "refused",
            }
            .to_owned(),
        })
        .collect();
    Ok(Json(DepositClaimed { account: account.to_string(), txid: txid.to_string(), height: request.height, outputs }))
}

fn claim_error(error: ClaimError) -> ApiError {
    let message = error.to_string();
    match error {
        ClaimError::NotDeepYet { .. } => ApiError::new(StatusCode::CONFLICT, "not_deep_yet", message),
        ClaimError::NotInBlock { .. } => ApiError::not_found("not_in_block", message),
        ClaimError::PaysNoAddress { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "pays_no_address", message),
        ClaimError::Node(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bitcoin_node", message),
        ClaimError::Sequencer(error) => error.into(),
    }
}
