//! A running coordinator: the ledger, the sequencer, the publisher, the deposit intake and the
//! HTTP API, wired from a [`Config`]. The binary runs one; tests start them on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bridge::tx::L1Ref;
use bridge::{Amount, AssetId, Chain, CoordinatorKey, Deposit, NetworkParams};
use chains::arweave::{ArweaveWallet, Gateway, RetryPolicy};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability, DirDa};
use chains::forced_check::ForcedChecker;
use chains::task::{Schedule, Supervisor, Task, TaskError, TaskFailure, TaskHealth};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::api::{self, ApiContext, ApiLimits, RateLimit, RateLimiter};
use crate::config::{Config, ConfigError, DaKind};
use crate::deposits::{
    BtcDepositScan, BtcDepositTask, DepositSink, EthDepositTask, btc_scan_scope, deposit_channel, eth_scan_scope,
    forward_deposits, saved_mark,
};
use crate::publisher::Publisher;
use crate::seal_rule::SealRule;
use crate::sequencer::{Sequencer, SequencerError, SequencerHandle};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sequencer(#[from] Box<SequencerError>),
    #[error("the coordinator key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the DA cannot be opened: {0}")]
    Da(String),
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the dev deposits file {path}: {reason}")]
    DevDeposits { path: String, reason: String },
}

/// Milliseconds since the Unix epoch: batch timestamps.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The process's Prometheus recorder, installed on first use (one per process).
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics recorder not installed; /metrics will be empty");
                None
            }
        })
        .clone()
}

/// Reads the coordinator key (64 hex digits), creating it first if `create` and it is missing.
pub fn load_key(path: &Path, create: bool) -> Result<CoordinatorKey, NodeError> {
    let err = |reason: String| NodeError::Key { path: path.display().to_string(), reason };
    if !path.exists() {
        if !create {
            return Err(err("missing; create one with `coordinator keygen` or set coordinator.create_key".into()));
        }
        write_new_key(path).map_err(err)?;
        tracing::warn!(path = %path.display(), "created a new coordinator key; keep a copy of it");
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = bridge::serde_hex::parse_fixed::<32>(text.trim())
        .or_else(|_| bridge::serde_hex::parse_fixed::<32>(&format!("0x{}", text.trim())))
        .map_err(|_| err("must hold 64 hex digits on one line".into()))?;
    CoordinatorKey::from_secret(&secret).map_err(|_| err("not a valid secp256k1 secret key".into()))
}

/// Writes a fresh random key to `path` (owner-only), refusing to overwrite one.
pub fn write_new_key(path: &Path) -> Result<[u8; 32], String> {
    let mut secret = [0u8; 32];
    loop {
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
        if CoordinatorKey::from_secret(&secret).is_ok() {
            break;
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| e.to_string())?;
    file.write_all(format!("{}\n", hex::encode(secret)).as_bytes()).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    let key = CoordinatorKey::from_secret(&secret).map_err(|_| "generated key invalid".to_owned())?;
    Ok(key.public_key())
}

/// The DA named by the config: a publisher (`for_publishing`) or a follower.
/// The forced-inclusion check for a takeover: `None` on a network without forced inclusion; the
/// configured gateway's (`da.gateway`) otherwise, and an error without one.
pub fn forced_checker(config: &Config, params: &NetworkParams) -> Result<Option<ForcedChecker>, NodeError> {
    let Some(rules) = params.forced else { return Ok(None) };
    let url = config.da.gateway.as_ref().ok_or_else(|| {
        NodeError::Da("network.forced needs da.gateway: a takeover checks each batch's forced transactions".into())
    })?;
    let gateway =
        Gateway::with_tls(url, RetryPolicy::default(), &config.tls()?).map_err(|e| NodeError::Da(e.to_string()))?;
    Ok(Some(ForcedChecker::new(gateway, &params.name, rules)))
}

pub fn open_da(
    config: &Config,
    params: &NetworkParams,
    for_publishing: bool,
) -> Result<(Arc<dyn DataAvailability>, api::views::DaInfo), NodeError> {
    match config.da.kind {
        DaKind::Dir => {
            let dir = config.da_dir();
            let da = DirDa::open(&dir, params.coordinator_key).map_err(|e| NodeError::Da(e.to_string()))?;
            let info = api::views::DaInfo { kind: "dir".into(), location: dir.display().to_string(), owner: None };
            Ok((Arc::new(da), info))
        }
        DaKind::Arweave => {
            let (Some(url), Some(wallet_path)) = (&config.da.gateway, &config.da.wallet) else {
                return Err(NodeError::Da("da.gateway and da.wallet are required for arweave".into()));
            };
            let tls = config.tls()?;
            let gateway =
                Gateway::with_tls(url, RetryPolicy::default(), &tls).map_err(|e| NodeError::Da(e.to_string()))?;
            let wallet = ArweaveWallet::load(wallet_path)
                .map_err(|e| NodeError::Da(format!("wallet {}: {e}", wallet_path.display())))?;
            let mut da_config = ArweaveDaConfig::new(&params.name, params.coordinator_key, wallet.address());
            da_config.confirmations = config.da.confirmations;
            da_config.max_price_winston_per_mib = u128::from(config.da.max_price_winston_per_mib);
            let info = api::views::DaInfo {
                kind: "arweave".into(),
                location: url.clone(),
                owner: Some(wallet.address().to_owned()),
            };
            let forced = params.forced.map(|rules| ForcedChecker::new(gateway.clone(), &params.name, rules));
            let da = if for_publishing {
                ArweaveDa::publisher(gateway, da_config, wallet, &config.journal_dir())
                    .map_err(|e| NodeError::Da(e.to_string()))?
            } else {
                ArweaveDa::follower(gateway, da_config)
            };
            // A batch that censors is superseded by its takeover replacement, not a conflict.
            let da: Arc<dyn DataAvailability> = Arc::new(match forced {
                Some(checker) => da.with_forced(checker),
                None => da,
            });
            Ok((da, info))
        }
    }
}

/// A coordinator serving on `addr` until [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    pub addr: SocketAddr,
    pub params: NetworkParams,
    pub store: Store,
    /// Where chain watchers hand in deposits.
    pub deposits: DepositSink,
    sequencer: SequencerHandle,
    publisher: Publisher,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    /// The publisher's loop, stopped before the last round at shutdown.
    publishing: JoinHandle<()>,
    supervisor: Supervisor,
}

/// The supervised task names (in `/health` and the `task` label of `bridge_task_*`).
pub const ETH_DEPOSITS: &str = "ethereum-deposits";
pub const BTC_DEPOSITS: &str = "bitcoin-deposits";

/// The payout keeper as a supervised task: a node error is retried; the sequencer gone is fatal.
#[derive(Debug)]
struct KeeperTask {
    keeper: crate::payouts::PayoutKeeper,
    sequencer: SequencerHandle,
    /// The keeper's clock starts with it: `Keeping` sees only time since then.
    started: std::time::Instant,
}

impl Task for KeeperTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        match self.keeper.round(&mut self.sequencer, self.started.elapsed()).await {
            Ok(_) => Ok(()),
            Err(error @ crate::payouts::PayoutKeeperError::Sequencer(_)) => Err(TaskError::fatal(error)),
            Err(error) => Err(TaskError::transient(error)),
        }
    }
}

