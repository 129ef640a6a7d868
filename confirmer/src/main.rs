//! `confirmer`: follows the coordinator's batches and checks evidence files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bridge::{Chain, NetworkParams};
use chains::arweave::{Gateway, RetryPolicy};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability, DirDa};
use chains::ethereum::EthDepositVerifier;
use chains::task::{Schedule, Supervisor, Task, TaskError};
use clap::{Args, Parser, Subcommand};
use confirmer::api::ApiContext;
use confirmer::deposits::DepositVerifiers;
use confirmer::evidence::Evidence;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::RwLock;

#[derive(Debug, Parser)]
#[command(
    name = "confirmer",
    version,
    about = "Follows the coordinator's batches on the DA, replays them, and raises evidence of fraud."
)]
struct Cli {
    /// Log format: human or json (RUST_LOG sets the filter).
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Follow the DA: replay every batch, report hard finality, raise alarms.
    Follow(FollowArgs),
    /// Preflight, with `follow`'s options: connect to every endpoint they name and check it
    /// against the network's parameters (the coordinator's network and key, the Ethereum chain
    /// and vault, the Bitcoin node, the gateway); print a table, exit non-zero naming what to fix.
    Check(FollowArgs),
    /// Check an evidence file offline and explain what it proves. A `censorship` file is also
    /// checked against an Arweave gateway when `--arweave URL` is given.
    CheckEvidence {
        file: PathBuf,
        #[arg(long)]
        arweave: Option<String>,
    },
}

