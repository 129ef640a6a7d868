//! Issue 23: a long-running watchman's settlement book holds what is still to be paid, not the
//! history. Three withdrawals in three batches, paid range by range by watchman 0 (watchmen 1
//! and 2 only sign, reading the vault's ranges): once each range is paid and 64 blocks deep,
//! its batches leave every watchman's book, the book's size drops to nothing, every recipient
//! is paid exactly once, no vault transaction reverts, and a range over the pruned batches is
//! refused by every watchman. A restart of the paying watchman resumes at its saved horizons and
//! walks no paid range again. On anvil, with a coordinator, three watchmen (2-of-3 over libp2p)
//! and the real vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::AssetId;
use chains::ethereum::{Submitter, VaultReader};
use common::coordinator_api::{batch_of, vault_transactions, withdraw};
use common::eth_group::{EthGroup, watchman_follower};
use common::*;
use confirmer::watchman::book::ETH_PRUNE_DEPTH_BLOCKS;
use confirmer::watchman::{EthSettlement, RangeLimits, ReplayPolicy, SettlementBook, Watchman};
use tss::{SessionError, TssNode};

/// Lets the watchmen see the coordinator's batches up to `last` (their DA directory is a copy
/// that grows, as a gateway's view does).
fn reveal(coordinator_da: &std::path::Path, seen: &std::path::Path, last: u64) {
    std::fs::create_dir_all(seen).unwrap();
    for number in 1..=last {
        let name = format!("batch-{number:020}.brbt");
        std::fs::copy(coordinator_da.join(&name), seen.join(&name)).unwrap();
    }
}

