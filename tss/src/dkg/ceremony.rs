//! One participant's key ceremony as a state machine: what it received (the session's
//! [`DkgInbox`] mailbox, which already names an equivocating sender), its own sends' answers and
//! the time in; the steps to send and the ceremony's end out. No clock, no network: the shell
//! ([`super::run`]) drives it over the mesh, the simulator over its simulated mesh, and the
//! randomness of round 1 is the caller's.
//!
//! Stages follow [`super`]: round 1 (send ours, wait for everyone's), the echo round (send our
//! digests of every round-1 package, check each echo as it comes), round 2 (private packages),
//! then part 3. A stage's own sends must all be acknowledged before the next stage starts, as
//! the shell's sends always were; a send that fails is sent again after [`RESEND_AFTER`] until
//! the deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use frost::Identifier;
use frost::keys::dkg::{round1, round2};
use frost_secp256k1_tr as frost;
use libp2p::PeerId;
use rand_core::CryptoRngCore;

use super::{
    Ceremony, DkgError, DkgInbox, DkgProgress, Mailbox, Participants, decode_all, digest, echo_mismatch, encode_echo,
    from_everyone,
};
use crate::SessionId;
use crate::keystore::KeyShare;
use crate::messages::{DkgStep, Encoded, Request};

/// A step not acknowledged is sent again after this (its peer may still be connecting).
pub const RESEND_AFTER: Duration = Duration::from_millis(250);

/// Names one send, so its answer finds its way back.
pub type SendTicket = u64;

/// A step to send: deliver `request` to `to`, then tell [`DkgRun::answer`] whether it was taken.
#[derive(Debug)]
pub struct DkgSend {
    pub ticket: SendTicket,
    pub to: PeerId,
    pub request: Request,
}

/// Where the ceremony stands after [`DkgRun::advance`].
#[derive(Debug)]
pub enum DkgStatus {
    /// Call `advance` again at `wake`, when the mailbox changes, or when a send is answered.
    Waiting {
        wake: Duration,
    },
    Done(Result<KeyShare, DkgError>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Round1,
    Echo,
    Round2,
    Finished,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Round1 => "round 1",
            Stage::Echo => "the echo round",
            Stage::Round2 | Stage::Finished => "round 2",
        }
    }
}

/// One participant's ceremony: see the module's documentation.
pub struct DkgRun {
    session: SessionId,
    participants: Participants,
    me: Identifier,
    others: Vec<(Identifier, PeerId)>,
    ceremony: Option<Ceremony>,
    stage: Stage,
    deadline: Duration,
    package1: Encoded,
    secret1: Option<round1::SecretPackage>,
    secret2: Option<round2::SecretPackage>,
    round1: BTreeMap<Identifier, round1::Package>,
    digests: BTreeMap<Identifier, [u8; 32]>,
    /// This stage's sends not yet acknowledged (at most one per other participant).
    unacked: BTreeMap<SendTicket, (PeerId, Request)>,
    /// Sends to make again, and when.
    resend: Vec<(Duration, SendTicket)>,
    next_ticket: SendTicket,
    sends: Vec<DkgSend>,
    progress: Vec<DkgProgress>,
}

impl std::fmt::Debug for DkgRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgRun").field("session", &self.session).field("stage", &self.stage).finish_non_exhaustive()
    }
}

