//! State snapshots: a restart from a snapshot followed by replay reaches the same state as replay
//! from genesis (property test on random histories with deposits, transfers, withdrawals and
//! Bitcoin payout plans), and a snapshot that does not match its signed header is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::{BatchBuilder, replay};
use bridge::state::AccountEntry;
use bridge::state::snapshot::SNAPSHOT_VERSION;
use bridge::tx::{Deposit, L1Ref, SystemTx};
use bridge::{Amount, AssetId, Chain, SignedBatch, Snapshot, SnapshotError, State, StateKey, Tx};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Deposit { account: u8, asset: u8, amount: u128 },
    Transfer { from: u8, to: u8, asset: u8, amount: u128, fee: u128 },
    Withdraw { from: u8, asset: u8, amount: u128, fee: u128 },
    Plan { fee_rate: u64 },
    Confirm { plan: u64, attempt: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0u8..3, 1_000u128..2_000_000).prop_map(|(account, asset, amount)| Op::Deposit { account, asset, amount }),
        4 => (0u8..4, 0u8..4, 0u8..3, 0u128..500_000, 0u128..20)
            .prop_map(|(from, to, asset, amount, fee)| Op::Transfer { from, to, asset, amount, fee }),
        2 => (0u8..4, 0u8..3, 0u128..500_000, 0u128..2_000).prop_map(|(from, asset, amount, fee)| Op::Withdraw { from, asset, amount, fee }),
        1 => (1u64..5).prop_map(|fee_rate| Op::Plan { fee_rate }),
        1 => (1u64..4, 0u32..2).prop_map(|(plan, attempt)| Op::Confirm { plan, attempt }),
    ]
}

fn asset_of(i: u8) -> AssetId {
    [AssetId::Eth, AssetId::Erc20(TOKEN), AssetId::Btc][i as usize]
}

fn to_tx(state: &State, op: &Op, n: u64) -> Tx {
    let nonce = |from: u8| state.nonce(&wallet(from as u64).address());
    match *op {
        Op::Deposit { account, asset, amount } => {
            let asset = asset_of(asset);
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&n.to_le_bytes());
            let l1_ref = match asset.chain() {
                Chain::Ethereum => L1Ref::Ethereum { tx_hash: id, log_in_tx: 0 },
                Chain::Bitcoin => L1Ref::Bitcoin { txid: id, vout: 0 },
            };
            Tx::System(SystemTx::Deposit(Deposit {
                chain: asset.chain(),
                l1_ref,
                account: wallet(account as u64).address(),
                asset,
                amount: Amount(amount),
                l1_height: 0,
            }))
        }
        Op::Transfer { from, to, asset, amount, fee } => {
            transfer(&wallet(from as u64), wallet(to as u64).address(), asset_of(asset), amount, fee, nonce(from))
        }
        Op::Withdraw { from, asset, amount, fee } => {
            let asset = asset_of(asset);
            let recipient = match asset.chain() {
                Chain::Ethereum => wallet(7).address().to_string(),
                Chain::Bitcoin => REGTEST_P2TR.to_string(),
            };
            withdraw(&wallet(from as u64), asset, amount, fee, &recipient, nonce(from))
        }
        Op::Plan { fee_rate } => Tx::System(SystemTx::BtcPayoutPlan { fee_rate }),
        Op::Confirm { plan, attempt } => Tx::System(SystemTx::BtcPayoutConfirmed { plan, attempt, height: 1 }),
    }
}

