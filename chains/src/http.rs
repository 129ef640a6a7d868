//! The one place HTTP clients are built: every role's client to an Ethereum node, an Arweave
//! gateway, a Bitcoin node, a coordinator or a confirmer comes from [`Tls::client_builder`], so
//! each speaks `https` the same way: rustls (no OpenSSL) with the Mozilla roots bundled by
//! `webpki-roots`, plus the certificates of an operator's extra CA file (`tls_ca_file` in each
//! role's config, `--ca-file` in `bridgectl`) for a private CA or a TLS-terminating proxy.
//!
//! Ethereum's JSON-RPC goes through the same client: alloy's own HTTP transport is built without
//! TLS here (its rustls feature needs aws-lc), so [`eth_provider`] hands alloy a transport over
//! this crate's reqwest client instead.

use std::path::{Path, PathBuf};
use std::task;
use std::time::Duration;

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// The longest wait for a TCP and TLS handshake: an endpoint that does not answer in this time
/// is down or filtered, and a role should say so rather than hang. Each caller bounds the whole
/// request separately.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on an extra CA file: a CA bundle is kilobytes; anything far larger is a
/// misconfigured path (a log, a database), refused before it is read into memory.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the CA file {path}: {source} (check `tls_ca_file` / `--ca-file`)")]
    CaUnreadable { path: PathBuf, source: std::io::Error },
    #[error("the CA file {path} is {bytes} bytes; a PEM CA bundle is far smaller (at most {MAX_CA_FILE_BYTES})")]
    CaTooLarge { path: PathBuf, bytes: u64 },
    #[error(
        "the CA file {path} holds no PEM certificate: expected one or more `-----BEGIN CERTIFICATE-----` blocks{detail}"
    )]
    CaNotPem { path: PathBuf, detail: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    #[error("the URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

/// How this process's HTTP clients trust servers: the bundled roots, and the certificates of
/// `ca_file` if one is configured. Cheap to clone; parsed once at start-up.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    ca_file: Option<PathBuf>,
    extra_roots: Vec<reqwest::Certificate>,
}

impl Tls {
    /// The bundled roots, and if `ca_file` is given, every certificate in it (PEM). A missing,
    /// unreadable or non-PEM file is an error here, at start-up, not at the first request.
    pub fn load(ca_file: Option<&Path>) -> Result<Tls, HttpError> {
        let Some(path) = ca_file else {
            return Ok(Tls::default());
        };
        let unreadable = |source| HttpError::CaUnreadable { path: path.to_owned(), source };
        let bytes = std::fs::metadata(path).map_err(unreadable)?.len();
        if bytes > MAX_CA_FILE_BYTES {
            return Err(HttpError::CaTooLarge { path: path.to_owned(), bytes });
        }
        let pem = std::fs::read(path).map_err(unreadable)?;
        let not_pem = |detail: String| HttpError::CaNotPem { path: path.to_owned(), detail };
        let extra_roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| not_pem(format!(" ({e})")))?;
        if extra_roots.is_empty() {
            return Err(not_pem(String::new()));
        }
        // Build once now so a PEM block that is not a certificate rustls accepts fails here.
        let tls = Tls { ca_file: Some(path.to_owned()), extra_roots };
        tls.client_builder().build().map_err(|e| not_pem(format!(": {}", describe(&e))))?;
        tracing::info!(ca_file = %path.display(), certificates = tls.extra_roots.len(), "extra CA certificates trusted");
        Ok(tls)
    }

    /// The configured extra CA file, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// A reqwest builder with this trust and [`CONNECT_TIMEOUT`]; the caller adds its request
    /// timeout and pool settings.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder().use_rustls_tls().connect_timeout(CONNECT_TIMEOUT);
        for root in &self.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        builder
    }

    /// A client with this trust whose requests give up after `timeout`.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, HttpError> {
        self.client_builder().timeout(timeout).build().map_err(|e| HttpError::Build(describe(&e)))
    }
}

/// An error with its causes, outermost first: reqwest's own message ("error sending request")
/// hides the reason (a refused connection, `invalid peer certificate: UnknownIssuer`), which an
/// operator needs.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The longest an Ethereum JSON-RPC request may take: `eth_getLogs` over a block on a loaded
/// public node can take seconds; a minute means the node is stuck.
pub const ETH_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An Ethereum JSON-RPC URL: `http` or `https`, nothing else.
pub fn eth_rpc_url(url: &str) -> Result<reqwest::Url, HttpError> {
    let bad = |reason: String| HttpError::BadUrl { url: url.to_owned(), reason };
    let parsed: reqwest::Url = url.parse().map_err(|e| bad(format!("not a URL for the Ethereum RPC: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        scheme => Err(bad(format!("the Ethereum RPC must be http or https, not {scheme}"))),
    }
}

/// An alloy RPC client for the node at `url` over a client with `tls`.
pub fn eth_rpc_client(url: &str, tls: &Tls) -> Result<RpcClient, HttpError> {
    let url = eth_rpc_url(url)?;
    let is_local = url.host_str().is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "::1");
    let transport = JsonRpcOverHttp { client: tls.client(ETH_REQUEST_TIMEOUT)?, url };
    Ok(RpcClient::new(transport, is_local))
}

/// A read-only provider for the Ethereum node at `url`.
pub fn eth_provider(url: &str, tls: &Tls) -> Result<DynProvider, HttpError> {
    Ok(ProviderBuilder::new().connect_client(eth_rpc_client(url, tls)?).erased())
}

/// JSON-RPC over this crate's reqwest client: what alloy's `Http<reqwest::Client>` does, with
/// a client that speaks TLS and with the error's causes kept (see [`describe`]).
#[derive(Clone, Debug)]
struct JsonRpcOverHttp {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl JsonRpcOverHttp {
    async fn exchange(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let response = self
            .client
            .post(self.url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| TransportErrorKind::custom_str(&format!("{}: {}", self.url, describe(&e))))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| TransportErrorKind::custom_str(&describe(&e)))?;
        if !status.is_success() {
            // A JSON-RPC error sent with an HTTP error status is still the node's answer.
            if let Ok(answer) = serde_json::from_slice::<ResponsePacket>(&body)
                && answer.is_error()
            {
                return Ok(answer);
            }
            return Err(TransportErrorKind::http_error(status.as_u16(), String::from_utf8_lossy(&body).into_owned()));
        }
        serde_json::from_slice(&body).map_err(|e| TransportError::deser_err(e, String::from_utf8_lossy(&body)))
    }
}

impl tower::Service<RequestPacket> for JsonRpcOverHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        // reqwest queues requests itself; it is always ready.
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        Box::pin(self.clone().exchange(request))
    }
}
