//! The HTTP API (axum): users post signed transactions and read accounts, transactions and
//! batches. Every answer is JSON, every error `{code, message}` with a 4xx/5xx status; bodies
//! are size-limited and each client IP is rate-limited. `GET /openapi.json` describes it all.

pub mod deposit_claims;
mod error;
mod handlers;
mod rate_limit;
pub mod request;
mod rotation;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bridge::NetworkParams;
use bridge::eip712::Domain;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody};
pub use rate_limit::{RateLimit, RateLimiter};

use crate::sequencer::SequencerHandle;
use crate::store::Store;

/// What the API is allowed to take in.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// The largest request body, in bytes.
    pub body_bytes: usize,
    /// The most transactions in one `POST /txs`.
    pub txs_per_request: usize,
    /// Per client IP; `None` for no limit.
    pub rate: Option<RateLimit>,
    /// What a first request for an account's Bitcoin deposit address costs of the rate limit.
    pub new_deposit_address_cost: f64,
    /// Peers whose `X-Forwarded-For` names the client ([`client_of`]).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The client a request counts against: the peer, or, when the peer is a trusted proxy, the
/// last address of its `X-Forwarded-For` (the one that proxy appended; earlier ones are the
/// client's own claims). A trusted proxy's header that does not parse counts against the proxy.
pub fn client_of(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct ApiContext {
    pub sequencer: SequencerHandle,
    pub store: Store,
    pub params: NetworkParams,
    pub domain: Domain,
    pub da: views::DaInfo,
    pub confirmations: views::Confirmations,
    pub limits: ApiLimits,
    pub limiter: RateLimiter,
    pub metrics: Option<PrometheusHandle>,
    /// The background tasks' supervisor, for `/health`.
    pub tasks: chains::task::Supervisor,
    /// The Ethereum deposit watcher's finality rule and heights, for `/status`; `None` when no
    /// Ethereum node is configured.
    pub eth_finality: Option<chains::eth_finality::FinalityWatch>,
    /// What the forced-transaction follower last saw, for `/status`; `None` without forced
    /// inclusion.
    pub forced: Option<crate::forced::SharedForcedStatus>,
    /// The Bitcoin node deposit claims are checked on; `None` when none is configured.
    pub btc_claims: Option<deposit_claims::ClaimNode>,
}

type Ctx = State<Arc<ApiContext>>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Settlement bridge coordinator",
        description = "Signed transfers and withdrawals in; accounts, transactions and batches out."
    ),
    paths(
        handlers::post_tx,
        handlers::post_txs,
        handlers::get_info,
        handlers::get_account,
        handlers::get_account_txs,
        handlers::get_btc_deposit_address,
        deposit_claims::post_btc_deposit_claim,
        handlers::get_tx,
        handlers::get_batch,
        handlers::get_health,
        handlers::get_status,
        handlers::get_metrics,
        rotation::post_key_rotation,
    ),
    components(schemas(
        request::TxRequest,
        rotation::KeyRotationRequest,
        rotation::KeyRotationAccepted,
        ErrorBody,
        views::Accepted,
        views::TxResult,
        views::TxResults,
        views::Info,
        views::BtcVaultInfo,
        views::Confirmations,
        views::Account,
        views::BtcDepositAddress,
        deposit_claims::DepositClaimRequest,
        deposit_claims::DepositClaimed,
        deposit_claims::ClaimedOutputView,
        views::AccountTxs,
        views::TxStatus,
        views::ForcedRecordView,
        views::Batch,
        views::Health,
        views::Status,
        views::TaskView,
    ))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The router; serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the rate
/// limit can see client addresses.
pub fn router(context: ApiContext) -> Router {
    let body_bytes = context.limits.body_bytes;
    let context = Arc::new(context);
    let limited = Router::new()
        .route("/tx", post(handlers::post_tx))
        .route("/txs", post(handlers::post_txs))
        .route("/key-rotation", post(rotation::post_key_rotation))
        .route("/info", get(handlers::get_info))
        .route("/accounts/{address}", get(handlers::get_account))
        .route("/accounts/{address}/txs", get(handlers::get_account_txs))
        .route("/accounts/{address}/btc-deposit-address", get(handlers::get_btc_deposit_address))
        .route("/accounts/{address}/btc-deposits", post(deposit_claims::post_btc_deposit_claim))
        .route("/tx/{hash}", get(handlers::get_tx))
        .route("/batches/{number}", get(handlers::get_batch))
        .route("/openapi.json", get(handlers::get_openapi))
        .route_layer(middleware::from_fn_with_state(context.clone(), rate_limit));
    Router::new()
        .route("/health", get(handlers::get_health))
        .route("/status", get(handlers::get_status))
        .route("/metrics", get(handlers::get_metrics))
        .merge(limited)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes))
        .layer(middleware::from_fn(retry_after))
        .layer(middleware::from_fn(count_requests))
        .with_state(context)
}

async fn rate_limit(State(context): Ctx, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| client_of(c.0.ip(), request.headers(), &context.limits.trusted_proxies));
    if let Some(client) = client
        && let Err(wait) = context.limiter.take(client, 1.0)
    {
        return rate_limited(client, wait).into_response();
    }
    next.run(request).await
}

/// 429 with a JSON error; the `retry-after` header is added by [`retry_after`].
pub(crate) fn rate_limited(client: std::net::IpAddr, wait: f64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from {client}; retry in {wait:.2} s (nothing from this request was applied)"),
    )
}

/// Every 429 says when to come back, in whole seconds.
async fn retry_after(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS
        && let Ok(value) = HeaderValue::from_str("1")
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("bridge_coordinator_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("bridge_coordinator_http_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; GET /openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; GET /openapi.json lists what it takes",
    )
}