/// A coordinator's history: its batches, and its state's snapshot after each.
fn history(ops: Vec<Op>, cuts: Vec<usize>) -> (Vec<SignedBatch>, Vec<Snapshot>, State) {
    let key = coordinator_key();
    let mut coordinator = genesis();
    let (mut batches, mut snapshots) = (Vec::new(), Vec::new());
    let mut ops = ops.into_iter().enumerate();
    for (n, cut) in cuts.into_iter().enumerate() {
        let mut builder = BatchBuilder::new(&coordinator);
        for (i, op) in ops.by_ref().take(cut) {
            let tx = to_tx(&coordinator, &op, i as u64);
            let _ = builder.apply(&mut coordinator, tx);
        }
        batches.push(builder.seal(&mut coordinator, 1_000 + n as u64, &key).unwrap().batch);
        snapshots.push(coordinator.snapshot().unwrap());
    }
    (batches, snapshots, coordinator)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn restart_from_a_snapshot_then_replay_gives_the_state_of_replay_from_genesis(
        ops in prop::collection::vec(op(), 1..120),
        cuts in prop::collection::vec(1usize..25, 1..8),
        at in any::<prop::sample::Index>(),
    ) {
        let (batches, snapshots, coordinator) = history(ops, cuts);
        let k = at.index(batches.len());
        // Through the bytes a role stores.
        let snapshot = Snapshot::decode(&snapshots[k].encode()).unwrap();
        prop_assert_eq!(&snapshot, &snapshots[k]);
        let mut restarted = State::restore(params(), snapshot.clone(), &batches[k].signed_header()).unwrap();
        prop_assert_eq!(restarted.state_root(), batches[k].header.post_state_root);
        for batch in &batches[k + 1..] {
            // Replay checks every root of every later header, batch by batch.
            replay(&mut restarted, batch).unwrap();
        }
        let mut from_genesis = genesis();
        for batch in &batches {
            replay(&mut from_genesis, batch).unwrap();
        }
        prop_assert_eq!(restarted.state_root(), from_genesis.state_root());
        prop_assert_eq!(restarted.fingerprint(), from_genesis.fingerprint());
        prop_assert_eq!(restarted.fingerprint(), coordinator.fingerprint());
        // And the restarted state snapshots to the same bytes.
        prop_assert_eq!(restarted.snapshot().unwrap().encode(), snapshots.last().unwrap().encode());
    }

    #[test]
    fn decoding_arbitrary_or_mutated_snapshots_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let _ = Snapshot::decode(&bytes);
        let (batches, snapshots, _) = history(vec![Op::Deposit { account: 1, asset: 0, amount: 5_000 }], vec![1]);
        let mut raw = borsh::to_vec(&snapshots[0]).unwrap();
        let i = at.index(raw.len());
        raw[i] = byte;
        if let Ok(mutated) = borsh::from_slice::<Snapshot>(&raw) {
            // Anything but the true snapshot is refused, never accepted and never a panic.
            let restored = State::restore(params(), mutated.clone(), &batches[0].signed_header());
            prop_assert_eq!(restored.is_ok(), mutated == snapshots[0]);
        }
    }
}

fn small_history() -> (Vec<SignedBatch>, Vec<Snapshot>) {
    let ops = vec![
        Op::Deposit { account: 0, asset: 0, amount: 100_000 },
        Op::Deposit { account: 1, asset: 0, amount: 50_000 },
        Op::Transfer { from: 0, to: 2, asset: 0, amount: 7, fee: 1 },
        Op::Deposit { account: 3, asset: 2, amount: 900_000 },
        Op::Transfer { from: 1, to: 0, asset: 0, amount: 3, fee: 0 },
    ];
    let (batches, snapshots, _) = history(ops, vec![2, 2, 1]);
    (batches, snapshots)
}

#[test]
fn a_snapshot_whose_balances_were_moved_is_refused_for_its_root() {
    let (batches, snapshots) = small_history();
    let mut forged = snapshots[1].clone();
    // Move 1 wei from account 0 to account 1: totals still add up, the root does not.
    let a0 = StateKey::Account(wallet(0).address());
    let a1 = StateKey::Account(wallet(1).address());
    for (key, value) in &mut forged.entries {
        let delta: i128 = if *key == a0 {
            -1
        } else if *key == a1 {
            1
        } else {
            continue;
        };
        let mut entry = AccountEntry::decode(value).unwrap();
        let (_, amount) = entry.balances.iter_mut().find(|(asset, _)| *asset == AssetId::Eth).unwrap();
        *amount = Amount::new(amount.units().checked_add_signed(delta).unwrap());
        *value = bridge::codec::to_bytes(&entry);
    }
    let error = State::restore(params(), forged.clone(), &batches[1].signed_header()).unwrap_err();
    assert!(matches!(error, SnapshotError::RootMismatch { number: 2, .. }), "{error}");
    assert!(error.to_string().contains("signed header says"), "{error}");
    // The true one is accepted.
    State::restore(params(), snapshots[1].clone(), &batches[1].signed_header()).unwrap();
}

