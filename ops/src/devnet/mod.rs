//! `bridgectl devnet up | down | status`: the whole bridge on loopback for trying it and for the
//! end-to-end tests. `up` writes everything (configurations, keys, logs, databases) under one
//! directory (`./devnet` by default) and records what it started in `devnet.json`; `down`
//! stops exactly those processes. `rotate` changes the signer set as operators would, and
//! `retire` stops the old group once its key is empty.

mod bench;
mod blocks;
mod drill;
mod operator;
mod ports;
mod process;
mod restart;
mod rotate;
pub mod state;
mod tally;
mod up;
mod watchmen;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use state::DevnetState;

/// Longest any one request of the devnet's own (readiness probes, setup calls) may take: a part
/// that accepts a connection and never answers costs this, not the devnet.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The devnet's HTTP client, every request bounded by [`HTTP_TIMEOUT`].
fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(chains::http::Tls::default().client(HTTP_TIMEOUT)?)
}
pub use up::UpArgs;

#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// The devnet's directory.
    #[arg(long, global = true, default_value = "devnet")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: DevnetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start arlocal, anvil, the Bitcoin node, the watchmen's key ceremony, the vault, the
    /// coordinator, a confirmer, the watchmen and funded demo accounts.
    Up(UpArgs),
    /// Stop every process `up` started (and nothing else).
    Down,
    /// Show each part: running, healthy, and how far the chains and the bridge are.
    Status {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Kill one part with SIGKILL (a crash drill): `devnet kill coordinator`.
    Kill {
        /// The part's name, as `status` lists it.
        part: String,
    },
    /// Start one part again as `up` started it (stopped first if it runs).
    Restart {
        part: String,
        /// The coordinator only: move its ledger aside and rebuild it from the published
        /// batches (`coordinator recover --from-da`) before it serves again.
        #[arg(long)]
        from_da: bool,
    },
    /// Pay regtest bitcoin from the devnet's faucet to an address (a Bitcoin deposit, say).
    PayBtc {
        /// A regtest address (bcrt1…).
        address: String,
        /// Satoshis.
        #[arg(long)]
        sats: u64,
    },
    /// Time withdrawals on each chain from acceptance to payment, stage by stage (the devnet
    /// must be up; its demo wallet alice pays).
    Bench {
        /// Withdrawals per chain.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// A crash-and-restart run while withdrawals flow: the coordinator, confirmer and watchmen
    /// SIGKILLed and restarted at seeded random moments (at most n − t watchmen down at once),
    /// then every accepted withdrawal waited for, and the vault's transactions counted on chain
    /// (reverted ones and their gas) beside the watchmen's metrics.
    Drill(drill::DrillArgs),
    /// Change the signer set as its operators would (docs/OPERATIONS.md, "Rotating the signer
    /// set"): a key ceremony among the new group, the ledger's KeyRotation and the vault's
    /// proposeKey approved by the old operators, the new watchmen started, the Bitcoin sweep
    /// waited for, acceptKey approved by the new operators; with --retire, the old watchmen
    /// stopped once the deposit grace is over.
    Rotate(rotate::RotateArgs),
    /// Stop the old group's watchmen once the newest key's deposit grace is over and nothing is
    /// left under an old key (the last step of `rotate --retire`).
    Retire {
        /// How long to wait without a new batch (or a new hard-final one) before giving up
        /// (batches are made only while transactions arrive).
        #[arg(long, default_value_t = 600)]
        grace_timeout_secs: u64,
    },
    /// The devnet's block producer (`up` runs it).
    #[command(hide = true)]
    Blocks {
        #[arg(long, default_value_t = 2)]
        btc_block_secs: u64,
    },
}

pub async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    match args.command {
        DevnetCommand::Up(up_args) => {
            let state = up::up(&args.dir, &up_args).await?;
            print_started(&state);
            Ok(())
        }
        DevnetCommand::Down => {
            let state = DevnetState::load(&args.dir)?;
            let running = state.parts.iter().filter(|p| process::alive(p)).count();
            stop_all(&state);
            eprintln!("stopped {running} processes of the devnet in {}", state.dir.display());
            Ok(())
        }
        DevnetCommand::Kill { part } => {
            restart::kill(&DevnetState::load(&args.dir)?, &part)?;
            eprintln!("killed {part}");
            Ok(())
        }
        DevnetCommand::Restart { part, from_da } => {
            let mut state = DevnetState::load(&args.dir)?;
            restart::restart(&mut state, &part, from_da).await?;
            eprintln!("{part} is running again{}", if from_da { " on a ledger rebuilt from the DA" } else { "" });
            Ok(())
        }
        DevnetCommand::Status { json } => status(&DevnetState::load(&args.dir)?, json).await,
        DevnetCommand::PayBtc { address, sats } => {
            let state = DevnetState::load(&args.dir)?;
            let to = address
                .parse::<bitcoin::Address<_>>()
                .with_context(|| format!("{address:?} is not a Bitcoin address"))?
                .require_network(bitcoin::Network::Regtest)
                .with_context(|| format!("{address} is not a regtest address"))?;
            let e = &state.endpoints;
            let rpc = chains::bitcoin::CoreRpc::new(&e.btc_rpc, &e.btc_rpc_user, &e.btc_rpc_password);
            let faucet = blocks::Faucet::open(&state.dir.join("bitcoin/faucet.key"))?;
            let txid = faucet.pay(&rpc, &to, bitcoin::Amount::from_sat(sats)).await?;
            println!("{txid}");
            Ok(())
        }
        DevnetCommand::Rotate(rotate_args) => rotate::rotate(&args.dir, &rotate_args).await,
        DevnetCommand::Retire { grace_timeout_secs } => {
            let mut state = DevnetState::load(&args.dir)?;
            let done = rotate::retire(&mut state, Duration::from_secs(grace_timeout_secs)).await?;
            eprintln!("{done}");
            Ok(())
        }
        DevnetCommand::Drill(drill_args) => drill::drill(&args.dir, &drill_args).await,
        DevnetCommand::Bench { rounds } => bench::bench(&DevnetState::load(&args.dir)?, rounds).await,
        DevnetCommand::Blocks { btc_block_secs } => {
            let state = DevnetState::load(&args.dir)?;
            blocks::produce(&state, Duration::from_secs(btc_block_secs.max(1))).await
        }
    }
}

