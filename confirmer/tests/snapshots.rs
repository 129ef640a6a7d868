//! The confirmer's state snapshots and on-disk indexes, on SQLite and (with `DATABASE_URL`)
//! PostgreSQL: a restart loads the newest snapshot that matches its signed header and replays
//! only the batches after it, with the same state, finality and transaction index as before; a
//! snapshot that does not match is refused and an older one (or genesis) is used; what a batch
//! owes on L1 survives a restart that does not replay it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::BatchBuilder;
use bridge::tx::{UserTx, Withdraw};
use bridge::{Amount, AssetId, SignedBatch, Snapshot, State, StateKey, Tx};
use chains::da::{DataAvailability, DirDa};
use chains::snapshots::{SnapshotMeta, SnapshotPolicy};
use common::*;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

const EVERY_5: SnapshotPolicy = SnapshotPolicy { every_batches: 5, every_ms: 0, keep: 2 };

fn withdraw(from: &bridge::Wallet, amount: u128, nonce: u64) -> Tx {
    let domain = bridge::eip712::Domain::new(&params());
    let tx = UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(0),
        recipient: wallet(77).address().to_string(),
        nonce,
    });
    Tx::User(from.sign(tx, &domain).verify(&domain).unwrap())
}

/// [`history`] with an Ethereum withdrawal in batch 3 (it owes something on L1).
fn history_with_withdrawal(batches: u64) -> Vec<SignedBatch> {
    let mut out = history(2, 10);
    let mut state = State::genesis(params());
    for batch in &out {
        bridge::replay(&mut state, batch).unwrap();
    }
    let mut builder = BatchBuilder::new(&state);
    let nonce = state.nonce(&wallet(9).address());
    builder.apply(&mut state, withdraw(&wallet(9), 5_000, nonce)).unwrap();
    out.push(builder.seal(&mut state, 3, &key()).unwrap().batch);
    for b in 4..=batches {
        let mut builder = BatchBuilder::new(&state);
        for i in 0..4 {
            let from = wallet((b + i) % 9);
            let nonce = state.nonce(&from.address());
            builder.apply(&mut state, transfer(&from, wallet(42).address(), 1, nonce)).unwrap();
        }
        out.push(builder.seal(&mut state, b, &key()).unwrap().batch);
    }
    out
}

async fn open(da: &DirDa, url: &str) -> Follower {
    let store = ConfirmerStore::open(url).await.unwrap();
    Follower::open(std::sync::Arc::new(da.clone()), store, params(), confirmer::deposits::DepositVerifiers::none())
        .await
        .unwrap()
        .with_snapshots(EVERY_5)
}

