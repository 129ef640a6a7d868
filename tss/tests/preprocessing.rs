#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Commitments kept across sessions (FROST preprocessing): a session with kept commitments needs
//! one round; no nonce signs twice whatever a coordinator asks; a restarted signer's old
//! commitments are dropped; cheaters and liars are still worked around.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Cluster, Member, request, verify_bip340};
use libp2p::PeerId;
use tss::messages::{CommitmentSet, Encoded, Request, Response};
use tss::roast::Exclusion;
use tss::signer::{InboundHandler, Signer};
use tss::{ApproveAll, GroupKey, KeyShare, SessionId, frost};

/// Counts the `Commit` requests this watchman answers.
struct CountCommits(Arc<Signer>, Arc<AtomicUsize>);

impl InboundHandler for CountCommits {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        if matches!(request, Request::Commit { .. }) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
        self.0.handle(from, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_after_the_first_needs_no_commitment_round() {
    let counters: Vec<Arc<AtomicUsize>> = (0..5).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let counted = counters.clone();
    let cluster = Cluster::start(5, 3, move |i| {
        let counter = counted[i].clone();
        Member { wrap: Some(Box::new(move |s| Arc::new(CountCommits(s, counter)))), ..Member::honest() }
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let commits = || counters.iter().map(|c| c.load(Ordering::SeqCst)).sum::<usize>();

    let first = cluster.node(0).sign(vec![request([1; 32])]).await.unwrap();
    assert!(verify_bip340(&first.signatures[0].signature, &[1; 32], &group.output_key));
    assert_eq!(commits(), 5, "the first session asks every watchman once");
    assert!(cluster.node(0).pooled_commitment_sets() >= 3, "its unused and fresh commitments are kept");

    for m in 2..6u8 {
        let outcome = cluster.node(0).sign(vec![request([m; 32])]).await.unwrap();
        assert!(verify_bip340(&outcome.signatures[0].signature, &[m; 32], &group.output_key));
        assert_eq!(outcome.attempts, 1);
    }
    assert_eq!(commits(), 5, "later sessions started from kept commitments: one round each");

    // A session of another size has no kept sets of its size: it asks, and still signs.
    let two = cluster.node(0).sign(vec![request([7; 32]), request([8; 32])]).await.unwrap();
    assert!(verify_bip340(&two.signatures[1].signature, &[8; 32], &group.output_key));
    assert_eq!(commits(), 10);
}

/// Dealer shares for two signers of a 2-of-3 key: one to attack, one to co-sign.
fn dealer_pair() -> (KeyShare, KeyShare) {
    let (secrets, public) =
        frost::keys::generate_with_dealer(3, 2, frost::keys::IdentifierList::Default, rand_core::OsRng).unwrap();
    let mut shares = secrets.into_values().map(|secret| KeyShare {
        key_package: frost::keys::KeyPackage::try_from(secret).unwrap(),
        public: public.clone(),
    });
    (shares.next().unwrap(), shares.next().unwrap())
}

/// A signing package for `message` with the victim's commitments and a co-signer's fresh ones.
fn package(victim: &KeyShare, theirs: frost::round1::SigningCommitments, other: &KeyShare, message: &[u8]) -> Encoded {
    let (_, mine) = frost::round1::commit(other.key_package.signing_share(), &mut rand_core::OsRng);
    let commitments = BTreeMap::from([(victim.identifier(), theirs), (other.identifier(), mine)]);
    Encoded(tss::package::encode(&frost::SigningPackage::new(commitments, message)).unwrap())
}

fn sign_request(set: &CommitmentSet, message: [u8; 32], package: Encoded) -> Request {
    Request::Sign {
        session: SessionId::random(),
        epoch: set.epoch,
        nonce_id: set.nonce_id,
        requests: vec![request(message)],
        packages: vec![package],
    }
}

fn commit(signer: &Signer, coordinator: PeerId) -> CommitmentSet {
    match signer.handle(coordinator, Request::Commit { session: SessionId::random(), count: 1 }) {
        Response::Commitments(set) => set,
        other => panic!("no commitments: {other:?}"),
    }
}

#[test]
fn a_coordinator_asking_twice_with_one_nonce_gets_one_share_and_nothing_else() {
    let (victim_share, other) = dealer_pair();
    let signer = Signer::new(Some(victim_share.clone()), Arc::new(ApproveAll));
    let leader = PeerId::random();
    let set = commit(&signer, leader);

    // Another peer cannot spend the leader's nonces, nor burn them.
    let thief = sign_request(&set, [1; 32], package(&victim_share, set.commitments[0], &other, &[1; 32]));
    assert!(matches!(signer.handle(PeerId::random(), thief), Response::StaleNonces { .. }));

    // A wrong epoch (an earlier process's id that happens to match) names nothing here.
    let mut old = set.clone();
    old.epoch ^= 1;
    let stale = sign_request(&old, [1; 32], package(&victim_share, set.commitments[0], &other, &[1; 32]));
    assert!(matches!(signer.handle(leader, stale), Response::StaleNonces { epoch } if epoch == set.epoch));

    let first = sign_request(&set, [1; 32], package(&victim_share, set.commitments[0], &other, &[1; 32]));
    assert!(matches!(signer.handle(leader, first), Response::Shares { ref shares, .. } if shares.len() == 1));

    // The same nonce for another message: refused, no share. (Two shares with one nonce for two
    // messages would give away the signer's share of the key.)
    let second = sign_request(&set, [2; 32], package(&victim_share, set.commitments[0], &other, &[2; 32]));
    let answer = signer.handle(leader, second);
    assert!(matches!(answer, Response::StaleNonces { .. }), "{answer:?}");
    // And for the same message again, too.
    let again = sign_request(&set, [1; 32], package(&victim_share, set.commitments[0], &other, &[1; 32]));
    assert!(matches!(signer.handle(leader, again), Response::StaleNonces { .. }));
    assert_eq!(signer.nonces_held_by(&leader), 1, "only the fresh set the share came with is held");
}

#[test]
fn a_package_lying_about_the_signers_commitment_signs_nothing_and_uses_the_nonces_up() {
    let (victim_share, other) = dealer_pair();
    let signer = Signer::new(Some(victim_share.clone()), Arc::new(ApproveAll));
    let leader = PeerId::random();
    let set = commit(&signer, leader);
    let (_, forged) = frost::round1::commit(victim_share.key_package.signing_share(), &mut rand_core::OsRng);
    let lying = sign_request(&set, [3; 32], package(&victim_share, forged, &other, &[3; 32]));
    let answer = signer.handle(leader, lying);
    assert!(matches!(answer, Response::Failed { .. }), "{answer:?}");
    let honest = sign_request(&set, [3; 32], package(&victim_share, set.commitments[0], &other, &[3; 32]));
    assert!(matches!(signer.handle(leader, honest), Response::StaleNonces { .. }), "the nonces were used up");
}

#[test]
fn a_new_share_is_a_new_epoch_and_the_old_commitments_name_nothing() {
    let (victim_share, other) = dealer_pair();
    let signer = Signer::new(Some(victim_share.clone()), Arc::new(ApproveAll));
    let leader = PeerId::random();
    let set = commit(&signer, leader);
    signer.set_share(victim_share.clone());
    assert_ne!(signer.epoch(), set.epoch);
    let old = sign_request(&set, [4; 32], package(&victim_share, set.commitments[0], &other, &[4; 32]));
    assert!(matches!(signer.handle(leader, old), Response::StaleNonces { epoch } if epoch == signer.epoch()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_signers_kept_commitments_are_dropped_and_the_session_signs() {
    // 3-of-3: every signature needs watchman 2, so the session must get past its stale sets.
    let mut cluster = Cluster::start(3, 3, |_| Member::honest()).await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let first = cluster.node(0).sign(vec![request([1; 32])]).await.unwrap();
    assert_eq!(first.attempts, 1);
    assert_eq!(cluster.node(0).pooled_commitment_sets(), 3, "one fresh set of each signer kept");

    cluster.restart(2, shares[2].clone()).await;
    cluster.wait_connected(0).await;
    let after = cluster.node(0).sign(vec![request([2; 32])]).await.unwrap();
    assert!(verify_bip340(&after.signatures[0].signature, &[2; 32], &group.output_key));
    assert_eq!(after.attempts, 2, "the kept set of the restarted signer failed once, then it was asked afresh");
    assert!(after.excluded.is_empty(), "a restart is no fault: {:?}", after.excluded);

    let next = cluster.node(0).sign(vec![request([3; 32])]).await.unwrap();
    assert_eq!(next.attempts, 1, "the new epoch's set was kept");
    assert!(verify_bip340(&next.signatures[0].signature, &[3; 32], &group.output_key));
}

/// Answers like the honest signer, but replaces its shares with garbage.
struct InvalidShares(Arc<Signer>);

impl InboundHandler for InvalidShares {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match self.0.handle(from, request) {
            Response::Shares { shares, next } => {
                let bogus = frost::round2::SignatureShare::deserialize(&[1u8; 32]).unwrap();
                Response::Shares { shares: vec![bogus; shares.len()], next }
            }
            other => other,
        }
    }
}

/// Commits honestly, then claims every `Sign` names nonces it does not have.
struct ClaimsStale(Arc<Signer>);

impl InboundHandler for ClaimsStale {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match request {
            Request::Sign { .. } => Response::StaleNonces { epoch: self.0.epoch() },
            other => self.0.handle(from, other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheater_and_a_stale_liar_with_kept_commitments_are_replaced_session_after_session() {
    // 3-of-5: 1 sends invalid shares, 2 always claims stale nonces. Every session signs, and the
    // cheater is named in each session it took part in.
    let cluster = Cluster::start(5, 3, |i| match i {
        1 => Member { wrap: Some(Box::new(|s| Arc::new(InvalidShares(s)))), ..Member::honest() },
        2 => Member { wrap: Some(Box::new(|s| Arc::new(ClaimsStale(s)))), ..Member::honest() },
        _ => Member::honest(),
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let (cheater, liar) = (cluster.entries[1].peer_id, cluster.entries[2].peer_id);
    for m in 1..5u8 {
        let outcome = cluster.node(0).sign(vec![request([m; 32])]).await.unwrap();
        assert!(verify_bip340(&outcome.signatures[0].signature, &[m; 32], &group.output_key));
        assert!(!outcome.signers.contains(&cheater) && !outcome.signers.contains(&liar), "{:?}", outcome.signers);
        if let Some(why) = outcome.excluded.get(&cheater) {
            assert_eq!(why, &Exclusion::InvalidShare);
        }
    }
}

/// While switched on, answers every `Sign` late, in the order they arrive: the k-th waits k
/// gaps, so an attempt's shares come in one gap apart. Counts `Commit` requests too.
struct StaggeredShares {
    signer: Arc<Signer>,
    on: Arc<AtomicBool>,
    arrived: Arc<AtomicUsize>,
    commits: Arc<AtomicUsize>,
}

/// Between two shares of the slow attempt: well inside the retry interval below.
const SHARE_GAP: Duration = Duration::from_millis(450);

impl InboundHandler for StaggeredShares {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        match request {
            Request::Commit { .. } => {
                self.commits.fetch_add(1, Ordering::SeqCst);
            }
            Request::Sign { .. } if self.on.load(Ordering::SeqCst) => {
                let rank = self.arrived.fetch_add(1, Ordering::SeqCst);
                // Bounded: at most a few requests arrive while it is switched on.
                let gaps = u32::try_from(rank + 1).unwrap_or(u32::MAX).min(10);
                std::thread::sleep(SHARE_GAP * gaps);
            }
            _ => {}
        }
        self.signer.handle(from, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_attempt_whose_shares_keep_coming_gets_no_twin_and_leaves_the_pool_full() {
    // 3-of-5, retry 1 s: the slow attempt's shares come 0.45 s apart (progress within every
    // interval) and its last one after 1.35 s (longer than one interval, shorter than four).
    let on = Arc::new(AtomicBool::new(false));
    let arrived = Arc::new(AtomicUsize::new(0));
    let commits = Arc::new(AtomicUsize::new(0));
    let (on_, arrived_, commits_) = (on.clone(), arrived.clone(), commits.clone());
    let cluster = Cluster::start_tuned(
        5,
        3,
        move |_| {
            let (on, arrived, commits) = (on_.clone(), arrived_.clone(), commits_.clone());
            Member {
                wrap: Some(Box::new(move |signer| Arc::new(StaggeredShares { signer, on, arrived, commits }))),
                ..Member::honest()
            }
        },
        |config| config.retry = Duration::from_secs(1),
    )
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();

    let warm = cluster.node(0).sign(vec![request([1; 32])]).await.unwrap();
    assert!(verify_bip340(&warm.signatures[0].signature, &[1; 32], &group.output_key));
    let kept = cluster.node(0).pooled_commitment_sets();
    assert!(kept >= 3, "the first session kept a set of each of its signers, and any unused: {kept}");

    on.store(true, Ordering::SeqCst);
    let slow = cluster.node(0).sign(vec![request([2; 32])]).await.unwrap();
    on.store(false, Ordering::SeqCst);
    assert!(verify_bip340(&slow.signatures[0].signature, &[2; 32], &group.output_key));
    assert_eq!(slow.attempts, 1, "an attempt that kept making progress got no twin");
    assert_eq!(arrived.load(Ordering::SeqCst), 3, "only the one attempt's three signers were asked to sign");
    assert_eq!(
        cluster.node(0).pooled_commitment_sets(),
        kept,
        "every kept set the session used came back fresh; none was spent on a twin"
    );

    let before = commits.load(Ordering::SeqCst);
    let next = cluster.node(0).sign(vec![request([3; 32])]).await.unwrap();
    assert!(verify_bip340(&next.signatures[0].signature, &[3; 32], &group.output_key));
    assert_eq!(next.attempts, 1);
    assert_eq!(commits.load(Ordering::SeqCst), before, "the next session started from kept sets: no commitment round");
}
