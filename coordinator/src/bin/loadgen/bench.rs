//! `loadgen bench`: the coordinator's benchmark table (README), every figure a ratio to the
//! signature ceiling measured in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridge::signature::Authorization;
use bridge::{Address, Amount, AssetConfig, AssetId, BtcNetwork, CoordinatorKey, NetworkParams, SignedUserTx};
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;

use crate::send::{Report, send};
use crate::{BENCH_SECRET, account, deposits_file, funding, sign_requests, sign_transfers};

pub(crate) fn bench_params(key: &CoordinatorKey) -> NetworkParams {
    NetworkParams {
        name: "bench".into(),
        chain_id: 31_337,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}

/// Ledgers to measure: SQLite always, Postgres (a schema of its own) when `DATABASE_URL` is set.
async fn ledgers(dir: &Path, run: &str) -> anyhow::Result<Vec<(&'static str, String, Option<String>)>> {
    let mut out = vec![("SQLite", format!("sqlite://{}", dir.join(format!("{run}.db")).display()), None)];
    if let Ok(base) = std::env::var("DATABASE_URL") {
        let schema = format!("loadgen_{}_{run}", std::process::id());
        let url = chains::db::create_schema(&base, &schema).await.context("DATABASE_URL")?;
        out.push(("Postgres", url, Some(schema)));
    }
    Ok(out)
}

async fn drop_schema(schema: &str) {
    if let Ok(base) = std::env::var("DATABASE_URL") {
        chains::db::drop_schema(&base, schema).await;
    }
}

pub async fn bench(accounts: u64, txs: usize, http_txs: usize, concurrency: usize) -> anyhow::Result<()> {
    let cores = rayon::current_num_threads();
    let key = CoordinatorKey::from_secret(&BENCH_SECRET).map_err(|_| anyhow::anyhow!("bad bench key"))?;
    let params = bench_params(&key);
    let mut rows: Vec<[String; 3]> = Vec::new();

    eprintln!("signing {txs} transfers from {accounts} accounts…");
    let signed = sign_transfers(&params, accounts, txs, 0);
    let domain = bridge::eip712::Domain::new(&params);
    let digests: Vec<[u8; 32]> = signed.iter().map(|t| t.tx.signing_hash(&domain)).collect();
    let recoveries_per_second = || {
        let started = Instant::now();
        for (tx, digest) in signed.iter().zip(&digests) {
            if let Authorization::Eip712Secp256k1 { signature } = &tx.auth {
                std::hint::black_box(signature.recover(digest).ok());
            }
        }
        signed.len() as f64 / started.elapsed().as_secs_f64()
    };
    // Measured at the start and again at the end; the mean is the ceiling (this machine's
    // speed drifts by a fifth within minutes).
    let first = recoveries_per_second();

    // Rates now, ratios once the ceiling is known.
    let mut measured: Vec<(String, f64, String, &str)> = Vec::new();
    let dir = tempfile::tempdir()?;
    // Three runs per database, each on a fresh ledger; the median is reported (one run is a
    // second or two, and this machine is noisy).
    let mut runs: Vec<(&str, f64, f64)> = Vec::new();
    for run in 0..3 {
        for (name, url, schema) in ledgers(dir.path(), &format!("in_process_{run}")).await? {
            eprintln!("{name}: in-process sequencer, {txs} transfers (run {})…", run + 1);
            let (rate, rate_sealed) = in_process(&url, &params, accounts, &signed).await?;
            runs.push((name, rate, rate_sealed));
            if let Some(schema) = &schema {
                drop_schema(schema).await;
            }
        }
    }
    for name in ["SQLite", "Postgres"] {
        let median = |pick: fn(&(&str, f64, f64)) -> f64| {
            let mut rates: Vec<f64> = runs.iter().filter(|r| r.0 == name).map(pick).collect();
            rates.sort_by(f64::total_cmp);
            rates.get(rates.len() / 2).copied()
        };
        let (Some(rate), Some(rate_sealed)) = (median(|r| r.1), median(|r| r.2)) else { continue };
        measured.push((
            format!("{name}: sequencer in process (verify on all cores + apply + durable group commit), median of 3"),
            rate,
            format!("{rate:.0} tx/s"),
            " (goal ≥ 0.8)",
        ));
        measured.push((
            format!("{name}: the same, sealing a batch (state root, signature, record) every 10,000"),
            rate_sealed,
            format!("{rate_sealed:.0} tx/s"),
            "",
        ));
    }
    let modes = [(concurrency, 1), (8, 100)];
    for (name, url, schema) in ledgers(dir.path(), "http").await? {
        eprintln!("{name}: over HTTP, {http_txs} transfers per mode…");
        let reports = over_http(dir.path(), &url, accounts, http_txs, &modes, &params).await?;
        for ((in_flight, per_request), report) in modes.iter().zip(reports) {
            if report.refused > 0 {
                bail!(
                    "{name}: {} transfers were refused; the benchmark's accounts are not as expected",
                    report.refused
                );
            }
            let how = if *per_request == 1 {
                format!("POST /tx, {in_flight} in flight")
            } else {
                format!("POST /txs of {per_request}, {in_flight} in flight")
            };
            measured.push((
                format!("{name}: HTTP {how}, load generator on the same cores"),
                report.tps(),
                format!(
                    "{:.0} tx/s, ack p50 {:.1} ms, p99 {:.1} ms",
                    report.tps(),
                    report.percentile(0.5).as_secs_f64() * 1e3,
                    report.percentile(0.99).as_secs_f64() * 1e3
                ),
                " (goal ≥ 0.5)",
            ));
        }
        if let Some(schema) = &schema {
            drop_schema(schema).await;
        }
    }
    let last = recoveries_per_second();
    let one_core = (first + last) / 2.0;
    let ceiling = one_core * cores as f64;
    rows.push([
        "ceiling: libsecp256k1 recoveries/s × cores".into(),
        format!("({first:.0} + {last:.0}) / 2 × {cores} = {ceiling:.0}/s"),
        "1.00".into(),
    ]);
    for (what, rate, figure, goal) in measured {
        rows.push([what, figure, format!("{:.2}{goal}", rate / ceiling)]);
    }

    println!("| coordinator benchmark ({cores} cores, {accounts} accounts) | figure | ratio to ceiling |");
    println!("| --- | --- | --- |");
    for [what, figure, ratio] in rows {
        println!("| {what} | {figure} | {ratio} |");
    }
    Ok(())
}

/// The sequencer alone: signatures recovered on every core (the next chunk while the current
/// one is applied and committed), applied in order, committed in groups. Returns the rate
/// without and with sealing every 10,000.
async fn in_process(
    url: &str,
    params: &NetworkParams,
    accounts: u64,
    signed: &[SignedUserTx],
) -> anyhow::Result<(f64, f64)> {
    let store = Store::open(url).await?;
    let key = CoordinatorKey::from_secret(&BENCH_SECRET).map_err(|_| anyhow::anyhow!("bad bench key"))?;
    let mut sequencer = Sequencer::recover(store, params.clone(), key).await?;
    sequencer.submit(funding(accounts)).await?;
    sequencer.seal(1).await?;

    let driven = coordinator::throughput::drive(&mut sequencer, signed, 10_000, 2).await?;
    eprintln!(
        "  waiting for signatures {:.2} s, applying and committing {:.2} s, sealing {:.2} s, of {:.2} s",
        driven.waiting.as_secs_f64(),
        driven.submitting.as_secs_f64(),
        driven.sealing.as_secs_f64(),
        driven.total.as_secs_f64()
    );
    let (total, sealing) = (driven.total, driven.sealing);
    let n = signed.len() as f64;
    Ok((n / (total - sealing).as_secs_f64(), n / total.as_secs_f64()))
}

/// The `coordinator` binary (next to this one) on `url`, driven over loopback HTTP.
async fn over_http(
    dir: &Path,
    url: &str,
    accounts: u64,
    txs: usize,
    modes: &[(usize, usize)],
    params: &NetworkParams,
) -> anyhow::Result<Vec<Report>> {
    let run = tempfile::tempdir_in(dir)?;
    let key_file = run.path().join("coordinator.key");
    std::fs::write(&key_file, hex::encode(BENCH_SECRET))?;
    let deposits = run.path().join("deposits.json");
    std::fs::write(&deposits, serde_json::to_vec(&deposits_file(accounts))?)?;
    let config = run.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[network]\nname = \"bench\"\nchain_id = {chain_id}\neth_vault = \"{vault}\"\n\
             fee_account = \"{fee}\"\nassets = [{{ asset = \"eth:ETH\", min_fee = \"0\" }}]\n\
             [coordinator]\nkey_file = {key:?}\ncreate_key = false\ndatabase_url = {url:?}\n\
             [api]\nlisten = \"127.0.0.1:0\"\nrate_limit_per_second = 0.0\n[dev]\ndeposits = {deposits:?}\n",
            data = run.path().display().to_string(),
            chain_id = params.chain_id,
            vault = params.eth_vault,
            fee = params.fee_account,
            key = key_file.display().to_string(),
            deposits = deposits.display().to_string(),
        ),
    )?;
    let binary = sibling_binary("coordinator")?;
    let mut child = tokio::process::Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let base = {
        use tokio::io::AsyncBufReadExt;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::io::BufReader::new(stdout).lines().next_line().await?.context("the coordinator exited")?;
        line.strip_prefix("coordinator listening on ").context("unexpected first line")?.to_owned()
    };
    // Wait until the last funded account has its deposit.
    let last = account(accounts - 1).address();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body: serde_json::Value = reqwest::get(format!("{base}/accounts/{last}")).await?.json().await?;
        if body["balances"].as_array().is_some_and(|b| !b.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the dev deposits were not credited within two minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut reports = Vec::new();
    let rounds = txs.div_ceil(accounts as usize) as u64;
    for (i, (in_flight, per_request)) in modes.iter().enumerate() {
        let requests = sign_requests(params, accounts, txs, i as u64 * rounds);
        reports.push(send(&base, requests, *in_flight, *per_request).await?);
    }
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(reports)
}

pub(crate) fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!("{} is missing: build it with `cargo build --release -p coordinator --bins`", path.display());
    }
    Ok(path)
}
