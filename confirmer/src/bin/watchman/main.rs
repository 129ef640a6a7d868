//! `watchman`: a confirmer that holds a share of the group key. It replays the DA with its own
//! follower, signs only what that replay justifies, pays hard-final withdrawals on Ethereum and
//! Bitcoin, stops signing on any alarm and, with a guardian key, pauses the Ethereum vault.

mod check;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::http::StatusCode;
use axum::routing::get;
use bridge::eth_settlement::VaultDomain;
use bridge::{Chain, NetworkParams};
use chains::arweave::{Gateway, RetryPolicy};
use chains::bitcoin::{CoreRpc, DepositChecker};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability, DirDa};
use chains::ethereum::{EthDepositVerifier, Submitter};
use chains::task::{Schedule, Supervisor};
use clap::{Parser, Subcommand};
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::admin::{self, AdminPolicy, ApprovalBook};
use confirmer::watchman::{
    BUMP_CLOCK_TASK, BtcPayouts, BumpClock, EthSettlement, OnDuty, ReplayPolicy, SettlementBook, WATCHMAN_TASK,
    Watchman,
};
use metrics_exporter_prometheus::PrometheusBuilder;
use tss::keystore::{self, Passphrase};
use tss::roster::WatchmenFile;
use tss::{MeshConfig, TssNode, TssNodeConfig};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "watchman", version, about = "A watchman: replays the DA and signs only what its replay justifies.")]
struct Cli {
    /// The configuration file (see confirmer/watchman.example.toml).
    #[arg(long, default_value = "watchman.toml")]
    config: PathBuf,
    /// Log format: human or json (RUST_LOG sets the filter).
    #[arg(long, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay, sign and pay (the default).
    Run,
    /// Preflight: check the share, the Ethereum vault, the Bitcoin node and the gateway this
    /// configuration names; print a table and exit non-zero naming what to fix.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    confirmer::logging::init(&cli.log_format);
    let result = Config::load(&cli.config).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        match cli.command {
            Some(Command::Check) => runtime.block_on(check::print(&config)),
            Some(Command::Run) | None => runtime.block_on(run(config)),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("watchman: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&config.params)
        .with_context(|| format!("cannot read the network parameters {}", config.params.display()))?;
    let params: NetworkParams = serde_json::from_str(&text).context("the network parameters")?;
    params.validate().context("the network parameters")?;

    // The mesh and this watchman's share.
    let passphrase = match &config.mesh.passphrase_file {
        Some(file) => Passphrase::from_file(file)?,
        None => Passphrase::from_env("WATCHMAN_PASSPHRASE")
            .context("set WATCHMAN_PASSPHRASE or mesh.passphrase_file to open the key share")?,
    };
    let roster = WatchmenFile::load(&config.mesh.watchmen)?;
    let entries = roster.entries()?;
    let identity = keystore::load_identity(&config.mesh.identity, &passphrase)
        .with_context(|| format!("opening the identity {}", config.mesh.identity.display()))?;
    let share = tss::KeyShare::load(&config.mesh.share, &passphrase)
        .with_context(|| format!("opening the key share {}", config.mesh.share.display()))?;
    let group = tss::GroupKey::of(&share.public)?;
    let me = identity.public().to_peer_id();
    let Some(mine) = entries.iter().find(|e| e.peer_id == me) else {
        bail!("this identity ({me}) is not in the watchmen file {}", config.mesh.watchmen.display());
    };
    if let Some(vault) = &params.btc_vault
        && vault.group_key != group.internal_key
    {
        // A group made by a key rotation (docs/OPERATIONS.md, "Rotating the signer set"): its key
        // is in the ledger's history only once the rotation is replayed, and until then no plan
        // has inputs under it, so this watchman signs nothing. A wrong share signs nothing either.
        tracing::warn!(
            genesis = %hex::encode(vault.group_key),
            share = %hex::encode(group.internal_key),
            "this share's group key is not the network's genesis key: a rotated group's share, which signs only \
             what the ledger puts under its key"
        );
    }

    // The follower, checking deposits (and payout confirmations) against this watchman's nodes.
    let tls = chains::http::Tls::load(config.tls_ca_file.as_deref()).context("tls_ca_file")?;
    let da: Arc<dyn DataAvailability> = match (&config.da.dir, &config.da.arweave, &config.da.owner) {
        (Some(dir), None, _) => Arc::new(DirDa::open(dir, params.coordinator_key)?),
        (None, Some(url), Some(owner)) => {
            let mut da = ArweaveDaConfig::new(&params.name, params.coordinator_key, owner);
            da.confirmations = config.da.confirmations;
            let gateway = Gateway::with_tls(url, RetryPolicy::default(), &tls)?;
            let follower = ArweaveDa::follower(gateway.clone(), da);
            // Of two batches with one number, the one a takeover sealed after censorship.
            Arc::new(match params.forced {
                Some(rules) => {
                    follower.with_forced(confirmer::forced::ForcedChecker::new(gateway, &params.name, rules))
                }
                None => follower,
            })
        }
        _ => bail!("[da]: set either `dir`, or `arweave` and `owner`"),
    };
    let mut verifiers = DepositVerifiers::none();
    if let Some(eth) = &config.ethereum {
        let confirmation = chains::ethereum::Confirmation::new(eth.finality, eth.depth);
        let verifier =
            EthDepositVerifier::connect(&eth.rpc, &tls, params.eth_vault, confirmation).map_err(anyhow::Error::msg)?;
        verifiers = verifiers.with(Chain::Ethereum, Arc::new(verifier));
    }
    let btc_rpc = match &config.bitcoin {
        Some(b) => {
            let password = std::env::var("WATCHMAN_BTC_RPC_PASSWORD").unwrap_or_default();
            Some(CoreRpc::with_tls(b.rpc.clone(), b.rpc_user.clone(), password, &tls)?)
        }
        None => None,
    };
    if let (Some(b), Some(rpc)) = (&config.bitcoin, &btc_rpc) {
        // Deposits are checked under the key the ledger names for each (after a rotation, not
        // necessarily this share's); this is the genesis key's default.
        let key = bitcoin::key::XOnlyPublicKey::from_slice(
            &params.btc_vault.map_or(group.internal_key, |vault| vault.group_key),
        )?;
        verifiers = verifiers
            .with(Chain::Bitcoin, Arc::new(DepositChecker::new(rpc.clone(), params.btc_network, key, b.depth)));
    }
    let store = ConfirmerStore::open(&config.database_url).await?;
    let mut follower = Follower::open(da, store, params.clone(), verifiers)
        .await?
        .with_missing_batch_wait(Duration::from_secs(config.da.missing_batch_wait_s))
        .with_snapshots(config.snapshots);
    if let (Some(url), Some(rules)) = (&config.da.arweave, params.forced) {
        let gateway = Gateway::with_tls(url, RetryPolicy::default(), &tls)?;
        follower = follower.with_forced(confirmer::forced::ForcedChecker::new(gateway, &params.name, rules));
    }

    // The policy reads this watchman's book; the node answers the other watchmen with it.
    let book = SettlementBook::default();
    let mut eth_domain = None;
    let mut eth_settlement = None;
    // The sender account's one submitter: settlement and the admin API send through clones
    // of it, so their transactions take turns on the account's nonce.
    let mut eth_sender = None;
    let mut guardian = None;
    if let Some(eth) = &config.ethereum {
        let chain_id = chains::ethereum::chain_id(&eth.rpc, &tls).await.map_err(anyhow::Error::msg)?;
        let domain = VaultDomain { chain_id, vault: params.eth_vault, epoch: eth.epoch };
        eth_domain = Some(domain);
        let fees = eth.fees.policy()?;
        if let Some(file) = &eth.sender_key_file {
            let key = read_key(file)?;
            let submitter =
                Submitter::connect(&eth.rpc, &tls, &key, params.eth_vault).map_err(anyhow::Error::msg)?.with_fees(fees);
            let turns = eth.settlement.turns().map_err(anyhow::Error::msg)?;
            eth_sender = Some(submitter.clone());
            eth_settlement = Some(
                EthSettlement::new(book.clone(), domain, submitter)
                    .with_limits(eth.settlement.limits())
                    .with_turns(turns),
            );
        }
        if let Some(file) = &eth.guardian_key_file {
            let key = config::load_guardian_key(file, &passphrase)?;
            guardian = Some(
                chains::ethereum::Guardian::connect(&eth.rpc, &tls, &key, params.eth_vault, fees)
                    .map_err(anyhow::Error::msg)?,
            );
        }
    }
    // Every watchman co-signs checkpoints its own replay vouches for.
    let mut policy = ReplayPolicy::new(book.clone(), eth_domain).with_checkpoints(params.genesis_hash());
    // This operator's approvals: the only thing that lets this watchman sign an admin message.
    let approvals = match (&config.admin, eth_domain) {
        (Some(section), Some(domain)) => {
            let approvals = ApprovalBook::open(&section.approvals_file)?;
            policy = policy.with_admin(AdminPolicy::new(approvals.clone(), domain));
            Some(approvals)
        }
        (Some(_), None) => bail!("[admin] needs [ethereum]: approvals are for the Ethereum vault"),
        (None, _) => None,
    };
    // Every long-running duty runs under one supervisor: `/health` and `bridge_task_*` show each.
    let supervisor = Supervisor::new();
    if let (Some(vault), Some(b), Some(rpc)) = (params.btc_vault, &config.bitcoin, &btc_rpc) {
        // Fee bumps are timed by this watchman's own node, read every few seconds.
        let clock = BumpClock::new(b.bump_after_blocks);
        let refresh = clock.task(rpc.clone(), book.clone(), vault, params.btc_network);
        supervisor.spawn(BUMP_CLOCK_TASK, refresh, Schedule::every(Duration::from_secs(2)));
        policy = policy.with_bitcoin(vault, params.btc_network).with_bump_clock(clock);
    }
    let node = TssNode::start(TssNodeConfig {
        identity,
        mesh: MeshConfig {
            listen: mine.address.clone(),
            peers: entries.clone(),
            request_timeout: Duration::from_secs(10),
        },
        threshold: roster.threshold,
        share: Some(share),
        policy: Arc::new(policy),
        session_timeout: Duration::from_secs(config.mesh.session_timeout_s),
        retry: Duration::from_secs(1),
    })
    .await?;
    let stuck = eth_settlement.as_ref().map(EthSettlement::stuck);
    let settles_eth = eth_settlement.is_some();
    let mut watchman = Watchman::new(follower, book.clone(), node, eth_settlement);
    if let (Some(eth), false) = (&config.ethereum, settles_eth) {
        // Signing range roots needs the vault's ranges, read from this watchman's own node.
        let reader =
            chains::ethereum::VaultReader::connect(&eth.rpc, &tls, params.eth_vault).map_err(anyhow::Error::msg)?;
        watchman = watchman.with_vault_reader(reader);
    }
    if let (Some(b), Some(rpc), Some(vault)) = (&config.bitcoin, &btc_rpc, params.btc_vault)
        && b.pay
    {
        watchman = watchman.with_bitcoin(
            BtcPayouts::new(book.clone(), vault, params.btc_network, rpc.clone(), b.bump_after_blocks)
                .for_group(group.internal_key),
        );
    }

    let public_approvals =
        approvals.as_ref().map(|a| admin::http::public_router(a.clone(), me.to_string(), roster.threshold));
    if let (Some(section), Some(approvals), Some(domain), Some(eth)) =
        (&config.admin, approvals, eth_domain, &config.ethereum)
    {
        let api = admin::AdminApi {
            approvals,
            token: admin::AdminToken::load_or_create(&section.token_file)?,
            domain,
            tss: watchman.tss_shared(),
            reader: chains::vault_admin::reader(&eth.rpc, &tls, params.eth_vault).map_err(anyhow::Error::msg)?,
            sender: eth_sender.clone(),
            threshold: roster.threshold,
        };
        admin::http::serve(api, section.listen, section.allow_remote, &supervisor).await?;
    }
    let watch = confirmer::solvency::SolvencyWatch {
        eth_rpc: config.ethereum.as_ref().map(|e| e.rpc.clone()),
        btc: btc_rpc.clone().map(|rpc| Arc::new(rpc) as Arc<dyn chains::bitcoin::BitcoinNode>),
        btc_depth: config.bitcoin.as_ref().map_or(1, |b| b.depth),
        tls: tls.clone(),
    };
    let eth_confirmation = config
        .ethereum
        .as_ref()
        .map_or(chains::ethereum::Confirmation::Depth(0), |e| chains::ethereum::Confirmation::new(e.finality, e.depth));
    let payout_scan = config.ethereum.as_ref().map_or_else(Default::default, |e| {
        chains::ethereum_view::PayoutScanConfig { from_block: e.from_block, log_range: e.log_range }
    });
    let solvency = confirmer::solvency::SolvencyGuard::new(watch, eth_confirmation, payout_scan, params.eth_vault)?;
    let checkpoints = config.checkpoints.as_ref().map(|section| {
        let writer = confirmer::watchman::CheckpointWriter {
            dir: section.dir.clone(),
            every_batches: section.every_batches,
            last: 0,
        };
        confirmer::watchman::CheckpointDuty::new(writer, params.name.clone(), params.genesis_hash())
    });
    let duty = OnDuty::new(watchman, solvency).with_guardian(guardian).with_checkpoints(checkpoints);
    let watchman = duty.watchman();
    let shutdown = chains::task::ShutdownSignal::install();
    serve(config.listen, book.clone(), supervisor.clone(), stuck, duty.waiting(), public_approvals).await?;
    eprintln!(
        "watchman {me}: {}-of-{} watchmen, group key {}; metrics on http://{}/metrics",
        roster.threshold,
        entries.len(),
        hex::encode(group.internal_key),
        config.listen
    );

    // Replay, settle, judge solvency, pause on a halt, sign checkpoints: one supervised turn
    // every `interval_ms` (confirmer::watchman::duties).
    let turns = supervisor.spawn(WATCHMAN_TASK, duty, Schedule::every(Duration::from_millis(config.interval_ms)));
    tokio::select! {
        failure = supervisor.failed() => {
            bail!("{failure}; see docs/OPERATIONS.md, \"A background task is dead\"")
        }
        // SIGTERM (systemd, docker stop) or Ctrl-C: stop between turns, with a final snapshot.
        () = shutdown.received() => {}
    }
    // The turn in flight ends first (it holds the watchman); then no other starts.
    let mut watchman = watchman.lock().await;
    turns.abort();
    // A clean stop: the state after the last replayed batch saved, so the next start replays
    // nothing. A signing session in flight with the other watchmen is left: they time it out.
    tracing::info!("shutting down: saving the state");
    match watchman.finish_snapshots().await {
        Ok(Some(batch)) => tracing::info!(batch, "final state snapshot saved"),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, "the final state snapshot could not be saved; the next start replays more")
        }
    }
    Ok(())
}

