//! The watchmen sign with FROST. Each holds a real share of one group key (frost-secp256k1-tr,
//! made by the real DKG at the run's start: ceremony.rs) and answers through the real
//! [`tss::signer::Signer`] (its nonces used once, its per-peer limits, its policy asked before
//! any share), with randomness from the seed and time from the simulation. A signing session is
//! the real [`RoastSession`], driven over the simulated mesh ([`crate::mesh`]). The vault takes a
//! range only with a BIP-340 signature that verifies under the group's vault key, checked with
//! libsecp256k1, apart from FROST.
//!
//! One watchman in about three runs is byzantine for the whole run ([`WatchmanAttack`]).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge::btc_payout::MAX_PAYOUT_INPUTS;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secp256k1::{Message, SECP256K1, schnorr};
use tss::frost;
use tss::messages::{Request, Response};
use tss::nonces::NonceLimits;
use tss::roast::{Effect, Progress, RoastSession, SessionOutcome};
use tss::signer::{Clock, InboundHandler, Randomness, Signer};
use tss::{Decision, KeyShare, SessionError, SessionId, SigningPolicy, SigningRequest};

use crate::SimConfig;
use crate::btc_payouts::Messages;
use crate::clock::NodeClock;
use crate::mesh::{LinkFault, MeshEvent, Question};
use crate::rng::SimRng;
use crate::watchmen::{Ask, AskKind};
use crate::world::World;

/// A session ends at this age (the watchmen are asked again every minute anyway).
const SESSION_TIMEOUT: Duration = Duration::from_secs(50);
/// A silent attempt counts as stalled, and a failed signer is asked again, after this.
const RETRY: Duration = Duration::from_secs(5);
/// Every honest signer's limits per peer: the binary's shape, scaled to the largest session the
/// simulator asks for (a Bitcoin payout of [`MAX_PAYOUT_INPUTS`] inputs, one message each), so
/// that a spamming peer meets them within a run (20 pairs a second is 1,200 a minute, against
/// the honest askers' few sessions).
const LIMITS: NonceLimits = NonceLimits {
    per_request: MAX_PAYOUT_INPUTS as u32,
    per_session: 2 * MAX_PAYOUT_INPUTS,
    per_peer: 4 * MAX_PAYOUT_INPUTS,
    sets_per_peer: 16,
    rate_per_second: 20.0,
    burst: 4.0 * MAX_PAYOUT_INPUTS as f64,
};

/// What a byzantine watchman does, for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchmanAttack {
    /// Answers every `Sign` with shares that are random scalars.
    GarbageShares,
    /// Its policy approves anything it is asked to sign.
    ApprovesAnything,
    /// Its policy refuses everything.
    RefusesEverything,
    /// Asks every other signer for as many commitments as it may, every tick.
    NonceSpam,
    /// As an asker, sends every `Sign` twice: a second share for one nonce would give a key
    /// share away.
    ReplaysNonces,
    /// In the key ceremony, sends one round-1 package to one peer and another to the rest.
    SplitsRound1,
}

impl WatchmanAttack {
    const ALL: [WatchmanAttack; 6] = [
        WatchmanAttack::GarbageShares,
        WatchmanAttack::ApprovesAnything,
        WatchmanAttack::RefusesEverything,
        WatchmanAttack::NonceSpam,
        WatchmanAttack::ReplaysNonces,
        WatchmanAttack::SplitsRound1,
    ];

    /// About one run in three has one byzantine watchman, of a kind and an index the seed picks.
    pub(crate) fn choose(rng: &mut SimRng, config: &SimConfig) -> Option<(usize, WatchmanAttack)> {
        let kind = match config.watchman_attack {
            Some(kind) => kind,
            None if rng.below(3) == 0 => Self::ALL[rng.below(Self::ALL.len() as u64) as usize],
            None => return None,
        };
        Some((rng.below(config.confirmers as u64) as usize, kind))
    }
}

/// A machine's clock as its signer reads it: a fixed origin plus the node's milliseconds (only
/// differences matter to it).
pub(crate) struct SimClock {
    origin: Instant,
    ms: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.origin + Duration::from_millis((self.ms)())
    }

    /// The machine's wall clock reads as its monotonic one, from the run's start: the
    /// coordinator's wall clock, which stamps batches, counts from the same epoch (clock.rs).
    fn unix_ms(&self) -> u64 {
        (self.ms)()
    }
}

