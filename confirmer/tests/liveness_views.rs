//! A replayer's own view of L1 may lag the coordinator's, and other watchmen may be ahead of it:
//! neither is an alarm. A confirmer on an Ethereum node 30 blocks behind waits (and says what
//! for) until its node catches up, then replays; a deposit the coordinator invents is still an
//! alarm once the node is past its block. A watchman restarted behind 110 batches the others
//! have paid is not judged until it has caught up, then found solvent; a vault drained by a
//! forged root is still caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;
#[path = "../../chains/tests/common/lagging_eth.rs"]
mod lagging_eth;

use std::sync::Arc;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::batch::{BatchBuilder, SealedBatch};
use bridge::tx::SystemTx;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use bridge::{AssetId, Chain, State, Tx, UserTx, Withdraw};
use chains::da::{DataAvailability, DirDa};
use chains::ethereum::{Confirmation, EthDepositVerifier, deposit_from_log};
use chains::ethereum_view::{PayoutScan, VaultRead, VaultSnapshots, VaultView};
use common::coordinator_api::{balance, until};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::solvency::{SolvencyGuard, SolvencyWatch, Verdict, ethereum_at};
use confirmer::store::ConfirmerStore;
use contracts::harness::Setup;
use contracts::{from_alloy, to_alloy};
use coordinator::node::Node;

