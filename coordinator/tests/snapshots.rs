//! The sequencer's state snapshots on real databases (SQLite always, PostgreSQL when
//! `DATABASE_URL` is set): a restart loads the newest snapshot and replays only what follows
//! it, reaching the state replay from genesis reaches; a snapshot write that fails half-way
//! leaves the previous snapshots usable; a snapshot that does not match its batch's signed
//! header is refused and recovery falls back to an older one, then to genesis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use bridge::{Address, AssetId, Snapshot, State, StateKey};
use chains::snapshots::{SnapshotMeta, SnapshotPolicy, SnapshotStoreError};
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;

mod common;
use common::*;

const EVERY_3: SnapshotPolicy = SnapshotPolicy { every_batches: 3, every_ms: 0, keep: 2 };

/// `batches` sealed batches (a deposit and two transfers each), each snapshot written before
/// the next batch, then one acknowledged transaction left unsealed.
async fn run_history(store: &Store, batches: u64) -> Sequencer {
    let mut sequencer = Sequencer::recover(store.clone(), params(), key()).await.unwrap().with_snapshots(EVERY_3);
    let (alice, bob) = (wallet(1), wallet(2));
    let mut nonce = 0;
    for n in 0..batches {
        let txs = vec![
            deposit(alice.address(), 1_000, n),
            transfer(&alice, bob.address(), 10 + n as u128, nonce),
            transfer(&alice, Address([0x33; 20]), 1, nonce + 1),
        ];
        nonce += 2;
        assert!(sequencer.submit(txs).await.unwrap().iter().all(Result::is_ok));
        sequencer.seal(1_000 + n).await.unwrap().unwrap();
        sequencer.flush_snapshots().await.unwrap();
    }
    sequencer.submit(vec![transfer(&alice, bob.address(), 1, nonce)]).await.unwrap()[0].clone().unwrap();
    sequencer
}

/// The state replayed from genesis out of the ledger alone (no snapshot), sealed batches only.
async fn from_genesis(store: &Store) -> State {
    let mut state = State::genesis(params());
    for stored in store.batches().await.unwrap() {
        bridge::replay(&mut state, &stored.batch).unwrap();
    }
    state
}

#[tokio::test]
async fn a_restart_loads_the_newest_snapshot_and_replays_only_the_batches_after_it() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        let sequencer = run_history(&store, 10).await;
        let before = sequencer.state().fingerprint();
        drop(sequencer);
        // Taken at 3, 6 and 9; the oldest pruned.
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![9, 6], "{}", ledger.url);

        let mut recovered = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        assert_eq!(recovered.restored_from(), 9, "{}", ledger.url);
        assert_eq!(recovered.state().fingerprint(), before, "{}", ledger.url);
        assert_eq!(recovered.open_len(), 1);
        // It goes on sealing where it stopped, and its roots are replay-from-genesis's.
        let sealed = recovered.seal(5_000).await.unwrap().unwrap();
        assert_eq!(sealed.batch.header.number, 11);
        assert_eq!(from_genesis(&store).await.state_root(), recovered.state().state_root());
    }
}

#[tokio::test]
async fn a_snapshot_write_that_fails_half_way_leaves_the_previous_snapshots_usable() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        let sequencer = run_history(&store, 7).await;
        let before = sequencer.state().fingerprint();
        // Between a batch's transactions there is nothing to snapshot.
        let error = sequencer.state().snapshot().unwrap_err();
        assert!(error.to_string().contains("between batches"), "{error}");
        drop(sequencer);
        // The state after batch 7, as the keeper would write it, padded to three chunks: the
        // write dies after its first chunk, and again before any.
        let snapshot = from_genesis(&store).await.snapshot().unwrap();
        assert_eq!(snapshot.number, 7);
        let mut bytes = snapshot.encode();
        bytes.resize(chains::snapshots::CHUNK_BYTES * 2 + 10, 0);
        for chunks in [1, 0] {
            let error =
                store.snapshots().save_interrupted(&SnapshotMeta::of(&snapshot), &bytes, chunks).await.unwrap_err();
            assert!(matches!(error, SnapshotStoreError::Interrupted(n) if n == chunks), "{error}");
        }
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![6, 3], "{}", ledger.url);
        assert!(store.snapshots().load(7).await.unwrap().is_none());
        let recovered = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        assert_eq!(recovered.restored_from(), 6);
        assert_eq!(recovered.state().fingerprint(), before);
    }
}

/// The snapshot of batch `number` with one unit of ether moved from wallet 1 to wallet 2:
/// totals still add up, the root does not.
async fn forge(store: &Store, number: u64) {
    let snapshots = store.snapshots();
    let bytes = snapshots.load(number).await.unwrap().unwrap();
    let mut snapshot = Snapshot::decode(&bytes).unwrap();
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
async fn a_snapshot_that_does_not_match_its_header_is_refused_and_an_older_one_or_genesis_is_used() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        let sequencer = run_history(&store, 7).await;
        let before = sequencer.state().fingerprint();
        drop(sequencer);
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![6, 3]);

        forge(&store, 6).await;
        let restored = chains::snapshots::restore_newest(&store.snapshots(), &params(), |n| {
            let store = store.clone();
            async move { store.header(n).await }
        })
        .await
        .unwrap();
        assert_eq!(restored.from, 3);
        assert_eq!(restored.refused.len(), 1);
        let (number, reason) = &restored.refused[0];
        assert_eq!(*number, 6);
        assert!(reason.contains("rebuilds state root") && reason.contains("signed header says"), "{reason}");

        let recovered = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        assert_eq!(recovered.restored_from(), 3, "{}", ledger.url);
        assert_eq!(recovered.state().fingerprint(), before);
        drop(recovered);

        forge(&store, 3).await;
        let recovered = Sequencer::recover(store.clone(), params(), key()).await.unwrap();
        assert_eq!(recovered.restored_from(), 0, "both refused: replay from genesis");
        assert_eq!(recovered.state().fingerprint(), before);
    }
}

#[tokio::test]
async fn snapshots_can_be_turned_off_and_are_still_used_at_start() {
    for ledger in ledgers().await {
        let store = Store::open(&ledger.url).await.unwrap();
        drop(run_history(&store, 3).await);
        let mut sequencer =
            Sequencer::recover(store.clone(), params(), key()).await.unwrap().with_snapshots(SnapshotPolicy::off());
        assert_eq!(sequencer.restored_from(), 3);
        for n in 0..4 {
            sequencer.submit(vec![deposit(wallet(9).address(), 5, 100 + n)]).await.unwrap();
            sequencer.seal(9_000 + n).await.unwrap().unwrap();
            assert_eq!(sequencer.flush_snapshots().await.unwrap(), None);
        }
        assert_eq!(store.snapshots().numbers().await.unwrap(), vec![3]);
    }
}
