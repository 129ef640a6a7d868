//! chains::ethereum_view against anvil: the solvency watch's scan of the vault's payouts goes on
//! from a saved place (a restart does not read every block since the deployment again), reads a
//! bounded stretch each time, and waits for a node below blocks it has read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::collections::BTreeMap;

use alloy::primitives::Address;
use alloy::providers::Provider;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use bridge::{Amount, AssetId};
use chains::ethereum::Confirmation;
use chains::ethereum_view::{
    PaidByBatch, PayoutScan, PayoutScanConfig, VaultRead, VaultSnapshot, VaultSnapshots, VaultView,
};
use contracts::from_alloy;
use contracts::harness::Setup;

#[path = "common/lagging_eth.rs"]
mod lagging_eth;

async fn mine(setup: &Setup, blocks: u64) {
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

/// The vault pays `wei` for batch `batch` (a root signed with the harness's group key); the
/// block of its `Withdrawn` log.
async fn pay(setup: &Setup, batch: u64, wei: u128) -> u64 {
    let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: bridge::Address([0x5e; 20]),
        amount: Amount(wei),
    }]);
    setup.pay(batch, &tree, [0]).await.unwrap().block_number.unwrap()
}

fn paid(entries: &[(u64, u128)]) -> PaidByBatch {
    entries.iter().map(|(batch, wei)| (*batch, BTreeMap::from([(AssetId::Eth, *wei)]))).collect()
}

async fn read(view: &mut VaultView, after: u64) -> VaultRead {
    view.snapshot(&[], after).await.unwrap()
}

async fn at(view: &mut VaultView, after: u64) -> VaultSnapshot {
    match read(view, after).await {
        VaultRead::At(snapshot) => snapshot,
        VaultRead::NotYet(why) => panic!("no read: {why}"),
    }
}

#[tokio::test]
async fn a_resumed_vault_view_reads_payouts_after_its_place_in_bounded_steps_and_waits_for_a_node_below_it() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 1_000_000).await.unwrap();
    pay(&setup, 3, 100).await;
    mine(&setup, 10).await;
    let second = pay(&setup, 5, 7).await;
    // Ten blocks a request: a read covers 1,000 blocks.
    let view = || {
        VaultView::connect(
            &setup.anvil.url(),
            &Default::default(),
            from_alloy(setup.vault_address()),
            Confirmation::Depth(0),
            PayoutScanConfig { from_block: 0, log_range: 10 },
        )
        .unwrap()
    };

    // From the start: both payouts, and the place after the block read.
    let mut fresh = view();
    let snapshot = at(&mut fresh, 2).await;
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7)]));
    assert_eq!(snapshot.held[&AssetId::Eth], 1_000_000 - 107);
    let place = fresh.place().unwrap();
    assert_eq!((place.next_block, place.pruned_through, &place.paid), (snapshot.block + 1, 2, &snapshot.paid_after));
    // The replay reached batch 3: its payout is in the ledger, not kept.
    assert_eq!(at(&mut fresh, 3).await.paid_after, paid(&[(5, 7)]));

    // Resumed at the second payout's block with nothing kept: it does not read below its place.
    let mut resumed = view();
    resumed.resume(PayoutScan { next_block: second, pruned_through: 2, paid: PaidByBatch::new() });
    assert_eq!(at(&mut resumed, 2).await.paid_after, paid(&[(5, 7)]));
    // Started at a later block (the vault's deployment, as configured): nothing below it read.
    let mut later = VaultView::connect(
        &setup.anvil.url(),
        &Default::default(),
        from_alloy(setup.vault_address()),
        Confirmation::Depth(0),
        PayoutScanConfig { from_block: second, ..PayoutScanConfig::default() },
    )
    .unwrap();
    assert_eq!(at(&mut later, 2).await.paid_after, paid(&[(5, 7)]));
    // Resumed from a place another view saved: the same answer as that view's.
    let mut again = view();
    again.resume(fresh.place().unwrap());
    assert_eq!(at(&mut again, 3).await, at(&mut fresh, 3).await);

    // A place above the node's final block (a node still syncing): waited for, not judged.
    let head = setup.provider.get_block_number().await.unwrap();
    resumed.resume(PayoutScan { next_block: head + 6, pruned_through: 2, paid: paid(&[(5, 7)]) });
    match read(&mut resumed, 2).await {
        VaultRead::NotYet(why) => assert!(why.contains("below block"), "{why}"),
        VaultRead::At(snapshot) => panic!("read at block {} below its place {}", snapshot.block, head + 5),
    }
    mine(&setup, 5).await;
    assert_eq!(at(&mut resumed, 2).await.paid_after, paid(&[(5, 7)]));

    // A replay older than the place's pruning (restored from an older snapshot): payouts it
    // needs were dropped, so it scans again from the start.
    let mut older = view();
    older.resume(PayoutScan { next_block: head + 1, pruned_through: 4, paid: paid(&[(5, 7)]) });
    assert_eq!(at(&mut older, 2).await.paid_after, paid(&[(3, 100), (5, 7)]));

    // Far behind: each read scans at most 1,000 blocks and says so; the place moves with it.
    mine(&setup, 2_500).await;
    let head = setup.provider.get_block_number().await.unwrap();
    let mut far = view();
    let mut partial = 0u64;
    let snapshot = loop {
        let before = far.place().unwrap().next_block;
        match read(&mut far, 2).await {
            VaultRead::NotYet(why) => {
                assert!(why.contains("reading the vault's payouts"), "{why}");
                assert_eq!(far.place().unwrap().next_block, before + 1_000);
                partial += 1;
                assert!(partial <= 3, "never caught up");
            }
            VaultRead::At(snapshot) => break snapshot,
        }
    };
    assert_eq!((partial, snapshot.block), ((head + 1).div_ceil(1_000) - 1, head));
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7)]));
}

