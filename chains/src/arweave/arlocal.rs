//! A local Arweave gateway (arlocal) run as a child process: for tests and the devnet. It is
//! started on a free loopback port with its own database directory, is ready once `/info`
//! answers, and is killed when this handle is dropped, so nothing is left running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::gateway::{Gateway, GatewayError, RetryPolicy};
use super::tx::{Tag, Transaction};
use super::wallet::ArweaveWallet;

#[derive(Debug, thiserror::Error)]
pub enum ArlocalError {
    #[error("arlocal is not installed at {0}; run `bash ops/tools/install.sh`")]
    Missing(String),
    #[error("arlocal could not be started: {0}")]
    Start(std::io::Error),
    #[error("arlocal did not answer /info within {0:?}; see its log at {1}")]
    NotReady(Duration, String),
    #[error("arlocal exited while starting: {0}")]
    Exited(String),
    #[error("arlocal refused a request: {0}")]
    Gateway(#[from] GatewayError),
    #[error("the HTTP client for arlocal could not be built: {0}")]
    Client(#[from] crate::http::HttpError),
}

/// The npm tools directory (`ops/tools/node_modules/.bin`), overridable with `BRIDGE_TOOLS_BIN`.
pub fn tools_bin() -> PathBuf {
    match std::env::var_os("BRIDGE_TOOLS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/tools/node_modules/.bin"),
    }
}

#[derive(Debug)]
pub struct Arlocal {
    child: Child,
    url: String,
    http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Arlocal {
    /// Starts arlocal with a fresh database in a temporary directory.
    pub async fn start() -> Result<Self, ArlocalError> {
        let dir = tempfile::tempdir().map_err(ArlocalError::Start)?;
        let path = dir.path().to_path_buf();
        let mut arlocal = Self::start_in(&path).await?;
        arlocal._dir = Some(dir);
        Ok(arlocal)
    }

    /// Starts arlocal with a fresh database on the RAM disk (`/dev/shm`) when the machine has
    /// one, else as [`Arlocal::start`]: arlocal syncs SQLite on every posted transaction, about
    /// 100 ms each on a disk against 15 ms in RAM, which matters to a test posting thousands.
    pub async fn start_in_ram() -> Result<Self, ArlocalError> {
        let dir = match tempfile::tempdir_in("/dev/shm") {
            Ok(dir) => dir,
            Err(_) => return Self::start().await,
        };
        let path = dir.path().to_path_buf();
        let mut arlocal = Self::start_in(&path).await?;
        arlocal._dir = Some(dir);
        Ok(arlocal)
    }

    /// Starts arlocal keeping its database in `dir` (which survives a restart).
    pub async fn start_in(dir: &Path) -> Result<Self, ArlocalError> {
        // The port is held until arlocal answers (`loopback`), so no other test's node takes it;
        // an arlocal that dies for another reason is tried again on another port.
        let mut last = None;
        for _ in 0..5 {
            match Self::start_once(dir).await {
                Ok(arlocal) => return Ok(arlocal),
                Err(ArlocalError::Exited(reason)) => last = Some(reason),
                Err(other) => return Err(other),
            }
        }
        Err(ArlocalError::Exited(last.unwrap_or_default()))
    }

    async fn start_once(dir: &Path) -> Result<Self, ArlocalError> {
        let bin = tools_bin().join("arlocal");
        if !bin.exists() {
            return Err(ArlocalError::Missing(bin.display().to_string()));
        }
        // Bounded: an arlocal that accepts and never answers fails a call, it does not hang it.
        // Built before the process starts, so a failure here leaves no arlocal behind.
        let http = crate::http::Tls::default().client(Duration::from_secs(30))?;
        let mut hold = loopback::PortHold::new();
        let port = hold.any().map_err(ArlocalError::Start)?;
        let log_path = dir.join("arlocal.log");
        let log = std::fs::File::create(&log_path).map_err(ArlocalError::Start)?;
        let log_err = log.try_clone().map_err(ArlocalError::Start)?;
        let child = Command::new(&bin)
            .arg(port.to_string())
            .arg("--persist")
            .arg("--dbpath")
            .arg(dir.join("db"))
            // arlocal writes `logs` and `tmp/` into its working directory: keep them in `dir`.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(ArlocalError::Start)?;
        let url = format!("http://127.0.0.1:{port}");
        let mut arlocal = Arlocal { child, url, http, _dir: None };
        let deadline = Duration::from_secs(60);
        let started = std::time::Instant::now();
        while started.elapsed() < deadline {
            if let Ok(Some(status)) = arlocal.child.try_wait() {
                return Err(ArlocalError::Exited(format!(
                    "arlocal on port {port} exited ({status}); see {}",
                    log_path.display()
                )));
            }
            if let Ok(response) = arlocal.http.get(format!("{}/info", arlocal.url)).send().await
                && response.status().is_success()
            {
                // Answered: but by ours only if ours is still running (else another process
                // holds the port).
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok(Some(status)) = arlocal.child.try_wait() {
                    return Err(ArlocalError::Exited(format!("port {port} was taken ({status})")));
                }
                drop(hold);
                return Ok(arlocal);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ArlocalError::NotReady(deadline, log_path.display().to_string()))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A gateway client for this arlocal with the default retry policy.
    pub fn gateway(&self) -> Result<Gateway, GatewayError> {
        Gateway::new(&self.url, RetryPolicy::default())
    }

    /// Credits `winston` to `address` (arlocal only).
    pub async fn mint(&self, address: &str, winston: u128) -> Result<(), ArlocalError> {
        self.get(&format!("/mint/{address}/{winston}")).await
    }

    /// Mines `blocks` blocks, confirming every pending transaction (arlocal only).
    pub async fn mine(&self, blocks: u64) -> Result<(), ArlocalError> {
        self.get(&format!("/mine/{blocks}")).await
    }

    /// Posts one small signed transaction per tag set from `wallet`: what a spammer does with
    /// this bridge's public tags. Signed on blocking threads and uploaded a few at a time; not
    /// mined (call [`Arlocal::mine`] after). Returns the ids.
    pub async fn post_junk(
        &self,
        wallet: std::sync::Arc<ArweaveWallet>,
        tag_sets: Vec<Vec<Tag>>,
    ) -> Result<Vec<String>, ArlocalError> {
        // Bounded: arlocal is one Node process, and a test's machine is shared.
        const IN_FLIGHT: usize = 16;
        let gateway = self.gateway()?;
        let anchor = gateway.tx_anchor().await?;
        let reward = gateway.price_winston(1).await?;
        let mut ids = Vec::with_capacity(tag_sets.len());
        let mut sets = tag_sets.into_iter().enumerate().peekable();
        while sets.peek().is_some() {
            let mut round = tokio::task::JoinSet::new();
            for (i, tags) in sets.by_ref().take(IN_FLIGHT) {
                let (wallet, anchor, gateway) = (wallet.clone(), anchor.clone(), gateway.clone());
                round.spawn(async move {
                    let tx = tokio::task::spawn_blocking(move || {
                        let data = format!("junk {i}").into_bytes();
                        let mut tx = Transaction::with_data(data, tags, anchor, reward, wallet.owner().to_vec());
                        tx.sign(&wallet).map(|()| tx)
                    })
                    .await
                    .map_err(|e| ArlocalError::Exited(format!("a signing thread died: {e}")))?
                    .map_err(GatewayError::from)?;
                    gateway.upload(&tx).await?;
                    Ok::<String, ArlocalError>(tx.id_b64())
                });
            }
            while let Some(done) = round.join_next().await {
                ids.push(done.map_err(|e| ArlocalError::Exited(format!("an upload task died: {e}")))??);
            }
        }
        Ok(ids)
    }

    async fn get(&self, path: &str) -> Result<(), ArlocalError> {
        let url = format!("{}{}", self.url, path);
        // A loaded machine can make even loopback refuse for a moment: three tries.
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            match self.http.get(&url).send().await {
                Ok(response) => break response,
                Err(e) if attempt >= 3 => {
                    return Err(
                        GatewayError::Unreachable { url: url.clone(), attempts: attempt, last: e.to_string() }.into()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await,
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(GatewayError::Refused { url, status: status.as_u16(), body }.into());
        }
        Ok(())
    }
}

impl Drop for Arlocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