async fn mine(setup: &contracts::harness::Setup, blocks: u64) {
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_ranges_leave_every_watchmans_book_once_deep_and_nothing_is_paid_twice() {
    let EthGroup { identities, shares, setup, vault_address, domain, params: p, dir, coordinator, user } =
        EthGroup::start().await;
    // Three withdrawals in three batches: range 0 ends at the first one's batch, range 1 holds
    // the other two.
    let recipients = [EthAddress::repeat_byte(0x91), EthAddress::repeat_byte(0x92), EthAddress::repeat_byte(0x93)];
    let mut batches = Vec::new();
    for (nonce, recipient) in recipients.iter().enumerate() {
        let amount = 100 * (nonce as u128 + 1);
        let hash = withdraw(&coordinator, &p, &user, AssetId::Eth, amount, *recipient, nonce as u64).await;
        batches.push(batch_of(&coordinator, hash).await);
    }
    assert!(batches[0] < batches[1] && batches[1] < batches[2], "{batches:?}");
    coordinator.shutdown().await;
    let (published, seen) = (dir.path().join("da"), dir.path().join("seen"));
    reveal(&published, &seen, batches[0]);

    // Watchman 0 pays; 1 and 2 only sign, reading the vault's ranges for their policies.
    let running = entries(&identities);
    let start = async |i: usize| {
        let identity = &identities[i];
        let follower = watchman_follower(&seen, dir.path(), i, &p, &setup.anvil.url()).await;
        let book = SettlementBook::default();
        let policy = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let eth = (i == 0).then(|| {
            let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
            EthSettlement::new(book.clone(), domain, submitter)
                .with_limits(RangeLimits { window: Duration::ZERO, ..RangeLimits::default() })
        });
        let mut watchman = Watchman::new(follower, book, node, eth);
        if i > 0 {
            watchman = watchman.with_vault_reader(VaultReader::new(setup.provider.clone(), vault_address));
        }
        watchman
    };
    let mut watchmen = Vec::new();
    for i in 0..identities.len() {
        watchmen.push(start(i).await);
    }
    let reader = VaultReader::new(setup.provider.clone(), vault_address);

    // Everyone replays up to the first withdrawal's batch; watchman 0 signs (with 2, or 1),
    // submits and pays range 0.
    for w in watchmen[1..].iter_mut() {
        let report = w.step(batches[0] as usize).await.unwrap();
        assert_eq!(report.hard_final, batches[0], "{:?}", w.follower().status());
    }
    let report = watchmen[0].step(64).await.unwrap();
    assert_eq!(report.hard_final, batches[0]);
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!((report.settled[0].range, report.settled[0].last), (0, batches[0]));
    assert_eq!(setup.balance(recipients[0]).await.unwrap(), U256::from(100));
    // Paid, but not deep yet: every book still holds the batch.
    for w in watchmen.iter_mut() {
        w.step(64).await.unwrap();
        assert_eq!(w.book().len(), 1, "not {ETH_PRUNE_DEPTH_BLOCKS} blocks deep yet");
        assert_eq!(w.book().eth_pruned_through(), 0);
    }
    mine(&setup, ETH_PRUNE_DEPTH_BLOCKS - 1).await;
    for w in watchmen.iter_mut() {
        w.step(64).await.unwrap();
        assert_eq!(w.book().len(), 1, "one block short of the depth");
    }
    mine(&setup, 1).await;
    for (i, w) in watchmen.iter_mut().enumerate() {
        w.step(64).await.unwrap();
        assert_eq!(w.book().len(), 0, "watchman {i}: range 0 is paid and deep");
        assert_eq!(w.book().eth_pruned_through(), batches[0], "watchman {i}");
    }

    // The other two withdrawals (and whatever the coordinator sealed after them) become
    // hard-final; watchman 0 pays them in range 1.
    let newest = std::fs::read_dir(&published).unwrap().count() as u64;
    reveal(&published, &seen, newest);
    for w in watchmen[1..].iter_mut() {
        w.step(64).await.unwrap();
        assert!(w.book().hard_final() >= batches[2], "{batches:?} {:?}", w.follower().status());
        assert_eq!(w.book().len(), 2, "the two unpaid batches, and nothing older");
    }
    // Range by range (the plan may leave the newest batch to the next range) until the vault
    // covers them all.
    let mut settled = Vec::new();
    for _ in 0..10 {
        // The signers read the vault's ranges as they stand now.
        for w in watchmen[1..].iter_mut() {
            w.step(64).await.unwrap();
        }
        let report = watchmen[0].step(64).await.unwrap();
        assert_eq!(report.settle_error, None);
        settled.extend(report.settled);
        if reader.progress().await.unwrap().settled_through >= batches[2] {
            break;
        }
    }
    assert!(!settled.is_empty() && settled.iter().all(|r| r.submitted_root && r.first > batches[0]), "{settled:?}");
    let ranges = reader.progress().await.unwrap().range_count;
    assert_eq!(ranges, 1 + settled.len() as u64);
    for w in watchmen.iter_mut() {
        w.step(64).await.unwrap();
    }
    mine(&setup, ETH_PRUNE_DEPTH_BLOCKS).await;
    let settled_through = reader.progress().await.unwrap().settled_through;
    for (i, w) in watchmen.iter_mut().enumerate() {
        let report = w.step(64).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "watchman {i}: {report:?}");
        assert!(w.book().is_empty(), "watchman {i}: every range is paid and deep");
        assert_eq!(w.book().eth_pruned_through(), settled_through, "watchman {i}");
    }

    // A restart of the paying watchman on its database: the book resumes at the saved horizons
    // (not rebuilt from batch 1, where its first step would see nothing deep yet) and the paid
    // ranges are skipped by bisection, not walked; nothing is signed or sent again.
    let horizons = watchmen[0].book().horizons().unwrap();
    assert_eq!(horizons.eth_pruned_through, settled_through);
    drop(watchmen.remove(0));
    tokio::time::sleep(Duration::from_millis(300)).await; // its mesh listener closes
    watchmen.insert(0, start(0).await);
    let report = watchmen[0].step(64).await.unwrap();
    assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    assert_eq!(watchmen[0].book().eth_pruned_through(), settled_through, "resumed at the saved horizon");
    assert!(watchmen[0].book().is_empty());
    assert_eq!(watchmen[0].eth().unwrap().next_to_pay(), ranges, "every paid range skipped");
    assert!(watchmen[0].book().horizons().unwrap().settled_through >= settled_through);

    // Each recipient was paid exactly once; no vault transaction reverted.
    for (recipient, amount) in recipients.iter().zip([100u64, 200, 300]) {
        assert_eq!(setup.balance(*recipient).await.unwrap(), U256::from(amount));
    }
    assert_eq!(setup.balance(vault_address).await.unwrap(), U256::from(1_000_000u64 - 600));
    let outcomes = vault_transactions(&setup, vault_address).await;
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
    assert_eq!(
        outcomes.len() as u64,
        1 + ranges,
        "the deposit, and one root with its payouts per range (`submitAndWithdraw`): {outcomes:?}"
    );

    // A range over the pruned, paid batches is refused by every watchman: no signature.
    let tree = bridge::withdrawals::EthWithdrawalTree::new(Vec::new());
    let again = EthSettlement::request(&domain, 1, batches[0], tree.root());
    match watchmen[2].tss().sign(vec![again]).await.unwrap_err() {
        SessionError::NotEnoughSigners { excluded, .. } => {
            assert!(excluded.values().all(|e| format!("{e:?}").contains("saw paid")), "{excluded:?}")
        }
        other => panic!("expected a refusal, got {other}"),
    }
    for w in watchmen.iter_mut() {
        w.step(64).await.unwrap();
    }
    assert_eq!(setup.balance(vault_address).await.unwrap(), U256::from(1_000_000u64 - 600), "nothing more left");
}