/// Stops every part, the last started first. Errors are reported, not fatal: stop the rest.
fn stop_all(state: &DevnetState) {
    for part in state.parts.iter().rev() {
        if let Err(error) = process::stop(part, Duration::from_secs(10)) {
            eprintln!("{error:#}");
        }
    }
}

fn print_started(state: &DevnetState) {
    let e = &state.endpoints;
    println!("The devnet is up (everything under {}).", state.dir.display());
    println!();
    println!("  coordinator   {}   (API, /openapi.json, /metrics)", e.coordinator);
    println!("  confirmer     {}   (hard finality, /alarms)", e.confirmer);
    // `localhost`, not the IP: passkeys need a domain name as RP ID, and the network allows this origin.
    let web = e.confirmer.replace("://127.0.0.1:", "://localhost:");
    println!("  web app       {web}/   (explorer, wallet and passkeys: open it in a browser)");
    println!("  arlocal       {}", e.arweave);
    println!(
        "  anvil         {}   (chain id {}; vault {}, test token {})",
        e.eth_rpc, e.eth_chain_id, e.eth_vault, e.erc20
    );
    println!("  bitcoin       {}   (regtest; user {}, password in devnet.json)", e.btc_rpc, e.btc_rpc_user);
    for (i, watchman) in e.watchmen.iter().enumerate() {
        let admin = state.groups.last().and_then(|g| g.members.get(i)).map(|m| m.admin.as_str()).unwrap_or("");
        println!("  watchman-{i}    {watchman}   (/health, /metrics; admin {admin})");
    }
    println!("  logs          {}", state.dir.join("logs").display());
    println!();
    for wallet in &state.demo_wallets {
        println!("  demo wallet {:<6} {}  {}", wallet.name, wallet.address, wallet.file.display());
    }
    println!();
    let bridgectl = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "bridgectl".into());
    let devnet = state.dir.display();
    let alice = state.demo_wallets.first().map(|w| w.file.display().to_string()).unwrap_or_default();
    println!("Next, as alice (the demo wallets' passphrase is {:?}):", state.wallet_passphrase);
    println!("  export BRIDGE_PASSPHRASE={}", state.wallet_passphrase);
    println!("  {bridgectl} balance --devnet {devnet} --wallet {alice}");
    println!(
        "  {bridgectl} withdraw --devnet {devnet} --wallet {alice} --asset eth --amount 1000000000000000000 --recipient 0x…"
    );
    println!(
        "`bridgectl devnet status` shows each part, `bridgectl devnet down` stops them (README: the walkthrough)."
    );
}