impl Node {
    pub async fn start(config: &Config) -> Result<Node, NodeError> {
        let key = load_key(&config.key_file(), config.coordinator.create_key)?;
        let params = config.network_params(key.public_key())?;
        let store = Store::open(&config.database_url()).await?;
        let (da, da_info) = open_da(config, &params, true)?;
        // The recorder first, so that recovery's own figures reach `/metrics`.
        let _ = prometheus();
        let sequencer = Sequencer::recover(store.clone(), params.clone(), key)
            .await
            .map_err(Box::new)?
            .with_snapshots(config.snapshots);
        let head = sequencer.state().head();
        tracing::info!(
            network = %params.name,
            coordinator_key = %hex::encode(params.coordinator_key),
            next_batch = head.next_number,
            open_txs = sequencer.open_len(),
            database = ?store.backend(),
            "ledger recovered"
        );
        let sealed = Arc::new(Notify::new());
        let rule = SealRule::new(config.batch.max_txs, Duration::from_millis(config.batch.max_age_ms));
        let (handle, sequencer_task) = SequencerHandle::spawn(sequencer, rule, unix_millis, sealed.clone());
        // Every background task runs under one supervisor: a failed turn is retried with
        // backoff, a fatal error or an end marks the task dead, `/health` shows each, and the
        // binary stops on a death (`Node::failed`) instead of serving without it.
        let supervisor = Supervisor::new();
        let mut background = vec![supervisor.spawn_essential("sequencer", async move {
            match sequencer_task.await {
                Ok(_) => Err(TaskError::fatal("the sequencer stopped")),
                Err(error) => Err(TaskError::fatal(format!("the sequencer task failed: {error}"))),
            }
        })];
        if config.da.snapshot_every_batches > 0 {
            let task = crate::snapshot::DaSnapshots::new(store.clone(), da.clone(), config.da.snapshot_every_batches);
            let every = crate::snapshot::DaSnapshots::schedule(Duration::from_millis(config.da.publish_retry_ms));
            background.push(supervisor.spawn("da-snapshots", task, every));
        }
        let publisher = Publisher::new(store.clone(), da);
        let schedule = Publisher::schedule(Duration::from_millis(config.da.publish_retry_ms));
        let publishing = supervisor.spawn("publisher", publisher.clone().task(sealed), schedule);

        if let (DaKind::Arweave, Some(url), Some(address)) = (config.da.kind, &config.da.gateway, &da_info.owner) {
            let gateway = Gateway::new(url, RetryPolicy::default()).map_err(|e| NodeError::Da(e.to_string()))?;
            let window = Duration::from_secs(config.da.spend_window_h.saturating_mul(3_600));
            let watch = crate::arweave_wallet::WalletWatch::new(gateway, address.clone(), window);
            let poll = Duration::from_secs(config.da.balance_poll_s);
            background.push(supervisor.spawn("arweave-wallet", watch, Schedule::every(poll)));
        }

        let forced_status = match (params.forced, config.da.kind, &config.da.gateway) {
            (None, ..) => None,
            (Some(_), DaKind::Arweave, Some(url)) => {
                let gateway = Gateway::with_tls(url, RetryPolicy::default(), &config.tls()?)
                    .map_err(|e| NodeError::Da(e.to_string()))?;
                let status = crate::forced::SharedForcedStatus::default();
                let follower = crate::forced::ForcedFollower::new(
                    gateway,
                    params.clone(),
                    handle.clone(),
                    store.clone(),
                    status.clone(),
                    unix_millis,
                );
                if let Some(follower) = follower {
                    let poll = Duration::from_millis(config.da.forced_poll_ms);
                    background.push(supervisor.spawn("forced-transactions", follower, Schedule::every(poll)));
                }
                Some(status)
            }
            (Some(_), ..) => {
                return Err(NodeError::Da(
                    "network.forced needs da.kind = \"arweave\" and da.gateway: forced transactions live on Arweave"
                        .into(),
                ));
            }
        };
        let (sink, source) = deposit_channel(1024);
        let forwarding = handle.clone();
        background.push(supervisor.spawn_essential("deposit-intake", async move {
            let credited = forward_deposits(source, forwarding).await;
            Err(TaskError::fatal(format!("the deposit intake closed after {credited} deposits: the sequencer stopped")))
        }));
        let tls = config.tls()?;
        let mut eth_finality = None;
        let mut btc_claims = None;
        if let Some(url) = &config.ethereum.rpc {
            let from = config.ethereum.from_block;
            let mut watcher = chains::ethereum::DepositWatcher::connect(
                url,
                &tls,
                params.eth_vault,
                chains::ethereum::Confirmation::new(config.ethereum.finality, config.ethereum.depth),
                from,
            )
            .map_err(|reason| NodeError::Config(ConfigError::Invalid(reason)))?;
            let scope = eth_scan_scope(&params.eth_vault);
            if let Some(mark) = saved_mark(&store, &scope, from).await? {
                watcher = watcher.resume(mark);
            }
            eth_finality = Some(watcher.finality());
            let poll = Duration::from_millis(config.ethereum.poll_ms);
            let task = EthDepositTask { watcher, sequencer: handle.clone(), store: store.clone(), scope };
            background.push(supervisor.spawn(ETH_DEPOSITS, task, Schedule::every(poll)));
        }
        if let Some(url) = &config.bitcoin.rpc {
            let vault = params.btc_vault.ok_or_else(|| {
                NodeError::Config(ConfigError::Invalid(
                    "bitcoin.rpc is set but network.btc_vault is not: deposits and payouts need the vault's group key"
                        .into(),
                ))
            })?;
            let b = &config.bitcoin;
            let rpc = chains::bitcoin::CoreRpc::with_tls(url, &b.rpc_user, &b.rpc_password, &tls)
                .map_err(|e| NodeError::Config(ConfigError::Invalid(format!("bitcoin.rpc: {e}"))))?;
            let poll = Duration::from_millis(b.poll_ms);
            let depth = u32::try_from(b.depth).unwrap_or(u32::MAX);
            let watcher_config = chains::bitcoin::WatcherConfig { depth, start_height: b.from_height };
            // The book is the ledger's: nothing per account is loaded here.
            let book = crate::deposit_book::StoreBook::new(store.clone(), params.btc_network);
            let mut watcher =
                chains::bitcoin::DepositWatcher::with_book(std::sync::Arc::new(rpc.clone()), book, watcher_config)
                    .map_err(|e| NodeError::Config(ConfigError::Invalid(format!("bitcoin: {e}"))))?;
            let scope = btc_scan_scope(&vault);
            let saved = saved_mark(&store, &scope, b.from_height).await?;
            if let Some(mark) = saved {
                watcher.resume(mark);
            }
            // A claim reads blocks at the scan's depth, on the scan's node.
            let node = std::sync::Arc::new(rpc.clone());
            btc_claims = Some(crate::api::deposit_claims::ClaimNode { node, depth });
            let task = BtcDepositTask {
                scan: BtcDepositScan::new(watcher, store.clone(), scope, saved),
                sequencer: handle.clone(),
            };
            background.push(supervisor.spawn(BTC_DEPOSITS, task, Schedule::every(poll)));
            let keeper = crate::payouts::PayoutKeeper::new(
                rpc.clone(),
                rpc,
                vault,
                params.btc_network,
                b.depth,
                b.fee_target_blocks,
            )
            .with_window(Duration::from_millis(b.payout_window_ms));
            let task = KeeperTask { keeper, sequencer: handle.clone(), started: std::time::Instant::now() };
            background.push(supervisor.spawn("bitcoin-payouts", task, Schedule::every(poll)));
        }
        if let Some(path) = &config.dev.deposits {
            for deposit in dev_deposits(path)? {
                sink.send(deposit).await.map_err(|_| NodeError::Sequencer(Box::new(SequencerError::Stopped)))?;
            }
        }

        let rate = (config.api.rate_limit_per_second > 0.0)
            .then_some(RateLimit { per_second: config.api.rate_limit_per_second, burst: config.api.rate_limit_burst });
        let context = ApiContext {
            sequencer: handle.clone(),
            store: store.clone(),
            domain: bridge::eip712::Domain::new(&params),
            params: params.clone(),
            da: da_info,
            confirmations: crate::api::views::Confirmations {
                ethereum_blocks: config.ethereum.depth,
                bitcoin_blocks: config.bitcoin.depth,
                arweave: config.da.confirmations,
            },
            limits: ApiLimits {
                body_bytes: config.api.body_limit_bytes,
                txs_per_request: config.api.max_txs_per_request,
                rate,
                new_deposit_address_cost: config.api.new_deposit_address_cost,
                trusted_proxies: config.api.trusted_proxies.clone(),
            },
            limiter: RateLimiter::new(rate),
            metrics: prometheus(),
            tasks: supervisor.clone(),
            eth_finality,
            forced: forced_status,
            btc_claims,
        };
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.api.listen, source })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.api.listen, source })?;
        let app = api::router(context).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "the HTTP server failed");
            }
        });
        tracing::info!(%addr, "API listening");
        Ok(Node {
            addr,
            params,
            store,
            deposits: sink,
            sequencer: handle,
            publisher,
            stop: Some(stop),
            server,
            background,
            publishing,
            supervisor,
        })
    }

    /// Every background task's health, as `/health` shows it.
    pub fn tasks(&self) -> Vec<TaskHealth> {
        self.supervisor.health()
    }

    /// Waits until a background task is dead (a fatal error, or an essential task that ended):
    /// the binary then stops rather than serve without it.
    pub async fn failed(&self) -> TaskFailure {
        self.supervisor.failed().await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sequencer(&self) -> &SequencerHandle {
        &self.sequencer
    }

    /// Stops taking requests, lets those in flight finish, seals what is open and publishes it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        if let Err(error) = self.sequencer.seal(unix_millis()).await {
            tracing::warn!(%error, "sealing at shutdown failed; the open transactions stay in the ledger");
        }
        // The state after the last batch saved (snapshots on), so the next start replays nothing.
        match self.sequencer.finish_snapshots().await {
            Ok(Some(batch)) => tracing::info!(batch, "final state snapshot saved"),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "the final state snapshot could not be saved; the next start replays more")
            }
        }
        self.publishing.abort();
        let _ = (&mut self.publishing).await;
        // One last publication round, bounded so that a dead DA cannot hold the shutdown; what
        // is left stays in the ledger and is published at the next start.
        match tokio::time::timeout(Duration::from_secs(10), self.publisher.publish_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "publishing at shutdown failed; retried at the next start"),
            Err(_) => tracing::warn!("publishing at shutdown timed out; retried at the next start"),
        }
        for task in self.background {
            task.abort();
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevDeposit {
    account: bridge::Address,
    asset: AssetId,
    amount: Amount,
}

/// The dev deposits file as deposits. Each gets an L1 reference derived from its place in the
/// file, so a restart hands in the same references and none is credited twice.
fn dev_deposits(path: &Path) -> Result<Vec<Deposit>, NodeError> {
    let err = |reason: String| NodeError::DevDeposits { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let entries: Vec<DevDeposit> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let tag = bridge::hashing::sha256(format!("dev-deposit/{i}/{}/{}", entry.account, entry.asset));
            let chain = entry.asset.chain();
            let l1_ref = match chain {
                Chain::Ethereum => L1Ref::Ethereum { tx_hash: tag, log_in_tx: i as u32 },
                Chain::Bitcoin => L1Ref::Bitcoin { txid: tag, vout: 0 },
            };
            Deposit { chain, l1_ref, account: entry.account, asset: entry.asset, amount: entry.amount, l1_height: 0 }
        })
        .collect())
}
