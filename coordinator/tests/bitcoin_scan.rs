//! The coordinator's Bitcoin deposit turn against the regtest node: a watcher far behind the
//! chain reads a bounded stretch a turn and saves its place after each, so it catches up over
//! several turns instead of holding one (and the queue of accounts asking for an address) for
//! every block since its start height.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, SECP256K1, SecretKey};
use bridge::BtcVaultParams;
use chains::bitcoin::{CoreRpc, DepositWatcher, WatcherConfig};
use chains::task::Task;
use common::*;
use coordinator::deposits::{BtcDepositTask, MAX_BLOCKS_PER_TURN, btc_scan_scope};
use coordinator::seal_rule::SealRule;
use coordinator::sequencer::{Sequencer, SequencerHandle};
use coordinator::store::Store;
use regtest::{RegtestConfig, RegtestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_watcher_far_behind_reads_a_bounded_stretch_a_turn_and_saves_its_place_after_each() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let keypair = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[2; 32]).unwrap());
    let (group_key, _) = keypair.x_only_public_key();
    let anyone = bitcoin::Address::p2tr(SECP256K1, group_key, None, bitcoin::Network::Regtest);
    rpc.generate_to_address(400, &anyone).await.unwrap();

    let ledger = &ledgers().await[0];
    let vault = BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 50 };
    let mut p = params();
    p.btc_vault = Some(vault);
    p.assets.push(bridge::AssetConfig { asset: bridge::AssetId::Btc, min_fee: bridge::Amount(0) });
    let store = Store::open(&ledger.url).await.unwrap();
    let sequencer = Sequencer::recover(store.clone(), p.clone(), key()).await.unwrap();
    let policy = SealRule::new(10, Duration::from_millis(200));
    let (handle, _sequencing) = SequencerHandle::spawn(sequencer, policy, || 7, Default::default());
    let watcher = DepositWatcher::new(
        Arc::new(rpc.clone()),
        p.btc_network,
        group_key,
        WatcherConfig { depth: 1, start_height: 0 },
    )
    .unwrap();
    let (_register, accounts) = tokio::sync::mpsc::channel(8);
    let scope = btc_scan_scope(&vault);
    let mut task = BtcDepositTask {
        watcher,
        accounts,
        sequencer: handle,
        held: Default::default(),
        store: store.clone(),
        scope: scope.clone(),
        saved: None,
        behind: false,
    };

    // Heights 0..=400 at depth 1: two full turns, then the rest.
    for turn in 1..=2 {
        task.turn().await.unwrap();
        assert_eq!(task.watcher.next_height(), turn * MAX_BLOCKS_PER_TURN);
        assert!(task.behind, "turn {turn} stopped at its bound with blocks left");
        let mark = store.scan_mark(&scope).await.unwrap().expect("the place saved after the turn");
        assert_eq!(mark.number, turn * MAX_BLOCKS_PER_TURN - 1);
    }
    task.turn().await.unwrap();
    assert_eq!((task.watcher.next_height(), task.behind), (401, false));
    assert_eq!(store.scan_mark(&scope).await.unwrap().unwrap().number, 400);
    // Caught up, a turn reads only what came since.
    rpc.generate_to_address(3, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!((task.watcher.next_height(), task.behind), (404, false));
    assert_eq!(store.scan_mark(&scope).await.unwrap().unwrap().number, 403);
}