async fn mine(setup: &Setup, blocks: u64) {
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

async fn open_follower(dir: &std::path::Path, p: &bridge::NetworkParams, name: &str, eth_rpc: &str) -> Follower {
    open_follower_at(dir, p, &format!("sqlite://{}", dir.join(name).display()), eth_rpc).await
}

/// A follower of the DA in `dir` keeping its record at `url` (SQLite or PostgreSQL).
async fn open_follower_at(dir: &std::path::Path, p: &bridge::NetworkParams, url: &str, eth_rpc: &str) -> Follower {
    let da = DirDa::open(dir.join("da"), p.coordinator_key).unwrap();
    let store = ConfirmerStore::open(url).await.unwrap();
    let verifier =
        EthDepositVerifier::connect(eth_rpc, &Default::default(), p.eth_vault, Confirmation::Depth(1)).unwrap();
    let verifiers = DepositVerifiers::none().with(Chain::Ethereum, Arc::new(verifier));
    Follower::open(Arc::new(da), store, p.clone(), verifiers).await.unwrap()
}

/// Wallet 1 deposits 1,000,000 wei into the vault and batch 1, published to `da`, credits it
/// (a block later); the ledger after batch 1, and the deposit's block.
async fn publish_a_credited_deposit(setup: &Setup, da: &DirDa, p: &bridge::NetworkParams) -> (State, u64) {
    let receipt = setup
        .vault
        .depositETH(to_alloy(wallet(1).address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let height = receipt.block_number.unwrap();
    let deposit = deposit_from_log(&receipt.inner.logs()[0], 0, height).unwrap();
    mine(setup, 1).await;
    let mut state = State::genesis(p.clone());
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, Tx::System(SystemTx::Deposit(deposit))).unwrap();
    da.publish(&builder.seal(&mut state, 1, &key()).unwrap().batch).await.unwrap();
    (state, height)
}

/// The ledger as the DA has it, batch by batch: what a cheating coordinator builds on.
async fn ledger_of(da: &DirDa, p: &bridge::NetworkParams) -> State {
    let mut state = State::genesis(p.clone());
    for n in 1..=da.latest().await.unwrap() {
        bridge::replay(&mut state, &da.fetch(n).await.unwrap().unwrap().batch).unwrap();
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmer_whose_ethereum_node_lags_30_blocks_waits_then_replays_and_an_invented_deposit_is_still_an_alarm() {
    let setup = Setup::new().await.unwrap();
    mine(&setup, 40).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(setup.vault_address());
    p.chain_id = setup.chain_id;
    let config = coordinator_watching(dir.path(), &p, setup.anvil.url());
    let coordinator = Node::start(&config).await.unwrap();
    let user = wallet(1);
    let receipt = setup
        .vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let deposit_block = receipt.block_number.unwrap();
    mine(&setup, 2).await;
    until("the deposit credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 1_000_000).then_some(())
    })
    .await;
    coordinator.shutdown().await; // seals and publishes what is open
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    let published = da.latest().await.unwrap();
    assert!(published >= 1);

    // The confirmer's own node answers as anvil did 30 blocks ago.
    let node = lagging_eth::LaggingNode::start(&setup.anvil.url(), 30).await;
    let mut confirmer = open_follower(dir.path(), &p, "confirmer.db", &node.url).await;
    let head = setup.provider.get_block_number().await.unwrap();
    for _ in 0..3 {
        let step = confirmer.step(64).await.unwrap();
        assert_eq!(step.alarm, None, "a lagging node is no alarm");
    }
    let status = confirmer.status();
    assert!(status.alarms.is_empty());
    assert_eq!(status.hard_final, status.replayed, "nothing past the deposit is final");
    let waiting = status.waiting.expect("the confirmer says what it waits for");
    assert_eq!(waiting.chain, Chain::Ethereum);
    assert_eq!((waiting.node_height, waiting.needed_height), (Some(head - 30), Some(deposit_block + 1)));
    assert!(waiting.what.contains("deposit"), "{waiting:?}");
    // The same in the confirmer's /status.
    let view = serde_json::to_value(&waiting).unwrap();
    assert_eq!(view["needed_height"], serde_json::json!(deposit_block + 1));

    // The node catches up: the confirmer replays everything, all of it hard-final.
    node.set_lag(0);
    let step = confirmer.step(64).await.unwrap();
    assert_eq!(step.alarm, None);
    let status = confirmer.status();
    assert_eq!((status.replayed, status.hard_final, status.waiting), (published, published, None));

    // A deposit the coordinator invents, claimed at the current head, signed and published.
    let mut state = ledger_of(&da, &p).await;
    let previous = da.fetch(published).await.unwrap().unwrap().batch.header.timestamp;
    let mut builder = BatchBuilder::new(&state);
    let l1_height = setup.provider.get_block_number().await.unwrap();
    let invented = bridge::Deposit {
        chain: Chain::Ethereum,
        l1_ref: bridge::L1Ref::Ethereum { tx_hash: [0xee; 32], log_in_tx: 0 },
        account: user.address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(5_000_000),
        l1_height,
    };
    builder.apply(&mut state, Tx::System(SystemTx::Deposit(invented))).unwrap();
    let forged = builder.seal(&mut state, previous + 1, &key()).unwrap().batch;
    da.publish(&forged).await.unwrap();
    mine(&setup, 2).await;

    // Behind again, the node cannot tell yet: the confirmer waits, no alarm.
    node.set_lag(30);
    assert_eq!(confirmer.step(64).await.unwrap().alarm, None);
    let waiting = confirmer.status().waiting.expect("waiting on the invented deposit");
    assert_eq!(waiting.batch, published + 1);
    // Past its block, the node shows no such transaction: an alarm, with evidence.
    node.set_lag(0);
    let alarm = confirmer.step(64).await.unwrap().alarm.expect("an invented deposit is an alarm");
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::DepositNotOnL1, published + 1));
    assert!(alarm.detail.contains("counts block"), "{}", alarm.detail);
    assert_eq!(confirmer.status().hard_final, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_named_far_beyond_a_synced_nodes_tip_is_an_alarm_after_the_wait_not_a_wait_forever() {
    let setup = Setup::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(setup.vault_address());
    p.chain_id = setup.chain_id;
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();

    // The coordinator claims a deposit 10,000 blocks beyond anvil's head: no lag explains that.
    let head = setup.provider.get_block_number().await.unwrap();
    let mut state = State::genesis(p.clone());
    let mut builder = BatchBuilder::new(&state);
    let claimed = bridge::Deposit {
        chain: Chain::Ethereum,
        l1_ref: bridge::L1Ref::Ethereum { tx_hash: [0xfa; 32], log_in_tx: 0 },
        account: wallet(1).address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(1_000),
        l1_height: head + 10_000,
    };
    builder.apply(&mut state, Tx::System(SystemTx::Deposit(claimed))).unwrap();
    da.publish(&builder.seal(&mut state, 1, &key()).unwrap().batch).await.unwrap();

    // anvil says it is in sync (`eth_syncing` false). First the confirmer waits, as for lag...
    let wait = std::time::Duration::from_millis(500);
    let mut confirmer =
        open_follower(dir.path(), &p, "confirmer.db", &setup.anvil.url()).await.with_beyond_tip_wait(wait);
    assert_eq!(confirmer.step(64).await.unwrap().alarm, None, "not before the wait");
    let waiting = confirmer.status().waiting.expect("waiting on the deposit");
    assert_eq!(waiting.needed_height, Some(head + 10_000 + 1));
    // ...then, the node still in sync and still that far below, it is an alarm, not a wait forever.
    let mut alarm = None;
    for _ in 0..100 {
        alarm = confirmer.step(64).await.unwrap().alarm;
        if alarm.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let alarm = alarm.expect("a deposit named far beyond a synced node's tip is an alarm");
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::DepositNotOnL1, 1));
    assert!(alarm.detail.contains("in sync by its own word"), "{}", alarm.detail);
    assert_eq!(confirmer.status().hard_final, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchman_restarted_behind_110_batches_others_paid_raises_no_alarm_and_a_forged_root_is_caught() {
    const BATCHES: u64 = 110;
    const EACH: u128 = 1_000;
    let setup = Setup::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(setup.vault_address());
    p.chain_id = setup.chain_id;
    let domain = bridge::eip712::Domain::new(&p);
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    let user = wallet(1);
    let recipient = bridge::Address([0x5e; 20]);

    // Batch 1 credits a real deposit.
    let (mut state, _) = publish_a_credited_deposit(&setup, &da, &p).await;

    // The watchman replays batch 1, then stops.
    let mut watchman = open_follower(dir.path(), &p, "watchman.db", &setup.anvil.url()).await;
    watchman.step(64).await.unwrap();
    assert_eq!(watchman.status().hard_final, 1);
    drop(watchman);

    // Meanwhile 110 batches each withdraw to the recipient, and the other watchmen pay each one.
    for n in 0..BATCHES {
        let mut builder = BatchBuilder::new(&state);
        let withdraw = UserTx::Withdraw(Withdraw {
            from: user.address(),
            asset: AssetId::Eth,
            amount: bridge::Amount(EACH),
            fee: bridge::Amount(0),
            recipient: recipient.to_string(),
            nonce: n,
        });
        builder.apply(&mut state, Tx::User(user.sign(withdraw, &domain).verify(&domain).unwrap())).unwrap();
        let SealedBatch { batch, settlement } = builder.seal(&mut state, 2 + n, &key()).unwrap();
        da.publish(&batch).await.unwrap();
        let number = batch.header.number;
        setup.pay(number, &settlement.eth, 0..settlement.eth.withdrawals().len() as u32).await.unwrap();
    }
    assert_eq!(setup.balance(EthAddress::from(recipient.0)).await.unwrap(), U256::from(BATCHES as u128 * EACH));
    let latest = da.latest().await.unwrap();
    assert_eq!(latest, BATCHES + 1);

    // Restarted: its ledger is batch 1's. Compared with today's vault as it stands, that is a
    // shortfall of everything paid since (what the old check halted on) ...
    let mut watchman = open_follower(dir.path(), &p, "watchman.db", &setup.anvil.url()).await;
    assert_eq!(watchman.status().replayed, 1);
    let watch = SolvencyWatch { eth_rpc: Some(setup.anvil.url()), btc: None, btc_depth: 1, tls: Default::default() };
    let naive = watch.check(watchman.state()).await.unwrap();
    assert_eq!(naive[0].shortfall(), BATCHES as u128 * EACH, "{naive:?}");
    // ... but at one block, with what the vault paid for the batches after this replay, none.
    let mut view = VaultView::connect(
        &setup.anvil.url(),
        &Default::default(),
        p.eth_vault,
        Confirmation::Depth(0),
        Default::default(),
    )
    .unwrap();
    let VaultRead::At(snapshot) = view.snapshot(&[], 1).await.unwrap() else { panic!("the view did not read") };
    let consistent = ethereum_at(watchman.state(), &snapshot, 1, latest);
    assert_eq!((consistent[0].paid_ahead, consistent[0].shortfall()), (BATCHES as u128 * EACH, 0), "{consistent:?}");

    // Catching up ten batches a turn, the guard never judges mid-way, and finds it solvent once
    // caught up.
    let mut guard = SolvencyGuard::new(watch.clone(), Confirmation::Depth(0), Default::default(), p.eth_vault).unwrap();
    let mut turns = 0;
    loop {
        turns += 1;
        assert!(turns < 50, "the watchman never caught up");
        let step = watchman.step(10).await.unwrap();
        assert_eq!(step.alarm, None);
        match guard.judge(&watchman).await.unwrap() {
            Verdict::NotJudged(why) => assert!(watchman.status().replayed < latest, "{why}"),
            Verdict::Solvent(report) => {
                assert_eq!(watchman.status().replayed, latest);
                assert_eq!(
                    (report[0].owed, report[0].held),
                    (1_000_000 - BATCHES as u128 * EACH, 1_000_000 - BATCHES as u128 * EACH)
                );
                break;
            }
            Verdict::Shortfall { why, .. } => panic!("a false alarm at batch {}: {why}", watchman.status().replayed),
        }
    }
    assert!(turns > 10, "the catch-up took several turns ({turns})");

    // A root the watchmen never signed (here: signed with the vault's test key) for a batch the
    // DA does not have drains the vault: a shortfall, whatever batch it names.
    let held = setup.balance(setup.vault_address()).await.unwrap();
    let thief = bridge::Address([0x7e; 20]);
    let forged = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch: latest + 1,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: thief,
        amount: bridge::Amount(held.to::<u128>()),
    }]);
    setup.pay(latest + 1, &forged, [0]).await.unwrap();
    assert_eq!(setup.balance(setup.vault_address()).await.unwrap(), U256::ZERO);
    match guard.judge(&watchman).await.unwrap() {
        Verdict::Shortfall { why, report } => {
            assert_eq!(report[0].shortfall(), held.to::<u128>());
            assert!(why.contains("the DA does not have"), "{why}");
        }
        other => panic!("a drained vault was judged {other:?}"),
    }
}

/// A watchman's Ethereum node falls behind after its replay credited a deposit (a load-balanced
/// provider whose backend lags; here a view ten blocks below the head): the vault read there
/// lacks the deposit. That is "not seen yet", never a shortfall: the guard does not judge ether
/// below the block the ledger's deposits name, and judges it whole once its view is past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_view_below_a_credited_deposit_is_not_judged_and_halts_no_one() {
    let setup = Setup::new().await.unwrap();
    mine(&setup, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(setup.vault_address());
    p.chain_id = setup.chain_id;
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    let (_, height) = publish_a_credited_deposit(&setup, &da, &p).await;
    let mut watchman = open_follower(dir.path(), &p, "watchman.db", &setup.anvil.url()).await;
    watchman.step(64).await.unwrap();
    assert_eq!(watchman.status().replayed, 1);
    assert_eq!(watchman.state().deposit_height(&AssetId::Eth), height);

    let watch = SolvencyWatch { eth_rpc: Some(setup.anvil.url()), btc: None, btc_depth: 1, tls: Default::default() };
    // The view ten blocks down holds nothing yet: as a balance, a shortfall of the whole deposit.
    let mut behind = VaultView::connect(
        &setup.anvil.url(),
        &Default::default(),
        p.eth_vault,
        Confirmation::Depth(10),
        Default::default(),
    )
    .unwrap();
    let VaultRead::At(snapshot) = behind.snapshot(&[], 1).await.unwrap() else { panic!("the view did not read") };
    assert!(snapshot.block < height, "the view reads block {} (deposit at {height})", snapshot.block);
    assert_eq!(ethereum_at(watchman.state(), &snapshot, 1, 1)[0].shortfall(), 1_000_000);
    assert_eq!(confirmer::solvency::ethereum_unseen(watchman.state(), &snapshot), vec![(AssetId::Eth, height)]);
    let mut guard = SolvencyGuard::with_vault(watch.clone(), Some(Box::new(behind)));
    match guard.judge(&watchman).await.unwrap() {
        Verdict::NotJudged(why) => assert!(why.contains("behind the ledger"), "{why}"),
        other => panic!("a view below a credited deposit was judged: {other:?}"),
    }
    // Caught up, it judges, and the vault is whole.
    let mut guard = SolvencyGuard::new(watch, Confirmation::Depth(1), Default::default(), p.eth_vault).unwrap();
    match guard.judge(&watchman).await.unwrap() {
        Verdict::Solvent(report) => assert_eq!((report[0].owed, report[0].held), (1_000_000, 1_000_000)),
        other => panic!("a synced view was judged {other:?}"),
    }
}

/// A watchman's solvency guard saves where its scan of the vault's payouts stands, in its own
/// database; a restarted guard goes on from there instead of reading every block since the
/// vault's deployment again. Shown by a place saved above the node's final block (as a run
/// through a node further on would leave it): only a guard that went on from it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_solvency_guard_goes_on_from_its_saved_payout_scan() {
    for ledger in common::stores().await {
        let setup = Setup::new().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut p = params();
        p.eth_vault = from_alloy(setup.vault_address());
        p.chain_id = setup.chain_id;
        let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
        publish_a_credited_deposit(&setup, &da, &p).await;
        let mut watchman = open_follower_at(dir.path(), &p, &ledger.url, &setup.anvil.url()).await;
        watchman.step(64).await.unwrap();
        assert_eq!(watchman.status().replayed, 1);

        let watch =
            SolvencyWatch { eth_rpc: Some(setup.anvil.url()), btc: None, btc_depth: 1, tls: Default::default() };
        let guard =
            || SolvencyGuard::new(watch.clone(), Confirmation::Depth(0), Default::default(), p.eth_vault).unwrap();
        let solvent = |verdict: Verdict| match verdict {
            Verdict::Solvent(report) => assert_eq!((report[0].owed, report[0].held), (1_000_000, 1_000_000)),
            other => panic!("a whole vault was judged {other:?}"),
        };
        solvent(guard().judge(&watchman).await.unwrap());
        let head = setup.provider.get_block_number().await.unwrap();
        let scope = confirmer::store::payout_scan_scope(p.eth_vault);
        let saved = watchman.store().payout_scan(&scope).await.unwrap().expect("the scan's place saved");
        assert_eq!((saved.next_block, saved.pruned_through, saved.paid.len()), (head + 1, 1, 0));

        // Restarted, with a place through block head + 10 saved: it waits for its node ...
        let ahead = PayoutScan { next_block: head + 11, ..saved };
        watchman.store().save_payout_scan(&scope, &ahead).await.unwrap();
        let mut restarted = guard();
        match restarted.judge(&watchman).await.unwrap() {
            Verdict::NotJudged(why) => assert!(why.contains("below block"), "{why}"),
            other => panic!("a view below its saved place was judged: {other:?}"),
        }
        // ... and judges once the node is there, reading on from the place.
        mine(&setup, 10).await;
        solvent(restarted.judge(&watchman).await.unwrap());
        assert_eq!(watchman.store().payout_scan(&scope).await.unwrap(), Some(ahead));
        mine(&setup, 3).await;
        solvent(restarted.judge(&watchman).await.unwrap());
        assert_eq!(watchman.store().payout_scan(&scope).await.unwrap().unwrap().next_block, head + 14);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchman_whose_ethereum_node_lags_30_blocks_signs_nothing_meanwhile_and_pays_once_caught_up() {
    use bridge::eth_settlement::VaultDomain;
    use chains::ethereum::Submitter;
    use confirmer::watchman::{EthSettlement, RangeLimits, ReplayPolicy, SettlementBook, Watchman};
    use tss::{GroupKey, TssNode};

    // Two watchmen, 2-of-2: neither signs alone.
    let identities: Vec<_> = (0..2).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let setup = Setup::new().await.unwrap();
    let vault = contracts::Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), setup.deployer)
        .await
        .unwrap();
    let vault_address = *vault.address();
    let domain = VaultDomain { chain_id: setup.chain_id, vault: from_alloy(vault_address), epoch: 0 };
    mine(&setup, 40).await;

    // A deposit credited by the coordinator's watcher, and a withdrawal of part of it.
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(vault_address);
    p.chain_id = setup.chain_id;
    let config = coordinator_watching(dir.path(), &p, setup.anvil.url());
    let coordinator = Node::start(&config).await.unwrap();
    let user = wallet(1);
    let recipient = bridge::Address([0x5e; 20]);
    vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(1_000_000u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    mine(&setup, 2).await;
    until("the deposit credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 1_000_000).then_some(())
    })
    .await;
    let withdraw = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(400_000),
        fee: bridge::Amount(0),
        recipient: recipient.to_string(),
        nonce: 0,
    });
    common::coordinator_api::submit(&coordinator, &user.sign(withdraw, &bridge::eip712::Domain::new(&p))).await;
    coordinator.shutdown().await;

    // Watchman 0's Ethereum node lags 30 blocks; watchman 1's is anvil itself.
    let node = lagging_eth::LaggingNode::start(&setup.anvil.url(), 30).await;
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let rpc = if i == 0 { node.url.clone() } else { setup.anvil.url() };
        let follower = open_follower(dir.path(), &p, &format!("w{i}.db"), &rpc).await;
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let tss = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let eth = (i == 0).then(|| {
            EthSettlement::new(
                book.clone(),
                domain,
                Submitter::new(setup.provider.clone(), vault_address, setup.deployer),
            )
            .with_limits(RangeLimits { window: std::time::Duration::ZERO, ..RangeLimits::default() })
        });
        let reader = chains::ethereum::VaultReader::new(setup.provider.clone(), vault_address);
        watchmen.push(Watchman::new(follower, book, tss, eth).with_vault_reader(reader));
    }
    let report = watchmen[1].step(64).await.unwrap();
    let (batch, owed) = watchmen[1].book().owing_from(1).into_iter().next().expect("a batch owes the withdrawal");
    assert!(report.hard_final >= batch);

    // Watchman 0 waits for its node: no alarm, nothing hard-final past the deposit, nothing signed.
    for _ in 0..3 {
        let report = watchmen[0].step(64).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    }
    let status = watchmen[0].follower().status();
    assert!(status.alarms.is_empty() && watchmen[0].book().halted().is_none());
    assert!(status.waiting.is_some() && watchmen[0].book().hard_final() < batch, "{status:?}");
    let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
    assert_eq!(submitter.progress().await.unwrap().range_count, 0, "no root signed meanwhile");

    // Its node catches up: it replays, signs the root with watchman 1, and pays.
    node.set_lag(0);
    let report = watchmen[0].step(64).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert!(report.settled[0].submitted_root);
    assert_eq!(submitter.range(0).await.unwrap().unwrap().root, owed.eth.root());
    assert_eq!(setup.balance(EthAddress::from(recipient.0)).await.unwrap(), U256::from(400_000u64));
}

