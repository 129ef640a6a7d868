#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! DKG and robust signing among real libp2p nodes on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bitcoin::hashes::Hash;
use common::{Cluster, Member, request, verify_bip340};
use libp2p::PeerId;
use tss::messages::{Request, Response};
use tss::roast::Exclusion;
use tss::signer::{InboundHandler, Signer};
use tss::{GroupKey, KeyPath, RefuseAll, SessionError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkg_3_of_5_then_signatures_verify_as_bip340_and_as_a_taproot_key_path_spend() {
    let cluster = Cluster::start(5, 3, |_| Member::honest()).await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    for share in &shares {
        assert_eq!(GroupKey::of(&share.public).unwrap(), group, "every watchman has the same group key");
    }
    assert_eq!((group.threshold, group.signers), (3, 5));

    // A plain message under the vault key: libsecp256k1 accepts it.
    let message = [7u8; 32];
    let outcome = cluster.node(2).sign(vec![request(message)]).await.unwrap();
    let signed = &outcome.signatures[0];
    assert_eq!(signed.key, group.output_key);
    assert!(verify_bip340(&signed.signature, &message, &group.output_key));
    assert_eq!(outcome.signers.len(), 3);

    // A Taproot key-path spend of an output paying the group's address.
    let address = group.taproot_address(bitcoin::Network::Regtest).unwrap();
    let prevout = bitcoin::TxOut { value: bitcoin::Amount::from_sat(50_000), script_pubkey: address.script_pubkey() };
    let spend = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array([9; 32]), vout: 0 },
            ..Default::default()
        }],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(49_000),
            script_pubkey: address.script_pubkey(),
        }],
    };
    let sighash = bitcoin::sighash::SighashCache::new(&spend)
        .taproot_key_spend_signature_hash(
            0,
            &bitcoin::sighash::Prevouts::All(std::slice::from_ref(&prevout)),
            bitcoin::TapSighashType::Default,
        )
        .unwrap();
    let outcome = cluster.node(0).sign(vec![request(sighash.to_byte_array())]).await.unwrap();
    let signature = bitcoin::secp256k1::schnorr::Signature::from_slice(&outcome.signatures[0].signature).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let output_key = match address.address_type() {
        Some(bitcoin::AddressType::P2tr) => {
            bitcoin::secp256k1::XOnlyPublicKey::from_slice(&address.script_pubkey().as_bytes()[2..34]).unwrap()
        }
        other => panic!("not a Taproot address: {other:?}"),
    };
    secp.verify_schnorr(&signature, &bitcoin::secp256k1::Message::from(sighash), &output_key)
        .expect("the FROST signature spends the vault output by its key path");

    // A per-account key: the group key tweaked with the account's root is exactly what the
    // `bitcoin` crate derives for a Taproot output with that Merkle root.
    let root = [0x42u8; 32];
    let mut account_request = request([3u8; 32]);
    account_request.key_path = KeyPath::Account { merkle_root: root };
    let outcome = cluster.node(4).sign(vec![account_request]).await.unwrap();
    let internal = bitcoin::secp256k1::XOnlyPublicKey::from_slice(&group.internal_key).unwrap();
    let expected = bitcoin::Address::p2tr(
        &bitcoin::secp256k1::Secp256k1::verification_only(),
        internal,
        Some(bitcoin::TapNodeHash::from_byte_array(root)),
        bitcoin::Network::Regtest,
    );
    assert_eq!(&expected.script_pubkey().as_bytes()[2..34], outcome.signatures[0].key.as_slice());
    assert!(verify_bip340(&outcome.signatures[0].signature, &[3u8; 32], &outcome.signatures[0].key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_n_minus_t_signers_offline_it_still_signs() {
    let mut cluster = Cluster::start(5, 3, |_| Member::honest()).await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    cluster.stop(1);
    cluster.stop(3);
    let messages: Vec<_> = (0..4u8).map(|i| request([i; 32])).collect();
    let outcome = cluster.node(0).sign(messages).await.unwrap();
    assert_eq!(outcome.signatures.len(), 4);
    for (i, signed) in outcome.signatures.iter().enumerate() {
        assert!(verify_bip340(&signed.signature, &[i as u8; 32], &group.output_key));
    }
    let down = [cluster.entries[1].peer_id, cluster.entries[3].peer_id];
    assert!(outcome.signers.iter().all(|s| !down.contains(s)));
}

/// Answers like the honest signer, but replaces its shares with garbage.
struct InvalidShares(Arc<Signer>);

impl InboundHandler for InvalidShares {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match self.0.handle(from, request) {
            Response::Shares { shares, next } => {
                let bogus = tss::frost::round2::SignatureShare::deserialize(&[1u8; 32]).unwrap();
                Response::Shares { shares: vec![bogus; shares.len()], next }
            }
            other => other,
        }
    }
}

/// Honest, but slow to offer commitments.
struct Slow(Arc<Signer>);

impl InboundHandler for Slow {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        if matches!(request, Request::Commit { .. }) {
            std::thread::sleep(Duration::from_millis(1500));
        }
        self.0.handle(from, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_sending_invalid_shares_is_named_and_excluded_and_the_signature_completes() {
    // Watchman 1 lies; watchman 3 is honest but slow, so the first attempt is {0, 1, 2} and must
    // fail on 1's share; watchman 4 is down.
    let mut cluster = Cluster::start(5, 3, |i| match i {
        1 => Member { wrap: Some(Box::new(|s| Arc::new(InvalidShares(s)))), ..Member::honest() },
        3 => Member { wrap: Some(Box::new(|s| Arc::new(Slow(s)))), ..Member::honest() },
        _ => Member::honest(),
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    cluster.stop(4);
    let outcome = cluster.node(0).sign(vec![request([5; 32]), request([6; 32])]).await.unwrap();
    let liar = cluster.entries[1].peer_id;
    assert_eq!(outcome.excluded.get(&liar), Some(&Exclusion::InvalidShare), "{:?}", outcome.excluded);
    assert!(!outcome.signers.contains(&liar));
    assert!(outcome.attempts >= 2);
    assert!(verify_bip340(&outcome.signatures[0].signature, &[5; 32], &group.output_key));
    assert!(verify_bip340(&outcome.signatures[1].signature, &[6; 32], &group.output_key));
}

/// Counts the shares that leave this node.
struct CountShares(Arc<Signer>, Arc<AtomicUsize>);

impl InboundHandler for CountShares {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        let response = self.0.handle(from, request);
        if matches!(response, Response::Shares { .. }) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        response
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_policy_releases_no_share_and_below_threshold_no_signature_exists() {
    let released: Vec<Arc<AtomicUsize>> = (0..5).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let counters = released.clone();
    // Watchmen 2, 3 and 4 refuse: only two approve, one fewer than the threshold.
    let cluster = Cluster::start(5, 3, move |i| {
        let counter = counters[i].clone();
        Member {
            policy: if i >= 2 { Arc::new(RefuseAll("not in my replay".into())) } else { Arc::new(tss::ApproveAll) },
            wrap: Some(Box::new(move |s| Arc::new(CountShares(s, counter)))),
            share: None,
        }
    })
    .await;
    cluster.dkg().await;
    let error = cluster.node(0).sign(vec![request([1; 32])]).await.unwrap_err();
    match error {
        SessionError::NotEnoughSigners { excluded, threshold: 3, .. } => {
            for i in 2..5 {
                assert_eq!(
                    excluded.get(&cluster.entries[i].peer_id),
                    Some(&Exclusion::Refused { reason: "not in my replay".into() })
                );
            }
        }
        other => panic!("expected too few signers, got {other}"),
    }
    for counter in &released[2..] {
        assert_eq!(counter.load(Ordering::SeqCst), 0, "a refusing watchman released a share");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_above_the_threshold_is_named_and_the_others_sign() {
    // Watchman 4 refuses and answers fast; 2 and 3 are slow, so the first attempt is {0, 1, 4}.
    let cluster = Cluster::start(5, 3, |i| match i {
        4 => Member { policy: Arc::new(RefuseAll("batch 1 is not hard-final here".into())), ..Member::honest() },
        2 | 3 => Member { wrap: Some(Box::new(|s| Arc::new(Slow(s)))), ..Member::honest() },
        _ => Member::honest(),
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let refuser = cluster.entries[4].peer_id;
    let outcome = cluster.node(0).sign(vec![request([8; 32])]).await.unwrap();
    assert_eq!(
        outcome.excluded.get(&refuser),
        Some(&Exclusion::Refused { reason: "batch 1 is not hard-final here".into() })
    );
    assert!(!outcome.signers.contains(&refuser));
    assert!(verify_bip340(&outcome.signatures[0].signature, &[8; 32], &group.output_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cheaters_in_one_attempt_are_both_named_by_its_one_failed_aggregation() {
    // 1 and 2 lie; 3 and 4 are honest but slow, so the first attempt is {0, 1, 2}. Shares are
    // verified only when the aggregate signature fails, and then all of them: both liars are
    // named by that one failure, and the second attempt, {0, 3, 4}, signs.
    let cluster = Cluster::start(5, 3, |i| match i {
        1 | 2 => Member { wrap: Some(Box::new(|s| Arc::new(InvalidShares(s)))), ..Member::honest() },
        3 | 4 => Member { wrap: Some(Box::new(|s| Arc::new(Slow(s)))), ..Member::honest() },
        _ => Member::honest(),
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let outcome = cluster.node(0).sign(vec![request([4; 32])]).await.unwrap();
    for liar in [1, 2] {
        let peer = cluster.entries[liar].peer_id;
        assert_eq!(outcome.excluded.get(&peer), Some(&Exclusion::InvalidShare), "{:?}", outcome.excluded);
        assert!(!outcome.signers.contains(&peer));
    }
    assert_eq!(outcome.attempts, 2, "one failed attempt named both liars");
    assert!(verify_bip340(&outcome.signatures[0].signature, &[4; 32], &group.output_key));
}

/// Commits like the honest signer, then never answers a `Sign` until the test ends.
struct Stalls(Arc<Signer>, Arc<std::sync::atomic::AtomicBool>);

impl InboundHandler for Stalls {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        if matches!(request, Request::Sign { .. }) {
            // Bounded: the test releases it, or it gives up after two minutes.
            for _ in 0..12_000 {
                if self.1.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.0.handle(from, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_that_commits_and_then_stalls_gets_a_concurrent_attempt_and_the_session_signs() {
    // 1 stalls in its attempt; 3 and 4 are slow to commit, so the first attempt is {0, 1, 2}. A
    // request waits longer than the session here, so only a second attempt started beside the
    // stalled one (after the retry interval) can sign in time.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = released.clone();
    let cluster = Cluster::start_tuned(
        5,
        3,
        move |i| match i {
            1 => {
                let flag = flag.clone();
                Member { wrap: Some(Box::new(move |s| Arc::new(Stalls(s, flag)))), ..Member::honest() }
            }
            3 | 4 => Member { wrap: Some(Box::new(|s| Arc::new(Slow(s)))), ..Member::honest() },
            _ => Member::honest(),
        },
        |config| {
            config.mesh.request_timeout = Duration::from_secs(120);
            config.session_timeout = Duration::from_secs(30);
        },
    )
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let outcome = cluster.node(0).sign(vec![request([2; 32])]).await;
    released.store(true, Ordering::SeqCst);
    let outcome = outcome.unwrap();
    assert!(!outcome.signers.contains(&cluster.entries[1].peer_id), "the staller's attempt did not complete");
    assert!(outcome.excluded.is_empty(), "a staller is not a cheater: {:?}", outcome.excluded);
    assert!(outcome.attempts >= 2);
    assert!(verify_bip340(&outcome.signatures[0].signature, &[2; 32], &group.output_key));
}
