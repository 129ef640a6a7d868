//! The `coordinator` binary under the worst: SIGKILL under load (nothing acknowledged may be
//! lost, nothing applied twice), and takeover (the database deleted, the ledger rebuilt from
//! the DA alone, service resumed). SQLite always, PostgreSQL when `DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bridge::Address;
use chains::da::DirDa;
use common::*;
use coordinator::store::Store;
use coordinator::takeover::recover_from_da;
use reqwest::StatusCode;
use serde_json::Value;

const CLIENTS: u64 = 6;
const AMOUNT: u128 = 7;

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn account(base: &str, address: Address) -> (u64, u128) {
    let account = get(&format!("{base}/accounts/{address}")).await;
    let balance = account["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "eth:ETH")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap());
    (account["nonce"].as_u64().unwrap(), balance)
}

/// Each client sends transfers nonce after nonce until the coordinator stops answering; returns
/// the (nonce, hash) of every acknowledged one.
async fn client(base: String, n: u64, acked: Arc<AtomicUsize>) -> Vec<(u64, String)> {
    // Generous: on a loaded CI machine a debug build can stall for seconds; only the kill ends a client.
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
    let (from, sink) = (wallet(n), wallet(100).address());
    let mut done = Vec::new();
    for nonce in 0.. {
        let request = transfer_request(&from, sink, AMOUNT, nonce);
        let Ok(response) = http.post(format!("{base}/tx")).json(&request).send().await else { break };
        let status = response.status();
        let Ok(body) = response.json::<Value>().await else { break };
        assert_eq!(status, StatusCode::OK, "client {n}, nonce {nonce}: {body}");
        done.push((nonce, body["hash"].as_str().unwrap().to_owned()));
        acked.fetch_add(1, Ordering::Relaxed);
    }
    done
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_acknowledged_and_applies_nothing_twice() {
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), &ledger.url, CLIENTS, "");
        let first = Process::start(&config).await;
        let base = first.url.clone();
        eventually(120, "the dev deposits", || async {
            let mut all = true;
            for n in 1..=CLIENTS {
                all &= account(&base, wallet(n).address()).await.1 == ONE_ETH;
            }
            all.then_some(())
        })
        .await;

        let acked_count = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> =
            (1..=CLIENTS).map(|n| tokio::spawn(client(base.clone(), n, acked_count.clone()))).collect();
        eventually(300, "load", || async {
            assert!(!clients.iter().all(|c| c.is_finished()), "every client stopped before the kill");
            (acked_count.load(Ordering::Relaxed) >= 400).then_some(())
        })
        .await;
        first.kill_9().await;
        let mut acked: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
        for (i, handle) in clients.into_iter().enumerate() {
            acked.insert(i as u64 + 1, handle.await.unwrap());
        }
        let total: usize = acked.values().map(Vec::len).sum();
        assert!(total >= 400, "{total}");

        let second = Process::start(&config).await;
        let base = second.url.clone();
        let mut applied = 0u64;
        for (n, done) in &acked {
            let (nonce, balance) = account(&base, wallet(*n).address()).await;
            // Every acknowledged transfer is there; at most the one in flight at the kill
            // (committed, its answer lost) is there besides.
            assert!(
                nonce == done.len() as u64 || nonce == done.len() as u64 + 1,
                "client {n}: nonce {nonce}, {} acked",
                done.len()
            );
            assert_eq!(balance, ONE_ETH - u128::from(nonce) * AMOUNT, "client {n}: applied twice or lost");
            applied += nonce;
            for (_, hash) in done {
                let status = reqwest::get(format!("{base}/tx/{hash}")).await.unwrap().status();
                assert_eq!(status, StatusCode::OK, "acknowledged {hash} is lost");
            }
        }
        assert_eq!(account(&base, wallet(100).address()).await.1, u128::from(applied) * AMOUNT);

        // Everything is sealed and published, and the DA alone gives the same state.
        let info = eventually(120, "publication of everything", || async {
            let info = get(&format!("{base}/info")).await;
            let latest = &info["latest_batch"];
            let health = get(&format!("{base}/health")).await;
            (latest["number"] == latest["published"] && health["status"] == "ok" && {
                let last: Vec<&(u64, String)> = acked.values().filter_map(|d| d.last()).collect();
                let mut all = true;
                for (_, hash) in last {
                    all &= get(&format!("{base}/tx/{hash}")).await["status"] == "published";
                }
                all
            })
            .then_some(info)
        })
        .await;
        let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
        let check_dir = tempfile::tempdir().unwrap();
        let check = Store::open(&format!("sqlite://{}", check_dir.path().join("check.db").display())).await.unwrap();
        let rebuilt = recover_from_da(&da, &check, params(), None, |_, _| {}).await.unwrap();
        assert_eq!(rebuilt.batches, info["latest_batch"]["number"].as_u64().unwrap());
        assert_eq!(format!("0x{}", hex::encode(rebuilt.state_root)), info["latest_batch"]["state_root"]);
        assert_eq!(rebuilt.txs, CLIENTS + applied, "the DA holds each deposit and transfer once");
        for done in acked.values() {
            for (_, hash) in done {
                let hash = bridge::serde_hex::parse_fixed::<32>(hash).unwrap();
                assert!(check.tx_by_hash(&hash).await.unwrap().is_some(), "acknowledged but not published");
            }
        }

        // And the coordinator keeps serving.
        let (nonce, _) = account(&base, wallet(1).address()).await;
        let response = reqwest::Client::new()
            .post(format!("{base}/tx"))
            .json(&transfer_request(&wallet(1), wallet(100).address(), AMOUNT, nonce))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        second.terminate().await;
    }
}

