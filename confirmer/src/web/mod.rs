//! The web app: an explorer and a wallet in the browser, served by the confirmer on its own port
//! (docs/ARCHITECTURE.md, "The web app"). The pages are plain HTML, CSS and JavaScript modules
//! from `assets/`, embedded in the binary: nothing is fetched from anywhere else at run time,
//! and the Content-Security-Policy says so to the browser.
//!
//! What the page shows comes from this confirmer's own replay (`explorer`), from the vault on
//! its own Ethereum node (`payout`), from its own Bitcoin node with the group's signatures
//! checked against the replay's payout plan (`btc_payout`), and, marked as claims, from the
//! coordinator (`relay`), which also takes the signed transactions the page sends.

pub mod btc_payout;
pub mod explorer;
pub mod payout;
pub mod relay;
pub mod stages;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::api::ErrorBody;
use crate::follower::Follower;

/// Where and how the app is served.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The path of the app's page: `/` or e.g. `/app/` (see [`WebConfig::base_path`]).
    base_path: String,
    /// The Arweave gateway the batches are linked to (the one this confirmer reads).
    pub gateway: Option<String>,
    /// The Ethereum node payouts are read from (the one deposits are checked against).
    pub eth_rpc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the web app's path must start with `/` and hold only a-z, 0-9, `-`, `_` and `/`, got {0:?}")]
pub struct BadBasePath(String);

impl WebConfig {
    /// `base_path` is normalised to begin and end with `/`.
    pub fn new(base_path: &str, gateway: Option<String>, eth_rpc: Option<String>) -> Result<Self, BadBasePath> {
        let ok = base_path.starts_with('/')
            && base_path.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_/".contains(&b));
        if !ok {
            return Err(BadBasePath(base_path.to_owned()));
        }
        let trimmed = base_path.trim_matches('/');
        let base_path = if trimmed.is_empty() { "/".to_owned() } else { format!("/{trimmed}/") };
        Ok(WebConfig { base_path, gateway, eth_rpc })
    }

    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

/// Everything the app's handlers reach.
pub struct WebContext {
    pub follower: Arc<RwLock<Follower>>,
    /// The coordinator's API (the confirmer's `--coordinator`): where transactions go.
    pub coordinator: Option<String>,
    /// The confirmer's HTTP client (its timeout bounds every relayed call and node read).
    pub http: reqwest::Client,
    pub config: WebConfig,
    /// The vault on `config.eth_rpc`'s node, read through its bindings (payout stages).
    pub vault: Option<chains::ethereum::VaultReader>,
    /// The Bitcoin node deposits are checked against: where Bitcoin payouts are looked up.
    pub btc_rpc: Option<chains::bitcoin::CoreRpc>,
}

impl std::fmt::Debug for WebContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebContext").field("coordinator", &self.coordinator).field("config", &self.config).finish()
    }
}

/// An error as the API's: a status and `{code, message}`; the page shows `message`.
#[derive(Debug)]
pub struct WebError(StatusCode, ErrorBody);

impl WebError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        WebError(status, ErrorBody { code: code.into(), message: message.into() })
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "a web app request failed inside the confirmer");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the confirmer failed to answer; its logs say why")
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// One embedded file of the app.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The app's files, compiled in: what is served is what was built, with no directory to ship.
const ASSETS: &[Asset] = &[
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_str!("assets/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/api.js") },
    Asset {
        name: "explorer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/explorer.js"),
    },
    Asset { name: "wallet.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/wallet.js") },
    Asset { name: "proof.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/proof.js") },
    Asset {
        name: "passkey.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/passkey.js"),
    },
];

const INDEX: &str = include_str!("assets/index.html");

/// Only this origin, no inline script, no frame: the page runs the embedded modules and talks
/// to the confirmer alone. `data:` images are the QR codes; `wasm-unsafe-eval` is not needed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn get_asset(path: Result<Path<String>, PathRejection>) -> Response {
    let name = path.map(|Path(n)| n).unwrap_or_default();
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => page(asset.content_type, asset.body),
        None => WebError::new(StatusCode::NOT_FOUND, "no_such_file", format!("the web app has no file {name:?}"))
            .into_response(),
    }
}