/// Copies the active chain of `from` up to its tip into `to`, block by block: a node that gets
/// the same blocks later.
async fn relay(from: &chains::bitcoin::CoreRpc, to: &chains::bitcoin::CoreRpc) {
    let tip = from.block_count().await.unwrap();
    for h in to.block_count().await.unwrap() + 1..=tip {
        let block = from.block(&from.block_hash(h).await.unwrap()).await.unwrap();
        to.submit_block(&block).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmer_whose_bitcoin_node_lags_30_blocks_waits_then_replays() {
    use common::bitcoin_bridge::{BitcoinBridge, deposit_and_withdraw, recipient};
    let key = common::btc::group_key();
    let bridge = BitcoinBridge::start(key.serialize()).await;
    // The confirmer's own node: a second regtest node that gets the coordinator's blocks later.
    let lagging = regtest::RegtestNode::start(regtest::RegtestConfig::default()).await.unwrap();
    let behind = chains::bitcoin::CoreRpc::new(lagging.url(), lagging.user(), lagging.password());
    relay(&bridge.rpc, &behind).await;
    deposit_and_withdraw(&bridge.coordinator, &bridge.rpc, &bridge.miner, &bridge.params, &recipient()).await;
    bridge.coordinator.shutdown().await;
    bridge.rpc.generate_to_address(30, &bridge.miner.address).await.unwrap();
    let da = DirDa::open(bridge.dir.path().join("da"), bridge.params.coordinator_key).unwrap();
    let published = da.latest().await.unwrap();

    let store = ConfirmerStore::open(&format!("sqlite://{}", bridge.dir.path().join("c.db").display())).await.unwrap();
    let checker = chains::bitcoin::DepositChecker::new(behind.clone(), bridge.params.btc_network, key, 1);
    let verifiers = DepositVerifiers::none().with(Chain::Bitcoin, Arc::new(checker));
    let mut confirmer = Follower::open(Arc::new(da), store, bridge.params.clone(), verifiers).await.unwrap();
    for _ in 0..3 {
        assert_eq!(confirmer.step(64).await.unwrap().alarm, None, "a lagging node is no alarm");
    }
    let waiting = confirmer.status().waiting.expect("the confirmer says what it waits for");
    assert_eq!(waiting.chain, Chain::Bitcoin);
    assert_eq!(waiting.node_height, Some(behind.block_count().await.unwrap()));
    assert!(waiting.needed_height > waiting.node_height, "{waiting:?}");

    // The node gets the blocks: everything replays and is hard-final.
    relay(&bridge.rpc, &behind).await;
    assert_eq!(confirmer.step(64).await.unwrap().alarm, None);
    let status = confirmer.status();
    assert_eq!((status.replayed, status.hard_final, status.waiting), (published, published, None));
}