#[test]
fn a_snapshot_is_checked_against_the_header_of_its_own_batch_signed_by_the_coordinator() {
    let (batches, snapshots) = small_history();
    let error = State::restore(params(), snapshots[1].clone(), &batches[2].signed_header()).unwrap_err();
    assert_eq!(error, SnapshotError::WrongHeader { snapshot: 2, header: 3 });

    let mut unsigned = batches[1].signed_header();
    unsigned.signature[5] ^= 1;
    let error = State::restore(params(), snapshots[1].clone(), &unsigned).unwrap_err();
    assert_eq!(error, SnapshotError::BadSignature(2));

    let mut renamed = snapshots[1].clone();
    renamed.header_hash[0] ^= 1;
    let error = State::restore(params(), renamed.clone(), &batches[1].signed_header()).unwrap_err();
    assert!(matches!(error, SnapshotError::HeaderMismatch { number: 2, .. }), "{error}");

    // A snapshot claiming the state of batch 2 with batch 3's entries.
    let mut swapped = snapshots[2].clone();
    swapped.number = 2;
    swapped.header_hash = snapshots[1].header_hash;
    swapped.timestamp = snapshots[1].timestamp;
    swapped.state_root = snapshots[1].state_root;
    let error = State::restore(params(), swapped.clone(), &batches[1].signed_header()).unwrap_err();
    assert!(matches!(error, SnapshotError::RootMismatch { .. }), "{error}");
}

#[test]
fn totals_that_do_not_add_up_entries_out_of_order_and_other_versions_are_refused() {
    let (batches, snapshots) = small_history();
    let header = batches[1].signed_header();

    let mut inflated = snapshots[1].clone();
    let eth = inflated.supplies.iter_mut().find(|s| s.asset == AssetId::Eth).unwrap();
    eth.deposited = Amount(eth.deposited.units() + 1);
    let error = State::restore(params(), inflated.clone(), &header).unwrap_err();
    assert!(matches!(error, SnapshotError::BadSupply { .. }), "{error}");

    let mut missing = snapshots[1].clone();
    missing.supplies.clear();
    let error = State::restore(params(), missing.clone(), &header).unwrap_err();
    assert!(matches!(error, SnapshotError::BadSupply { .. }), "{error}");

    let mut unordered = snapshots[1].clone();
    unordered.entries.swap(0, 1);
    let error = State::restore(params(), unordered.clone(), &header).unwrap_err();
    assert!(matches!(error, SnapshotError::BadEntry { .. }), "{error}");

    let mut short = snapshots[1].clone();
    short.entries[0].1.pop();
    let error = State::restore(params(), short.clone(), &header).unwrap_err();
    assert!(matches!(error, SnapshotError::BadEntry { .. }), "{error}");

    let mut newer = snapshots[1].clone();
    newer.version = SNAPSHOT_VERSION + 1;
    assert_eq!(
        State::restore(params(), newer.clone(), &header).unwrap_err(),
        SnapshotError::UnsupportedVersion(SNAPSHOT_VERSION + 1)
    );
    let mut other_network = params();
    other_network.chain_id += 1;
    let error = State::restore(other_network, snapshots[1].clone(), &header).unwrap_err();
    assert!(matches!(error, SnapshotError::WrongNetwork { .. }), "{error}");
}

#[test]
fn snapshots_are_taken_between_batches_only() {
    assert_eq!(genesis().snapshot().unwrap_err(), SnapshotError::Genesis);
    let (batches, _) = small_history();
    let mut state = genesis();
    replay(&mut state, &batches[0]).unwrap();
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, deposit(wallet(2).address(), AssetId::Eth, 10, 99)).unwrap();
    assert_eq!(state.snapshot().unwrap_err(), SnapshotError::OpenBatch(1));
}

/// `docs/vectors/state-snapshot.json`: the snapshot after batch 2 of a small history, as borsh
/// (the zstd envelope around it is not normative, like a batch's), with the signed header that
/// vouches for it; a reader restores it from the file's bytes alone.
#[test]
fn the_snapshot_vector_restores_against_its_header() {
    let (batches, snapshots) = small_history();
    let computed = serde_json::json!({
        "description": "State snapshot after batch 2 (docs/PROTOCOL.md, State snapshots): borsh(Snapshot) and the borsh(SignedHeader) of batch 2 it is checked against; params as bridge/tests/common.",
        "snapshot_borsh": hex0x(borsh::to_vec(&snapshots[1]).unwrap()),
        "header_borsh": hex0x(borsh::to_vec(&batches[1].signed_header()).unwrap()),
        "state_root": hex0x(batches[1].header.post_state_root),
        "entries": snapshots[1].entries.len(),
    });
    let stored = stored_vectors("state-snapshot.json", &computed);
    let snapshot: Snapshot = bridge::codec::from_bytes(&unhex(&stored["snapshot_borsh"])).unwrap();
    let header: bridge::SignedHeader = bridge::codec::from_bytes(&unhex(&stored["header_borsh"])).unwrap();
    let state = State::restore(params(), snapshot.clone(), &header).unwrap();
    assert_eq!(hex0x(state.state_root()), stored["state_root"]);
}