/// The app's routes: the page at the base path, its files under `{base}assets/`, and its reads
/// and relays under `/web/v1/` (beside the confirmer's own API, which it also reads).
pub fn router(context: WebContext) -> Router {
    let base = context.config.base_path().to_owned();
    let mut router = Router::new()
        .route(&format!("{base}assets/{{name}}"), get(get_asset))
        .route("/web/v1/batches", get(explorer::list_batches))
        .route("/web/v1/batches/{number}", get(explorer::get_batch))
        .route("/web/v1/tx/{hash}", get(explorer::get_tx))
        .route("/web/v1/accounts/{address}/btc-deposit-address", get(btc_deposit_address))
        .route("/web/v1/relay/tx", post(relay_tx))
        .route("/web/v1/digest", post(digest))
        .route("/web/v1/relay/accounts/{address}", get(relay_account))
        .route(&base, get(|| async { page("text/html; charset=utf-8", INDEX) }));
    if base != "/" {
        // `/app` as well as `/app/`: the relative asset paths need the slash, so redirect.
        let target = base.clone();
        router = router.route(
            base.trim_end_matches('/'),
            get(move || async move { axum::response::Redirect::permanent(&target) }),
        );
    }
    router.with_state(Arc::new(context))
}

fn coordinator_of(context: &WebContext) -> Result<&str, WebError> {
    context.coordinator.as_deref().ok_or_else(|| {
        WebError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_coordinator",
            "this confirmer was started without --coordinator, so it cannot pass transactions on; use one that has it",
        )
    })
}

fn address_in(path: Result<Path<String>, PathRejection>) -> Result<bridge::Address, WebError> {
    let text = path.map(|Path(t)| t).map_err(|e| WebError::bad_request("bad_path", e.to_string()))?;
    text.parse().map_err(|e: bridge::address::AddressError| WebError::bad_request("bad_address", e.to_string()))
}