/// Where a session's end goes: the signing call of a watchman's settlement that awaits it.
pub(crate) type SessionReply = tokio::sync::oneshot::Sender<Result<SessionOutcome, SessionError>>;

/// Every approval a watchman's policy gives, recorded for `signature-justified`.
pub(crate) type Approvals = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

struct Recorded {
    inner: Arc<dyn SigningPolicy>,
    watchman: usize,
    approvals: Approvals,
}

impl SigningPolicy for Recorded {
    fn decide(&self, request: &SigningRequest) -> Decision {
        let decision = self.inner.decide(request);
        if decision == Decision::Approve
            && let Ok(mut approvals) = self.approvals.lock()
        {
            approvals.push((self.watchman, request.message.clone()));
        }
        decision
    }
}

/// A signer that answers every `Sign` with random scalars for shares.
struct GarbageShares {
    honest: Signer,
    rng: Mutex<SimRng>,
}

impl InboundHandler for GarbageShares {
    fn handle(&self, from: libp2p::PeerId, request: Request) -> Response {
        match self.honest.handle(from, request) {
            Response::Shares { shares, next } => {
                let Ok(mut rng) = self.rng.lock() else { return Response::Failed { reason: "poisoned".into() } };
                let garbage = shares
                    .iter()
                    .map(|share| {
                        let mut bytes = rng.bytes32();
                        // Below the group order, so it decodes as a scalar.
                        bytes[0] = 0;
                        frost::round2::SignatureShare::deserialize(&bytes).unwrap_or(*share)
                    })
                    .collect();
                Response::Shares { shares: garbage, next }
            }
            other => other,
        }
    }
}

/// One watchman's signing half: what answers its peers, and what it kept of their commitments.
pub(crate) struct WatchmanSigner {
    pub(crate) handler: Arc<dyn InboundHandler>,
    pub(crate) pool: tss::pool::CommitmentPool,
    /// Which start of the watchman this is: a session dies with the start that asked.
    pub(crate) generation: u64,
}

/// A signing session in flight, asked by one watchman.
pub(crate) struct SimSession {
    asker: usize,
    generation: u64,
    machine: RoastSession,
    wake_ms: u64,
    ask: Ask,
    /// What it signs, in order (a Bitcoin payout's inputs are handed back by these).
    messages: Messages,
    /// Where its end goes when a watchman's Ethereum settlement awaits it (eth_settlement.rs).
    reply: Option<SessionReply>,
}

impl World {
    pub(crate) fn watchman_attack(&self, index: usize) -> Option<WatchmanAttack> {
        self.byzantine_watchman.filter(|(i, _)| *i == index).map(|(_, kind)| kind)
    }

    /// The signing half of watchman `index`'s new start, its policy `policy`.
    pub(crate) fn new_signer(&mut self, index: usize, policy: Arc<dyn SigningPolicy>) -> WatchmanSigner {
        let attack = self.watchman_attack(index);
        let policy: Arc<dyn SigningPolicy> = match attack {
            Some(WatchmanAttack::ApprovesAnything) => Arc::new(tss::ApproveAll),
            Some(WatchmanAttack::RefusesEverything) => {
                Arc::new(tss::RefuseAll("a byzantine watchman refuses everything".into()))
            }
            _ => policy,
        };
        let policy = Arc::new(Recorded { inner: policy, watchman: index, approvals: self.approval_log.clone() });
        let share = self.keys.shares.get(index).cloned();
        let clock = self.confirmers[index].clock.clone();
        let signer = self.seeded_signer(share, policy, LIMITS, &clock);
        let handler: Arc<dyn InboundHandler> = match attack {
            Some(WatchmanAttack::GarbageShares) => {
                Arc::new(GarbageShares { honest: signer, rng: Mutex::new(SimRng::new(self.rng.below(u64::MAX))) })
            }
            _ => Arc::new(signer),
        };
        self.generation += 1;
        WatchmanSigner { handler, pool: tss::pool::CommitmentPool::default(), generation: self.generation }
    }

    /// Confirmer `index`'s machine clock as its watchman's settlement reads it, at the ticks.
    pub(crate) fn tick_clock(&self, index: usize) -> Arc<dyn Clock> {
        let clock = self.confirmers[index].clock.clone();
        Arc::new(SimClock { origin: self.clock_origin, ms: Box::new(clock.reader(self.now_ms.clone())) })
    }