#[tokio::test]
async fn takeover_rebuilds_the_ledger_from_the_da_and_serves_on() {
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), &ledger.url, 2, "");
        let config_arg = config.display().to_string();
        let process = Process::start(&config).await;
        let base = process.url.clone();
        eventually(120, "the dev deposits", || async {
            (account(&base, wallet(2).address()).await.1 == ONE_ETH).then_some(())
        })
        .await;
        let http = reqwest::Client::new();
        for nonce in 0..20 {
            for n in [1, 2] {
                let request = transfer_request(&wallet(n), wallet(3).address(), AMOUNT, nonce);
                let response = http.post(format!("{base}/tx")).json(&request).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        }
        // A clean stop seals and publishes what is open.
        process.terminate().await;

        // A takeover into a database that already holds a ledger is refused.
        let refused = run_binary(&["--config", &config_arg, "recover", "--from-da"]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds a ledger"), "{refused:?}");

        // The database is lost; the DA is all there is.
        let (fresh, _kept) = fresh_ledger(&ledger, dir.path()).await;
        let config = config_file(dir.path(), &fresh, 2, "");
        let config_arg = config.display().to_string();
        let recovered = run_binary(&["--config", &config_arg, "recover", "--from-da"]);
        let stdout = String::from_utf8_lossy(&recovered.stdout);
        assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
        assert!(stdout.contains("42 transactions"), "{stdout}");

        let process = Process::start(&config).await;
        let base = process.url.clone();
        assert_eq!(account(&base, wallet(3).address()).await.1, 40 * AMOUNT);
        assert_eq!(account(&base, wallet(1).address()).await, (20, ONE_ETH - 20 * AMOUNT));
        let info = get(&format!("{base}/info")).await;
        let root = info["latest_batch"]["state_root"].as_str().unwrap().to_owned();
        assert!(stdout.contains(&root[2..]), "the rebuilt root is the last batch's: {stdout} vs {root}");
        // The dev deposits are handed in again at start and refused as already credited.
        assert_eq!(account(&base, wallet(1).address()).await.1, ONE_ETH - 20 * AMOUNT);

        // It serves on: the next transaction goes into the next batch, published after the
        // rebuilt ones.
        let request = transfer_request(&wallet(1), wallet(3).address(), AMOUNT, 20);
        let accepted: Value =
            http.post(format!("{base}/tx")).json(&request).send().await.unwrap().json().await.unwrap();
        let hash = accepted["hash"].as_str().unwrap().to_owned();
        let published = eventually(120, "the next batch", || async {
            let tx = get(&format!("{base}/tx/{hash}")).await;
            (tx["status"] == "published").then_some(tx)
        })
        .await;
        assert_eq!(published["batch"].as_u64().unwrap(), info["latest_batch"]["number"].as_u64().unwrap() + 1);
        process.terminate().await;
    }
}