impl DkgRun {
    /// Starts `ceremony` at `now` (round 1's package made with `rng`); it fails at
    /// `now + timeout`.
    pub fn new(
        session: SessionId,
        participants: Participants,
        ceremony: Ceremony,
        now: Duration,
        timeout: Duration,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Self, DkgError> {
        let me = participants.my_identifier()?;
        let n = participants.count()?;
        let t = participants.threshold;
        let (secret1, package1) = match &ceremony {
            Ceremony::Fresh => frost::keys::dkg::part1(me, n, t, &mut *rng),
            Ceremony::Refresh(_) => frost::keys::refresh::refresh_dkg_part1(me, n, t, &mut *rng),
        }
        .map_err(frost_error("part 1"))?;
        let package1 = Encoded(package1.serialize().map_err(frost_error("round-1 encoding"))?);
        let others: Vec<(Identifier, PeerId)> = participants.others().map(|(i, p)| (*i, *p)).collect();
        let mut run = DkgRun {
            session,
            participants,
            me,
            others,
            ceremony: Some(ceremony),
            stage: Stage::Round1,
            deadline: now + timeout,
            package1,
            secret1: Some(secret1),
            secret2: None,
            round1: BTreeMap::new(),
            digests: BTreeMap::new(),
            unacked: BTreeMap::new(),
            resend: Vec::new(),
            next_ticket: 0,
            sends: Vec::new(),
            progress: Vec::new(),
        };
        let step = DkgStep::Round1(run.package1.clone());
        let targets: Vec<PeerId> = run.others.iter().map(|(_, p)| *p).collect();
        for peer in targets {
            run.send(peer, Request::Dkg { session, step: step.clone() });
        }
        Ok(run)
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Steps to send now.
    pub fn take_sends(&mut self) -> Vec<DkgSend> {
        std::mem::take(&mut self.sends)
    }

    /// Stages passed since the last call, for a progress display.
    pub fn take_progress(&mut self) -> Vec<DkgProgress> {
        std::mem::take(&mut self.progress)
    }

    /// Whether the send `ticket` was taken (`Ack`); if not, it is sent again later.
    pub fn answer(&mut self, now: Duration, ticket: SendTicket, taken: bool) {
        if !self.unacked.contains_key(&ticket) {
            return;
        }
        if taken {
            self.unacked.remove(&ticket);
        } else if now + RESEND_AFTER <= self.deadline && !self.resend.iter().any(|(_, t)| *t == ticket) {
            // One resend per step at a time: a failure answered twice (a duplicated message)
            // must not double the step's sends, so `resend` holds at most one entry per
            // unacknowledged step.
            self.resend.push((now + RESEND_AFTER, ticket));
        }
    }

    /// Decides at `now` from the session's mailbox in `inbox`.
    pub fn advance(&mut self, now: Duration, inbox: &DkgInbox) -> DkgStatus {
        let decided = inbox.read(self.session, |mailbox| self.decide(mailbox));
        match decided {
            Ok(Some(result)) => return DkgStatus::Done(result),
            Ok(None) => {}
            Err(error) => return DkgStatus::Done(Err(error)),
        }
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.resend).into_iter().partition(|(at, _)| *at <= now);
        self.resend = later;
        for (_, ticket) in due {
            if let Some((to, request)) = self.unacked.get(&ticket).cloned() {
                self.sends.push(DkgSend { ticket, to, request });
            }
        }
        if now >= self.deadline {
            let mut missing: BTreeSet<PeerId> = self.unacked.values().map(|(peer, _)| *peer).collect();
            if missing.is_empty() {
                let waiting = inbox.read(self.session, |mailbox| self.waiting_for(mailbox));
                missing.extend(waiting.unwrap_or_default());
            }
            return DkgStatus::Done(Err(DkgError::Timeout {
                stage: self.stage.name(),
                missing: missing.into_iter().collect(),
            }));
        }
        let wake = self.resend.iter().map(|(at, _)| *at).min().map_or(self.deadline, |at| at.min(self.deadline));
        DkgStatus::Waiting { wake }
    }

    /// Moves through every stage the mailbox completes; `Some` at the ceremony's end.
    fn decide(&mut self, mailbox: &Mailbox) -> Option<Result<KeyShare, DkgError>> {
        if let Some((culprit, what)) = mailbox.equivocation {
            return Some(Err(DkgError::Equivocated { culprit, what }));
        }
        loop {
            if !self.unacked.is_empty() {
                return None;
            }
            let stepped = match self.stage {
                Stage::Round1 => self.after_round1(mailbox),
                Stage::Echo => self.after_echo(mailbox),
                Stage::Round2 => return self.after_round2(mailbox),
                Stage::Finished => return None,
            };
            match stepped {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Who this stage still waits for.
    fn waiting_for(&self, mailbox: &Mailbox) -> Vec<PeerId> {
        let received = match self.stage {
            Stage::Round1 => &mailbox.round1,
            Stage::Echo => &mailbox.echoes,
            Stage::Round2 | Stage::Finished => &mailbox.round2,
        };
        from_everyone(&self.others, received).err().unwrap_or_default()
    }

    /// Everyone's round 1 is here: decode it (naming a sender of bytes that are no package) and
    /// send the echo.
    fn after_round1(&mut self, mailbox: &Mailbox) -> Result<bool, DkgError> {
        let Ok(bytes) = from_everyone(&self.others, &mailbox.round1) else { return Ok(false) };
        let received = decode_all(&self.participants, bytes.clone(), "round 1", round1::Package::deserialize)?;
        self.progress.push(DkgProgress::Round1 { received: received.len(), of: self.others.len() });
        self.round1 = received;
        self.digests.insert(self.me, digest(&self.package1));
        for (identifier, bytes) in &bytes {
            self.digests.insert(*identifier, digest(bytes));
        }
        let echo = encode_echo(&self.participants, &self.digests);
        let targets: Vec<PeerId> = self.others.iter().map(|(_, p)| *p).collect();
        for peer in targets {
            self.send(peer, Request::Dkg { session: self.session, step: DkgStep::Echo(echo.clone()) });
        }
        self.stage = Stage::Echo;
        Ok(true)
    }

    /// Each echo is checked as it comes (a cheater need not echo at all for its lie to be
    /// caught); once everyone's matched, part 2 and the private round-2 packages.
    fn after_echo(&mut self, mailbox: &Mailbox) -> Result<bool, DkgError> {
        for (echoer, theirs) in &mailbox.echoes {
            #[cfg(feature = "planted-bugs")]
            if bridge::planted::active(bridge::planted::PlantedBug::EchoNotChecked) {
                break;
            }
            if let Some(culprit) = echo_mismatch(&self.participants, self.me, &self.digests, *echoer, theirs) {
                metrics::counter!("tss_dkg_aborts_total").increment(1);
                return Err(DkgError::Inconsistent { culprit });
            }
        }
        if from_everyone(&self.others, &mailbox.echoes).is_err() {
            return Ok(false);
        }
        self.progress.push(DkgProgress::Echo);
        let Some(secret1) = self.secret1.take() else { return Err(DkgError::Participants("part 2 ran twice".into())) };
        let (secret2, round2_out) = match &self.ceremony {
            Some(Ceremony::Fresh) => frost::keys::dkg::part2(secret1, &self.round1),
            _ => frost::keys::refresh::refresh_dkg_part2(secret1, &self.round1),
        }
        .map_err(|e| self.rejected("part 2", &e))?;
        self.secret2 = Some(secret2);
        for (identifier, package) in round2_out {
            let Some(peer) = self.participants.by_identifier.get(&identifier).copied() else { continue };
            let bytes = Encoded(package.serialize().map_err(frost_error("round-2 encoding"))?);
            self.send(peer, Request::Dkg { session: self.session, step: DkgStep::Round2(bytes) });
        }
        self.stage = Stage::Round2;
        Ok(true)
    }

    /// Everyone's round 2 is here: part 3, and the share.
    fn after_round2(&mut self, mailbox: &Mailbox) -> Option<Result<KeyShare, DkgError>> {
        let bytes = from_everyone(&self.others, &mailbox.round2).ok()?;
        self.stage = Stage::Finished;
        Some(self.finish(bytes))
    }

    fn finish(&mut self, bytes: BTreeMap<Identifier, Encoded>) -> Result<KeyShare, DkgError> {
        let round2 = decode_all(&self.participants, bytes, "round 2", round2::Package::deserialize)?;
        self.progress.push(DkgProgress::Round2);
        let secret2 = self.secret2.take().ok_or_else(|| DkgError::Participants("part 3 ran twice".into()))?;
        let (key_package, public) = match self.ceremony.take() {
            Some(Ceremony::Refresh(old)) => {
                let old = *old;
                #[cfg(feature = "planted-bugs")]
                if bridge::planted::active(bridge::planted::PlantedBug::RefreshKeepsOldShare) {
                    return Ok(old);
                }
                let old_key = *old.public.verifying_key();
                let refreshed = frost::keys::refresh::refresh_dkg_shares(
                    &secret2,
                    &self.round1,
                    &round2,
                    old.public,
                    old.key_package,
                );
                if let Ok((_, public)) = &refreshed
                    && *public.verifying_key() != old_key
                {
                    return Err(DkgError::GroupKeyChanged);
                }
                refreshed
            }
            _ => frost::keys::dkg::part3(&secret2, &self.round1, &round2),
        }
        .map_err(|e| self.rejected("part 3", &e))?;
        let signers: BTreeSet<_> = public.verifying_shares().keys().copied().collect();
        let expected: BTreeSet<_> = self.participants.by_identifier.keys().copied().collect();
        if signers != expected {
            return Err(DkgError::Participants("the key's signer set differs from the participants".into()));
        }
        Ok(KeyShare { key_package, public })
    }

    /// FROST's refusal of `stage`, naming the first participant it blames.
    fn rejected(&self, stage: &'static str, error: &frost::Error) -> DkgError {
        let culprit = error.culprits().first().and_then(|c| self.participants.by_identifier.get(c)).copied();
        DkgError::Frost { stage, culprit, reason: error.to_string() }
    }

    fn send(&mut self, to: PeerId, request: Request) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.unacked.insert(ticket, (to, request.clone()));
        self.sends.push(DkgSend { ticket, to, request });
    }
}

fn frost_error(stage: &'static str) -> impl Fn(frost::Error) -> DkgError {
    move |e| DkgError::Frost { stage, culprit: None, reason: e.to_string() }
}
