#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The signing session's state machine on its own: no mesh and no clock. The test hands the real
//! signers' answers in and moves the time itself, so each ROAST rule is shown at the exact
//! moment it acts.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{request, verify_bip340};
use libp2p::PeerId;
use tss::messages::{Overload, Request, Response};
use tss::roast::{Effect, Exclusion, Progress, RoastSession, SessionOutcome, Ticket};
use tss::signer::{InboundHandler, Signer};
use tss::{ApproveAll, GroupKey, KeyShare, SessionError, SessionId, frost};

const TIMEOUT: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

/// How a signer behaves towards the session.
#[derive(Clone, Copy, PartialEq)]
enum Conduct {
    Answers,
    /// Never answers anything.
    Silent,
    /// Answers `Commit`, never `Sign`.
    StallsAfterCommit,
    /// Answers everything "over my limit for you".
    Busy,
}

struct Group {
    shares: Vec<KeyShare>,
    peers: Vec<PeerId>,
    signers: Vec<Signer>,
}

impl Group {
    fn new(n: u16, t: u16) -> Self {
        let (secrets, public) =
            frost::keys::generate_with_dealer(n, t, frost::keys::IdentifierList::Default, rand_core::OsRng).unwrap();
        let shares: Vec<KeyShare> = secrets
            .into_values()
            .map(|secret| KeyShare { key_package: secret.try_into().unwrap(), public: public.clone() })
            .collect();
        let peers = shares.iter().map(|_| PeerId::random()).collect();
        let signers = shares.iter().map(|s| Signer::new(Some(s.clone()), Arc::new(ApproveAll))).collect();
        Group { shares, peers, signers }
    }

    /// A refresh of every share (FROST's trusted-dealer refresh: same group key, new shares),
    /// in the order of `shares`; nobody holds them until the test installs them.
    fn refreshed(&self) -> Vec<KeyShare> {
        let identifiers: Vec<frost::Identifier> = self.shares.iter().map(KeyShare::identifier).collect();
        let (zero_shares, public) = frost::keys::refresh::compute_refreshing_shares(
            self.shares[0].public.clone(),
            &identifiers,
            &mut rand_core::OsRng,
        )
        .unwrap();
        self.shares
            .iter()
            .zip(zero_shares)
            .map(|(old, zero)| {
                assert_eq!(zero.identifier(), &old.identifier());
                let key_package = frost::keys::refresh::refresh_share(zero, &old.key_package).unwrap();
                KeyShare { key_package, public: public.clone() }
            })
            .collect()
    }

    /// Signer `index` (and, for index 0, the session's coordinator) switches to `share`.
    fn switch(&mut self, index: usize, share: &KeyShare) {
        self.signers[index].set_share(share.clone());
        self.shares[index] = share.clone();
    }

    fn peers_by_identifier(&self) -> BTreeMap<frost::Identifier, PeerId> {
        self.shares.iter().zip(&self.peers).map(|(s, p)| (s.identifier(), *p)).collect()
    }

    fn index(&self, id: frost::Identifier) -> usize {
        self.shares.iter().position(|s| s.identifier() == id).unwrap()
    }

    fn session(&self, message: [u8; 32], kept: Vec<(frost::Identifier, tss::messages::CommitmentSet)>) -> RoastSession {
        RoastSession::new(
            &self.shares[0],
            SessionId([message[0]; 16]),
            vec![request(message)],
            kept,
            self.peers_by_identifier(),
            Duration::ZERO,
            TIMEOUT,
            RETRY,
        )
        .unwrap()
    }
}

/// What one run of a session did.
struct Run {
    result: Result<SessionOutcome, SessionError>,
    ended_at: Duration,
    /// Every question asked, in order: (signer, was it a `Sign`).
    asked: Vec<(usize, bool)>,
    machine: RoastSession,
}