#[derive(Serialize)]
struct PartStatus {
    name: String,
    pid: u32,
    running: bool,
    /// None when the part serves no health endpoint.
    healthy: Option<bool>,
    log: PathBuf,
}

#[derive(Serialize)]
struct Status {
    dir: PathBuf,
    parts: Vec<PartStatus>,
    coordinator: Option<serde_json::Value>,
    confirmer: Option<serde_json::Value>,
    eth_block: Option<u64>,
    btc_height: Option<u64>,
}

async fn status(state: &DevnetState, json: bool) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let e = &state.endpoints;
    let get_json =
        async |url: String| -> Option<serde_json::Value> { http.get(url).send().await.ok()?.json().await.ok() };
    let coordinator = get_json(format!("{}/info", e.coordinator)).await;
    let confirmer = get_json(format!("{}/status", e.confirmer)).await;
    let eth_block = {
        use alloy::providers::Provider;
        match e.eth_rpc.parse() {
            Ok(url) => alloy::providers::ProviderBuilder::new().connect_http(url).get_block_number().await.ok(),
            Err(_) => None,
        }
    };
    let btc_height =
        chains::bitcoin::CoreRpc::new(&e.btc_rpc, &e.btc_rpc_user, &e.btc_rpc_password).block_count().await.ok();
    let mut parts = Vec::new();
    for part in &state.parts {
        let running = process::alive(part);
        let healthy = match (&part.health, part.name.as_str()) {
            (Some(url), _) if running => Some(process::http_ok(&http, url).await),
            (Some(_), _) => Some(false),
            // The chain nodes answer JSON-RPC: healthy when they told their height above.
            (None, "anvil") => Some(eth_block.is_some()),
            (None, "bitcoin-regtest") => Some(btc_height.is_some()),
            (None, _) => None,
        };
        parts.push(PartStatus { name: part.name.clone(), pid: part.pid, running, healthy, log: part.log.clone() });
    }
    let report = Status { dir: state.dir.clone(), parts, coordinator, confirmer, eth_block, btc_height };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("devnet in {}", report.dir.display());
    for part in &report.parts {
        let health = match part.healthy {
            Some(true) => "healthy",
            Some(false) => "NOT ANSWERING",
            None => "",
        };
        let running = if part.running { "running" } else { "STOPPED" };
        println!("  {:<16} pid {:<8} {running:<8} {health}", part.name, part.pid);
    }
    let batch = report.coordinator.as_ref().and_then(|i| i["latest_batch"]["number"].as_u64());
    let replayed = report.confirmer.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "not answering".into());
    println!("  coordinator latest batch: {}", batch.map_or("not answering".into(), |b| b.to_string()));
    println!("  confirmer: {replayed}");
    println!("  Ethereum block: {}", report.eth_block.map_or("not answering".into(), |b| b.to_string()));
    println!("  Bitcoin height: {}", report.btc_height.map_or("not answering".into(), |b| b.to_string()));
    Ok(())
}