fn read_key(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?
        .trim()
        .to_owned())
}

/// `/metrics` (Prometheus), `/health` (whether signing is halted, and why; what the replay waits
/// for on this watchman's own L1 nodes, if anything; each task, and 503 when one is dead) and,
/// when this watchman settles Ethereum withdrawals, `/withdrawals/stuck`; with `[admin]`,
/// `/approvals` (what this operator approved, read only).
async fn serve(
    listen: std::net::SocketAddr,
    book: SettlementBook,
    supervisor: chains::task::Supervisor,
    stuck: Option<confirmer::watchman::StuckWithdrawals>,
    waiting: tokio::sync::watch::Receiver<Option<confirmer::follower::Waiting>>,
    approvals: Option<axum::Router>,
) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    confirmer::series::export_zeroes();
    let tasks = supervisor.clone();
    let app = axum::Router::new().route("/metrics", get(move || std::future::ready(metrics.render()))).route(
        "/health",
        get(move || {
            let halted = book.halted();
            let tasks = tasks.health();
            let dead = tasks.iter().any(|t| t.state == chains::task::TaskState::Dead);
            let code = if dead { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            std::future::ready((
                code,
                Json(serde_json::json!({
                    "hard_final": book.hard_final(),
                    "signing": halted.is_none(),
                    "halted": halted,
                    "waiting": waiting.borrow().clone(),
                    "tasks": tasks,
                })),
            ))
        }),
    );
    let app = match stuck {
        Some(stuck) => app.merge(confirmer::api::stuck_withdrawals_router(stuck)),
        None => app,
    };
    let app = match approvals {
        Some(approvals) => app.merge(approvals),
        None => app,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    supervisor.spawn_essential("api", async move {
        axum::serve(listener, app)
            .await
            .map_err(|error| chains::task::TaskError::fatal(format!("the metrics server failed: {error}")))
    });
    Ok(())
}