/// Drives `machine` to its end: answers go in at once (in the order asked); when none is owed,
/// time jumps to the session's wake.
fn drive(group: &Group, mut machine: RoastSession, conduct: &[Conduct]) -> Run {
    let asker = group.peers[0];
    let mut now = Duration::ZERO;
    let mut asked = Vec::new();
    loop {
        let progress = machine.advance(now);
        let mut answers: Vec<(Ticket, Response)> = Vec::new();
        for effect in machine.take_effects() {
            let Effect::Ask { ticket, signer, request } = effect else { continue };
            let index = group.index(signer);
            let sign = matches!(request, Request::Sign { .. });
            asked.push((index, sign));
            let answers_it = match conduct[index] {
                Conduct::Answers => true,
                Conduct::Silent => false,
                Conduct::StallsAfterCommit => !sign,
                Conduct::Busy => {
                    answers.push((ticket, Response::Overloaded(Overload::QueueFull { queued: 8, max: 8 })));
                    false
                }
            };
            if answers_it {
                answers.push((ticket, group.signers[index].handle(asker, request)));
            }
        }
        match progress {
            Progress::Done(result) => return Run { result, ended_at: now, asked, machine },
            Progress::Waiting { wake } => {
                assert!(wake > now || !answers.is_empty(), "the session would spin at {now:?}");
                if answers.is_empty() {
                    now = wake;
                }
                for (ticket, response) in answers {
                    machine.answer(now, ticket, response);
                }
            }
        }
    }
}

fn group_key(group: &Group) -> [u8; 32] {
    GroupKey::of(&group.shares[0].public).unwrap().output_key
}

#[test]
fn an_honest_group_signs_in_one_attempt_at_once_and_the_signature_verifies_as_bip340() {
    let group = Group::new(3, 2);
    let run = drive(&group, group.session([1; 32], vec![]), &[Conduct::Answers; 3]);
    let outcome = run.result.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[1; 32], &group_key(&group)));
    assert_eq!(outcome.attempts, 1);
    assert_eq!(run.ended_at, Duration::ZERO, "no wait: every answer came at once");
    assert_eq!(run.asked.iter().filter(|(_, sign)| !sign).count(), 3, "a commitment round asks everyone");
    assert_eq!(run.asked.iter().filter(|(_, sign)| *sign).count(), 2, "an attempt asks t signers");
}

#[test]
fn a_member_that_stalls_gets_a_twin_attempt_one_retry_interval_later() {
    let group = Group::new(3, 2);
    // Signer 0 (the first ready) stalls in the first attempt; a twin with the others signs.
    let conduct = [Conduct::StallsAfterCommit, Conduct::Answers, Conduct::Answers];
    let run = drive(&group, group.session([2; 32], vec![]), &conduct);
    let outcome = run.result.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[2; 32], &group_key(&group)));
    assert_eq!(outcome.attempts, 2);
    assert_eq!(run.ended_at, RETRY, "the twin starts when the first attempt stalls, not before");
    assert!(!outcome.signers.contains(&group.peers[0]));
}

