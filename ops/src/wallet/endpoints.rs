//! Where the wallet commands find the bridge: flags first, then the devnet's state file
//! (`<--devnet>/devnet.json`), and a clear word about which flag to pass when neither has it.
//! Also the small JSON-over-HTTP client for the coordinator's and the confirmer's APIs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::devnet::state::{DevnetState, StateError};

#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    /// The devnet directory whose devnet.json supplies every endpoint not given by a flag.
    #[arg(long, default_value = "devnet")]
    pub devnet: PathBuf,
    /// The coordinator's API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// A confirmer's API (hard finality), e.g. http://127.0.0.1:8081.
    #[arg(long)]
    pub confirmer: Option<String>,
    /// An Ethereum JSON-RPC node (http or https).
    #[arg(long)]
    pub eth_rpc: Option<String>,
    /// A Bitcoin Core JSON-RPC node; its password comes from the variable BTC_RPC_PASSWORD.
    #[arg(long)]
    pub btc_rpc: Option<String>,
    /// The Bitcoin RPC user.
    #[arg(long)]
    pub btc_rpc_user: Option<String>,
    /// An extra CA certificate file (PEM) trusted besides the bundled roots when an endpoint
    /// is https: for a coordinator, confirmer or node behind a private CA.
    #[arg(long, env = "BRIDGECTL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The endpoints a command may use, resolved once.
#[derive(Debug)]
pub struct Endpoints {
    args: EndpointArgs,
    state: Result<DevnetState, StateError>,
}

/// The Bitcoin node's URL and credentials; `Debug` hides the password.
#[derive(Clone)]
pub struct BtcRpc {
    pub url: String,
    pub user: String,
    pub password: String,
    /// Whom an https node must be certified by (`--ca-file`).
    pub tls: chains::http::Tls,
}

impl std::fmt::Debug for BtcRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtcRpc")
            .field("url", &chains::bitcoin::rpc::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Endpoints {
    pub fn resolve(args: &EndpointArgs) -> Self {
        Endpoints { args: args.clone(), state: DevnetState::load(&args.devnet) }
    }

    fn devnet(&self) -> Option<&DevnetState> {
        self.state.as_ref().ok()
    }

    /// Why the devnet file gave nothing, for the messages below.
    fn devnet_note(&self) -> String {
        match &self.state {
            Ok(_) => format!("the devnet file in {} does not name one", self.args.devnet.display()),
            Err(e) => e.to_string(),
        }
    }

    fn pick(
        &self,
        flag: &Option<String>,
        from_state: impl Fn(&DevnetState) -> &str,
        name: &str,
        what: &str,
    ) -> anyhow::Result<String> {
        if let Some(url) = flag {
            return Ok(trim_url(url));
        }
        match self.devnet().map(from_state) {
            Some(url) if !url.is_empty() => Ok(trim_url(url)),
            _ => bail!(
                "no {what} endpoint: pass --{name} URL, or --devnet DIR of a running devnet ({})",
                self.devnet_note()
            ),
        }
    }

    pub fn coordinator(&self) -> anyhow::Result<String> {
        self.pick(&self.args.coordinator, |s| &s.endpoints.coordinator, "coordinator", "coordinator")
    }

    /// A client of the coordinator's API, under this command's trust.
    pub fn coordinator_api(&self) -> anyhow::Result<Api> {
        Api::coordinator(self.coordinator()?, &self.tls()?)
    }

    pub fn confirmer(&self) -> anyhow::Result<String> {
        self.pick(&self.args.confirmer, |s| &s.endpoints.confirmer, "confirmer", "confirmer (hard finality)")
    }

    /// The trust every client of this command uses: the bundled roots and `--ca-file`.
    pub fn tls(&self) -> anyhow::Result<chains::http::Tls> {
        chains::http::Tls::load(self.args.ca_file.as_deref()).map_err(|e| anyhow!("{e}"))
    }

    /// An Arweave gateway (forced transactions).
    pub fn arweave(&self) -> anyhow::Result<String> {
        self.pick(&None, |s| &s.endpoints.arweave, "arweave", "Arweave gateway")
    }

    pub fn eth_rpc(&self) -> anyhow::Result<String> {
        self.pick(&self.args.eth_rpc, |s| &s.endpoints.eth_rpc, "eth-rpc", "Ethereum JSON-RPC")
    }

    /// The devnet's ERC-20 test token, if there is a devnet.
    pub fn devnet_erc20(&self) -> Option<&str> {
        self.devnet().map(|s| s.endpoints.erc20.as_str()).filter(|t| !t.is_empty())
    }

    pub fn btc_rpc(&self) -> anyhow::Result<BtcRpc> {
        let url = self.pick(&self.args.btc_rpc, |s| &s.endpoints.btc_rpc, "btc-rpc", "Bitcoin RPC")?;
        let from_devnet = self.args.btc_rpc.is_none();
        let user = match (&self.args.btc_rpc_user, self.devnet()) {
            (Some(user), _) => user.clone(),
            (None, Some(state)) if from_devnet => state.endpoints.btc_rpc_user.clone(),
            _ => bail!("no Bitcoin RPC user: pass --btc-rpc-user USER (and set BTC_RPC_PASSWORD)"),
        };
        let password = match (std::env::var("BTC_RPC_PASSWORD"), self.devnet()) {
            (Ok(password), _) => password,
            (Err(_), Some(state)) if from_devnet => state.endpoints.btc_rpc_password.clone(),
            _ => bail!("no Bitcoin RPC password: set the variable BTC_RPC_PASSWORD"),
        };
        Ok(BtcRpc { url, user, password, tls: self.tls()? })
    }
}

fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// What went wrong asking a bridge API.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    #[error("cannot reach the {service} at {url}: {reason} (is it running? check the URL: --{flag} or --devnet DIR)")]
    Unreachable { service: &'static str, flag: &'static str, url: String, reason: String },
    #[error("the {service} refused {what}: {code}: {message}")]
    Refused { service: &'static str, what: String, status: u16, code: String, message: String },
    #[error("the {service} answered {what} with something unexpected: {reason}")]
    BadAnswer { service: &'static str, what: String, reason: String },
}

impl ApiFailure {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiFailure::Refused { status: 404, .. })
    }
}

