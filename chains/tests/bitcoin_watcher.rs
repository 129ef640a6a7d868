//! The Bitcoin deposit watcher on the regtest node (Bitcoin Core's kernel): a deposit to an
//! account's Taproot address is credited once at depth; a reorg before depth credits nothing; a
//! reorg below depth stops it; a broken node credits nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bitcoin::Amount;
use bitcoin::hashes::Hash;
use bridge::tx::{Deposit, L1Ref};
use bridge::{AssetId, BtcNetwork, Chain};
use chains::bitcoin::{CoreRpc, DepositChecker, DepositStatus, DepositWatcher, WatchError, WatcherConfig};
use regtest::{RegtestConfig, RegtestNode};
use tokio::sync::mpsc;

mod common;
use common::btc::{Miner, group_key, mine_branch};

#[tokio::test]
async fn a_deposit_is_credited_once_at_depth_and_a_reorg_before_depth_credits_nothing() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(101, &miner.address).await.unwrap();

    let config = WatcherConfig { depth: 3, start_height: 1 };
    let key = group_key();
    let mut watcher = DepositWatcher::new(std::sync::Arc::new(rpc.clone()), BtcNetwork::Regtest, key, config).unwrap();
    let checker = DepositChecker::new(rpc.clone(), BtcNetwork::Regtest, key, 3);
    let account = bridge::Address([0xa1; 20]);
    let address = watcher.watch(account);
    let (sink, mut deposits) = mpsc::channel(16);
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);

    let tx = miner.pay(&rpc, 1, &address, Amount::from_sat(250_000)).await;
    rpc.generate_to_address(2, &miner.address).await.unwrap(); // 2 confirmations: not yet
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);
    let early = Deposit {
        chain: Chain::Bitcoin,
        l1_ref: L1Ref::Bitcoin { txid: tx.compute_txid().to_byte_array(), vout: 0 },
        account,
        asset: AssetId::Btc,
        amount: bridge::Amount(250_000),
        l1_height: 0,
    };
    assert_eq!(checker.check(&early).await.unwrap(), DepositStatus::NotYetDeep { confirmations: 2 });

    // A competing branch from below the deposit's block, with more work: the deposit drops out.
    let fork = rpc.block_hash(101).await.unwrap();
    mine_branch(&node, fork, 3, &miner.address).await;
    assert_eq!(rpc.block_count().await.unwrap(), 104);
    assert_eq!(rpc.raw_mempool().await.unwrap(), vec![tx.compute_txid()], "the deposit is unconfirmed again");
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);
    assert!(deposits.try_recv().is_err(), "nothing credited before depth");

    // Mined again at 105; at depth 3 once the tip is 107.
    rpc.generate_to_address(2, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 1);
    let deposit = deposits.try_recv().unwrap();
    assert_eq!(
        deposit,
        Deposit {
            chain: Chain::Bitcoin,
            l1_ref: L1Ref::Bitcoin { txid: tx.compute_txid().to_byte_array(), vout: 0 },
            account,
            asset: AssetId::Btc,
            amount: bridge::Amount(250_000),
            l1_height: 105,
        }
    );
    assert_eq!(checker.check(&deposit).await.unwrap(), DepositStatus::Confirmed);
    let more = Deposit { amount: bridge::Amount(250_001), ..deposit.clone() };
    assert!(matches!(checker.check(&more).await.unwrap(), DepositStatus::NotOnChain { .. }));
    let elsewhere = Deposit { account: bridge::Address([0xb2; 20]), ..deposit.clone() };
    assert!(matches!(checker.check(&elsewhere).await.unwrap(), DepositStatus::NotOnChain { .. }));
    let change =
        Deposit { l1_ref: L1Ref::Bitcoin { txid: tx.compute_txid().to_byte_array(), vout: 1 }, ..deposit.clone() };
    assert!(matches!(checker.check(&change).await.unwrap(), DepositStatus::NotOnChain { .. }));
    let unknown = Deposit { l1_ref: L1Ref::Bitcoin { txid: [7; 32], vout: 0 }, ..deposit.clone() };
    assert!(matches!(checker.check(&unknown).await.unwrap(), DepositStatus::NotOnChain { .. }));
    // The same answers through the confirmer's trait.
    use chains::deposit::{DepositCheck, DepositVerifier};
    let verifier: &dyn DepositVerifier = &checker;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::Confirmed);
    assert!(matches!(verifier.check(&more).await.unwrap(), DepositCheck::NotOnL1 { .. }));

    rpc.generate_to_address(3, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0, "never credited twice");
    assert!(deposits.try_recv().is_err());

    // A reorg below depth (from below the credited block) stops the watcher instead of being followed.
    let below = rpc.block_hash(104).await.unwrap();
    mine_branch(&node, below, 8, &miner.address).await;
    let err = watcher.poll(&sink).await.unwrap_err();
    assert!(matches!(err, WatchError::ReorgBelowDepth { .. }), "{err}");
    assert!(deposits.try_recv().is_err());
    assert_eq!(
        checker.check(&deposit).await.unwrap(),
        DepositStatus::NotYetDeep { confirmations: 0 },
        "back in the mempool"
    );
}