/// Replays batch by batch, letting each snapshot finish before the next batch.
async fn follow_to_the_end(follower: &mut Follower) {
    loop {
        let step = follower.step(1).await.unwrap();
        follower.flush_snapshots().await.unwrap();
        if step.replayed == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn a_restarted_confirmer_loads_its_newest_snapshot_and_keeps_its_finality_index_and_settlements() {
    let batches = history_with_withdrawal(27);
    let domain = bridge::eip712::Domain::new(&params());
    let bridge::BatchTx::User(user) = &batches[2].body[0] else { panic!("batch 3 holds the withdrawal") };
    let withdrawal_hash = user.tx.signing_hash(&domain);
    for ledger in stores().await {
        let dir = tempfile::tempdir().unwrap();
        let da = DirDa::open(dir.path(), params().coordinator_key).unwrap();
        for batch in &batches[..27] {
            da.publish(batch).await.unwrap();
        }
        let mut confirmer = open(&da, &ledger.url).await;
        follow_to_the_end(&mut confirmer).await;
        let status = confirmer.status();
        assert_eq!(status.replayed, 27);
        let fingerprint = confirmer.state().fingerprint();
        assert_eq!(confirmer.batch_of_tx(&withdrawal_hash).await.unwrap(), Some(3));
        drop(confirmer);
        let store = ConfirmerStore::open(&ledger.url).await.unwrap();
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![25, 20], "{}", ledger.url);

        let mut confirmer = open(&da, &ledger.url).await;
        assert_eq!(confirmer.restored_from(), 25, "{}", ledger.url);
        assert_eq!(confirmer.status(), status, "the same place, finality and reason");
        assert_eq!(confirmer.state().fingerprint(), fingerprint);
        // The index is on disk: batches before the snapshot, not replayed now, are still found.
        assert_eq!(confirmer.batch_of_tx(&withdrawal_hash).await.unwrap(), Some(3));
        assert_eq!(confirmer.batch_of_tx(&[0xab; 32]).await.unwrap(), None);
        // What batch 3 owes is still known though batch 3 was not replayed at this start.
        let settlements = store.settlements().await.unwrap();
        assert_eq!(settlements.len(), 1);
        assert_eq!(settlements[0].0, 3);
        assert_eq!(settlements[0].1.eth.root(), batches[2].header.eth_withdrawals_root);
        assert_eq!(settlements[0].1.eth.withdrawals()[0].amount, Amount(5_000));

        // It follows on, and agrees with the coordinator's roots.
        let more = history_with_withdrawal(31);
        for batch in &more[27..] {
            da.publish(batch).await.unwrap();
        }
        follow_to_the_end(&mut confirmer).await;
        assert_eq!(confirmer.status().replayed, 31);
        assert_eq!(confirmer.state().state_root(), more[30].header.post_state_root);
    }
}

/// Snapshot `number` with one unit moved between two accounts: totals add up, the root does not.
async fn forge(store: &ConfirmerStore, number: u64) {
    let snapshots = store.snapshots();
    let mut snapshot = Snapshot::decode(&snapshots.load(number).await.unwrap().unwrap()).unwrap();
    let (from, to) = (StateKey::Account(wallet(1).address()), StateKey::Account(wallet(2).address()));
    for (key, value) in &mut snapshot.entries {
        let delta: i128 = if *key == from {
            -1
        } else if *key == to {
            1
        } else {
            continue;
        };
        let mut entry = bridge::state::AccountEntry::decode(value).unwrap();
        let (_, amount) = entry.balances.iter_mut().find(|(asset, _)| *asset == AssetId::Eth).unwrap();
        *amount = bridge::Amount::new(amount.units().checked_add_signed(delta).unwrap());
        *value = bridge::codec::to_bytes(&entry);
    }
    snapshots.replace_bytes(number, &SnapshotMeta::of(&snapshot), &snapshot.encode()).await.unwrap();
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_its_header_is_refused_and_the_confirmer_falls_back() {
    let batches = history(22, 10);
    for ledger in stores().await {
        let dir = tempfile::tempdir().unwrap();
        let da = DirDa::open(dir.path(), params().coordinator_key).unwrap();
        for batch in &batches {
            da.publish(batch).await.unwrap();
        }
        let mut confirmer = open(&da, &ledger.url).await;
        follow_to_the_end(&mut confirmer).await;
        let fingerprint = confirmer.state().fingerprint();
        drop(confirmer);
        let store = ConfirmerStore::open(&ledger.url).await.unwrap();
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![20, 15]);

        forge(&store, 20).await;
        let confirmer = open(&da, &ledger.url).await;
        assert_eq!(confirmer.restored_from(), 15, "{}", ledger.url);
        assert_eq!(confirmer.state().fingerprint(), fingerprint);
        assert_eq!(confirmer.status().replayed, 22);
        drop(confirmer);

        forge(&store, 15).await;
        let confirmer = open(&da, &ledger.url).await;
        assert_eq!(confirmer.restored_from(), 0, "both refused: replayed from genesis");
        assert_eq!(confirmer.state().fingerprint(), fingerprint);
    }
}

/// A serving `confirmer` process, its API's address, and its stdout kept open (a closed pipe
/// would fail its next line).
type Serving = (std::process::Child, String, std::io::BufReader<std::process::ChildStdout>);

/// `confirmer follow` serving its API (a free port) over the database `url`, logging to `log`.
fn serve(dir: &std::path::Path, url: &str, log: &str) -> Serving {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_confirmer"))
        .args(["follow", "--params"])
        .arg(dir.join("params.json"))
        .arg("--da-dir")
        .arg(dir.join("da"))
        .args(["--database-url", url, "--listen", "127.0.0.1:0", "--interval-ms", "50"])
        // No snapshot falls due in this test: only the final one is written.
        .args(["--snapshot-every-batches", "1000000", "--snapshot-every-ms", "0"])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("confirmer listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    (child, base, stdout)
}

/// Polls `check` every 50 ms, for at most a minute.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1_200 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// An unlabelled series' value in `/metrics`.
async fn gauge(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The serving confirmer process: SIGTERM saves the replayed state though no snapshot is due,
/// and the restarted process loads it and replays nothing (without it: all 12 batches again).
#[tokio::test]
async fn sigterm_saves_a_final_snapshot_and_the_restarted_confirmer_replays_nothing() {
    let batches = history(12, 4);
    for ledger in stores().await {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("params.json"), serde_json::to_vec(&params()).unwrap()).unwrap();
        let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
        for batch in &batches {
            da.publish(batch).await.unwrap();
        }
        let (mut child, base, _stdout) = serve(dir.path(), &ledger.url, "first.log");
        until("the confirmer to replay the 12 batches", async || {
            let status: serde_json::Value = reqwest::get(format!("{base}/status")).await.ok()?.json().await.ok()?;
            (status["replayed"] == 12).then_some(())
        })
        .await;
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let exit = until("the confirmer to exit", async || child.try_wait().unwrap()).await;
        let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
        assert!(exit.success(), "exited with {exit}: {log}");
        let store = ConfirmerStore::open(&ledger.url).await.unwrap();
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![12], "{}: {log}", ledger.url);
        drop(store);

        let (mut child, base, _stdout) = serve(dir.path(), &ledger.url, "second.log");
        let gauges = until("the restarted confirmer's metrics", async || {
            Some((
                gauge(&base, "bridge_snapshot_restored_batch").await?,
                gauge(&base, "bridge_start_replayed_batches").await?,
            ))
        })
        .await;
        assert_eq!(gauges, (12.0, 0.0), "restored from the final snapshot, nothing replayed: {}", ledger.url);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// [`history`] with one Ethereum withdrawal in every batch from 3 on: every batch owes.
fn history_owing_in_every_batch(batches: u64) -> Vec<SignedBatch> {
    let mut out = history(2, 10);
    let mut state = State::genesis(params());
    for batch in &out {
        bridge::replay(&mut state, batch).unwrap();
    }
    for b in 3..=batches {
        let mut builder = BatchBuilder::new(&state);
        let from = wallet(b % 10);
        let nonce = state.nonce(&from.address());
        builder.apply(&mut state, withdraw(&from, u128::from(b), nonce)).unwrap();
        out.push(builder.seal(&mut state, b, &key()).unwrap().batch);
    }
    out
}

/// An L1 node that has every deposit at depth: the history's test deposits, so its batches
/// become hard-final.
struct EveryDeposit;

#[async_trait::async_trait]
impl confirmer::deposits::DepositVerifier for EveryDeposit {
    async fn check(
        &self,
        _deposit: &bridge::Deposit,
    ) -> Result<confirmer::deposits::DepositCheck, confirmer::deposits::VerifierError> {
        Ok(confirmer::deposits::DepositCheck::Confirmed)
    }
}

async fn open_final(da: &DirDa, url: &str) -> Follower {
    let store = ConfirmerStore::open(url).await.unwrap();
    let verifiers =
        confirmer::deposits::DepositVerifiers::none().with(bridge::Chain::Ethereum, std::sync::Arc::new(EveryDeposit));
    Follower::open(std::sync::Arc::new(da.clone()), store, params(), verifiers)
        .await
        .unwrap()
        .with_snapshots(SnapshotPolicy::off())
}

#[tokio::test]
async fn a_settlement_older_than_the_in_memory_window_is_read_from_the_store_the_same() {
    use confirmer::follower::RECENT_SETTLEMENTS;
    let last = RECENT_SETTLEMENTS as u64 + 12;
    let batches = history_owing_in_every_batch(last);
    let ledger = stores().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path(), params().coordinator_key).unwrap();
    for batch in &batches {
        da.publish(batch).await.unwrap();
    }
    let check = |confirmer: &Follower| {
        assert_eq!(confirmer.status().hard_final, last, "{:?}", confirmer.status());
        assert_eq!(confirmer.settlements_in_memory(), RECENT_SETTLEMENTS, "memory holds the window only");
    };
    let mut confirmer = open_final(&da, &ledger.url).await;
    catch_up(&mut confirmer).await;
    check(&confirmer);
    for reopened in [false, true] {
        // Batch 3 is far older than the window, batch `last` in it: both as the batch says.
        for number in [3, 4, last - RECENT_SETTLEMENTS as u64, last] {
            let settlement = confirmer.final_settlement(number).await.unwrap().expect("hard-final");
            let header = &batches[number as usize - 1].header;
            assert_eq!(settlement.eth.root(), header.eth_withdrawals_root, "batch {number}, reopened {reopened}");
            assert_eq!(settlement.eth.withdrawals().len(), 1);
            assert_eq!(settlement.eth.withdrawals()[0].amount, Amount(u128::from(number)));
        }
        // Owes nothing: empty; not hard-final: none (not "owes nothing").
        assert!(confirmer.final_settlement(2).await.unwrap().unwrap().is_empty());
        assert!(confirmer.final_settlement(last + 1).await.unwrap().is_none());
        assert!(confirmer.final_settlement(0).await.unwrap().is_none());
        // A span across the window's edge: every owing batch once, in order.
        let span = confirmer.final_settlements(1, last + 5).await.unwrap();
        assert_eq!(span.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (3..=last).collect::<Vec<_>>());
        for (number, settlement) in &span {
            assert_eq!(settlement.eth.root(), batches[*number as usize - 1].header.eth_withdrawals_root);
        }
        drop(confirmer);
        confirmer = open_final(&da, &ledger.url).await;
        catch_up(&mut confirmer).await;
        check(&confirmer);
    }

    // A database that cannot answer is an error, never "owes nothing".
    let pool = sqlx::AnyPool::connect(&ledger.url).await.unwrap();
    sqlx::query("DROP TABLE settlements").execute(&pool).await.unwrap();
    assert!(confirmer.final_settlement(3).await.is_err(), "older than the window: asked of the database");
    assert!(confirmer.final_settlements(1, last).await.is_err());
    assert_eq!(confirmer.final_settlement(last).await.unwrap().unwrap().eth.withdrawals().len(), 1, "in memory");
}