/// A client for the coordinator's or a confirmer's JSON API.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    service: &'static str,
    flag: &'static str,
    http: reqwest::Client,
}

impl Api {
    pub fn coordinator(base: String, tls: &chains::http::Tls) -> anyhow::Result<Self> {
        Self::new(base, "coordinator", "coordinator", tls)
    }

    pub fn confirmer(base: String, tls: &chains::http::Tls) -> anyhow::Result<Self> {
        Self::new(base, "confirmer", "confirmer", tls)
    }

    fn new(base: String, service: &'static str, flag: &'static str, tls: &chains::http::Tls) -> anyhow::Result<Self> {
        let parsed: reqwest::Url = base
            .parse()
            .with_context(|| format!("the {service} URL {base:?} is not a URL (pass --{flag} http://HOST:PORT)"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("the {service} URL {base:?} must start with http:// or https://");
        }
        let http = tls
            .client_builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| anyhow!("cannot set up an HTTP client: {}", chains::http::describe(&e)))?;
        Ok(Api { base, service, flag, http })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let what = format!("GET {path}");
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        self.answer(what, response).await
    }

    pub async fn post<B: serde::Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ApiFailure> {
        let what = format!("POST {path}");
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await;
        self.answer(what, response).await
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        what: String,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ApiFailure> {
        let service = self.service;
        let response = response.map_err(|e| ApiFailure::Unreachable {
            service,
            flag: self.flag,
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| ApiFailure::Unreachable {
            service,
            flag: self.flag,
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        if !status.is_success() {
            let (code, message) = error_body(&body).unwrap_or_else(|| {
                (format!("http_{}", status.as_u16()), String::from_utf8_lossy(&body).chars().take(300).collect())
            });
            return Err(ApiFailure::Refused { service, what, status: status.as_u16(), code, message });
        }
        serde_json::from_slice(&body).map_err(|e| ApiFailure::BadAnswer { service, what, reason: e.to_string() })
    }
}

/// `{code, message}`, or `{error: {code, message}}`.
fn error_body(body: &[u8]) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Flat {
        code: String,
        message: String,
    }
    #[derive(Deserialize)]
    struct Nested {
        error: Flat,
    }
    if let Ok(flat) = serde_json::from_slice::<Flat>(body) {
        return Some((flat.code, flat.message));
    }
    serde_json::from_slice::<Nested>(body).ok().map(|n| (n.error.code, n.error.message))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    chains::http::describe(error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_bodies_of_either_shape() {
        assert_eq!(error_body(br#"{"code":"nonce_gap","message":"m"}"#), Some(("nonce_gap".into(), "m".into())));
        assert_eq!(error_body(br#"{"error":{"code":"c","message":"m"}}"#), Some(("c".into(), "m".into())));
        assert_eq!(error_body(b"nope"), None);
    }

    #[test]
    fn a_missing_endpoint_names_its_flag() {
        let args = EndpointArgs {
            devnet: PathBuf::from("/nonexistent/devnet"),
            coordinator: None,
            confirmer: Some("http://127.0.0.1:1/".into()),
            eth_rpc: None,
            btc_rpc: None,
            btc_rpc_user: None,
            ca_file: None,
        };
        let endpoints = Endpoints::resolve(&args);
        let error = endpoints.coordinator().unwrap_err().to_string();
        assert!(error.contains("--coordinator URL"), "{error}");
        assert!(error.contains("devnet up"), "{error}");
        assert_eq!(endpoints.confirmer().unwrap(), "http://127.0.0.1:1");
    }
}
