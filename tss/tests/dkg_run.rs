#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::result_large_err)]
//! The key ceremony's state machine on its own: each participant's steps are handed to the
//! others' real signers (their DKG inboxes) by the test, which also moves the time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tss::dkg::{Ceremony, DkgError, DkgRun, DkgStatus, Participants, RESEND_AFTER};
use tss::messages::{DkgStep, Encoded, Request, Response};
use tss::signer::{InboundHandler, Signer};
use tss::{ApproveAll, KeyShare, SessionId};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Ceremonies {
    peers: Vec<PeerId>,
    runs: Vec<Option<DkgRun>>,
    signers: Vec<Signer>,
    ended: Vec<Option<Result<KeyShare, DkgError>>>,
}

impl Ceremonies {
    fn new(n: usize, t: u16) -> Self {
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        let session = SessionId([9; 16]);
        let runs = peers
            .iter()
            .map(|me| {
                let others = peers.iter().copied().filter(|p| p != me);
                let roster = Participants::new(*me, others, t).unwrap();
                Some(
                    DkgRun::new(session, roster, Ceremony::Fresh, Duration::ZERO, TIMEOUT, &mut rand_core::OsRng)
                        .unwrap(),
                )
            })
            .collect();
        let signers = peers.iter().map(|_| Signer::new(None, Arc::new(ApproveAll))).collect();
        Ceremonies { peers, runs, signers, ended: (0..n).map(|_| None).collect() }
    }

    fn index(&self, peer: &PeerId) -> usize {
        self.peers.iter().position(|p| p == peer).unwrap()
    }

    /// Runs every ceremony to its end; `deliver` decides, per step (from, to, request), what
    /// arrives (`None`: it is lost). Returns the time it ended.
    fn run(&mut self, mut deliver: impl FnMut(usize, usize, Request) -> Option<Request>) -> Duration {
        let mut now = Duration::ZERO;
        while self.ended.iter().any(Option::is_none) {
            let mut moved = false;
            let mut wake = TIMEOUT;
            for index in 0..self.runs.len() {
                let Some(run) = self.runs[index].as_mut() else { continue };
                let status = run.advance(now, &self.signers[index].dkg_inbox());
                let sends = run.take_sends();
                for send in sends {
                    let to = self.index(&send.to);
                    let taken = match deliver(index, to, send.request) {
                        Some(request) => {
                            matches!(self.signers[to].handle(self.peers[index], request), Response::Ack)
                        }
                        None => false,
                    };
                    if let Some(run) = self.runs[index].as_mut() {
                        run.answer(now, send.ticket, taken);
                    }
                    moved = true;
                }
                match status {
                    DkgStatus::Waiting { wake: at } => wake = wake.min(at),
                    DkgStatus::Done(result) => {
                        self.runs[index] = None;
                        self.ended[index] = Some(result);
                        moved = true;
                    }
                }
            }
            if !moved {
                assert!(wake > now, "the ceremony would spin at {now:?}");
                now = wake;
            }
        }
        now
    }
}

#[test]
fn three_participants_end_with_shares_of_one_key_and_lost_steps_are_sent_again() {
    let mut ceremonies = Ceremonies::new(3, 2);
    let mut lost = 0;
    // Every other step from participant 0 to participant 1 is lost once.
    let ended = ceremonies.run(|from, to, request| {
        if from == 0 && to == 1 && lost < 3 {
            lost += 1;
            return None;
        }
        Some(request)
    });
    assert!(ended >= RESEND_AFTER, "a lost step is sent again after {RESEND_AFTER:?}, not before");
    let keys: BTreeSet<Vec<u8>> = ceremonies
        .ended
        .iter()
        .map(|e| e.as_ref().unwrap().as_ref().unwrap().public.verifying_key().serialize().unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "every participant holds a share of the same key");
}

#[test]
fn a_participant_sending_different_round_1_packages_is_named_by_the_others() {
    let mut ceremonies = Ceremonies::new(3, 2);
    let liar = ceremonies.peers[2];
    let other = {
        let me = tss::dkg::identifier_of(&liar).unwrap();
        let (_, package) = tss::frost::keys::dkg::part1(me, 3, 2, rand_core::OsRng).unwrap();
        Encoded(package.serialize().unwrap())
    };
    ceremonies.run(|from, to, request| match request {
        Request::Dkg { session, step: DkgStep::Round1(_) } if from == 2 && to == 0 => {
            Some(Request::Dkg { session, step: DkgStep::Round1(other.clone()) })
        }
        request => Some(request),
    });
    for honest in [0, 1] {
        match ceremonies.ended[honest].as_ref().unwrap() {
            Err(DkgError::Inconsistent { culprit }) => assert_eq!(*culprit, liar),
            other => panic!("participant {honest} should have named the liar, got {other:?}"),
        }
    }
}

#[test]
fn a_silent_participant_ends_the_ceremony_at_its_deadline_naming_it() {
    let mut ceremonies = Ceremonies::new(3, 2);
    let silent = ceremonies.peers[1];
    let ended = ceremonies.run(|from, _, request| (from != 1).then_some(request));
    assert_eq!(ended, TIMEOUT);
    match ceremonies.ended[0].as_ref().unwrap() {
        Err(DkgError::Timeout { missing, .. }) => assert!(missing.contains(&silent), "{missing:?}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_failure_answered_twice_sends_the_step_again_once() {
    let ceremonies = Ceremonies::new(3, 2);
    let mut run = ceremonies.runs.into_iter().next().flatten().unwrap();
    let first = run.take_sends().into_iter().next().unwrap();
    run.answer(Duration::ZERO, first.ticket, false);
    run.answer(Duration::ZERO, first.ticket, false);
    run.advance(RESEND_AFTER, &ceremonies.signers[0].dkg_inbox());
    let again: Vec<_> = run.take_sends().into_iter().filter(|s| s.ticket == first.ticket).collect();
    assert_eq!(again.len(), 1, "one failed step is sent again once, however often its failure is told");
}