/// `POST /web/v1/relay/tx`: a signed transaction, passed to the coordinator's `POST /tx`.
async fn relay_tx(State(context): State<Arc<WebContext>>, peer: relay::Peer, body: Bytes) -> Response {
    let coordinator = match coordinator_of(&context) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let value = match relay::check_body(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let request = relay::for_client(context.http.post(format!("{coordinator}/tx")).json(&value), &peer);
    relay::forward(coordinator, request).await
}

/// `GET /web/v1/relay/accounts/{a}`: the coordinator's view (the nonce to sign next).
async fn relay_account(
    State(context): State<Arc<WebContext>>,
    peer: relay::Peer,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let (coordinator, account) = match (coordinator_of(&context), address_in(path)) {
        (Ok(c), Ok(a)) => (c, a),
        // Bad input is said first: it is wrong whatever the configuration.
        (_, Err(e)) | (Err(e), _) => return e.into_response(),
    };
    let request = relay::for_client(context.http.get(format!("{coordinator}/accounts/{account}")), &peer);
    relay::forward(coordinator, request).await
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DigestView {
    /// The EIP-712 digest of the transaction under this network's domain: what an Ethereum key
    /// signs, and the WebAuthn challenge a passkey signs (docs/PROTOCOL.md, Passkey accounts).
    pub digest: String,
}

/// `POST /web/v1/digest`: the digest of an unsigned transaction (`{type, from, to | recipient,
/// asset, amount, fee, nonce}`), for the passkey page, which has no Keccak-256. The page comes
/// from this confirmer anyway, so this adds no trust; and the coordinator answers with the hash
/// it checked the challenge against, which the page compares with this.
async fn digest(State(context): State<Arc<WebContext>>, body: Bytes) -> Result<Json<DigestView>, WebError> {
    let value = relay::check_body(&body)?;
    let tx: bridge::UserTx = serde_json::from_value(value).map_err(|e| {
        WebError::bad_request(
            "bad_transaction",
            format!(
                "not a transfer or withdrawal: {e}; give type, from, to or recipient, asset, amount, fee and nonce"
            ),
        )
    })?;
    let domain = bridge::eip712::Domain::new(context.follower.read().await.params());
    Ok(Json(DigestView { digest: format!("0x{}", hex::encode(tx.signing_hash(&domain))) }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DepositAddressView {
    pub account: String,
    /// The Taproot address: the group key tweaked for this account, computed here.
    pub address: String,
    pub btc_network: String,
    /// The coordinator computed the same address and now watches it: a deposit there is credited.
    pub watched_by_coordinator: bool,
    /// The address as a QR code (SVG), drawn here.
    pub qr_svg: String,
}

/// `GET /web/v1/accounts/{a}/btc-deposit-address`: the address computed from the network's
/// group key by this confirmer, confirmed with the coordinator (which starts watching it).
/// An address the two disagree on is never shown.
async fn btc_deposit_address(
    State(context): State<Arc<WebContext>>,
    peer: relay::Peer,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DepositAddressView>, WebError> {
    let account = address_in(path)?;
    let (ours, network) = {
        let follower = context.follower.read().await;
        let params = follower.params();
        let vault = params.btc_vault.as_ref().ok_or_else(|| {
            WebError::new(
                StatusCode::NOT_FOUND,
                "no_bitcoin_vault",
                "this network has no Bitcoin vault: it takes no bitcoin",
            )
        })?;
        (
            chains::bitcoin::deposit_address(vault.internal_key(), params.btc_network, &account).to_string(),
            params.btc_network,
        )
    };
    let coordinator = coordinator_of(&context)?;
    let url = format!("{coordinator}/accounts/{account}/btc-deposit-address");
    let answer = relay::for_client(context.http.get(&url), &peer).send().await.map_err(|e| {
        WebError::new(
            StatusCode::BAD_GATEWAY,
            "coordinator_unreachable",
            format!(
                "the coordinator did not answer ({}), so it would not watch this address yet; try again",
                chains::http::describe(&e)
            ),
        )
    })?;
    let status = answer.status();
    let theirs: serde_json::Value = answer.json().await.map_err(|e| {
        WebError::new(
            StatusCode::BAD_GATEWAY,
            "coordinator_garbled",
            format!("the coordinator's answer is not JSON: {e}"),
        )
    })?;
    if !status.is_success() {
        // Its refusal as it said it (over the client's rate limit, say), not a disagreement.
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let code = theirs["code"].as_str().unwrap_or("coordinator_refused");
        let message = theirs["message"].as_str().map_or_else(|| theirs.to_string(), str::to_owned);
        return Err(WebError::new(status, code, format!("the coordinator: {message}")));
    }
    if theirs["address"].as_str() != Some(ours.as_str()) {
        return Err(WebError::new(
            StatusCode::BAD_GATEWAY,
            "coordinator_disagrees",
            format!(
                "the coordinator names {} as this account's deposit address, but the network's group key makes {ours}: do not deposit, tell the watchmen",
                theirs["address"]
            ),
        ));
    }
    let qr_svg = qrcode::QrCode::new(ours.to_uppercase().as_bytes())
        .map_err(WebError::internal)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let btc_network =
        serde_json::to_value(network).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    Ok(Json(DepositAddressView {
        account: account.to_string(),
        address: ours,
        btc_network,
        watched_by_coordinator: true,
        qr_svg,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_base_path_is_normalised_and_checked() {
        assert_eq!(WebConfig::new("/", None, None).unwrap().base_path(), "/");
        assert_eq!(WebConfig::new("/app", None, None).unwrap().base_path(), "/app/");
        assert_eq!(WebConfig::new("/wallet/", None, None).unwrap().base_path(), "/wallet/");
        assert!(WebConfig::new("app", None, None).is_err());
        assert!(WebConfig::new("/a b", None, None).is_err());
        assert!(WebConfig::new("/<script>", None, None).is_err());
    }

    /// The selectors wallet.js calls the vault and tokens with, against the compiled ABI.
    #[test]
    fn the_wallets_selectors_are_the_vaults() {
        use alloy::sol_types::SolCall;
        let wallet = include_str!("assets/wallet.js");
        let constant = |name: &str| {
            let line = wallet.lines().find(|l| l.starts_with(&format!("export const {name} = "))).unwrap();
            line.split('"').nth(1).unwrap().to_owned()
        };
        let hex = |selector: [u8; 4]| format!("0x{}", hex::encode(selector));
        assert_eq!(constant("DEPOSIT_ETH"), hex(contracts::Vault::depositETHCall::SELECTOR));
        assert_eq!(constant("DEPOSIT_ERC20"), hex(contracts::Vault::depositERC20Call::SELECTOR));
        assert_eq!(constant("APPROVE"), hex(contracts::TestToken::approveCall::SELECTOR));
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        let mut sources: Vec<&str> = ASSETS.iter().map(|a| a.body).collect();
        sources.push(INDEX);
        for source in sources {
            for line in source.lines() {
                let Some(start) = line.find("from \"./").or_else(|| line.find("src=\"assets/")) else { continue };
                let rest = &line[start..];
                let quoted = rest.split('"').nth(1).unwrap();
                let name = quoted.trim_start_matches("./").trim_start_matches("assets/");
                assert!(ASSETS.iter().any(|a| a.name == name), "{name} is imported but not embedded");
            }
        }
    }
}
