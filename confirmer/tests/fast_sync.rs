//! Joining late on arlocal: the coordinator's sequencer snapshots its state, its publisher puts
//! batches on Arweave and `DaSnapshots` puts the snapshots there too (chunked: the state is
//! larger than one 256 KiB chunk); a confirmer given a trusted checkpoint starts from the
//! snapshot (a forged one beside it is refused) and then agrees with a confirmer that replayed
//! from genesis, batch by batch. A checkpoint the DA contradicts, or one without a snapshot,
//! is refused with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::{Address, AssetId, Snapshot, StateKey};
use chains::arweave::ArweaveWallet;
use chains::arweave::arlocal::Arlocal;
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability};
use chains::snapshots::{Restored, SnapshotPolicy};
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::fast_sync::{Checkpoint, FastSyncError, FastSynced, fast_sync, fast_sync_with_state};
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::publisher::Publisher;
use coordinator::sequencer::Sequencer;
use coordinator::snapshot::DaSnapshots;

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

async fn funded_wallet(arlocal: &Arlocal, dir: &Path, name: &str) -> ArweaveWallet {
    let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &generated.stdout).unwrap();
    let wallet = ArweaveWallet::load(&path).unwrap();
    arlocal.mint(wallet.address(), 1_000_000_000_000_000).await.unwrap();
    wallet
}

/// The coordinator's side: ledger, sequencer (snapshots every 3 batches), Arweave publisher,
/// and the task that puts snapshots on Arweave.
struct Coordinator {
    sequencer: Sequencer,
    publisher: Publisher,
    snapshots: DaSnapshots,
    nonces: [u64; 10],
}

impl Coordinator {
    /// Seals one batch of five transfers (the first batch: deposits to 6,000 accounts and to the
    /// ten wallets), publishes it, mines, and publishes a snapshot if one is due.
    async fn batch(&mut self, arlocal: &Arlocal, n: u64) {
        let txs = if n == 1 {
            let mut txs: Vec<_> = (0..10).map(|w| deposit(wallet(w).address(), 1_000_000, w)).collect();
            // Incompressible accounts, so the snapshot spans several Arweave chunks.
            txs.extend((0..6_000u64).map(|i| {
                let mut account = [0u8; 20];
                account.copy_from_slice(&bridge::hashing::sha256(i.to_le_bytes())[..20]);
                deposit(Address(account), 1 + i as u128, 100 + i)
            }));
            txs
        } else {
            (0..5)
                .map(|i| {
                    let from = ((n * 5 + i) % 10) as usize;
                    let nonce = self.nonces[from];
                    self.nonces[from] += 1;
                    transfer(&wallet(from as u64), wallet((from as u64 + 3) % 10).address(), 1 + i as u128, nonce)
                })
                .collect()
        };
        assert!(self.sequencer.submit(txs).await.unwrap().iter().all(Result::is_ok));
        self.sequencer.seal(n).await.unwrap().unwrap();
        self.sequencer.flush_snapshots().await.unwrap();
        self.publisher.publish_pending().await.unwrap();
        arlocal.mine(2).await.unwrap();
        self.snapshots.round().await.unwrap();
        arlocal.mine(2).await.unwrap();
    }
}

async fn confirmer_store(dir: &Path, name: &str) -> ConfirmerStore {
    ConfirmerStore::open(&format!("sqlite://{}", dir.join(name).display())).await.unwrap()
}

