//! `loadgen restart`: how long the coordinator and a confirmer take to be ready again, and how
//! much memory they hold, after histories of different lengths over the same accounts; and how
//! long a new confirmer takes to join from the DA's snapshot (fast sync) instead of replaying.
//!
//! One ledger grows through the histories asked for, in increasing order, so that 10^7
//! transactions cost 10^7 once, not 10^5 + 10^6 + 10^7: the in-process sequencer (the path
//! `loadgen bench` measures, signatures made and recovered on every core) writes it into
//! SQLite, and each round of 10^5 transfers is published at once to a directory DA. At each
//! history length:
//! - the sequencer saves its state (a clean stop's final snapshot) and the DA gets that snapshot;
//! - `confirmer follow --once` replays what is new on its own database (its final snapshot too);
//! - each binary is started on its database from its newest snapshot, then with its snapshots
//!   set aside (a full replay: what every start did before snapshots), then they are put back;
//! - a confirmer on an empty database joins with `--checkpoint N:0xHASH` from the DA's snapshot.
//!
//! Ready = the line the binary prints once it serves; memory = its `VmRSS` at that moment. A
//! start from a snapshot is the median of [`STARTS`]. `--keep DIR` leaves the ledgers in `DIR`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridge::{CoordinatorKey, NetworkParams};
use chains::da::{DataAvailability, DirDa};
use chains::snapshots::SnapshotPolicy;
use coordinator::publisher::Publisher;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;
use sqlx::Executor;

use crate::bench::{bench_params, sibling_binary};
use crate::{BENCH_SECRET, funding, sign_transfers};

/// Transfers signed and driven at a time (rounded to whole turns of the accounts): bounds the
/// load generator's own memory (10^5 signed transfers are about 20 MB).
const ROUND: usize = 100_000;
/// Transactions per sealed batch, as `loadgen bench` seals.
const BATCH_TXS: usize = 10_000;
/// Starts from a snapshot timed for each figure, the median reported: one takes a tenth of a
/// second, within the noise of one busy moment of the machine. (A full replay is timed once.)
const STARTS: usize = 5;
/// The longest a start may take: a full replay of 10^7 transactions is minutes, not hours.
const START_TIMEOUT: Duration = Duration::from_secs(3_600);

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
    /// Seconds the in-process sequencer took to write this row's new transactions.
    written_s: f64,
    /// Seconds `confirmer follow --once` took to replay this row's new batches from the DA.
    replayed_s: f64,
    /// Transactions new in this row.
    new_txs: usize,
    coordinator_snapshot: Start,
    coordinator_full: Start,
    confirmer_snapshot: Start,
    confirmer_full: Start,
    /// A new confirmer joining from the DA's snapshot at the last batch.
    fast_sync: Start,
}