    /// A real signer whose nonces come from the seed and whose limits read simulated time.
    pub(crate) fn seeded_signer(
        &mut self,
        share: Option<KeyShare>,
        policy: Arc<dyn SigningPolicy>,
        limits: NonceLimits,
        clock: &NodeClock,
    ) -> Signer {
        let seed = self.rng.bytes32();
        self.signer_from(seed, share, policy, limits, clock)
    }

    /// [`World::seeded_signer`], its nonces from `seed`.
    pub(crate) fn signer_from(
        &self,
        seed: [u8; 32],
        share: Option<KeyShare>,
        policy: Arc<dyn SigningPolicy>,
        limits: NonceLimits,
        clock: &NodeClock,
    ) -> Signer {
        let randomness = Randomness::Given(Mutex::new(Box::new(ChaCha20Rng::from_seed(seed))));
        let clock = Arc::new(SimClock { origin: self.clock_origin, ms: Box::new(clock.reader(self.mesh_ms.clone())) });
        Signer::with_sources(share, policy, limits, randomness, clock)
    }

    fn signer_of(&self, index: usize) -> Option<&WatchmanSigner> {
        self.confirmers.get(index)?.watchman.as_ref().map(|w| &w.signer)
    }

    /// Watchman `asker` starts a session to sign `requests` (the question `ask`); whether it
    /// could.
    pub(crate) fn start_session(&mut self, asker: usize, requests: Vec<SigningRequest>, ask: Ask) -> bool {
        self.start_session_for(asker, requests, ask, None)
    }

    /// [`World::start_session`], its end sent to `reply` if there is one (and not to the vault).
    pub(crate) fn start_session_for(
        &mut self,
        asker: usize,
        requests: Vec<SigningRequest>,
        ask: Ask,
        reply: Option<SessionReply>,
    ) -> bool {
        let now = self.now();
        let Some(signer) = self.signer_of(asker) else { return false };
        let generation = signer.generation;
        let kept = signer.pool.take(requests.len());
        let messages: Messages = requests.iter().map(|r| r.message.clone()).collect();
        let id = self.rng.bytes16();
        let Some(share) = self.keys.shares.get(asker) else { return false };
        let started = RoastSession::new(
            share,
            SessionId(id),
            requests,
            kept,
            self.keys.by_identifier.clone(),
            Duration::from_millis(now),
            SESSION_TIMEOUT,
            RETRY,
        );
        match started {
            Ok(machine) => {
                self.sessions.push(Some(SimSession { asker, generation, machine, wake_ms: now, ask, messages, reply }));
                self.drive(self.sessions.len() - 1, now);
                true
            }
            Err(error) => {
                self.log(format!("watchman {asker} cannot start a session: {error}"));
                false
            }
        }
    }

    /// Runs the mesh's events up to now, in time order, each at its own time.
    pub(crate) fn run_mesh(&mut self) {
        let now = self.now();
        while let Some((at, event)) = self.mesh.pop_due(now) {
            self.mesh_ms.store(at, Ordering::SeqCst);
            match event {
                MeshEvent::Deliver { slot, ticket, asker, signer, request } => {
                    self.deliver(at, (slot, ticket), asker, signer, request);
                }
                MeshEvent::Answer { slot, ticket, response } => {
                    if let Some(session) = self.live_session(slot) {
                        session.machine.answer(Duration::from_millis(at), ticket, response);
                        self.drive(slot, at);
                    }
                }
                MeshEvent::Wake { slot } => {
                    if self.live_session(slot).is_some_and(|s| s.wake_ms == at) {
                        self.drive(slot, at);
                    }
                }
            }
        }
        self.mesh_ms.store(now, Ordering::SeqCst);
        if self.watchman_attack_running(WatchmanAttack::NonceSpam) {
            self.spam_nonces();
        }
    }

    fn watchman_attack_running(&self, kind: WatchmanAttack) -> bool {
        self.byzantine_watchman
            .is_some_and(|(index, k)| k == kind && self.confirmers.get(index).is_some_and(|r| r.watchman.is_some()))
    }

    /// The session in `slot`, if its asker is still the start that asked.
    fn live_session(&mut self, slot: usize) -> Option<&mut SimSession> {
        let session = self.sessions.get(slot)?.as_ref()?;
        let alive = self.signer_of(session.asker).is_some_and(|s| s.generation == session.generation);
        if !alive {
            self.sessions[slot] = None;
            return None;
        }
        self.sessions.get_mut(slot)?.as_mut()
    }

