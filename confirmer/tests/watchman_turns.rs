//! One submission per root: two submitting watchmen take turns on the Ethereum chain's clock
//! (range `r` at block `h` is submitter `(r + h / 3) mod 2`'s). Range 0 is watchman 0's turn:
//! watchman 1 sends nothing for it, then finds it paid and moves on. Range 1 is watchman 1's
//! turn, and watchman 1 is dead (never stepped again): watchman 0 waits while the turn is
//! watchman 1's, then takes over in its own, submits and pays. Range 2: watchman 0's signing
//! session outlasts its turn (the co-signer's policy mines the turn's blocks while it decides),
//! so watchman 0 keeps the signature instead of sending it into the next holder's turn, and
//! sends it in its next turn without a new session. Every vault transaction in the run
//! succeeded: none reverted. On anvil, with a coordinator, three watchmen (2-of-3 over
//! libp2p) and the real vault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use bridge::AssetId;
use chains::ethereum::{Submitter, VaultReader};
use common::coordinator_api::{batch_of, vault_transactions, withdraw};
use common::eth_group::{EthGroup, watchman_follower};
use common::*;
use confirmer::watchman::{EthSettlement, RangeLimits, ReplayPolicy, SettlementBook, Turns, Watchman};
use tss::TssNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitters_take_turns_by_range_and_the_next_takes_over_from_a_dead_one() {
    let EthGroup { identities, shares, setup, vault_address, domain, params: p, dir, coordinator, user } =
        EthGroup::start().await;
    // Three withdrawals in three batches: range 0 will end at the first one's batch, range 1
    // at the second's, range 2 will hold the third.
    let recipients = [EthAddress::repeat_byte(0x91), EthAddress::repeat_byte(0x92), EthAddress::repeat_byte(0x93)];
    let first_batch =
        batch_of(&coordinator, withdraw(&coordinator, &p, &user, AssetId::Eth, 100, recipients[0], 0).await).await;
    let second_batch =
        batch_of(&coordinator, withdraw(&coordinator, &p, &user, AssetId::Eth, 200, recipients[1], 1).await).await;
    let third_batch =
        batch_of(&coordinator, withdraw(&coordinator, &p, &user, AssetId::Eth, 300, recipients[2], 2).await).await;
    assert!(first_batch < second_batch && second_batch < third_batch);
    coordinator.shutdown().await;

    // Watchmen 0 and 1 submit, taking turns of 3 blocks; watchman 2 only signs, and its
    // policy mines a turn's blocks while it decides once it is armed.
    const TIMEOUT_BLOCKS: u64 = 3;
    let turns = |me| Turns { me, submitters: 2, timeout_blocks: TIMEOUT_BLOCKS };
    let mut cosigner: Option<Arc<SlowCosigner>> = None;
    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let follower = watchman_follower(&dir.path().join("da"), dir.path(), i, &p, &setup.anvil.url()).await;
        let book = SettlementBook::default();
        let replay: Arc<dyn tss::SigningPolicy> = Arc::new(ReplayPolicy::new(book.clone(), Some(domain)));
        let policy: Arc<dyn tss::SigningPolicy> = if i == 2 {
            let slow = Arc::new(SlowCosigner {
                anvil: setup.anvil.url(),
                blocks: TIMEOUT_BLOCKS,
                armed: AtomicBool::new(false),
                approvals: AtomicU64::new(0),
                inner: replay,
            });
            cosigner = Some(slow.clone());
            slow
        } else {
            replay
        };
        let node = TssNode::start(tss_config(identity, &running, Some(shares[i].clone()), policy)).await.unwrap();
        let eth = (i < 2).then(|| {
            let submitter = Submitter::new(setup.provider.clone(), vault_address, setup.deployer);
            EthSettlement::new(book.clone(), domain, submitter)
                .with_limits(RangeLimits { window: Duration::ZERO, ..RangeLimits::default() })
                .with_turns(turns(i as u64))
        });
        let reader = VaultReader::new(setup.provider.clone(), vault_address);
        watchmen.push(Watchman::new(follower, book, node, eth).with_vault_reader(reader));
    }
    let reader = VaultReader::new(setup.provider.clone(), vault_address);

    let cosigner = cosigner.unwrap();
    let mine_to = async |turn: &dyn Fn(u64) -> bool| {
        loop {
            let head = setup.provider.get_block_number().await.unwrap();
            if turn(head) {
                return head;
            }
            let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (1,)).await.unwrap();
        }
    };

    // Everyone replays up to the first withdrawal's batch only.
    for w in watchmen.iter_mut() {
        let report = w.step(first_batch as usize).await.unwrap();
        assert_eq!(report.hard_final, first_batch, "{:?}", w.follower().status());
    }
    // Range 0 is watchman 0's turn (from its first block): watchman 1 sends nothing for it ...
    mine_to(&|head| turns(0).may_act(0, head) && head % TIMEOUT_BLOCKS == 0).await;
    for _ in 0..2 {
        let report = watchmen[1].step(0).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    }
    assert_eq!(reader.progress().await.unwrap().range_count, 0, "not watchman 1's turn");
    // ... watchman 0 signs (with 2), submits and pays it ...
    let report = watchmen[0].step(0).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!((report.settled[0].range, report.settled[0].first, report.settled[0].last), (0, 1, first_batch));
    assert!(report.settled[0].submitted_root);
    assert_eq!(setup.balance(recipients[0]).await.unwrap(), U256::from(100));
    // ... and watchman 1 finds it paid and sends nothing.
    let before = setup.provider.get_transaction_count(setup.deployer).await.unwrap();
    let report = watchmen[1].step(0).await.unwrap();
    assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    assert_eq!(setup.provider.get_transaction_count(setup.deployer).await.unwrap(), before);

    // The second withdrawal becomes hard-final. Watchman 1 is dead from now on: it is never
    // stepped again. Range 1 is its turn first.
    for i in [0, 2] {
        watchmen[i].step((second_batch - first_batch) as usize).await.unwrap();
        assert_eq!(watchmen[i].book().hard_final(), second_batch);
    }
    mine_to(&|head| turns(1).may_act(1, head) && head % TIMEOUT_BLOCKS == 0).await;
    // Watchman 0 waits while the turn is watchman 1's.
    for _ in 0..2 {
        let report = watchmen[0].step(0).await.unwrap();
        assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
        assert_eq!(reader.progress().await.unwrap().range_count, 1, "waiting for watchman 1's turn");
    }
    // The turn passes to watchman 0 (anvil mines on demand): it takes over.
    mine_to(&|head| turns(0).may_act(1, head)).await;
    let report = watchmen[0].step(0).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!(
        (report.settled[0].range, report.settled[0].first, report.settled[0].last),
        (1, first_batch + 1, second_batch)
    );
    assert!(report.settled[0].submitted_root, "watchman 0 took over");
    assert_eq!(setup.balance(recipients[1]).await.unwrap(), U256::from(200));

    // The third withdrawal becomes hard-final. In watchman 0's turn for range 2 its session
    // outlasts the turn: the co-signer's policy mines the turn's blocks while it decides.
    for i in [0, 2] {
        watchmen[i].step(64).await.unwrap();
        assert!(watchmen[i].book().hard_final() >= third_batch);
    }
    mine_to(&|head| turns(0).may_act(2, head) && head % TIMEOUT_BLOCKS == 0).await;
    cosigner.armed.store(true, Ordering::SeqCst);
    let before = setup.provider.get_transaction_count(setup.deployer).await.unwrap();
    let report = watchmen[0].step(0).await.unwrap();
    assert!(!cosigner.armed.load(Ordering::SeqCst), "the co-signer was asked to sign");
    assert!(report.settled.is_empty() && report.settle_error.is_none(), "{report:?}");
    assert_eq!(reader.progress().await.unwrap().range_count, 2, "a root signed after its turn is not sent");
    assert_eq!(setup.provider.get_transaction_count(setup.deployer).await.unwrap(), before);
    // In its next turn watchman 0 sends the root it kept, without a new session.
    mine_to(&|head| turns(0).may_act(2, head)).await;
    let approvals = cosigner.approvals.load(Ordering::SeqCst);
    let report = watchmen[0].step(0).await.unwrap();
    assert_eq!(report.settle_error, None);
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert_eq!((report.settled[0].range, report.settled[0].first), (2, second_batch + 1));
    assert!(report.settled[0].last >= third_batch && report.settled[0].submitted_root);
    assert_eq!(setup.balance(recipients[2]).await.unwrap(), U256::from(300));
    assert_eq!(cosigner.approvals.load(Ordering::SeqCst), approvals, "the kept signature was sent without a session");

    // Not one vault transaction reverted: three roots, each sent once with its payouts.
    let outcomes = vault_transactions(&setup, vault_address).await;
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
    let settlement_calls = outcomes.len() - 1; // the deposit
    assert_eq!(settlement_calls, 3, "{outcomes:?}");
}

/// A co-signer that decides as `inner` does, and once armed, mines `blocks` blocks on anvil
/// before its first approval: a signing session that outlasts its turn, on cue.
struct SlowCosigner {
    anvil: String,
    blocks: u64,
    armed: AtomicBool,
    approvals: AtomicU64,
    inner: Arc<dyn tss::SigningPolicy>,
}

impl tss::SigningPolicy for SlowCosigner {
    fn decide(&self, request: &tss::SigningRequest) -> tss::Decision {
        let decision = self.inner.decide(request);
        if decision == tss::Decision::Approve {
            self.approvals.fetch_add(1, Ordering::SeqCst);
            if self.armed.swap(false, Ordering::SeqCst) {
                anvil_mine(&self.anvil, self.blocks);
            }
        }
        decision
    }
}

/// `anvil_mine`, blocking (a policy decides synchronously): one HTTP/1.1 request on its own
/// connection.
fn anvil_mine(url: &str, blocks: u64) {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"anvil_mine","params":[{blocks}]}}"#);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "anvil_mine: {answer}");
}
