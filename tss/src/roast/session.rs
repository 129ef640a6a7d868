//! One signing session's decisions, apart from its I/O: a state machine that takes answers and
//! the time, and says whom to ask what and when to wake it next. The watchman's shell
//! ([`super::sign`]) drives it over the libp2p mesh on tokio's clock; the simulator drives the
//! same machine over a simulated mesh on simulated time. The protocol is the module's
//! ([`super`]'s documentation); this file holds no clock, no randomness and no network.
//!
//! Time is a [`Duration`] since an origin the driver chooses (its own start, or the simulation's),
//! passed into every call. Every [`Effect::Ask`] is owed exactly one [`RoastSession::answer`]:
//! the signer's response, or a [`Response::Failed`] when the signer cannot be reached (the
//! mesh's request timeout). A ticket answered twice, or never issued, is ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use frost::Identifier;
use frost_secp256k1_tr as frost;
use libp2p::PeerId;

use super::{Exclusion, SessionError, SessionOutcome, SessionPhases, SignedMessage};
use crate::SessionId;
use crate::group::{GroupKey, bip340_bytes};
use crate::keystore::{Generation, KeyShare};
use crate::messages::{CommitmentSet, Encoded, Request, Response};
use crate::policy::SigningRequest;
use crate::signer::MAX_MESSAGES_PER_SESSION;

/// Names one question put to a signer, so its answer finds its way back.
pub type Ticket = u64;

/// What the session wants done.
#[derive(Debug)]
pub enum Effect {
    /// Send `request` to `signer`, then hand its answer to [`RoastSession::answer`] with `ticket`.
    Ask { ticket: Ticket, signer: Identifier, request: Request },
    /// The signer said its commitment sets of other epochs are gone (it restarted): the pool of
    /// kept commitments should forget them.
    ForgetOtherEpochs { signer: Identifier, epoch: u64 },
}

/// Where the session stands after [`RoastSession::advance`].
#[derive(Debug)]
pub enum Progress {
    /// Call `advance` again at `wake`, or as soon as an answer came.
    Waiting {
        wake: Duration,
    },
    Done(Result<SessionOutcome, SessionError>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    Commit,
    Sign { attempt: usize },
}

struct Ready {
    id: Identifier,
    set: CommitmentSet,
    /// Kept from an earlier session (so possibly stale) rather than made for this one.
    pooled: bool,
}

struct Attempt {
    members: BTreeSet<Identifier>,
    /// The members whose commitments came from the pool.
    pooled: BTreeSet<Identifier>,
    packages: Vec<frost::SigningPackage>,
    shares: BTreeMap<Identifier, Vec<frost::round2::SignatureShare>>,
    live: bool,
    started: Duration,
    /// When one of its signers last answered (its start until the first answer).
    progressed: Duration,
}

/// An attempt runs alone at most this many retry intervals, however steadily its answers come.
/// Without it, signers answering one just within each interval would hold the session for up to
/// `t` intervals before a silent member's stall shows (67 at 100 watchmen); four bound that wait
/// to a small multiple of the retry interval and still leave a slow honest attempt room to
/// finish alone.
const MAX_INTERVALS_ALONE: u32 = 4;

impl Attempt {
    /// When it counts as stalled: one retry interval after its last progress, or
    /// [`MAX_INTERVALS_ALONE`] intervals after its start, whichever is first.
    fn stalls_at(&self, retry: Duration) -> Duration {
        (self.progressed + retry).min(self.started + retry * MAX_INTERVALS_ALONE)
    }
}

/// Whether a new attempt may start now: at once when no attempt is live, else once every live
/// one has stalled. Returns when it may, if not now (which moves later as answers come).
fn next_attempt_at(attempts: &[Attempt], retry: Duration) -> Option<Duration> {
    attempts.iter().filter(|a| a.live).map(|a| a.stalls_at(retry)).max()
}

/// One signing session of one coordinator: see the module's documentation.
pub struct RoastSession {
    session: SessionId,
    requests: Vec<SigningRequest>,
    count: u32,
    threshold: usize,
    /// The coordinator's own share's: only signers of this generation can sign with it.
    generation: Generation,
    everyone: BTreeSet<Identifier>,
    peers: BTreeMap<Identifier, PeerId>,
    /// The group's public package tweaked for each request's key path.
    tweaked: Vec<frost::keys::PublicKeyPackage>,
    started: Duration,
    deadline: Duration,
    retry: Duration,
    ready: Vec<Ready>,
    /// Signers asked for commitments at least once (or ready from the pool at the start).
    asked: BTreeSet<Identifier>,
    attempts: Vec<Attempt>,
    excluded: BTreeMap<Identifier, Exclusion>,
    /// Signers whose last answer was no answer (lost, failed, stale): a timeout names them as
    /// unresponsive, with those whose question is still outstanding.
    unresponsive: BTreeSet<Identifier>,
    /// Signers whose last answer was "over my limit for you": they answer, so a timeout names
    /// them apart (the asker asked too much, or too many sessions ran at once), not as down.
    busy: BTreeSet<Identifier>,
    /// Questions put and not answered yet: at most one `Commit` per signer per retry interval
    /// and `t` `Sign`s per attempt, so this stays small.
    outstanding: BTreeMap<Ticket, (Identifier, Query)>,
    /// Commitment requests to put later (a signer that failed or was busy is asked again after
    /// the retry interval, so no signer can make the session spin).
    later: Vec<(Duration, Identifier)>,
    next_ticket: Ticket,
    effects: Vec<Effect>,
    finished: Option<Result<SessionOutcome, SessionError>>,
}

impl std::fmt::Debug for RoastSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoastSession")
            .field("session", &self.session)
            .field("attempts", &self.attempts.len())
            .field("ready", &self.ready.len())
            .field("outstanding", &self.outstanding.len())
            .finish_non_exhaustive()
    }
}