pub async fn restart(accounts: u64, mut histories: Vec<usize>, keep: Option<&Path>) -> anyhow::Result<()> {
    let key = CoordinatorKey::from_secret(&BENCH_SECRET).map_err(|_| anyhow::anyhow!("bad bench key"))?;
    let params = bench_params(&key);
    let coordinator_binary = sibling_binary("coordinator")?;
    let confirmer_binary = sibling_binary("confirmer")?;
    histories.sort_unstable();
    histories.dedup();
    // Every account sends once per `accounts` transfers, nonce after nonce: a round is whole
    // turns of the accounts.
    let round = (ROUND / accounts as usize).max(1) * accounts as usize;
    for &history in &histories {
        if accounts == 0 || history == 0 || history % accounts as usize != 0 {
            bail!("a history is a positive multiple of the accounts, got {history} over {accounts}");
        }
    }
    let temporary;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("--keep {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!("--keep {}: the directory is not empty (the ledgers grow from nothing)", dir.display());
            }
            dir
        }
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path()
        }
    };
    let ledger = format!("sqlite://{}", dir.join("ledger.db").display());
    let config = coordinator_config(dir, &ledger, &params)?;
    let da_dir = dir.join("da");
    let da = Arc::new(DirDa::open(&da_dir, params.coordinator_key)?);
    let params_file = dir.join("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&params)?)?;
    let confirmer_db = format!("sqlite://{}", dir.join("confirmer.db").display());

    eprintln!("funding {accounts} accounts…");
    let store = Store::open(&ledger).await?;
    let publisher = Publisher::new(store.clone(), da.clone() as Arc<dyn DataAvailability>);
    // Snapshots every 10 batches while writing, as a running coordinator would take them.
    let policy = SnapshotPolicy { every_batches: 10, every_ms: 0, keep: 2 };
    let mut sequencer = Sequencer::recover(store.clone(), params.clone(), key).await?.with_snapshots(policy);
    for deposits in funding(accounts).chunks(BATCH_TXS) {
        sequencer.submit(deposits.to_vec()).await?;
        sequencer.seal(1).await?;
    }
    publisher.publish_pending().await?;

    let mut rows = Vec::new();
    let mut written = 0usize;
    for history in histories {
        eprintln!("history of {history} transfers over {accounts} accounts");
        let started = Instant::now();
        while written < history {
            let first_nonce = written as u64 / accounts;
            let signed = sign_transfers(&params, accounts, round.min(history - written), first_nonce);
            coordinator::throughput::drive(&mut sequencer, &signed, BATCH_TXS, 2).await?;
            // Published as it goes: the publisher reads what is unpublished at once.
            publisher.publish_pending().await?;
            written += signed.len();
            eprintln!("    {written} of {history} written ({:.0} s)", started.elapsed().as_secs_f64());
        }
        let new_txs = history - rows.last().map_or(0, |r: &Row| r.history);
        sequencer.seal(3).await?;
        sequencer.finish_snapshots().await?;
        publisher.publish_pending().await?;
        let written_s = started.elapsed().as_secs_f64();
        let batches = sequencer.state().head().next_number - 1;
        // The DA's snapshot of the last batch, and the checkpoint a joining confirmer is given.
        let snapshot = store.snapshots().load(batches).await?.context("no snapshot of the last batch")?;
        da.publish_snapshot(batches, sequencer.state().state_root(), &snapshot).await?;
        let header = store.header(batches).await?.context("no header of the last batch")?;
        let checkpoint = format!("{batches}:0x{}", hex::encode(header.header.hash()));

        eprintln!("  confirmer: replaying the new batches…");
        let follow = |db: &str, once: bool, checkpoint: Option<&str>| {
            let mut args: Vec<String> = [
                "follow",
                "--params",
                &params_file.display().to_string(),
                "--da-dir",
                &da_dir.display().to_string(),
                "--database-url",
                db,
                "--listen",
                "127.0.0.1:0",
                "--snapshot-every-batches",
                "10",
            ]
            .map(str::to_owned)
            .to_vec();
            if once {
                args.push("--once".into());
            }
            if let Some(checkpoint) = checkpoint {
                args.extend(["--checkpoint".to_owned(), checkpoint.to_owned()]);
            }
            args
        };
        let started = Instant::now();
        let output = tokio::process::Command::new(&confirmer_binary)
            .args(follow(&confirmer_db, true, None))
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .output()
            .await?;
        anyhow::ensure!(output.status.success(), "confirmer --once: {}", String::from_utf8_lossy(&output.stderr));
        let replayed_s = started.elapsed().as_secs_f64();

        eprintln!("  coordinator: restart from its snapshot, then by full replay…");
        let run = ["--config", config.as_str(), "run"];
        let coordinator_snapshot = median_start(&coordinator_binary, &run, "coordinator listening").await?;
        set_snapshots_aside(&ledger).await?;
        let coordinator_full = start(&coordinator_binary, &run, "coordinator listening").await?;
        put_snapshots_back(&ledger).await?;

        eprintln!("  confirmer: restart from its snapshot, then by full replay…");
        let args = follow(&confirmer_db, false, None);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let confirmer_snapshot = median_start(&confirmer_binary, &args, "confirmer listening").await?;
        set_snapshots_aside(&confirmer_db).await?;
        let confirmer_full = start(&confirmer_binary, &args, "confirmer listening").await?;
        put_snapshots_back(&confirmer_db).await?;

        eprintln!("  a new confirmer: fast sync from the DA's snapshot at {checkpoint}…");
        let joining = dir.join(format!("joining-{history}.db"));
        let joining_db = format!("sqlite://{}", joining.display());
        let args = follow(&joining_db, false, Some(&checkpoint));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fast_sync = start(&confirmer_binary, &args, "confirmer listening").await?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", joining.display()));
        }

        rows.push(Row {
            history,
            batches,
            written_s,
            replayed_s,
            new_txs,
            coordinator_snapshot,
            coordinator_full,
            confirmer_snapshot,
            confirmer_full,
            fast_sync,
        });
        // Printed after every row: a long run that is stopped still leaves its figures.
        print_table(accounts, &rows);
    }
    Ok(())
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

