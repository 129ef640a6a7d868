//! `loadgen restart`: how long the coordinator and a confirmer take to be ready again, and how
//! much memory they hold, after histories of different lengths over the same accounts. Each
//! history is written by the in-process sequencer (the path `loadgen bench` measures) into a
//! SQLite ledger, published to a directory DA and replayed once by a `confirmer follow --once`;
//! then each binary is started on its database twice: from its newest state snapshot, and with
//! the snapshots removed (a full replay, what every start did before snapshots). Ready = the
//! line the binary prints once it serves; memory = its `VmRSS` at that moment.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridge::tx::{L1Ref, SystemTx};
use bridge::{Amount, AssetId, Chain, CoordinatorKey, Deposit, NetworkParams, Tx};
use chains::da::{DataAvailability, DirDa};
use chains::snapshots::SnapshotPolicy;
use coordinator::publisher::Publisher;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;
use sqlx::Executor;

use crate::bench::{bench_params, sibling_binary};
use crate::{BENCH_SECRET, ONE_ETH, account, sign_transfers};

/// Transfers signed and driven at a time: bounds the load generator's own memory.
const ROUND: usize = 100_000;
/// Transactions per sealed batch, as `loadgen bench` seals.
const BATCH_TXS: usize = 10_000;

/// One binary's start: seconds to ready and resident memory then.
#[derive(Debug, Clone, Copy)]
struct Start {
    seconds: f64,
    rss_bytes: u64,
}

#[derive(Debug)]
struct Row {
    history: usize,
    batches: u64,
    coordinator_snapshot: Start,
    coordinator_full: Start,
    confirmer_snapshot: Start,
    confirmer_full: Start,
    confirmer_first_replay_s: f64,
}

pub async fn restart(accounts: u64, histories: Vec<usize>) -> anyhow::Result<()> {
    let key = CoordinatorKey::from_secret(&BENCH_SECRET).map_err(|_| anyhow::anyhow!("bad bench key"))?;
    let params = bench_params(&key);
    let coordinator_binary = sibling_binary("coordinator")?;
    let confirmer_binary = sibling_binary("confirmer")?;
    let mut rows = Vec::new();
    for history in histories {
        let round = ROUND.min(history).max(1);
        if history % round != 0 || round % accounts as usize != 0 {
            bail!("a history is a multiple of {ROUND} (or less) and of the accounts, got {history} over {accounts}");
        }
        let dir = tempfile::tempdir()?;
        let ledger = format!("sqlite://{}", dir.path().join("ledger.db").display());
        eprintln!("history of {history} transfers over {accounts} accounts: writing the ledger…");
        let batches = write_history(&ledger, &params, accounts, history).await?;

        eprintln!("  coordinator: restart from its snapshot, then by full replay…");
        let config = coordinator_config(dir.path(), &ledger, &params)?;
        let coordinator_snapshot =
            start(&coordinator_binary, &["--config", config.as_str(), "run"], "coordinator listening").await?;
        remove_snapshots(&ledger).await?;
        let coordinator_full =
            start(&coordinator_binary, &["--config", config.as_str(), "run"], "coordinator listening").await?;

        eprintln!("  confirmer: first replay of {batches} batches, then restarts…");
        let da_dir = dir.path().join("da");
        let da = std::sync::Arc::new(DirDa::open(&da_dir, params.coordinator_key)?);
        let published = Publisher::new(Store::open(&ledger).await?, da.clone() as std::sync::Arc<dyn DataAvailability>)
            .publish_pending()
            .await?;
        anyhow::ensure!(published.len() as u64 == batches, "published {} of {batches} batches", published.len());
        let params_file = dir.path().join("params.json");
        std::fs::write(&params_file, serde_json::to_vec(&params)?)?;
        let confirmer_db = format!("sqlite://{}", dir.path().join("confirmer.db").display());
        let follow = |once: bool| {
            let mut args = vec![
                "follow".to_owned(),
                "--params".into(),
                params_file.display().to_string(),
                "--da-dir".into(),
                da_dir.display().to_string(),
                "--database-url".into(),
                confirmer_db.clone(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--snapshot-every-batches".into(),
                "10".into(),
            ];
            if once {
                args.push("--once".into());
            }
            args
        };
        let started = Instant::now();
        let output = tokio::process::Command::new(&confirmer_binary)
            .args(follow(true))
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .output()
            .await?;
        anyhow::ensure!(output.status.success(), "confirmer --once: {}", String::from_utf8_lossy(&output.stderr));
        let confirmer_first_replay_s = started.elapsed().as_secs_f64();
        let args = follow(false);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let confirmer_snapshot = start(&confirmer_binary, &args, "confirmer listening").await?;
        remove_snapshots(&confirmer_db).await?;
        let confirmer_full = start(&confirmer_binary, &args, "confirmer listening").await?;
        rows.push(Row {
            history,
            batches,
            coordinator_snapshot,
            coordinator_full,
            confirmer_snapshot,
            confirmer_full,
            confirmer_first_replay_s,
        });
    }
    print_table(accounts, &rows);
    Ok(())
}

/// The ledger of a coordinator that funded `accounts` and then served `history` transfers,
/// snapshotting every 10 batches and at the end (a clean stop). Returns the sealed batches.
async fn write_history(url: &str, params: &NetworkParams, accounts: u64, history: usize) -> anyhow::Result<u64> {
    let key = CoordinatorKey::from_secret(&BENCH_SECRET).map_err(|_| anyhow::anyhow!("bad bench key"))?;
    let store = Store::open(url).await?;
    let policy = SnapshotPolicy { every_batches: 10, every_ms: 0, keep: 2 };
    let mut sequencer = Sequencer::recover(store, params.clone(), key).await?.with_snapshots(policy);
    let funding: Vec<Tx> = (0..accounts)
        .map(|n| {
            Tx::System(SystemTx::Deposit(Deposit {
                chain: Chain::Ethereum,
                l1_ref: L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: n as u32 },
                account: account(n).address(),
                asset: AssetId::Eth,
                amount: Amount(ONE_ETH),
                l1_height: 0,
            }))
        })
        .collect();
    sequencer.submit(funding).await?;
    sequencer.seal(1).await?;
    let round = ROUND.min(history);
    let started = Instant::now();
    for r in 0..history / round {
        let first_nonce = (r * round) as u64 / accounts;
        let signed = sign_transfers(params, accounts, round, first_nonce);
        coordinator::throughput::drive(&mut sequencer, &signed, BATCH_TXS, 2).await?;
        eprintln!("    {} of {history} ({:.0} s)", (r + 1) * round, started.elapsed().as_secs_f64());
    }
    sequencer.seal(3).await?;
    sequencer.finish_snapshots().await?;
    Ok(sequencer.state().head().next_number - 1)
}