/// What `follow` (and `check`) read: where the batches are, the chains, the store, the API.
#[derive(Args)]
struct FollowArgs {
    /// The network's parameters as JSON (`coordinator params` prints them).
    #[arg(long)]
    params: PathBuf,
    /// Follow a directory DA.
    #[arg(long, conflicts_with = "arweave")]
    da_dir: Option<PathBuf>,
    /// Follow Arweave through this gateway.
    #[arg(long, requires = "owner")]
    arweave: Option<String>,
    /// Arweave: the coordinator's wallet address; only its transactions are batches.
    #[arg(long)]
    owner: Option<String>,
    /// Arweave: confirmations a batch needs.
    #[arg(long, default_value_t = 1)]
    confirmations: u64,
    /// How long a batch may stay missing while a later one is published before it is a
    /// `missing_batch` alarm, in seconds (Arweave can show a later transaction first).
    #[arg(long, default_value_t = 600)]
    missing_batch_wait_s: u64,
    /// Where the confirmer keeps what it replayed: sqlite://PATH or postgres://…
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://confirmer.db")]
    database_url: String,
    /// How often to look for new batches, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop once caught up instead of following forever (and serve no API).
    #[arg(long)]
    once: bool,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// The coordinator's API, to report how far behind it this confirmer is.
    #[arg(long)]
    coordinator: Option<String>,
    /// An Ethereum JSON-RPC node: Ethereum deposits are then checked against the vault
    /// (`eth_vault` in the parameters); without it they are replayed but not hard-final.
    #[arg(long)]
    eth_rpc: Option<String>,
    /// When an Ethereum deposit counts: `finalized` (at or below the node's finalized block;
    /// by --eth-depth while the node lacks the tag) or `depth`.
    #[arg(long, default_value = "finalized")]
    eth_finality: chains::eth_finality::FinalityRule,
    /// Blocks an Ethereum deposit needs on top of it (the rule, or the fallback).
    #[arg(long, default_value_t = 12)]
    eth_depth: u64,
    /// The vault's deployment block: where the solvency watch first reads the vault's payouts
    /// (0: from the chain's first block, a million blocks a check). Later starts go on from the
    /// place saved in the database.
    #[arg(long, default_value_t = 0)]
    eth_from_block: u64,
    /// Blocks one `eth_getLogs` request of that read covers at most: the provider's cap if it is
    /// below 10,000. A refused request is asked again narrower anyway; this saves the refusals.
    #[arg(long, default_value_t = chains::ethereum_view::LOG_RANGE,
          value_parser = clap::value_parser!(u64).range(1..))]
    eth_log_range: u64,
    /// An extra CA certificate file (PEM) trusted besides the bundled roots by every HTTPS
    /// client: the Arweave gateway, the Ethereum and Bitcoin nodes, the coordinator.
    #[arg(long, env = "CONFIRMER_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// The chain id the Ethereum node must have (11155111 for Sepolia): `confirmer check`
    /// refuses another.
    #[arg(long)]
    eth_chain_id: Option<u64>,
    /// A Bitcoin Core JSON-RPC node (with `-txindex=1`): Bitcoin deposits are then checked
    /// against the chain; needs --btc-group-key.
    #[arg(long, requires = "btc_group_key")]
    btc_rpc: Option<String>,
    #[arg(long, default_value = "bridge")]
    btc_rpc_user: String,
    /// The RPC password (better from the environment).
    #[arg(long, env = "BTC_RPC_PASSWORD", default_value = "", hide_env_values = true)]
    btc_rpc_password: String,
    /// The watchmen's internal group key (x-only, hex, as `bridgectl keygen` prints it): the
    /// key every account's deposit address tweaks.
    #[arg(long)]
    btc_group_key: Option<String>,
    /// Confirmations a Bitcoin deposit needs.
    #[arg(long, default_value_t = 6)]
    btc_depth: u32,
    /// Save the replayed state in the database at least every this many batches (0: never by
    /// count); a restart loads the newest snapshot that matches its batch's signed header and
    /// replays only the batches after it.
    #[arg(long, default_value_t = 1000)]
    snapshot_every_batches: u64,
    /// ... or once a batch is this many milliseconds of batch time after the last snapshot's.
    #[arg(long, default_value_t = 600_000)]
    snapshot_every_ms: u64,
    /// Snapshots kept (older ones are deleted).
    #[arg(long, default_value_t = 2)]
    snapshot_keep: usize,
    /// Join late: with an empty database, start from the DA's state snapshot at this batch
    /// instead of replaying from genesis: NUMBER:0xHEADERHASH, from a source you trust (README,
    /// "Joining late"). Ignored once the database holds a record.
    #[arg(long)]
    checkpoint: Option<confirmer::fast_sync::Checkpoint>,
    /// Join late from a checkpoint signed by t watchmen (a file their `[checkpoints]` writes),
    /// instead of --checkpoint: taken only if its signature by the watchmen's group key verifies
    /// for this network. Ignored once the database holds a record.
    #[arg(long, conflicts_with = "checkpoint")]
    checkpoint_file: Option<PathBuf>,
    /// The watchmen's group output key x(Q) (hex) a signed checkpoint must verify under; by
    /// default the network's genesis vault key (`btc_vault.group_key` in the parameters, tweaked).
    #[arg(long, requires = "checkpoint_file")]
    checkpoint_key: Option<String>,
    /// Where the web app (explorer and wallet) is served on the API's port: `/` or a path
    /// such as `/app/`.
    #[arg(long, default_value = "/")]
    web_path: String,
    /// Serve no web app, only the API.
    #[arg(long)]
    no_web: bool,
}