#[tokio::test]
async fn a_node_that_is_down_credits_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = WatcherConfig { depth: 1, start_height: 0 };
    let mut watcher =
        DepositWatcher::new(std::sync::Arc::new(CoreRpc::new(url, "u", "p")), BtcNetwork::Regtest, group_key(), config)
            .unwrap();
    watcher.watch(bridge::Address([1; 20]));
    let (sink, mut deposits) = mpsc::channel(4);
    assert!(matches!(watcher.poll(&sink).await, Err(WatchError::Rpc(_))));
    assert!(deposits.try_recv().is_err());
    assert_eq!(watcher.next_height(), 0);
}

#[tokio::test]
async fn polls_credit_each_deposit_once_and_a_closed_channel_stops_the_watcher() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(101, &miner.address).await.unwrap();
    let config = WatcherConfig { depth: 1, start_height: 0 };
    let mut watcher =
        DepositWatcher::new(std::sync::Arc::new(rpc.clone()), BtcNetwork::Regtest, group_key(), config).unwrap();
    let address = watcher.watch(bridge::Address([0xc3; 20]));
    let (sink, mut deposits) = mpsc::channel(4);

    let tx = miner.pay(&rpc, 1, &address, Amount::from_sat(100_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 1);
    let deposit = deposits.recv().await.unwrap();
    assert_eq!(deposit.l1_ref, L1Ref::Bitcoin { txid: tx.compute_txid().to_byte_array(), vout: 0 });
    // Polled again, with and without new blocks: nothing is credited twice.
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);
    rpc.generate_to_address(5, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 0);
    let second = miner.pay(&rpc, 2, &address, Amount::from_sat(200_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    assert_eq!(watcher.poll(&sink).await.unwrap(), 1);
    let next = deposits.recv().await.unwrap();
    assert_eq!(next.l1_ref, L1Ref::Bitcoin { txid: second.compute_txid().to_byte_array(), vout: 0 });

    // The intake gone: the next deposit stops the watcher (its task is dead, not retried).
    deposits.close();
    miner.pay(&rpc, 3, &address, Amount::from_sat(300_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let stopped = watcher.poll(&sink).await;
    assert!(matches!(stopped, Err(WatchError::SinkClosed)), "{stopped:?}");
    assert!(deposits.try_recv().is_err(), "credited once");
}

/// What a restarted coordinator relies on (coordinator::deposits::BtcDepositTask saves the
/// mark): a watcher resumed after a block reads only what came after it, waits for a node that
/// has not reached the block yet, and stops at a reorg under it.
#[tokio::test]
async fn a_resumed_watcher_reads_after_its_mark_waits_for_a_lagging_node_and_stops_at_a_reorg_under_it() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(101, &miner.address).await.unwrap();
    let config = WatcherConfig { depth: 1, start_height: 0 };
    let key = group_key(); // one vault for every watcher below
    let fresh = || DepositWatcher::new(std::sync::Arc::new(rpc.clone()), BtcNetwork::Regtest, key, config.clone());
    let account = bridge::Address([0xd4; 20]);
    let mut first = fresh().unwrap();
    let address = first.watch(account);
    let (sink, mut deposits) = mpsc::channel(8);
    let early = miner.pay(&rpc, 1, &address, Amount::from_sat(100_000)).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    assert_eq!(first.poll(&sink).await.unwrap(), 1);
    assert_eq!(
        deposits.recv().await.unwrap().l1_ref,
        L1Ref::Bitcoin { txid: early.compute_txid().to_byte_array(), vout: 0 }
    );
    let mark = first.mark().expect("blocks were read");
    assert_eq!(mark.number, 102);

    // Resumed after the mark: the later deposit only.
    let late = miner.pay(&rpc, 2, &address, Amount::from_sat(200_000)).await;
    rpc.generate_to_address(3, &miner.address).await.unwrap();
    let mut resumed = fresh().unwrap();
    resumed.watch(account);
    resumed.resume(mark);
    assert_eq!(resumed.next_height(), 103);
    assert_eq!(resumed.poll(&sink).await.unwrap(), 1);
    assert_eq!(
        deposits.recv().await.unwrap().l1_ref,
        L1Ref::Bitcoin { txid: late.compute_txid().to_byte_array(), vout: 0 }
    );
    assert_eq!(resumed.mark().map(|m| m.number), Some(105));

    // A mark above the node's tip (a node still syncing) is not seen yet: it waits, no error.
    let ahead = chains::deposit::ScanMark { number: 110, hash: [0xee; 32] };
    let mut waiting = fresh().unwrap();
    waiting.resume(ahead);
    assert_eq!(waiting.poll(&sink).await.unwrap(), 0);
    // Once the node has that height, a block other than the mark's is a reorg under it.
    rpc.generate_to_address(6, &miner.address).await.unwrap();
    assert!(matches!(waiting.poll(&sink).await, Err(WatchError::ReorgBelowDepth { height: 110, .. })));
    assert!(deposits.try_recv().is_err(), "nothing read twice, nothing read past a reorg");
}

/// Copies the active chain of `from` up to `height` into `to`, block by block.
async fn relay(from: &CoreRpc, to: &CoreRpc, height: u64) {
    for h in to.block_count().await.unwrap() + 1..=height {
        let block = from.block(&from.block_hash(h).await.unwrap()).await.unwrap();
        to.submit_block(&block).await.unwrap();
    }
    assert_eq!(to.block_count().await.unwrap(), height);
}

#[tokio::test]
async fn a_node_that_lags_waits_for_a_deposit_or_payout_and_a_node_past_its_block_calls_a_missing_one_absent() {
    // The coordinator's node, and a replayer's own node that gets the same blocks only later.
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let lagging = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let behind = CoreRpc::new(lagging.url(), lagging.user(), lagging.password());
    let miner = Miner::new();
    rpc.generate_to_address(101, &miner.address).await.unwrap();
    relay(&rpc, &behind, 101).await;

    let key = group_key();
    let config = WatcherConfig { depth: 3, start_height: 1 };
    let mut watcher = DepositWatcher::new(std::sync::Arc::new(rpc.clone()), BtcNetwork::Regtest, key, config).unwrap();
    let address = watcher.watch(bridge::Address([0xa1; 20]));
    let tx = miner.pay(&rpc, 1, &address, Amount::from_sat(250_000)).await;
    rpc.generate_to_address(32, &miner.address).await.unwrap(); // the deposit at 102, the tip 30 past depth
    let (sink, mut deposits) = mpsc::channel(16);
    assert_eq!(watcher.poll(&sink).await.unwrap(), 1);
    let deposit = deposits.try_recv().unwrap();
    assert_eq!(
        (deposit.l1_ref, deposit.l1_height),
        (L1Ref::Bitcoin { txid: tx.compute_txid().to_byte_array(), vout: 0 }, 102)
    );
    let invented = Deposit { l1_ref: L1Ref::Bitcoin { txid: [7; 32], vout: 0 }, ..deposit.clone() };
    // A payout attempt nobody broadcast, claimed confirmed in block 110.
    let vault = bridge::BtcVaultParams { group_key: key.serialize(), min_fee_rate: 1, max_fee_rate: 100 };
    let plan = bridge::PayoutPlan {
        id: 1,
        batch: 1,
        fee_rate: 1,
        budget_sat: 10_000,
        inputs: vec![bridge::VaultUtxo {
            outpoint: bridge::OutPoint { txid: [5; 32], vout: 0 },
            amount_sat: 100_000,
            owner: bridge::VaultOwner::Vault,
            height: 1,
        }],
        payouts: vec![bridge::withdrawals::BtcPayout {
            tx_hash: [6; 32],
            script_pubkey: common::btc::recipient().script_pubkey().to_bytes(),
            amount_sat: 50_000,
        }],
    };

    // The lagging node (tip 101) has not reached block 102 + depth: it waits for both.
    let checker = DepositChecker::new(behind.clone(), BtcNetwork::Regtest, key, 3);
    assert_eq!(checker.check(&deposit).await.unwrap(), DepositStatus::NodeBehind { tip: 101, needed: 104 });
    assert_eq!(checker.check(&invented).await.unwrap(), DepositStatus::NodeBehind { tip: 101, needed: 104 });
    assert_eq!(
        checker.check_payout(&bridge::VaultKeys::genesis(vault), &plan, 0, 110).await.unwrap(),
        DepositStatus::NodeBehind { tip: 101, needed: 112 }
    );
    use chains::deposit::{DepositCheck, DepositVerifier};
    let verifier: &dyn DepositVerifier = &checker;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::NodeBehind { node_height: 101, needed: 104 });

    // Caught up: the real deposit is confirmed; the invented deposit and payout are absent.
    relay(&rpc, &behind, 133).await;
    assert_eq!(checker.check(&deposit).await.unwrap(), DepositStatus::Confirmed);
    assert!(matches!(checker.check(&invented).await.unwrap(), DepositStatus::NotOnChain { .. }));
    assert!(matches!(
        checker.check_payout(&bridge::VaultKeys::genesis(vault), &plan, 0, 110).await.unwrap(),
        DepositStatus::NotOnChain { .. }
    ));
}
