//! Watchmen settle Ethereum withdrawals only when their own replay justifies them: a deposit
//! into a vault on anvil, credited by the coordinator's watcher; a withdrawal through the API;
//! three watchmen (2-of-3, a real DKG over libp2p on 127.0.0.1), each replaying the DA with its
//! own follower and checking the deposit against anvil; the range's root signed, submitted and
//! paid. A forged root, a range leaving a gap and a range overlapping the vault's are refused by
//! the watchmen's policies, and nothing more leaves the vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use bridge::{AssetId, UserTx, Withdraw};
use chains::ethereum::fees::GWEI;
use chains::ethereum::{FeeConfig, Guardian, Submitter};
use chains::task::{Schedule, Supervisor, TaskState};
use common::coordinator_api::submit;
use common::eth_group::{EthGroup, watchman_follower};
use common::*;
use confirmer::solvency::SolvencyGuard;
use confirmer::watchman::{EthSettlement, OnDuty, RangeLimits, ReplayPolicy, SettlementBook, WATCHMAN_TASK, Watchman};
use contracts::harness::Setup;
use tss::{SessionError, TssNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchmen_pay_a_withdrawal_their_replay_justifies_and_refuse_a_forged_root() {
    // The key ceremony (three watchmen, 2-of-3), the vault deployed with the group's key, the
    // coordinator watching it at depth 1, and a user's deposit of 1,000,000 wei credited.
    let group = EthGroup::start().await;
    let vault = group.vault();
    let EthGroup { identities, shares, setup, vault_address, domain, params: p, dir, coordinator, user } = group;
    // The user withdraws part of it to an Ethereum address.
    let recipient = bridge::Address([0x5e; 20]);
    let withdraw = UserTx::Withdraw(Withdraw {
        from: user.address(),
        asset: AssetId::Eth,
        amount: bridge::Amount(400_000),
        fee: bridge::Amount(0),
        recipient: recipient.to_string(),
        nonce: 0,
    });
    submit(&coordinator, &user.sign(withdraw, &bridge::eip712::Domain::new(&p))).await;
    coordinator.shutdown().await; // seals and publishes what is open

    // Each watchman: its own follower (checking deposits against anvil), its own book, its
    // policy reading that book, and its own submitter.
    let running = entries(&identities);
    let fees = FeeConfig { max_fee_per_gas_gwei: 50.0, ..FeeConfig::default() }.policy().unwrap();
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let follower = watchman_follower(&dir.path().join("da"), dir.path(), i, &p, &setup.anvil.url()).await;
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer).with_fees(fees);
        // Watchman 2 replays but does not settle (it reads the vault's ranges for its policy);
        // 0 and 1 both settle (one will find it done). No settlement window: a range is due as
        // soon as it owes something.
        let limits = RangeLimits { window: Duration::ZERO, ..RangeLimits::default() };
        let eth = (i < 2).then(|| EthSettlement::new(book.clone(), domain, submitter).with_limits(limits));
        let reader = chains::ethereum::VaultReader::new(setup.provider.clone(), vault_address);
        watchmen.push(Watchman::new(follower, book, node, eth).with_vault_reader(reader));
    }
    // Watchman 2 catches up first: its book is ready when the others ask it to sign.
    let report = watchmen[2].step(64).await.unwrap();
    assert!(report.hard_final >= 1, "{:?}", watchmen[2].follower().status());

    let (batch, owed) = watchmen[2].book().owing_from(1).into_iter().next().expect("a batch owes the withdrawal");
    let last = report.hard_final;
    // The range root covers every hard-final batch from the first: here one leaf.
    let range_tree = watchmen[2].book().range_tree(1, last).unwrap();
    assert_eq!(range_tree.root(), owed.eth.root());

    // Watchman 0's turn: replay, then sign (with watchman 2, or 1 once it has replayed), submit,
    // pay. Watchman 1 has not replayed yet, so its policy refuses until it has.
    let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
    let before = setup.balance(EthAddress::from(recipient.0)).await.unwrap();

    // Ethereum fees above the watchmen's ceiling: nothing is signed or sent, the batch waits.
    set_base_fee(&setup, 400 * GWEI).await;
    let report = watchmen[0].step(64).await.unwrap();
    let why = report.settle_error.expect("deferred");
    assert!(why.contains("submitWithdrawals deferred") && why.contains("above the ceiling of 50 gwei"), "{why}");
    assert!(report.settled.is_empty());
    assert_eq!(submitter.progress().await.unwrap().range_count, 0, "no root was sent");
    assert_eq!(setup.balance(EthAddress::from(recipient.0)).await.unwrap(), before);

    // Refused by the policy of each watchman that has replayed (0 and 2 by now; 1 has not and
    // refuses everything, so each session is refused for the reason 0 or 2 gives): a different
    // tree for the right range, a range leaving a gap after the vault's (which holds none yet),
    // and a range that is not hard-final.
    let forged = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: bridge::Address([0xba; 20]),
        amount: bridge::Amount(400_000),
    }]);
    for (request, why) in [
        (EthSettlement::request(&domain, 1, last, forged.root()), "is not the withdrawals root"),
        (EthSettlement::request(&domain, 2, last + 1, owed.eth.root()), "leave a gap"),
        (EthSettlement::request(&domain, 1, last + 5, owed.eth.root()), "not all hard-final"),
    ] {
        match watchmen[2].tss().sign(vec![request]).await.unwrap_err() {
            SessionError::NotEnoughSigners { excluded, .. } => {
                assert!(excluded.values().any(|e| format!("{e:?}").contains(why)), "{why}: {excluded:?}")
            }
            other => panic!("expected a refusal ({why}), got {other}"),
        }
    }

    // Fees fall: the next turn settles it.
    set_base_fee(&setup, GWEI).await;
    let report = watchmen[0].step(64).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1);
    assert!(report.settled[0].submitted_root);
    assert_eq!((report.settled[0].range, report.settled[0].first, report.settled[0].last), (0, 1, last));
    let held = submitter.range(0).await.unwrap().unwrap();
    assert_eq!((held.first, held.last, held.root), (1, last, owed.eth.root()));
    let after = setup.balance(EthAddress::from(recipient.0)).await.unwrap();
    assert_eq!(after - before, U256::from(400_000u64), "the recipient is paid the withdrawal exactly");
    assert_eq!(
        setup.balance(vault_address).await.unwrap(),
        U256::from(600_000u64),
        "the vault keeps what the ledger still owes"
    );

    // Solvency as watchman 0's replay sees it: the vault holds at least every balance.
    let watch = confirmer::solvency::SolvencyWatch {
        eth_rpc: Some(setup.anvil.url()),
        btc: None,
        btc_depth: 1,
        tls: Default::default(),
    };
    let report = watch.check(watchmen[0].follower().state()).await.unwrap();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!((report[0].owed, report[0].held, report[0].shortfall()), (600_000, 600_000, 0));

    // Watchman 1's turn: the vault has the root and every leaf is paid; nothing is signed or
    // paid twice.
    let report = watchmen[1].step(64).await.unwrap();
    assert_eq!(report.settled.len(), 1);
    assert!(!report.settled[0].submitted_root, "the vault had the root: nothing was signed");
    assert_eq!(report.settled[0].payout_transactions, 0);
    assert_eq!(setup.balance(EthAddress::from(recipient.0)).await.unwrap(), after);
    // Now that every watchman has replayed: a forged root for the same batches (paying someone
    // else) overlaps the range the vault holds and is refused by every one of them; no
    // signature exists and the vault keeps its funds.
    watchmen[2].step(64).await.unwrap();
    let refused =
        watchmen[2].tss().sign(vec![EthSettlement::request(&domain, 1, last, forged.root())]).await.unwrap_err();
    match refused {
        SessionError::NotEnoughSigners { excluded, .. } => {
            assert!(excluded.values().all(|e| format!("{e:?}").contains("overlap")), "{excluded:?}")
        }
        other => panic!("expected a refusal, got {other}"),
    }

    assert_eq!(setup.balance(vault_address).await.unwrap(), U256::from(600_000u64));

    // A halted watchman (an alarm, or its operator) signs nothing, even what its replay justifies.
    watchmen[0].book().halt("an alarm in this test".into());
    watchmen[2].book().halt("an alarm in this test".into());
    let honest = EthSettlement::request(&domain, 1, last, owed.eth.root());
    let halted = watchmen[1].tss().sign(vec![honest]).await.unwrap_err();
    match halted {
        SessionError::NotEnoughSigners { excluded, .. } => {
            // The halted ones say so; watchman 1 (not halted) refuses this range, which the vault
            // now holds, as an overlap.
            let reasons: Vec<String> = excluded.values().map(|why| format!("{why:?}")).collect();
            assert!(reasons.iter().any(|r| r.contains("signing is stopped")), "{excluded:?}");
            assert!(reasons.iter().all(|r| r.contains("signing is stopped") || r.contains("overlap")), "{excluded:?}");
        }
        other => panic!("expected the halted watchmen to refuse, got {other}"),
    }

    // With a guardian key, a watchman on duty answers an alarm by pausing the vault, once: its
    // turns run under the supervisor, as in the process.
    let (guardian, guardian_address) =
        chains::ethereum::signing_provider(&setup.anvil.url(), &Default::default(), contracts::ANVIL_KEY_0).unwrap();
    let sent_before = setup.provider.get_transaction_count(guardian_address).await.unwrap();
    let watch = confirmer::solvency::SolvencyWatch {
        eth_rpc: Some(setup.anvil.url()),
        btc: None,
        btc_depth: 1,
        tls: Default::default(),
    };
    let solvency =
        SolvencyGuard::new(watch, chains::ethereum::Confirmation::Depth(0), Default::default(), domain.vault).unwrap();
    let duty = OnDuty::new(watchmen.remove(0), solvency).with_guardian(Some(Guardian::new(
        guardian.clone(),
        domain.vault,
        Default::default(),
    )));
    // The chain before the pause, for a reorg that drops it (below).
    let before_pause: U256 = setup.provider.raw_request("evm_snapshot".into(), ()).await.unwrap();
    let on_duty = duty.watchman();
    let supervisor = Supervisor::new();
    let turns = supervisor.spawn(WATCHMAN_TASK, duty, Schedule::every(Duration::from_millis(50)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !vault.paused().call().await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "never paused: {:?}", supervisor.health());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ten turns more: the vault is not paused again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = setup.provider.get_transaction_count(guardian_address).await.unwrap() - sent_before;
    assert_eq!(sent, 1, "one pause transaction");
    // A reorg drops the pause (anvil returns to the chain before it): the watchman still looks,
    // the pause being far from 64 blocks deep, and pauses the vault again.
    let reverted: bool = setup.provider.raw_request("evm_revert".into(), (before_pause,)).await.unwrap();
    assert!(reverted && !vault.paused().call().await.unwrap(), "the reorg dropped the pause");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !vault.paused().call().await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped pause was never sent again: {:?}",
            supervisor.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Running: a turn may have failed once meanwhile (the revert took the chain below the block
    // its solvency watch had read, which is "not there yet", retried), but the task goes on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = supervisor.health();
        assert_eq!(health.len(), 1);
        if (health[0].task.as_str(), health[0].state) == (WATCHMAN_TASK, TaskState::Running) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watchman's task never ran again: {health:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The clean stop: between turns, then no more.
    let mut stopped = on_duty.lock().await;
    turns.abort();
    stopped.finish_snapshots().await.unwrap();
    assert!(
        chains::ethereum::pause_vault(&guardian, domain.vault, &Default::default()).await.unwrap().is_none(),
        "paused already"
    );
}

/// Sets the base fee of the next block and mines it (anvil).
async fn set_base_fee(setup: &Setup, wei: u128) {
    let _: serde_json::Value =
        setup.provider.raw_request("anvil_setNextBlockBaseFeePerGas".into(), (U256::from(wei),)).await.unwrap();
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (1u64,)).await.unwrap();
}