#[test]
fn a_timeout_names_busy_signers_apart_from_unresponsive_ones() {
    // Signer 1 answers every question "over my limit" until the deadline, signer 2 never
    // answers: the operator reading the error must be told which is which.
    let group = Group::new(3, 2);
    let conduct = [Conduct::Answers, Conduct::Busy, Conduct::Silent];
    let run = drive(&group, group.session([6; 32], vec![]), &conduct);
    match run.result {
        Err(SessionError::Timeout { unresponsive, busy, excluded }) => {
            assert_eq!(busy, vec![group.peers[1]], "the busy signer answered");
            assert_eq!(unresponsive, vec![group.peers[2]]);
            assert!(excluded.is_empty(), "being busy is not a fault: {excluded:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(run.ended_at, TIMEOUT);
}

#[test]
fn too_few_answering_signers_end_the_session_at_its_deadline() {
    let group = Group::new(3, 2);
    let conduct = [Conduct::Answers, Conduct::Silent, Conduct::Silent];
    let run = drive(&group, group.session([3; 32], vec![]), &conduct);
    match run.result {
        Err(SessionError::Timeout { unresponsive, .. }) => {
            let named: std::collections::BTreeSet<PeerId> = unresponsive.into_iter().collect();
            assert_eq!(named, [group.peers[1], group.peers[2]].into(), "the silent signers are named");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(run.ended_at, TIMEOUT);
}

#[test]
fn kept_commitments_make_the_next_session_one_round_and_a_replayed_sign_is_refused() {
    let group = Group::new(3, 2);
    let first = drive(&group, group.session([4; 32], vec![]), &[Conduct::Answers; 3]);
    first.result.unwrap();
    let kept = first.machine.into_unused();
    // The unused commitment and the two fresh ones each answered `Sign` brought.
    assert_eq!(kept.len(), 3);

    let second = drive(&group, group.session([5; 32], kept), &[Conduct::Answers; 3]);
    let outcome = second.result.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[5; 32], &group_key(&group)));
    assert!(second.asked.iter().all(|(_, sign)| *sign), "no commitment round: {:?}", second.asked);

    // A `Sign` naming a nonce already used is answered `StaleNonces`, never with a share.
    let mut machine = group.session([6; 32], vec![]);
    machine.advance(Duration::ZERO);
    let asker = group.peers[0];
    let mut tickets = Vec::new();
    for effect in machine.take_effects() {
        if let Effect::Ask { ticket, signer, request } = effect {
            tickets.push((ticket, group.signers[group.index(signer)].handle(asker, request)));
        }
    }
    for (ticket, response) in tickets {
        machine.answer(Duration::ZERO, ticket, response);
    }
    machine.advance(Duration::ZERO);
    let signs: Vec<(usize, Request)> = machine
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Ask { signer, request: request @ Request::Sign { .. }, .. } => Some((group.index(signer), request)),
            _ => None,
        })
        .collect();
    let (index, sign) = signs.first().cloned().unwrap();
    assert!(matches!(group.signers[index].handle(asker, sign.clone()), Response::Shares { .. }));
    assert!(matches!(group.signers[index].handle(asker, sign), Response::StaleNonces { .. }));
}

#[test]
fn signers_still_on_their_old_share_during_a_refresh_are_left_out_as_another_generation_not_as_cheaters() {
    let mut group = Group::new(4, 2);
    let before = group_key(&group);
    let new = group.refreshed();
    assert_ne!(new[0].generation().unwrap(), group.shares[0].generation().unwrap(), "a refresh is a new generation");
    // The coordinator and signer 1 have switched; 2 and 3 have not yet.
    group.switch(0, &new[0]);
    group.switch(1, &new[1]);
    let run = drive(&group, group.session([7; 32], vec![]), &[Conduct::Answers; 4]);
    let outcome = run.result.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[7; 32], &before), "the refresh keeps the group key");
    assert_eq!(outcome.attempts, 1, "no attempt is spent on a share that cannot sign with ours");
    let theirs = group.shares[2].generation().unwrap();
    for late in [2, 3] {
        assert_eq!(outcome.excluded.get(&group.peers[late]), Some(&Exclusion::OtherGeneration { theirs }));
    }
    assert!(!outcome.excluded.values().any(|why| *why == Exclusion::InvalidShare), "{:?}", outcome.excluded);

    // With only the coordinator switched, the session cannot sign; the error says why, and
    // names nobody a cheater.
    let mut lonely = Group::new(3, 2);
    let new = lonely.refreshed();
    lonely.switch(0, &new[0]);
    let run = drive(&lonely, lonely.session([8; 32], vec![]), &[Conduct::Answers; 3]);
    match run.result {
        Err(SessionError::NotEnoughSigners { remaining, excluded, .. }) => {
            assert_eq!(remaining, 1);
            assert_eq!(excluded.len(), 2);
            assert!(excluded.values().all(|why| matches!(why, Exclusion::OtherGeneration { .. })), "{excluded:?}");
        }
        other => panic!("expected too few signers of our generation, got {other:?}"),
    }
}

#[test]
fn commitments_kept_before_a_refresh_are_dropped_not_signed_with() {
    let mut group = Group::new(3, 2);
    let first = drive(&group, group.session([9; 32], vec![]), &[Conduct::Answers; 3]);
    first.result.unwrap();
    let kept = first.machine.into_unused();
    assert_eq!(kept.len(), 3);
    let new = group.refreshed();
    for (index, share) in new.iter().enumerate() {
        group.switch(index, share);
    }
    let second = drive(&group, group.session([10; 32], kept), &[Conduct::Answers; 3]);
    let outcome = second.result.unwrap();
    assert!(verify_bip340(&outcome.signatures[0].signature, &[10; 32], &group_key(&group)));
    assert_eq!(outcome.attempts, 1);
    assert!(!second.asked[0].1, "the old generation's kept sets are not used: a commitment round first");
    assert!(outcome.excluded.is_empty(), "{:?}", outcome.excluded);
}