/// [`start`] [`STARTS`] times, the median start (its memory too).
async fn median_start(binary: &Path, args: &[&str], ready: &str) -> anyhow::Result<Start> {
    let mut starts = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        starts.push(start(binary, args, ready).await?);
    }
    starts.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(starts[STARTS / 2])
}

/// Starts `binary`, waits for the line starting with `ready` on its stdout, reads its resident
/// memory, and kills it (SIGKILL: no final snapshot, the database stays as measured).
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
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
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

/// Moves a role's snapshots into tables of the benchmark's own, so that its next start replays
/// its whole record.
async fn set_snapshots_aside(url: &str) -> anyhow::Result<()> {
    let (pool, _) = chains::db::open(url).await?;
    pool.execute("CREATE TABLE bench_snapshots AS SELECT * FROM state_snapshots").await?;
    pool.execute("CREATE TABLE bench_snapshot_chunks AS SELECT * FROM state_snapshot_chunks").await?;
    pool.execute("DELETE FROM state_snapshot_chunks").await?;
    pool.execute("DELETE FROM state_snapshots").await?;
    pool.close().await;
    Ok(())
}

/// Puts back what [`set_snapshots_aside`] moved (a full-replay start was killed before it saved
/// any), so that the next history starts from them.
async fn put_snapshots_back(url: &str) -> anyhow::Result<()> {
    let (pool, _) = chains::db::open(url).await?;
    pool.execute("DELETE FROM state_snapshot_chunks").await?;
    pool.execute("DELETE FROM state_snapshots").await?;
    pool.execute("INSERT INTO state_snapshots SELECT * FROM bench_snapshots").await?;
    pool.execute("INSERT INTO state_snapshot_chunks SELECT * FROM bench_snapshot_chunks").await?;
    pool.execute("DROP TABLE bench_snapshot_chunks").await?;
    pool.execute("DROP TABLE bench_snapshots").await?;
    pool.close().await;
    Ok(())
}

fn print_table(accounts: u64, rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
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
        "\n| restart at {accounts} accounts | coordinator: from snapshot | coordinator: full replay | confirmer: from snapshot | confirmer: full replay |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| {} transactions ({} batches) | {} | {} | {} | {} |",
            row.history,
            row.batches,
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
    println!(
        "\n| joining at {accounts} accounts | fast sync from the DA's snapshot | confirmer: full replay of its own record | fast sync ÷ full replay | written (sequencer) | replayed from the DA (`--once`) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        println!(
            "| {} transactions | {:.2} s, {:.1} MiB | {:.2} s | {:.3} | {} new in {:.1} s ({:.0} tx/s) | {:.1} s ({:.0} tx/s) |",
            row.history,
            row.fast_sync.seconds,
            mib(row.fast_sync.rss_bytes),
            row.confirmer_full.seconds,
            row.fast_sync.seconds / row.confirmer_full.seconds,
            row.new_txs,
            row.written_s,
            row.new_txs as f64 / row.written_s,
            row.replayed_s,
            row.new_txs as f64 / row.replayed_s,
        );
    }
}