/// A provider that caps `eth_getLogs` ranges below the view's width (many hosted ones allow
/// 500 to 2,000 blocks) used to fail every solvency check: the guard was off, silently. The
/// view now halves its range when refused, reads every payout, and widens again after a run of
/// answered requests; a refusal costs a request, never a payout.
#[tokio::test]
async fn a_provider_capping_log_ranges_is_read_in_narrower_requests_and_no_payout_is_missed() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(Address::ZERO, 1_000_000).await.unwrap();
    pay(&setup, 3, 100).await;
    mine(&setup, 70).await;
    pay(&setup, 5, 7).await;
    mine(&setup, 30).await;
    let node = lagging_eth::LaggingNode::start(&setup.anvil.url(), 0).await;
    node.set_log_cap(Some(10));
    let connect = |log_range| {
        VaultView::connect(
            &node.url,
            &Default::default(),
            from_alloy(setup.vault_address()),
            Confirmation::Depth(0),
            PayoutScanConfig { from_block: 0, log_range },
        )
        .unwrap()
    };

    // Configured at 40 blocks a request: refused at 40 and 20, answered at 10; each time 16
    // answered requests double it, the next is refused and it halves again.
    let mut view = connect(40);
    let snapshot = at(&mut view, 2).await;
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7)]));
    assert_eq!(snapshot.held[&AssetId::Eth], 1_000_000 - 107);
    let (answered, refused) = node.log_requests();
    let head = setup.provider.get_block_number().await.unwrap();
    assert_eq!(answered, (head + 1).div_ceil(10), "every stretch read once, 10 blocks at a time");
    assert_eq!(refused, 2 + (answered - 1) / 16, "40 and 20, then one a regrowth");

    // The cap lifted: the range doubles after each 16 answered requests, up to the width
    // configured and no further.
    node.set_log_cap(None);
    mine(&setup, 10 * 16 + 20 * 16 + 40).await;
    let mut reads = 0;
    let snapshot = loop {
        reads += 1;
        assert!(reads <= 5, "never caught up");
        if let VaultRead::At(snapshot) = read(&mut view, 2).await {
            break snapshot;
        }
    };
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7)]));
    assert_eq!(view.log_range(), 40);

    // Configured at the cap: never refused.
    node.set_log_cap(Some(10));
    let refused_before = node.log_requests().1;
    let mut fitted = connect(10);
    let snapshot = loop {
        if let VaultRead::At(snapshot) = read(&mut fitted, 2).await {
            break snapshot;
        }
    };
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7)]));
    assert_eq!(node.log_requests().1, refused_before);

    // A node that does not answer (its gateway says 503) refuses nothing: the read fails at
    // once, the range stays as wide, and the next read after the outage goes on from the place.
    node.set_log_cap(None);
    mine(&setup, 100).await;
    pay(&setup, 9, 11).await;
    let place = view.place().unwrap().next_block;
    let requests = node.log_requests();
    node.set_logs_down(true);
    let why = view.snapshot(&[], 2).await.unwrap_err();
    assert!(why.contains("the Ethereum node") && why.contains("503"), "{why}");
    assert_eq!((view.log_range(), view.place().unwrap().next_block), (40, place), "an outage narrows nothing");
    assert_eq!(node.log_requests(), requests, "one request tried, none answered or refused");
    node.set_logs_down(false);
    let snapshot = loop {
        if let VaultRead::At(snapshot) = read(&mut view, 2).await {
            break snapshot;
        }
    };
    assert_eq!(snapshot.paid_after, paid(&[(3, 100), (5, 7), (9, 11)]));
    node.set_log_cap(Some(10));

    // A node that refuses even one block: the read fails after 4, 2 and 1 (the guard's task
    // retries it); nothing is judged on a scan with a hole in it.
    node.set_log_cap(Some(0));
    let mut refusing = connect(4);
    let why = refusing.snapshot(&[], 2).await.unwrap_err();
    assert!(why.contains("the Ethereum node") && why.contains("block range"), "{why}");
    assert_eq!(node.log_requests().1, refused_before + 3);
    assert_eq!(refusing.place().unwrap().next_block, 0, "nothing kept past the hole");
}