/// An empty ledger of the same kind as `ledger`: a new SQLite file, or a new Postgres schema
/// (kept while the returned `Ledger` lives).
async fn fresh_ledger(ledger: &Ledger, dir: &std::path::Path) -> (String, Option<Ledger>) {
    if ledger.url.starts_with("sqlite:") {
        (format!("sqlite://{}", dir.join("rebuilt.db").display()), None)
    } else {
        let postgres = ledgers().await.pop().unwrap();
        (postgres.url.clone(), Some(postgres))
    }
}

#[test]
fn the_cli_explains_itself_and_refuses_bad_configuration_clearly() {
    let help = run_binary(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    // Every option of the configuration file is in the help.
    for option in [
        "max_txs_per_request",
        "rate_limit_per_second",
        "body_limit_bytes",
        "max_age_ms",
        "journal_dir",
        "database_url",
        "COORDINATOR__",
    ] {
        assert!(text.contains(option), "--help does not explain {option}");
    }
    let missing = run_binary(&["--config", "/nonexistent/coordinator.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the config file"), "{missing:?}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[api]\nlisten_on = 1\n").unwrap();
    let refused = run_binary(&["--config", bad.to_str().unwrap(), "check"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("listen_on"), "{refused:?}");

    // keygen writes a key once and never overwrites it.
    let config = dir.path().join("keys.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", dir.path().display().to_string())).unwrap();
    let made = run_binary(&["--config", config.to_str().unwrap(), "keygen"]);
    assert!(made.status.success(), "{made:?}");
    assert!(String::from_utf8_lossy(&made.stdout).contains("coordinator key"));
    let again = run_binary(&["--config", config.to_str().unwrap(), "keygen"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"), "{again:?}");
}

/// The value of an unlabelled Prometheus series in `/metrics`.
async fn gauge(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A clean stop (SIGTERM) saves the state after the last batch even when no snapshot is due, so
/// the next start loads it and replays nothing; without it a restart replays every batch since
/// the last periodic snapshot (here: all of them).
#[tokio::test]
async fn sigterm_saves_a_final_snapshot_and_the_restart_replays_nothing() {
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        // No snapshot falls due by count or by time in this test: only the final one is written.
        let config =
            config_file(dir.path(), &ledger.url, 2, "[snapshots]\nevery_batches = 1000000\nevery_ms = 0\nkeep = 2\n");
        let process = Process::start(&config).await;
        let base = process.url.clone();
        eventually(120, "the dev deposits", || async {
            (account(&base, wallet(2).address()).await.1 == ONE_ETH).then_some(())
        })
        .await;
        // A credited deposit may still sit in the open batch; the transfers go in a later one,
        // so the restart below has more than one batch it could replay.
        eventually(120, "the deposits' batch published", || async {
            (gauge(&base, "bridge_coordinator_published_batch").await >= Some(1.0)).then_some(())
        })
        .await;
        let http = reqwest::Client::new();
        for nonce in 0..3 {
            let response = http
                .post(format!("{base}/tx"))
                .json(&transfer_request(&wallet(1), wallet(2).address(), AMOUNT, nonce))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let before = account(&base, wallet(2).address()).await;
        process.terminate().await;

        let store = Store::open(&ledger.url).await.unwrap();
        let sealed = store.publication().await.unwrap().sealed;
        assert!(sealed >= 2, "the deposits and the transfers were sealed ({sealed} batches)");
        let saved = store.snapshots().numbers().await.unwrap();
        assert_eq!(saved.first(), Some(&sealed), "the final snapshot is of the last sealed batch: {saved:?}");
        drop(store);

        let process = Process::start(&config).await;
        let base = process.url.clone();
        assert_eq!(gauge(&base, "bridge_snapshot_restored_batch").await, Some(sealed as f64), "{}", ledger.url);
        assert_eq!(gauge(&base, "bridge_start_replayed_batches").await, Some(0.0), "{}", ledger.url);
        assert_eq!(account(&base, wallet(2).address()).await, before, "the same state after the restart");
        process.terminate().await;
    }
}