    /// A question reaches `signer`: the real signer answers it (or nobody, if it is down).
    fn deliver(
        &mut self,
        at: u64,
        (slot, ticket): (usize, tss::roast::Ticket),
        asker: usize,
        signer: usize,
        request: Request,
    ) {
        let Some(handler) = self.signer_of(signer).map(|s| s.handler.clone()) else {
            let response = Response::Failed { reason: "unreachable: connection refused".into() };
            self.mesh.answer(&mut self.rng, at, (slot, ticket), (signer, asker), response);
            return;
        };
        let nonce = match &request {
            Request::Sign { epoch, nonce_id, .. } => Some((*epoch, *nonce_id)),
            _ => None,
        };
        let response = handler.handle(self.keys.peers[asker], request);
        if matches!(response, Response::Overloaded(_)) {
            self.overloaded += 1;
        }
        // `nonce-single-use`: a signer answers shares at most once per nonce it made, whoever
        // asks and however often (two shares with one nonce give its key share away).
        if let (Some((epoch, nonce_id)), Response::Shares { .. }) = (nonce, &response)
            && !self.shares_given.insert((signer, asker, epoch, nonce_id))
        {
            self.violate(
                "nonce-single-use",
                format!("watchman {signer} answered a second Sign of watchman {asker} naming nonce set {nonce_id} (epoch {epoch}) with shares"),
            );
        }
        self.mesh.answer(&mut self.rng, at, (slot, ticket), (signer, asker), response);
    }

    /// Advances the session in `slot` at `at`: its questions go out, its end is concluded.
    fn drive(&mut self, slot: usize, at: u64) {
        let Some(session) = self.sessions.get_mut(slot).and_then(Option::as_mut) else { return };
        let progress = session.machine.advance(Duration::from_millis(at));
        let effects = session.machine.take_effects();
        let asker = session.asker;
        match progress {
            Progress::Waiting { wake } => {
                let wake_ms = u64::try_from(wake.as_millis()).unwrap_or(u64::MAX).max(at + 1);
                session.wake_ms = wake_ms;
                self.mesh.schedule(wake_ms, MeshEvent::Wake { slot });
                self.act(slot, at, asker, effects);
            }
            Progress::Done(result) => {
                self.act(slot, at, asker, effects);
                if let Some(session) = self.sessions[slot].take() {
                    self.conclude(session, result);
                }
            }
        }
    }

    fn act(&mut self, slot: usize, at: u64, asker: usize, effects: Vec<Effect>) {
        let replays = self.watchman_attack(asker) == Some(WatchmanAttack::ReplaysNonces);
        for effect in effects {
            match effect {
                Effect::Ask { ticket, signer, request } => {
                    let Some(&to) = self.keys.index_of.get(&signer) else {
                        let response = Response::Failed { reason: "no peer has this identifier".into() };
                        self.mesh.schedule(at, MeshEvent::Answer { slot, ticket, response });
                        continue;
                    };
                    if replays && matches!(request, Request::Sign { .. }) {
                        let again = Question { slot, ticket, asker, signer: to, request: request.clone() };
                        self.mesh.ask(&mut self.rng, at + 500, again);
                    }
                    self.mesh.ask(&mut self.rng, at, Question { slot, ticket, asker, signer: to, request });
                }
                Effect::ForgetOtherEpochs { signer, epoch } => {
                    if let Some(s) = self.signer_of(asker) {
                        s.pool.forget_other_epochs(signer, epoch);
                    }
                }
            }
        }
    }

