//! A Bitcoin regtest **test node**: blocks are validated and connected by Bitcoin Core's own
//! consensus engine (crate `bitcoinkernel`), and it answers the part of Core's JSON-RPC the
//! bridge's Bitcoin client uses. It is not a replacement for `bitcoind`: no peers, no wallet, a
//! simplified mempool policy, in-memory chainstate.
//!
//! [`RegtestNode::start`] runs it in-process (tests in other crates), `bitcoin-regtest` as a
//! process. [`Node`] is the chain itself: mining, competing branches for reorgs, the mempool.

mod answers;
pub mod error;
pub mod index;
pub mod mempool;
mod methods;
pub mod mining;
pub mod node;
mod rpc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{NodeError, Reject};
pub use node::{Clock, Node, Submission};

/// How to run the node. `Debug` hides the password.
#[derive(Clone)]
pub struct RegtestConfig {
    /// Port on 127.0.0.1; 0 takes a free one.
    pub rpc_port: u16,
    /// Basic-auth user.
    pub rpc_user: String,
    /// Basic-auth password.
    pub rpc_password: String,
    /// Where the kernel keeps its block files; a temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// What `estimatesmartfee` answers, in satoshis per kvB (Core has no estimate on a fresh regtest).
    pub fee_rate_sat_per_kvb: u64,
}

impl std::fmt::Debug for RegtestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegtestConfig")
            .field("rpc_port", &self.rpc_port)
            .field("rpc_user", &self.rpc_user)
            .field("rpc_password", &"<redacted>")
            .field("data_dir", &self.data_dir)
            .field("fee_rate_sat_per_kvb", &self.fee_rate_sat_per_kvb)
            .finish()
    }
}

impl Default for RegtestConfig {
    fn default() -> Self {
        Self {
            rpc_port: 0,
            rpc_user: "regtest".into(),
            rpc_password: "regtest".into(),
            data_dir: None,
            fee_rate_sat_per_kvb: 1_000,
        }
    }
}

/// A running node with its RPC server; dropping it stops the server. `Debug` hides the password.
pub struct RegtestNode {
    address: SocketAddr,
    user: String,
    password: String,
    node: Arc<Node>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RegtestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegtestNode")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl RegtestNode {
    /// Start the kernel and serve RPC on 127.0.0.1.
    pub async fn start(config: RegtestConfig) -> Result<Self, NodeError> {
        let data_dir = config.data_dir.clone();
        let node = tokio::task::spawn_blocking(move || Node::new(data_dir))
            .await
            .map_err(|e| NodeError::Kernel(format!("node start-up task failed: {e}")))??;
        let node = Arc::new(node);
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", config.rpc_port)).await.map_err(|source| NodeError::Io {
                context: format!("binding 127.0.0.1:{} (choose another --rpc-port)", config.rpc_port),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| NodeError::Io { context: "reading the RPC address".into(), source })?;
        let app = Arc::new(rpc::App {
            node: node.clone(),
            credentials: rpc::App::credentials(&config.rpc_user, &config.rpc_password),
            policy: methods::Policy { fee_rate_sat_per_kvb: config.fee_rate_sat_per_kvb },
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, rpc::router(app)).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "RPC server stopped");
            }
        });
        tracing::info!(%address, "bitcoin regtest node serving RPC");
        Ok(Self {
            address,
            user: config.rpc_user,
            password: config.rpc_password,
            node,
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    /// The RPC server's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The RPC URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Basic-auth user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Basic-auth password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The chain, for what RPC does not offer (mining a competing branch).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Stop the RPC server and wait for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for RegtestNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_hides_the_rpc_password() {
        let config = crate::RegtestConfig { rpc_password: "hunter2-secret".into(), ..Default::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2-secret") && shown.contains("<redacted>"), "{shown}");
    }
}