impl FollowArgs {
    fn bitcoin(&self) -> Option<BitcoinSource> {
        self.btc_rpc.clone().map(|url| BitcoinSource {
            url,
            user: self.btc_rpc_user.clone(),
            password: self.btc_rpc_password.clone(),
            group_key: self.btc_group_key.clone().unwrap_or_default(),
            depth: self.btc_depth,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    confirmer::logging::init(&cli.log_format);
    let result = match cli.command {
        Command::CheckEvidence { file, arweave } => check_evidence(&file, arweave.as_deref()),
        Command::Check(args) => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(preflight(&args)),
            Err(error) => Err(error.into()),
        },
        Command::Follow(args) => {
            let source = Source {
                bitcoin: args.bitcoin(),
                params: args.params,
                da_dir: args.da_dir,
                arweave: args.arweave,
                owner: args.owner,
                confirmations: args.confirmations,
                missing_batch_wait: Duration::from_secs(args.missing_batch_wait_s),
                database_url: args.database_url,
                eth_rpc: args.eth_rpc,
                eth_confirmation: chains::ethereum::Confirmation::new(args.eth_finality, args.eth_depth),
                payout_scan: chains::ethereum_view::PayoutScanConfig {
                    from_block: args.eth_from_block,
                    log_range: args.eth_log_range,
                },
                tls_ca_file: args.tls_ca_file,
                checkpoint: args.checkpoint,
                signed_checkpoint: args.checkpoint_file.map(|file| (file, args.checkpoint_key)),
                snapshots: chains::snapshots::SnapshotPolicy {
                    every_batches: args.snapshot_every_batches,
                    every_ms: args.snapshot_every_ms,
                    keep: args.snapshot_keep,
                },
            };
            let web = if args.no_web {
                None
            } else {
                match confirmer::web::WebConfig::new(&args.web_path, source.arweave.clone(), source.eth_rpc.clone()) {
                    Ok(config) => Some(config),
                    Err(error) => {
                        eprintln!("confirmer: --web-path: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            let serve = (!args.once).then_some(Serve { listen: args.listen, coordinator: args.coordinator, web });
            match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(follow(source, args.interval_ms, serve)),
                Err(error) => Err(error.into()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("confirmer: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `confirmer check`: the report of `confirmer::preflight`, printed.
async fn preflight(args: &FollowArgs) -> anyhow::Result<()> {
    let bitcoin = args.bitcoin();
    let tls = chains::http::Tls::load(args.tls_ca_file.as_deref()).context("--tls-ca-file")?;
    let btc = match &bitcoin {
        None => None,
        Some(b) => Some(chains::bitcoin::CoreRpc::with_tls(b.url.clone(), b.user.clone(), b.password.clone(), &tls)?),
    };
    let setup = confirmer::preflight::Setup {
        params: args.params.clone(),
        coordinator: args.coordinator.clone(),
        arweave: args.arweave.clone(),
        eth_rpc: args.eth_rpc.clone(),
        eth_chain_id: args.eth_chain_id,
        btc,
        btc_group_key: bitcoin.as_ref().map(|b| b.group_key.clone()),
        tls,
    };
    let report = confirmer::preflight::run(&setup).await;
    print!("{}", report.table());
    if !report.passed() {
        anyhow::bail!("{}", report.summary());
    }
    println!("{}", report.summary());
    Ok(())
}

fn check_evidence(file: &std::path::Path, arweave: Option<&str>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let evidence = Evidence::from_json(&text).with_context(|| format!("{} is not an evidence file", file.display()))?;
    let explanation = evidence.check().with_context(|| format!("{} does not hold up", file.display()))?;
    println!("{explanation}");
    if let (Some(url), Some(found), Some(rules)) = (arweave, &evidence.censorship, evidence.network.forced) {
        let batch = evidence.decoded_batches()?.pop().context("the file holds no batch")?;
        let checker = confirmer::forced::ForcedChecker::new(
            Gateway::new(url, RetryPolicy::default())?,
            &evidence.network.name,
            rules,
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let checked = runtime
            .block_on(found.check_on_arweave(&checker, &batch))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{} does not hold up on {url}", file.display()))?;
        println!("{checked}");
    }
    Ok(())
}

/// What to follow and where to keep it.
#[derive(Debug)]
struct Source {
    params: PathBuf,
    da_dir: Option<PathBuf>,
    arweave: Option<String>,
    owner: Option<String>,
    confirmations: u64,
    missing_batch_wait: Duration,
    database_url: String,
    eth_rpc: Option<String>,
    eth_confirmation: chains::ethereum::Confirmation,
    /// Where the solvency watch first reads the vault's payouts, and how widely.
    payout_scan: chains::ethereum_view::PayoutScanConfig,
    tls_ca_file: Option<PathBuf>,
    bitcoin: Option<BitcoinSource>,
    snapshots: chains::snapshots::SnapshotPolicy,
    checkpoint: Option<confirmer::fast_sync::Checkpoint>,
    /// A signed checkpoint file and the key it must verify under (default: from the params).
    signed_checkpoint: Option<(PathBuf, Option<String>)>,
}

struct BitcoinSource {
    url: String,
    user: String,
    password: String,
    group_key: String,
    depth: u32,
}

/// Names the subcommand only: `Follow` carries the Bitcoin RPC password.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Follow(_) => f.write_str("Follow { … }"),
            Command::Check(_) => f.write_str("Check { … }"),
            Command::CheckEvidence { file, .. } => f.debug_struct("CheckEvidence").field("file", file).finish(),
        }
    }
}

impl std::fmt::Debug for BitcoinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinSource")
            .field("url", &chains::bitcoin::rpc::redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("group_key", &self.group_key)
            .field("depth", &self.depth)
            .finish()
    }
}

/// What `follow` serves when it does not stop once caught up.
#[derive(Debug)]
struct Serve {
    listen: std::net::SocketAddr,
    coordinator: Option<String>,
    /// The web app's configuration; `None` with `--no-web`.
    web: Option<confirmer::web::WebConfig>,
}

/// Follows until stopped; with `serve`, also serves the API (else stops once caught up).
async fn follow(source: Source, interval_ms: u64, serve: Option<Serve>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&source.params).with_context(|| format!("reading {}", source.params.display()))?;
    let params: NetworkParams = serde_json::from_str(&text).context("the network parameters")?;
    params.validate().context("the network parameters")?;
    let confirmations = confirmer::api::ConfirmationsView {
        ethereum_blocks: source.eth_rpc.is_some().then_some(source.eth_confirmation.depth()),
        bitcoin_blocks: source.bitcoin.as_ref().map(|b| u64::from(b.depth)),
        arweave: source.arweave.is_some().then_some(source.confirmations),
    };
    let tls = chains::http::Tls::load(source.tls_ca_file.as_deref()).context("--tls-ca-file")?;
    let forced = match (&source.arweave, params.forced) {
        (Some(url), Some(rules)) => Some(confirmer::forced::ForcedChecker::new(
            Gateway::with_tls(url, RetryPolicy::default(), &tls)?,
            &params.name,
            rules,
        )),
        _ => None,
    };
    let da: Arc<dyn DataAvailability> = match (source.da_dir, source.arweave, source.owner) {
        (Some(dir), None, _) => Arc::new(DirDa::open(dir, params.coordinator_key)?),
        (None, Some(url), Some(owner)) => {
            let mut config = ArweaveDaConfig::new(&params.name, params.coordinator_key, &owner);
            config.confirmations = source.confirmations;
            let da = ArweaveDa::follower(Gateway::with_tls(&url, RetryPolicy::default(), &tls)?, config);
            // Of two batches with one number, the one a takeover sealed after censorship.
            Arc::new(match &forced {
                Some(checker) => da.with_forced(checker.clone()),
                None => da,
            })
        }
        _ => anyhow::bail!("say where the batches are: --da-dir DIR, or --arweave URL --owner ADDRESS"),
    };
    let store = ConfirmerStore::open(&source.database_url).await?;
    let mut verifiers = DepositVerifiers::none();
    let mut eth_finality = None;
    if let Some(url) = &source.eth_rpc {
        let verifier = EthDepositVerifier::connect(url, &tls, params.eth_vault, source.eth_confirmation)
            .map_err(anyhow::Error::msg)?;
        eth_finality = Some(verifier.finality());
        verifiers = verifiers.with(Chain::Ethereum, Arc::new(verifier));
    }
    if let Some(bitcoin) = &source.bitcoin {
        let key = hex::decode(bitcoin.group_key.trim_start_matches("0x"))
            .ok()
            .and_then(|bytes| bitcoin::key::XOnlyPublicKey::from_slice(&bytes).ok())
            .with_context(|| {
                format!("--btc-group-key {:?} is not an x-only public key (64 hex digits)", bitcoin.group_key)
            })?;
        let rpc = chains::bitcoin::CoreRpc::with_tls(&bitcoin.url, &bitcoin.user, &bitcoin.password, &tls)?;
        let checker = chains::bitcoin::DepositChecker::new(rpc, params.btc_network, key, bitcoin.depth);
        verifiers = verifiers.with(Chain::Bitcoin, Arc::new(checker));
    }
    let watch = confirmer::solvency::SolvencyWatch {
        eth_rpc: source.eth_rpc.clone(),
        btc: match &source.bitcoin {
            Some(b) => Some(Arc::new(chains::bitcoin::CoreRpc::with_tls(&b.url, &b.user, &b.password, &tls)?)),
            None => None,
        },
        btc_depth: source.bitcoin.as_ref().map_or(1, |b| b.depth),
        tls: tls.clone(),
    };
    let solvency =
        confirmer::solvency::SolvencyGuard::new(watch, source.eth_confirmation, source.payout_scan, params.eth_vault)?;
    let signed = match &source.signed_checkpoint {
        Some((file, key)) => Some(confirmer::fast_sync::signed_checkpoint(file, &params, key.as_deref())?),
        None => None,
    };
    let mut synced_state = None;
    if let Some(checkpoint) = source.checkpoint.or(signed) {
        let (synced, state) = confirmer::fast_sync::fast_sync_with_state(&*da, &store, &params, checkpoint).await?;
        tracing::info!(?synced, "checkpoint");
        if let (confirmer::fast_sync::FastSynced::FromSnapshot { number, .. }, Some(state)) = (&synced, state) {
            synced_state = Some(chains::snapshots::Restored { state, from: *number, refused: Vec::new() });
        }
    }
    let vault_address = params.eth_vault;
    let follower = match synced_state {
        Some(restored) => Follower::open_from(da, store, params, verifiers, restored).await?,
        None => Follower::open(da, store, params, verifiers).await?,
    };
    let mut follower = follower.with_missing_batch_wait(source.missing_batch_wait).with_snapshots(source.snapshots);
    if let Some(checker) = forced {
        follower = follower.with_forced(checker);
    }
    let follower = Arc::new(RwLock::new(follower));
    let Some(Serve { listen, coordinator, web }) = serve else {
        // Once: follow until caught up, print where it stands, stop.
        let mut follow = Follow { follower: follower.clone(), solvency: None, turns: 0, busy: false };
        loop {
            match follow.turn().await {
                Ok(()) if follow.busy => continue,
                Ok(()) => break,
                Err(TaskError::Fatal(error)) => anyhow::bail!(error),
                Err(TaskError::Transient(error)) => tracing::warn!(%error, "following failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
        // A clean stop: the state saved, so the next start replays nothing.
        if let Err(error) = follower.write().await.finish_snapshots().await {
            tracing::error!(%error, "the final state snapshot could not be saved");
        }
        let status = follower.read().await.status();
        println!(
            "{}",
            serde_json::json!({
                "replayed": status.replayed,
                "hard_final": status.hard_final,
                "unverified": status.unverified,
                "waiting": status.waiting,
                "alarms": status.alarms,
            })
        );
        return Ok(());
    };
    // Serving: the API and the follower loop run under a supervisor; a failed turn is retried
    // with backoff (`bridge_task_*` metrics), and the process stops if either dies.
    let metrics = PrometheusBuilder::new().install_recorder().ok();
    confirmer::series::export_zeroes();
    // The coordinator is asked only for `/status`'s `behind_coordinator`: a short timeout keeps a
    // slow coordinator from holding the confirmer's own status.
    let http = tls.client(Duration::from_secs(5))?;
    let mut app = confirmer::api::router(ApiContext {
        follower: follower.clone(),
        metrics,
        coordinator: coordinator.clone(),
        confirmations,
        http: http.clone(),
        eth_finality,
    });
    let web_path = web.as_ref().map(|config| config.base_path().to_owned());
    if let Some(config) = web {
        let vault = match &config.eth_rpc {
            Some(url) => {
                Some(chains::ethereum::VaultReader::connect(url, &tls, vault_address).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        // The page's relayed calls and node reads share the API client's 5 s bound.
        app = app.merge(confirmer::web::router(confirmer::web::WebContext {
            follower: follower.clone(),
            coordinator,
            http,
            config,
            vault,
            btc_rpc: match &source.bitcoin {
                Some(b) => Some(chains::bitcoin::CoreRpc::with_tls(&b.url, &b.user, &b.password, &tls)?),
                None => None,
            },
        }));
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let shutdown = chains::task::ShutdownSignal::install();
    println!("confirmer listening on http://{}", listener.local_addr()?);
    if let Some(path) = web_path {
        println!("web app (explorer and wallet) on http://{}{path}", listener.local_addr()?);
    }
    let supervisor = Supervisor::new();
    supervisor.spawn_essential("api", async move {
        // With the peer's address: the web relay names its client to the coordinator.
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .map_err(|error| TaskError::fatal(format!("the API server failed: {error}")))
    });
    let follow = Follow { follower: follower.clone(), solvency: Some(solvency), turns: 0, busy: false };
    supervisor.spawn("follow", follow, Schedule::every(Duration::from_millis(interval_ms)));
    tokio::select! {
        failure = supervisor.failed() => {
            anyhow::bail!("{failure}; see docs/OPERATIONS.md, \"A background task is dead\"")
        }
        () = shutdown.received() => {}
    }
    // A clean stop (SIGTERM, Ctrl-C): the turn in flight ends (it holds the lock), then the state
    // after the last replayed batch is saved, so the next start replays nothing.
    tracing::info!("shutting down: saving the state");
    match follower.write().await.finish_snapshots().await {
        Ok(Some(batch)) => tracing::info!(batch, "final state snapshot saved"),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, "the final state snapshot could not be saved; the next start replays more")
        }
    }
    Ok(())
}

/// The follower loop as a supervised task: replays what is new each turn (and checks solvency
/// every tenth turn, when serving).
struct Follow {
    follower: Arc<RwLock<Follower>>,
    solvency: Option<confirmer::solvency::SolvencyGuard>,
    turns: u64,
    /// The last turn replayed something: the next one runs at once.
    busy: bool,
}

impl Task for Follow {
    async fn turn(&mut self) -> Result<(), TaskError> {
        self.turns += 1;
        if let Some(solvency) = &mut self.solvency
            && self.turns % 10 == 1
        {
            // The solvency watch, judged once caught up with the DA: a shortfall is logged as an
            // error and exported as a gauge.
            match solvency.judge(&*self.follower.read().await).await {
                Ok(confirmer::solvency::Verdict::Shortfall { why, .. }) => tracing::error!(%why, "solvency shortfall"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the solvency check failed; retrying"),
            }
        }
        self.busy = false;
        let step =
            self.follower.write().await.step(64).await.map_err(|error| {
                if error.is_fatal() { TaskError::fatal(error) } else { TaskError::transient(error) }
            })?;
        if step.replayed > 0 || step.alarm.is_some() {
            let status = self.follower.read().await.status();
            eprintln!(
                "replayed to batch {}, hard-final to batch {}{}",
                status.replayed,
                status.hard_final,
                status.unverified.as_deref().map(|u| format!(" ({u})")).unwrap_or_default()
            );
        }
        if let Some(alarm) = step.alarm {
            eprintln!("ALARM at batch {}: {} ({})", alarm.number, alarm.kind, alarm.detail);
        }
        self.busy = step.replayed > 0;
        Ok(())
    }

    async fn idle(&mut self, interval: Duration) {
        if !self.busy {
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The arguments ops/deploy/testnet/confirmer.conf gives bridge-confirmer.service.
    fn testnet_args() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/deploy/testnet/confirmer.conf");
        let text = std::fs::read_to_string(path).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("CONFIRMER_ARGS=")).unwrap();
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_public_testnet_confirmer_file_parses_for_follow_and_check() {
        for command in ["follow", "check"] {
            let argv = ["confirmer", command, "--params", "/etc/bridge/params.json"].map(str::to_owned);
            let cli = Cli::try_parse_from(argv.into_iter().chain(testnet_args())).unwrap();
            let (Command::Follow(args) | Command::Check(args)) = cli.command else { panic!("{command}") };
            assert_eq!(args.eth_chain_id, Some(11_155_111));
            assert_eq!(args.arweave.as_deref(), Some("https://arweave.net"));
            assert!(args.btc_rpc.as_deref().is_some_and(|u| u.ends_with(":48332")), "testnet4's RPC port");
        }
    }

    /// An Arweave address is base64url and may begin with `-` (about one in 64); `bridgectl
    /// devnet up`, the README and the systemd example pass it as `--owner=ADDR` for this reason.
    #[test]
    fn an_owner_beginning_with_a_dash_is_taken_with_equals() {
        let owner = "-8NbXb2fq0l7i6dJ3Q4m1wPjG0kS9eTnVwYz5a7Bc1D";
        let args = ["confirmer", "follow", "--params", "p.json", "--arweave", "http://127.0.0.1:1984"];
        let cli = Cli::try_parse_from(args.iter().copied().chain([format!("--owner={owner}").as_str()])).unwrap();
        match cli.command {
            Command::Follow(args) => assert_eq!(args.owner.as_deref(), Some(owner)),
            Command::Check(_) | Command::CheckEvidence { .. } => panic!("parsed as another command"),
        }
        // Without `=` the parser reads the address as a flag: the form the devnet must not use.
        assert!(Cli::try_parse_from(args.iter().copied().chain(["--owner", owner])).is_err());
    }
}