fn coordinator_config(dir: &Path, ledger: &str, params: &NetworkParams) -> anyhow::Result<String> {
    let key_file = dir.join("coordinator.key");
    std::fs::write(&key_file, hex::encode(BENCH_SECRET))?;
    let config = dir.join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[network]\nname = \"bench\"\nchain_id = {chain_id}\neth_vault = \"{vault}\"\n\
             fee_account = \"{fee}\"\nassets = [{{ asset = \"eth:ETH\", min_fee = \"0\" }}]\n\
             [coordinator]\nkey_file = {key:?}\ncreate_key = false\ndatabase_url = {ledger:?}\n\
             [api]\nlisten = \"127.0.0.1:0\"\nrate_limit_per_second = 0.0\n",
            data = dir.display().to_string(),
            chain_id = params.chain_id,
            vault = params.eth_vault,
            fee = params.fee_account,
            key = key_file.display().to_string(),
        ),
    )?;
    Ok(config.display().to_string())
}

/// Starts `binary`, waits for the line starting with `ready` on its stdout, reads its resident
/// memory, and stops it.
async fn start(binary: &Path, args: &[&str], ready: &str) -> anyhow::Result<Start> {
    use tokio::io::AsyncBufReadExt;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let seconds = loop {
        // A full replay of 10^6 transactions takes minutes on a slow machine, not hours.
        let line = tokio::time::timeout(Duration::from_secs(3_600), lines.next_line())
            .await
            .context("no ready line within an hour")??
            .with_context(|| format!("{} exited before it was ready", binary.display()))?;
        if line.starts_with(ready) {
            break started.elapsed().as_secs_f64();
        }
    };
    let pid = child.id().context("the process is gone")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(Start { seconds, rss_bytes: rss_kb * 1024 })
}

async fn remove_snapshots(url: &str) -> anyhow::Result<()> {
    let (pool, _) = chains::db::open(url).await?;
    pool.execute("DELETE FROM state_snapshot_chunks").await?;
    pool.execute("DELETE FROM state_snapshots").await?;
    pool.close().await;
    Ok(())
}

fn print_table(accounts: u64, rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "| restart at {accounts} accounts | coordinator: from snapshot | coordinator: full replay | confirmer: from snapshot | confirmer: full replay |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        let cell = |start: Start, base: Start| {
            format!(
                "{:.2} s ({:.2}×), {:.1} MiB = {:.0} B/account",
                start.seconds,
                start.seconds / base.seconds,
                mib(start.rss_bytes),
                start.rss_bytes as f64 / accounts as f64
            )
        };
        println!(
            "| {} transactions ({} batches; first replay by the confirmer {:.1} s) | {} | {} | {} | {} |",
            row.history,
            row.batches,
            row.confirmer_first_replay_s,
            cell(row.coordinator_snapshot, first.coordinator_snapshot),
            cell(row.coordinator_full, first.coordinator_full),
            cell(row.confirmer_snapshot, first.confirmer_snapshot),
            cell(row.confirmer_full, first.confirmer_full),
        );
    }
    println!(
        "\nRatios are to the first row's figure in the same column, measured in the same run. Goal: \
         from a snapshot, the largest history's start ≤ 1.3× the smallest's; memory flat in history."
    );
}