    /// A session's end: its unused commitments back to its asker's pool, its signature to the
    /// vault.
    fn conclude(&mut self, session: SimSession, result: Result<SessionOutcome, SessionError>) {
        let SimSession { asker, generation, machine, ask, messages, reply, .. } = session;
        let unused = machine.into_unused();
        if let Some(signer) = self.signer_of(asker).filter(|s| s.generation == generation) {
            for (id, set) in unused {
                signer.pool.keep(id, set);
            }
        }
        self.sessions_ended += 1;
        // A payout's signatures go back to the asker's payout loop, which broadcasts them.
        let payouts = (ask.kind == AskKind::BitcoinPayout)
            .then(|| self.confirmers.get(asker)?.watchman.as_ref().filter(|w| w.signer.generation == generation))
            .flatten()
            .map(|w| w.btc_signer.clone());
        match result {
            Ok(outcome) => {
                let signers: BTreeSet<usize> =
                    outcome.signers.iter().filter_map(|p| self.keys.index_of_peer(p)).collect();
                let excluded: Vec<String> = outcome
                    .excluded
                    .iter()
                    .filter_map(|(p, why)| Some(format!("{} ({why:?})", self.keys.index_of_peer(p)?)))
                    .collect();
                self.sessions_signed += 1;
                self.log(format!(
                    "watchman {asker}'s session signed {} for {}..={} by {signers:?} in {} attempts, excluded {excluded:?}",
                    ask.what, ask.first, ask.last, outcome.attempts
                ));
                if let Some(reply) = reply {
                    // A watchman's own range: its settlement sends it (a dropped turn drops it).
                    for signed in &outcome.signatures {
                        self.check_signed(&ask, &signed.request.message);
                    }
                    let _ = reply.send(Ok(outcome));
                    return;
                }
                if let AskKind::Checkpoint { own } = ask.kind {
                    self.checkpoint_signed(asker, generation, own, &ask, outcome.signatures);
                    return;
                }
                if ask.kind == AskKind::BitcoinPayout {
                    for signed in &outcome.signatures {
                        self.check_signed(&ask, &signed.request.message);
                    }
                    if let Some(payouts) = payouts {
                        payouts.finish(messages, Some(outcome));
                    }
                    return;
                }
                for signed in outcome.signatures {
                    self.offer_to_vault(&ask, &signed.request.message, &signed.signature);
                }
            }
            Err(error) => {
                if let Some(payouts) = payouts {
                    payouts.finish(messages, None);
                }
                if ask.kind == (AskKind::Checkpoint { own: true }) {
                    self.checkpoint_failed(asker, generation);
                }
                let why = match &error {
                    SessionError::NotEnoughSigners { remaining, excluded, .. } => {
                        let refusals: Vec<&String> = excluded
                            .values()
                            .filter_map(|e| match e {
                                tss::roast::Exclusion::Refused { reason } => Some(reason),
                                _ => None,
                            })
                            .collect();
                        let first = refusals.first().map_or(String::new(), |r| format!(" (\"{r}\")"));
                        let other_generation = excluded
                            .values()
                            .filter(|e| matches!(e, tss::roast::Exclusion::OtherGeneration { .. }))
                            .count();
                        let other_generation = match other_generation {
                            0 => String::new(),
                            n => format!(", {n} of another generation (OtherGeneration {{ … }})"),
                        };
                        format!("{remaining} could still sign, {} refused{first}{other_generation}", refusals.len())
                    }
                    SessionError::Timeout { unresponsive, busy, .. } => {
                        format!("timed out, {} unresponsive, {} busy", unresponsive.len(), busy.len())
                    }
                    other => other.to_string(),
                };
                self.log(format!(
                    "watchman {asker}'s session for {} {}..={} failed: {why}",
                    ask.what, ask.first, ask.last
                ));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }

    /// The vault's check: a BIP-340 signature over the range's message under the vault key,
    /// and the range next after the last one taken.
    fn offer_to_vault(&mut self, ask: &Ask, message: &[u8], signature: &[u8; 64]) {
        let vault_key = self.keys.vault_key;
        let verified = <[u8; 32]>::try_from(message).ok().zip(vault_key).is_some_and(|(digest, key)| {
            schnorr::Signature::from_slice(signature)
                .is_ok_and(|sig| SECP256K1.verify_schnorr(&sig, &Message::from_digest(digest), &key).is_ok())
        });
        if !verified {
            self.violate(
                "vault-signature",
                format!("a session's signature for {} does not verify under the vault key", ask.what),
            );
            return;
        }
        self.check_signed(ask, message);
        let withdrawals = self.truth.range(ask.first, ask.last).unwrap_or_default();
        let now = self.mesh_ms.load(Ordering::SeqCst);
        let Some(vault) = self.evm.as_mut() else { return };
        let sent = vault.submit_and_withdraw((ask.first, ask.last, ask.root), signature, withdrawals);
        let mut chain = self.eth_chain();
        let settled_through = chain.vault.settled_through();
        let next = ask.first == settled_through + 1;
        if sent.is_ok() {
            chain.vault.take(ask.first, ask.last, ask.root, now);
            // Its leaves' payouts are what the vault paid: the chain's record of them too.
            if let Ok(settled) = &sent {
                for (batch, index, _, wei) in &settled.paid {
                    chain.paid_at.insert((*batch, *index), crate::eth_chain::PaidLeaf { at_ms: now, wei: *wei });
                }
            }
        }
        drop(chain);
        match sent {
            Ok(settled) => {
                let root = hex::encode(&ask.root[..4]);
                let wei: u128 = settled.paid.iter().map(|(_, _, _, wei)| wei).sum();
                self.log(format!(
                    "vault takes range {}..={} ({}) {root}, pays {} leaves ({} wei), {} failed",
                    ask.first,
                    ask.last,
                    ask.what,
                    settled.paid.len(),
                    wei,
                    settled.failed.len()
                ));
                for (batch, index, recipient, wei) in settled.paid {
                    self.check_payout(batch, index, recipient, wei);
                }
            }
            Err(revert) if crate::evm::paused_refusal(&revert) => {
                self.log(format!("the paused vault refuses range {}..={} ({})", ask.first, ask.last, ask.what));
            }
            // A range the vault already passed: a late session's, refused as the contract must.
            Err(revert) if !next => self.log(format!(
                "vault refuses range {}..={}: {revert}; its ranges end at {settled_through}",
                ask.first, ask.last
            )),
            Err(revert) => self.violate(
                "vault-takes-signed-range",
                format!("the vault refused range {}..={}, signed and next: {revert}", ask.first, ask.last),
            ),
        }
    }

    /// `paid-once` and `paid-justified`: a leaf is paid once, as the honest sequencer sealed it.
    pub(crate) fn check_payout(&mut self, batch: u64, index: u32, recipient: alloy::primitives::Address, wei: u128) {
        if !self.paid.insert((batch, index)) {
            self.violate("paid-once", format!("the vault paid leaf {index} of batch {batch} twice"));
        }
        let sealed = self.truth.leaf(batch, index);
        let matches = sealed.is_some_and(|leaf| leaf.recipient.0 == recipient.into_array() && leaf.amount.0 == wei);
        if !matches {
            self.violate(
                "paid-justified",
                format!("the vault paid leaf {index} of batch {batch}, which was not sealed so"),
            );
        }
        self.paid_wei += wei;
    }

    /// The byzantine watchman that spams asks every other signer for as many commitments as one
    /// request may hold, four times a tick.
    fn spam_nonces(&mut self) {
        let Some((spammer, _)) = self.byzantine_watchman else { return };
        let now = self.now();
        for signer in 0..self.confirmers.len() {
            if signer == spammer {
                continue;
            }
            for _ in 0..4 {
                let request = Request::Commit { session: SessionId(self.rng.bytes16()), count: LIMITS.per_request };
                // Its answers come to no session: slot `usize::MAX` is never a session's.
                self.mesh.ask(
                    &mut self.rng,
                    now,
                    Question { slot: usize::MAX, ticket: 0, asker: spammer, signer, request },
                );
            }
        }
    }

    /// Mesh faults, during the fault phase: a degraded link, or one watchman cut off.
    pub(crate) fn inject_mesh_faults(&mut self) {
        let now = self.now();
        let n = self.confirmers.len() as u64;
        if n < 2 {
            return;
        }
        if self.rng.chance(4_000) {
            let until = now + self.rng.between(60, 900) * 1000;
            let (from, to, fault) = LinkFault::random(&mut self.rng, n as usize, 8_000, until);
            self.mesh.degrade(from, to, fault);
            self.faults += 1;
            self.log(format!(
                "FAULT mesh link {from}→{to} drops {}%, duplicates {}%, slows up to {} ms for {} s",
                fault.drop_per_million / 10_000,
                fault.duplicate_per_million / 10_000,
                fault.slow_ms,
                (fault.until_ms - now) / 1000
            ));
        }
        if self.rng.chance(1_500) {
            let cut = self.rng.below(n) as usize;
            let lasting = self.rng.between(60, 600) * 1000;
            self.mesh.split(BTreeSet::from([cut]), now + lasting);
            self.faults += 1;
            self.log(format!("FAULT mesh partition cuts watchman {cut} off for {} s", lasting / 1000));
        }
    }
}
