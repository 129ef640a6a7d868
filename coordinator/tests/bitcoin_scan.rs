//! The coordinator's Bitcoin deposit turn against the regtest node: a watcher far behind the
//! chain reads a bounded stretch a turn and saves its place after each, so it catches up over
//! several turns instead of holding one for every block since its start height; and it reads
//! no block until every account that asked for an address is in its book, on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, SECP256K1, SecretKey};
use bridge::{AssetId, BtcVaultParams};
use chains::bitcoin::{CoreRpc, DepositWatcher, WatcherConfig, XOnlyPublicKey};
use chains::task::Task;
use common::*;
use coordinator::deposit_book::{MAX_INDEXED_PER_TURN, StoreBook};
use coordinator::deposits::{BtcDepositScan, BtcDepositTask, MAX_BLOCKS_PER_TURN, btc_scan_scope};
use coordinator::seal_rule::SealRule;
use coordinator::sequencer::{Sequencer, SequencerHandle};
use coordinator::store::Store;
use regtest::{RegtestConfig, RegtestNode};

/// A regtest node, a vault key, and a deposit task reading the node at depth 1 from height 0
/// into a fresh ledger (`ledger`), its book indexing at most `per_turn` accounts a turn; the
/// address blocks are mined to, and the vault's key.
async fn deposit_task(
    node: &RegtestNode,
    ledger: &Ledger,
    per_turn: usize,
) -> (CoreRpc, BtcDepositTask, bitcoin::Address, XOnlyPublicKey) {
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
    let book = StoreBook::new(store.clone(), p.btc_network).indexing_at_most(per_turn);
    let watcher =
        DepositWatcher::with_book(Arc::new(rpc.clone()), book, WatcherConfig { depth: 1, start_height: 0 }).unwrap();
    let task =
        BtcDepositTask { scan: BtcDepositScan::new(watcher, store, btc_scan_scope(&vault), None), sequencer: handle };
    (rpc, task, anyone, group_key)
}

/// The account's BTC balance in the task's ledger.
async fn balance(task: &BtcDepositTask, account: bridge::Address) -> u128 {
    task.sequencer.read(move |state| state.balance(&account, &AssetId::Btc).0).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_watcher_far_behind_reads_a_bounded_stretch_a_turn_and_saves_its_place_after_each() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let ledger = &ledgers().await[0];
    let (rpc, mut task, anyone, _) = deposit_task(&node, ledger, MAX_INDEXED_PER_TURN).await;
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
    let (rpc, mut task, anyone, key) = deposit_task(&node, ledger, MAX_INDEXED_PER_TURN).await;
    let miner = wallet(3).address();
    task.scan.store.add_btc_deposit_account(&miner).await.unwrap();
    let paid_to = chains::bitcoin::deposit_address(key, bridge::BtcNetwork::Regtest, &miner);
    rpc.generate_to_address(1, &paid_to).await.unwrap();
    let reward = rpc.block(&rpc.block_hash(1).await.unwrap()).await.unwrap().txdata[0].output[0].value.to_sat();

    // At depth, and 98 blocks above it: held, and the place stays before its block.
    rpc.generate_to_address(10, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task, miner).await, 0, "credited before it can be spent");
    assert_eq!(task.scan.store.scan_mark(&task.scan.scope).await.unwrap(), None);
    rpc.generate_to_address(88, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task, miner).await, 0, "credited at tip 99, a block before it matures");
    // Tip 100: a transaction spending it enters the next block (101 - 1 = 100 confirmations).
    rpc.generate_to_address(1, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(balance(&task, miner).await, u128::from(reward));
    assert_eq!(task.scan.store.scan_mark(&task.scan.scope).await.unwrap().unwrap().number, 100);
}

/// Who could make a deposit be skipped: nobody, by asking for addresses faster than the watcher
/// indexes them. Accounts that asked are indexed a bounded number a turn, and no block is read
/// while one is not: the watcher waits (its place unmoved), then credits every deposit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_block_is_read_until_every_account_that_asked_is_in_the_book() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let ledger = &ledgers().await[0];
    let (rpc, mut task, anyone, key) = deposit_task(&node, ledger, 2).await;
    rpc.generate_to_address(101, &anyone).await.unwrap();
    task.turn().await.unwrap();
    assert_eq!(task.scan.watcher.next_height(), 102);

    // Five accounts ask, and each is paid by a block's coinbase, mature 100 blocks later.
    let accounts: Vec<bridge::Address> = (1..=5).map(|n| wallet(n).address()).collect();
    let mut paid = Vec::new();
    for account in &accounts {
        task.scan.store.add_btc_deposit_account(account).await.unwrap();
        let to = chains::bitcoin::deposit_address(key, bridge::BtcNetwork::Regtest, account);
        let hash = rpc.generate_to_address(1, &to).await.unwrap()[0];
        paid.push(rpc.block(&hash).await.unwrap().txdata[0].output[0].value.to_sat());
    }
    rpc.generate_to_address(100, &anyone).await.unwrap();

    // Two a turn: two turns index four and read nothing, the third indexes the fifth and reads.
    for turn in 1..=2 {
        task.turn().await.unwrap();
        assert!(task.scan.behind, "turn {turn}: accounts left to index, so the next turn runs at once");
        assert_eq!(task.scan.watcher.next_height(), 102, "turn {turn} read a block past an account not indexed");
        for account in &accounts {
            assert_eq!(balance(&task, *account).await, 0);
        }
    }
    task.turn().await.unwrap();
    assert_eq!((task.scan.watcher.next_height(), task.scan.behind), (207, false));
    for (account, paid) in accounts.iter().zip(paid) {
        assert_eq!(balance(&task, *account).await, u128::from(paid), "{account}'s deposit");
    }
}
