//! The coordinator's Bitcoin deposit turn against the regtest node: a watcher far behind the
//! chain reads a bounded stretch a turn and saves its place after each, so it catches up over
//! several turns instead of holding one (and the queue of accounts asking for an address) for
//! every block since its start height.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, SECP256K1, SecretKey};
use bridge::{AssetId, BtcVaultParams};
use chains::bitcoin::{CoreRpc, DepositWatcher, WatcherConfig};
use chains::task::Task;
use common::*;
use coordinator::deposits::{BtcDepositScan, BtcDepositTask, MAX_BLOCKS_PER_TURN, btc_scan_scope};
use coordinator::seal_rule::SealRule;
use coordinator::sequencer::{Sequencer, SequencerHandle};
use coordinator::store::Store;
use regtest::{RegtestConfig, RegtestNode};

/// A regtest node, a vault key, and a deposit task reading the node at depth 1 from height 0
/// into a fresh ledger (`ledger`), and the address blocks are mined to.
async fn deposit_task(
    node: &RegtestNode,
    ledger: &Ledger,
) -> (CoreRpc, BtcDepositTask, bitcoin::Address, tokio::sync::mpsc::Sender<bridge::Address>) {
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let keypair = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[2; 32]).unwrap());
    let (group_key, _) = keypair.x_only_public_key();
    let anyone = bitcoin::Address::p2tr(SECP256K1, group_key, None, bitcoin::Network::Regtest);
    let vault = BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 50 };
    let mut p = params();
    p.btc_vault = Some(vault);
    p.assets.push(bridge::AssetConfig { asset: AssetId::Btc, min_fee: bridge::Amount(0) });
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
    let (register, accounts) = tokio::sync::mpsc::channel(8);
    let task = BtcDepositTask {
        scan: BtcDepositScan::new(watcher, store, btc_scan_scope(&vault), None),
        accounts,
        sequencer: handle,
    };
    (rpc, task, anyone, register)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_watcher_far_behind_reads_a_bounded_stretch_a_turn_and_saves_its_place_after_each() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let ledger = &ledgers().await[0];
    let (rpc, mut task, anyone, _register) = deposit_task(&node, ledger).await;
    rpc.generate_to_address(400, &anyone).await.unwrap();
    let (store, scope) = (task.scan.store.clone(), task.scan.scope.clone());

    // Heights 0..=400 at depth 1: two full turns, then the rest.
    for turn in 1..=2 {
        task.turn().await.unwrap();
        assert_eq!(task.scan.watcher.next_height(), turn * MAX_BLOCKS_PER_TURN);
        assert!(task.scan.behind, "turn {turn} stopped at its bound with blocks left");
        let mark = store.scan_mark(&scope).await.unwrap().expect("the place saved after the turn");
        assert_eq!(mark.number, turn * MAX_BLOCKS_PER_TURN - 1);
    }
    task.turn().await.unwrap();
    assert_eq!((task.scan.watcher.next_height(), task.scan.behind), (401, false));
    assert_eq!(store.scan_mark(&scope).await.unwrap().unwrap().number, 400);
    // Caught up, a turn reads only what came since.
    rpc.generate_to_address(3, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!((task.scan.watcher.next_height(), task.scan.behind), (404, false));
    assert_eq!(store.scan_mark(&scope).await.unwrap().unwrap().number, 403);
}

/// A miner paying a deposit address from its coinbase (a pool paying its miners there): the
/// output cannot be spent for 100 blocks, so a payout holding it would be refused until then and
/// every withdrawal in it held up. It is credited once it matures, not at the deposit depth, and
/// the watcher's place is not saved past it meanwhile (a restart reads its block again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coinbase_paying_a_deposit_address_is_credited_once_it_matures() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let ledger = &ledgers().await[0];
    let (rpc, mut task, anyone, register) = deposit_task(&node, ledger).await;
    let miner = wallet(3).address();
    register.send(miner).await.unwrap();
    let key = task.scan.watcher.keys()[0];
    let paid_to = chains::bitcoin::deposit_address(key, bridge::BtcNetwork::Regtest, &miner);
    rpc.generate_to_address(1, &paid_to).await.unwrap();
    let reward = rpc.block(&rpc.block_hash(1).await.unwrap()).await.unwrap().txdata[0].output[0].value.to_sat();
    let balance = |task: &BtcDepositTask| {
        let sequencer = task.sequencer.clone();
        async move { sequencer.read(move |state| state.balance(&miner, &AssetId::Btc).0).await.unwrap() }
    };

    // At depth, and 98 blocks above it: held, and the place stays before its block.
    rpc.generate_to_address(10, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task).await, 0, "credited before it can be spent");
    assert_eq!(task.scan.store.scan_mark(&task.scan.scope).await.unwrap(), None);
    rpc.generate_to_address(88, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task).await, 0, "credited at tip 99, a block before it matures");
    // Tip 100: a transaction spending it enters the next block (101 - 1 = 100 confirmations).
    rpc.generate_to_address(1, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task).await, u128::from(reward));
    assert_eq!(task.scan.store.scan_mark(&task.scan.scope).await.unwrap().unwrap().number, 100);
}