async fn step_to(follower: &mut Follower, number: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while follower.status().replayed < number {
        follower.step(1).await.unwrap();
        assert!(Instant::now() < deadline, "stuck at {:?}", follower.status());
        if follower.status().replayed < number {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(follower.status().replayed, number);
}

#[tokio::test]
async fn a_fast_synced_confirmer_agrees_with_a_from_genesis_confirmer_batch_by_batch() {
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wallet_file = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let config = ArweaveDaConfig::new(&params().name, params().coordinator_key, wallet_file.address());
    let da: Arc<dyn DataAvailability> = Arc::new(
        ArweaveDa::publisher(
            arlocal.gateway().unwrap(),
            config.clone(),
            ArweaveWallet::load(&dir.path().join("coordinator.json")).unwrap(),
            &dir.path().join("journal"),
        )
        .unwrap(),
    );
    let ledger = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let store = coordinator::store::Store::open(&ledger).await.unwrap();
    let policy = SnapshotPolicy { every_batches: 3, every_ms: 0, keep: 2 };
    let mut coordinator = Coordinator {
        sequencer: Sequencer::recover(store.clone(), params(), key()).await.unwrap().with_snapshots(policy),
        publisher: Publisher::new(store.clone(), da.clone()),
        snapshots: DaSnapshots::new(store.clone(), da.clone(), 3),
        nonces: [0; 10],
    };
    for n in 1..=8 {
        coordinator.batch(&arlocal, n).await;
    }
    let header_of = |n: u64| {
        let store = store.clone();
        async move { store.batch(n).await.unwrap().unwrap().batch }
    };
    let six = header_of(6).await;

    // The coordinator's wallet also files a forged snapshot for batch 6: a unit moved.
    let true_bytes = store.snapshots().load(6).await.unwrap().unwrap();
    assert!(true_bytes.len() > 256 * 1024, "{} bytes: one chunk only", true_bytes.len());
    let mut forged = Snapshot::decode(&true_bytes).unwrap();
    let (from, to) = (StateKey::Account(wallet(1).address()), StateKey::Account(wallet(2).address()));
    for (key, value) in &mut forged.entries {
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
    da.publish_snapshot(6, [9; 32], &forged.encode()).await.unwrap().unwrap();
    arlocal.mine(2).await.unwrap();

    let reader = || Arc::new(ArweaveDa::follower(arlocal.gateway().unwrap(), config.clone()));

    // Checkpoints the DA contradicts, or without a snapshot, are refused and take nothing.
    let empty = confirmer_store(dir.path(), "refused.db").await;
    let wrong = Checkpoint { number: 6, header_hash: header_of(5).await.hash() };
    let error = fast_sync(&*reader(), &empty, &params(), wrong).await.unwrap_err();
    assert!(matches!(error, FastSyncError::WrongBatch { number: 6, .. }), "{error}");
    let seven = Checkpoint { number: 7, header_hash: header_of(7).await.hash() };
    let error = fast_sync(&*reader(), &empty, &params(), seven).await.unwrap_err();
    assert!(matches!(error, FastSyncError::NoSnapshot { number: 7, .. }), "{error}");
    assert!(error.to_string().contains("there is none"), "{error}");
    assert!(empty.replayed_after(0, 1).await.unwrap().is_empty());

    // The late joiner: from the checkpoint at batch 6 (the forged snapshot refused).
    let late_store = confirmer_store(dir.path(), "late.db").await;
    let checkpoint = Checkpoint { number: 6, header_hash: six.hash() };
    let (synced, state) = fast_sync_with_state(&*reader(), &late_store, &params(), checkpoint).await.unwrap();
    assert!(matches!(synced, FastSynced::FromSnapshot { number: 6, .. }), "{synced:?}");
    // The binary starts from the state the fast sync checked; a restart restores the same
    // state from the snapshot it saved.
    let restored = Restored { state: state.unwrap(), from: 6, refused: Vec::new() };
    let mut late =
        Follower::open_from(reader(), late_store.clone(), params(), DepositVerifiers::none(), restored).await.unwrap();
    assert_eq!(late.restored_from(), 6);
    assert_eq!(late.status().replayed, 6);
    assert_eq!(late.state().state_root(), six.header.post_state_root);
    let reopened = Follower::open(reader(), late_store.clone(), params(), DepositVerifiers::none()).await.unwrap();
    assert_eq!((reopened.restored_from(), reopened.state().fingerprint()), (6, late.state().fingerprint()));
    // Given again after a restart, the checkpoint is not used: the node resumes its record.
    assert_eq!(fast_sync(&*reader(), &late_store, &params(), checkpoint).await.unwrap(), FastSynced::Resumed);

    // The one that trusts nothing: from genesis.
    let mut full =
        Follower::open(reader(), confirmer_store(dir.path(), "full.db").await, params(), DepositVerifiers::none())
            .await
            .unwrap();
    step_to(&mut full, 6).await;
    assert_eq!(full.state().fingerprint(), late.state().fingerprint());

    // Batch by batch from there: both replay every batch and agree with each other and the
    // coordinator, including batches published after the late joiner started.
    for n in 7..=12 {
        if n > 8 {
            coordinator.batch(&arlocal, n).await;
        }
        step_to(&mut full, n).await;
        step_to(&mut late, n).await;
        let root = header_of(n).await.header.post_state_root;
        assert_eq!(full.state().state_root(), root, "batch {n}");
        assert_eq!(late.state().state_root(), root, "batch {n}");
        assert_eq!(late.state().fingerprint(), full.state().fingerprint(), "batch {n}");
        assert!(late.status().alarms.is_empty() && full.status().alarms.is_empty());
    }
    assert_eq!(coordinator.sequencer.state().fingerprint(), late.state().fingerprint());
}