impl RoastSession {
    /// A session signing `requests` with `share`'s group, starting at `now` from the
    /// commitments `kept` from earlier sessions (each of `requests.len()` pairs), reaching each
    /// signer by `peers`. It fails at `now + timeout`; `retry` is the interval after which a
    /// silent attempt counts as stalled and a failed signer is asked again.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        share: &KeyShare,
        session: SessionId,
        requests: Vec<SigningRequest>,
        kept: Vec<(Identifier, CommitmentSet)>,
        peers: BTreeMap<Identifier, PeerId>,
        now: Duration,
        timeout: Duration,
        retry: Duration,
    ) -> Result<Self, SessionError> {
        let count = u32::try_from(requests.len()).ok().filter(|c| (1..=MAX_MESSAGES_PER_SESSION).contains(c));
        let Some(count) = count else { return Err(SessionError::Size(requests.len())) };
        let threshold = usize::from(share.public.min_signers().unwrap_or(*share.key_package.min_signers()));
        let generation = share.generation().map_err(|e| SessionError::Frost(e.to_string()))?;
        let tweaked = requests.iter().map(|r| r.key_path.tweak_public(&share.public)).collect();
        let everyone: BTreeSet<Identifier> = share.public.verifying_shares().keys().copied().collect();
        // A kept set of another generation is dropped: its signer has switched shares since (and
        // so epochs), or this coordinator has; either way the signer is asked afresh.
        let ready: Vec<Ready> = kept
            .into_iter()
            .filter(|(id, set)| {
                everyone.contains(id) && set.commitments.len() == requests.len() && set.generation == generation
            })
            .map(|(id, set)| Ready { id, set, pooled: true })
            .collect();
        // Signers with kept commitments are ready already. The others are asked at the first
        // `advance` if fewer than `t` are, and otherwise only once an attempt fails or stalls
        // with too few ready for the next (so a one-round session does not make every other
        // signer a set it will not use).
        let asked = ready.iter().map(|r| r.id).collect();
        tracing::debug!(%session, pooled = ready.len(), "signing session");
        Ok(RoastSession {
            session,
            requests,
            count,
            threshold,
            generation,
            everyone,
            peers,
            tweaked,
            started: now,
            deadline: now + timeout,
            retry,
            ready,
            asked,
            attempts: Vec::new(),
            excluded: BTreeMap::new(),
            unresponsive: BTreeSet::new(),
            busy: BTreeSet::new(),
            outstanding: BTreeMap::new(),
            later: Vec::new(),
            next_ticket: 0,
            effects: Vec::new(),
            finished: None,
        })
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    /// What to do now, in order; the shell performs them all before its next call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The commitment sets the session did not use, for the pool (none of an excluded signer).
    pub fn into_unused(self) -> Vec<(Identifier, CommitmentSet)> {
        let excluded = self.excluded;
        self.ready.into_iter().filter(|r| !excluded.contains_key(&r.id)).map(|r| (r.id, r.set)).collect()
    }

    /// Decides what the session does at `now`: asks, attempts, or its end.
    pub fn advance(&mut self, now: Duration) -> Progress {
        if let Some(finished) = self.finished.take() {
            return Progress::Done(finished);
        }
        let remaining = self.everyone.len() - self.excluded.len();
        if remaining < self.threshold {
            metrics::counter!("tss_signing_sessions_total", "outcome" => "not_enough").increment(1);
            let threshold = u16::try_from(self.threshold).unwrap_or(u16::MAX);
            return Progress::Done(Err(SessionError::NotEnoughSigners {
                remaining,
                threshold,
                excluded: self.named_exclusions(),
            }));
        }
        // An excluded signer's kept set is never chosen (nor kept for later).
        let excluded = &self.excluded;
        self.ready.retain(|r| !excluded.contains_key(&r.id));
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.later).into_iter().partition(|(at, _)| *at <= now);
        self.later = later;
        for (_, id) in due {
            self.ask_commit(id);
        }
        let hedge_due = next_attempt_at(&self.attempts, self.retry).is_none_or(|at| at <= now);
        if distinct(&self.ready) < self.threshold && hedge_due {
            let unasked: Vec<Identifier> = self
                .everyone
                .iter()
                .filter(|id| !self.excluded.contains_key(*id) && !self.asked.contains(*id))
                .copied()
                .collect();
            for id in unasked {
                self.asked.insert(id);
                self.ask_commit(id);
            }
        }
        // After the above, signers are left unasked only while the hedge is not yet due.
        let unasked = self.everyone.iter().any(|id| !self.asked.contains(id) && !self.excluded.contains_key(id));
        // Start an attempt with `t` ready signers, if no attempt is live or every live one has
        // stalled (the hedge).
        while distinct(&self.ready) >= self.threshold
            && next_attempt_at(&self.attempts, self.retry).is_none_or(|at| at <= now)
        {
            if let Err(error) = self.start_attempt(now) {
                return Progress::Done(Err(error));
            }
        }
        if now >= self.deadline || (self.outstanding.is_empty() && self.later.is_empty()) {
            // Past the deadline, or nothing left that could answer.
            metrics::counter!("tss_signing_sessions_total", "outcome" => "timeout").increment(1);
            // Unresponsive: whoever last failed to answer, and whoever still owes an answer.
            let silent = self.outstanding.values().map(|(id, _)| id);
            let unresponsive: BTreeSet<&Identifier> =
                self.unresponsive.iter().chain(silent).filter(|id| !self.busy.contains(*id)).collect();
            return Progress::Done(Err(SessionError::Timeout {
                unresponsive: unresponsive.into_iter().filter_map(|id| self.peers.get(id).copied()).collect(),
                busy: self.busy.iter().filter_map(|id| self.peers.get(id).copied()).collect(),
                excluded: self.named_exclusions(),
            }));
        }
        // Wake for the hedge too when enough signers wait for it, or some were never asked.
        let hedge = if distinct(&self.ready) >= self.threshold || unasked {
            next_attempt_at(&self.attempts, self.retry)
        } else {
            None
        };
        let mut wake = hedge.map_or(self.deadline, |at| at.min(self.deadline));
        if let Some(first) = self.later.iter().map(|(at, _)| *at).min() {
            wake = wake.min(first);
        }
        Progress::Waiting { wake }
    }

    /// Takes the answer to the question `ticket` named, received at `now`.
    pub fn answer(&mut self, now: Duration, ticket: Ticket, response: Response) {
        let Some((id, query)) = self.outstanding.remove(&ticket) else { return };
        if self.finished.is_some() {
            return;
        }
        match query {
            Query::Commit => self.committed(now, id, response),
            Query::Sign { attempt } => self.signed(now, attempt, id, response),
        }
    }

    fn committed(&mut self, now: Duration, id: Identifier, response: Response) {
        self.note_busy(id, &response);
        match response {
            Response::Commitments(set) if set.generation != self.generation => {
                self.unresponsive.remove(&id);
                self.other_generation(id, set.generation);
            }
            Response::Commitments(set) if set.commitments.len() == self.requests.len() => {
                self.unresponsive.remove(&id);
                self.ready.push(Ready { id, set, pooled: false });
            }
            Response::Refused { reason } => {
                self.excluded.insert(id, Exclusion::Refused { reason });
            }
            Response::Failed { reason } => {
                tracing::debug!(session = %self.session, ?id, %reason, "no commitments; asking again");
                self.unresponsive.insert(id);
                self.later.push((now + self.retry, id));
            }
            Response::Overloaded(overload) => {
                // Its limit for us, not a fault: it answers again once we have waited.
                tracing::debug!(session = %self.session, ?id, %overload, "signer busy; asking again");
                self.later.push((now + self.retry, id));
            }
            other => {
                self.excluded
                    .insert(id, Exclusion::Faulty { reason: format!("answered Commit with {}", kind(&other)) });
            }
        }
    }

    /// Keeps [`Self::busy`] to each signer's last answer; a busy signer is not unresponsive.
    fn note_busy(&mut self, id: Identifier, response: &Response) {
        if matches!(response, Response::Overloaded(_)) {
            self.busy.insert(id);
            self.unresponsive.remove(&id);
        } else {
            self.busy.remove(&id);
        }
    }

    fn signed(&mut self, now: Duration, attempt: usize, id: Identifier, mut response: Response) {
        self.note_busy(id, &response);
        // The fresh set an answer brings is the signer's next readiness, whatever becomes of
        // this attempt.
        if let Response::Shares { shares, next } = &mut response
            && shares.len() == self.requests.len()
        {
            self.take_next(now, id, next.take());
        }
        let started_attempts = self.attempts.len();
        let Some(current) = self.attempts.get_mut(attempt) else { return };
        // Any answer is progress; one that ends the attempt leaves it not live anyway.
        current.progressed = now;
        match response {
            Response::Shares { shares, .. } if shares.len() == self.requests.len() => {
                if !current.live {
                    return;
                }
                current.shares.insert(id, shares);
                if current.shares.len() < current.members.len() {
                    return;
                }
                current.live = false;
                match aggregate(current, &self.requests, &self.tweaked) {
                    Ok(signatures) => {
                        metrics::counter!("tss_signing_sessions_total", "outcome" => "signed").increment(1);
                        let phases = SessionPhases {
                            commitments: current.started.saturating_sub(self.started),
                            shares: now.saturating_sub(current.started),
                            // Compute, not protocol time: the shell measures it.
                            aggregation: Duration::ZERO,
                        };
                        let signers = current.members.iter().filter_map(|id| self.peers.get(id).copied()).collect();
                        tracing::debug!(session = %self.session, attempt, ?phases, "signed");
                        self.finished = Some(Ok(SessionOutcome {
                            session: self.session,
                            signatures,
                            signers,
                            excluded: self.named_exclusions(),
                            attempts: started_attempts,
                            phases,
                        }));
                    }
                    Err(AggregateError::Cheaters(culprits)) => {
                        for culprit in culprits {
                            metrics::counter!("tss_invalid_shares_total").increment(1);
                            tracing::warn!(session = %self.session, peer = ?self.peers.get(&culprit), "invalid signature share: signer excluded");
                            self.excluded.insert(culprit, Exclusion::InvalidShare);
                        }
                        let excluded = &self.excluded;
                        self.ready.retain(|r| !excluded.contains_key(&r.id));
                    }
                    Err(AggregateError::Other(reason)) => self.finished = Some(Err(SessionError::Frost(reason))),
                }
            }
            Response::Refused { reason } => {
                current.live = false;
                self.excluded.insert(id, Exclusion::Refused { reason });
            }
            Response::Overloaded(overload) => {
                current.live = false;
                tracing::debug!(session = %self.session, ?id, %overload, "signer busy during an attempt");
                self.later.push((now + self.retry, id));
            }
            Response::StaleNonces { epoch } => {
                current.live = false;
                let pooled = current.pooled.contains(&id);
                self.effects.push(Effect::ForgetOtherEpochs { signer: id, epoch });
                self.ready.retain(|r| r.id != id || r.set.epoch == epoch);
                if pooled {
                    // Kept from an earlier session: it restarted or evicted them. It answered,
                    // so it is live: ask at once.
                    tracing::debug!(session = %self.session, ?id, "kept commitments were stale; asking afresh");
                    self.ask_commit(id);
                } else {
                    // Made for this session and gone already: not normal (a concurrent
                    // session's pressure on its store, or a fault); ask after the retry
                    // interval, so that no signer can make the session spin.
                    tracing::debug!(session = %self.session, ?id, "fresh commitments were stale; asking again later");
                    self.unresponsive.insert(id);
                    self.later.push((now + self.retry, id));
                }
            }
            Response::Failed { reason } => {
                // Unreachable or lost its nonces: this attempt is over; ask it afresh.
                current.live = false;
                tracing::debug!(session = %self.session, ?id, %reason, "attempt lost a signer");
                self.unresponsive.insert(id);
                self.later.push((now + self.retry, id));
            }
            other => {
                current.live = false;
                self.excluded.insert(id, Exclusion::Faulty { reason: format!("answered Sign with {}", kind(&other)) });
            }
        }
    }

    /// Keeps the fresh commitment set that came with `id`'s shares, if it can serve the next
    /// attempt.
    fn take_next(&mut self, now: Duration, id: Identifier, next: Option<CommitmentSet>) {
        if self.excluded.contains_key(&id) {
            return;
        }
        match next.filter(|n| n.commitments.len() == self.requests.len()) {
            Some(set) if set.generation == self.generation => self.ready.push(Ready { id, set, pooled: false }),
            // It switched shares after signing this attempt (its shares are still of ours):
            // it cannot sign the next.
            Some(set) => self.other_generation(id, set.generation),
            // No fresh set (the signer's rate limit): ask for one later.
            None => self.later.push((now + self.retry, id)),
        }
    }

    /// A signer whose share is of another ceremony: left out of this session, as not able to
    /// sign with ours rather than as a cheater (a refresh's switch is not simultaneous).
    fn other_generation(&mut self, id: Identifier, theirs: Generation) {
        metrics::counter!("tss_other_generation_signers_total").increment(1);
        tracing::info!(session = %self.session, peer = ?self.peers.get(&id), %theirs, ours = %self.generation, "a signer holds a share of another generation: left out of this session");
        self.excluded.insert(id, Exclusion::OtherGeneration { theirs });
    }

    fn ask(&mut self, signer: Identifier, query: Query, request: Request) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.outstanding.insert(ticket, (signer, query));
        self.effects.push(Effect::Ask { ticket, signer, request });
    }

    fn ask_commit(&mut self, signer: Identifier) {
        let request = Request::Commit { session: self.session, count: self.count };
        self.ask(signer, Query::Commit, request);
    }

    fn start_attempt(&mut self, now: Duration) -> Result<(), SessionError> {
        let chosen = choose(&mut self.ready, self.threshold);
        debug_assert_eq!(chosen.iter().map(|r| r.id).collect::<BTreeSet<_>>().len(), chosen.len());
        let mut packages = Vec::with_capacity(self.requests.len());
        for (index, request) in self.requests.iter().enumerate() {
            let commitments: BTreeMap<Identifier, frost::round1::SigningCommitments> =
                chosen.iter().map(|r| (r.id, r.set.commitments[index])).collect();
            packages.push(frost::SigningPackage::new(commitments, &request.message));
        }
        // Encoded once for all `t` signers: each point's encoding costs a field inversion, so
        // encoding per request made the fan-out cost `t` times the package.
        let encoded: Vec<Encoded> = packages
            .iter()
            .map(|p| crate::package::encode(p).map(Encoded))
            .collect::<Result<_, _>>()
            .map_err(|e| SessionError::Frost(format!("encoding a signing package: {e}")))?;
        let attempt = self.attempts.len();
        metrics::counter!("tss_signing_attempts_total").increment(1);
        tracing::debug!(session = %self.session, attempt, signers = chosen.len(), "signing attempt");
        for member in &chosen {
            let request = Request::Sign {
                session: self.session,
                epoch: member.set.epoch,
                nonce_id: member.set.nonce_id,
                requests: self.requests.clone(),
                packages: encoded.clone(),
            };
            self.ask(member.id, Query::Sign { attempt }, request);
        }
        self.attempts.push(Attempt {
            members: chosen.iter().map(|r| r.id).collect(),
            pooled: chosen.iter().filter(|r| r.pooled).map(|r| r.id).collect(),
            packages,
            shares: BTreeMap::new(),
            live: true,
            started: now,
            progressed: now,
        });
        Ok(())
    }

    fn named_exclusions(&self) -> BTreeMap<PeerId, Exclusion> {
        self.excluded.iter().filter_map(|(id, why)| Some((*self.peers.get(id)?, why.clone()))).collect()
    }
}

/// Signers with a set ready (a signer may have two: one kept, one fresh).
fn distinct(ready: &[Ready]) -> usize {
    ready.iter().map(|r| r.id).collect::<BTreeSet<_>>().len()
}

/// Takes the first set of each of the first `t` distinct signers out of `ready`, in order.
fn choose(ready: &mut Vec<Ready>, t: usize) -> Vec<Ready> {
    let mut ids = BTreeSet::new();
    let mut chosen = Vec::with_capacity(t);
    let mut rest = Vec::with_capacity(ready.len());
    for r in ready.drain(..) {
        if chosen.len() < t && ids.insert(r.id) {
            chosen.push(r);
        } else {
            rest.push(r);
        }
    }
    *ready = rest;
    chosen
}

fn kind(response: &Response) -> &'static str {
    match response {
        Response::Ack => "Ack",
        Response::Commitments(_) => "wrong commitments",
        Response::Shares { .. } => "wrong shares",
        Response::Refused { .. } => "Refused",
        Response::Failed { .. } => "Failed",
        Response::Overloaded(_) => "Overloaded",
        Response::StaleNonces { .. } => "StaleNonces",
    }
}

enum AggregateError {
    Cheaters(Vec<Identifier>),
    Other(String),
}

fn aggregate(
    attempt: &Attempt,
    requests: &[SigningRequest],
    tweaked: &[frost::keys::PublicKeyPackage],
) -> Result<Vec<SignedMessage>, AggregateError> {
    let mut signed = Vec::with_capacity(requests.len());
    let mut cheaters = BTreeSet::new();
    for (index, request) in requests.iter().enumerate() {
        let shares: BTreeMap<Identifier, frost::round2::SignatureShare> =
            attempt.shares.iter().map(|(id, s)| (*id, s[index])).collect();
        // `tweaked` is already tweaked for this path; aggregate over it with no further tweak.
        // Shares are verified only if the aggregate signature fails to verify, and then all of
        // them, so every cheater of the attempt is named at once.
        let aggregated = frost_core::aggregate_custom(
            &attempt.packages[index],
            &shares,
            &tweaked[index],
            frost_core::CheaterDetection::AllCheaters,
        );
        match aggregated {
            Ok(signature) => {
                let key = GroupKey::x_only_of(tweaked[index].verifying_key())
                    .map_err(|e| AggregateError::Other(e.to_string()))?;
                let signature = bip340_bytes(&signature).map_err(|e| AggregateError::Other(e.to_string()))?;
                signed.push(SignedMessage { request: request.clone(), signature, key });
            }
            Err(error) => {
                let culprits = error.culprits();
                if culprits.is_empty() {
                    return Err(AggregateError::Other(format!("aggregation failed: {error}")));
                }
                cheaters.extend(culprits);
            }
        }
    }
    if cheaters.is_empty() { Ok(signed) } else { Err(AggregateError::Cheaters(cheaters.into_iter().collect())) }
}
