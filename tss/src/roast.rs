//! Robust signing, in the manner of ROAST (Ruffing et al., 2022).
//!
//! The session coordinator (whichever watchman has something to sign) starts from the
//! commitments it kept (below) and asks the other signers for fresh ones when fewer than `t` are
//! ready. As soon as `t` signers are ready it starts an attempt with them; each
//! signer's answer to an attempt carries its shares *and* fresh commitments for the next one, so
//! a responsive honest signer is ready again at once. A signer that does not answer in time
//! just is not ready (it is asked again); one whose share fails FROST's cheater detection is
//! named and excluded for the session; one whose policy refuses is excluded with its reason.
//! Attempts may run concurrently; the first to complete wins. A new attempt starts at once when
//! none is live (the last one failed), and while one is live only once every live attempt has
//! *stalled*: no answer from any of its signers for the retry interval, or four retry intervals
//! run in all. A stalled attempt gets a twin, so an unresponsive signer cannot hold the session;
//! one whose answers keep coming finishes alone, however slow, so an honest quorum's work is not
//! done twice on the same cores and the pool's kept sets are not spent on a twin that loses. The
//! session fails only when fewer than `t` signers remain who could still sign, or at its
//! deadline. `attempts` in the outcome counts the attempts started, twins that lost included.
//!
//! Shares are checked lazily: FROST's aggregation verifies the aggregate signature, and only when
//! that fails verifies every share of the attempt, naming every cheater at once
//! (`CheaterDetection::AllCheaters`). An honest attempt so costs one signature verification, not
//! `t` share verifications; a cheating one costs both, and excludes all its cheaters.
//!
//! One session signs many messages at once (a batch's payouts): every commitment, share and
//! package is a vector with one entry per message, so the network rounds are paid once.
//!
//! Preprocessing: commitments a session did not use (and the fresh ones every answered `Sign`
//! brings) are kept in the coordinator's [`CommitmentPool`] for its next sessions, so a session
//! whose pool holds `t` sets of its size starts its first attempt at once: one round (package →
//! shares) instead of two. Signers with no kept set are asked for commitments only when fewer
//! than `t` are ready and no attempt is live, or the live one has stalled. A kept set
//! that its signer no longer has (it restarted, or evicted it) is answered
//! [`Response::StaleNonces`]; that signer's older sets are forgotten and it is asked afresh at
//! once, which is ROAST's usual path for a signer that left an attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use frost::Identifier;
use frost_secp256k1_tr as frost;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::SessionId;
use crate::group::{GroupKey, bip340_bytes};
use crate::keystore::KeyShare;
use crate::mesh::MeshHandle;
use crate::messages::{CommitmentSet, Encoded, Request, Response};
use crate::policy::SigningRequest;
use crate::pool::CommitmentPool;
use crate::signer::{InboundHandler, MAX_MESSAGES_PER_SESSION};

/// A message and its BIP-340 signature under the key its path names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    pub request: SigningRequest,
    #[serde(with = "hex_64")]
    pub signature: [u8; 64],
    /// The x-only key the signature verifies under.
    #[serde(with = "crate::group::hex_bytes")]
    pub key: [u8; 32],
}

/// Why a signer took no part in the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exclusion {
    /// Its share failed verification: named by FROST's cheater detection.
    InvalidShare,
    /// Its policy said no.
    Refused { reason: String },
    /// It answered, but not usefully (wrong counts, malformed, an error).
    Faulty { reason: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionOutcome {
    pub session: SessionId,
    pub signatures: Vec<SignedMessage>,
    /// The `t` signers whose shares made the signatures.
    pub signers: Vec<PeerId>,
    pub excluded: BTreeMap<PeerId, Exclusion>,
    pub attempts: usize,
    /// Where the session's time went.
    #[serde(default)]
    pub phases: SessionPhases,
}

/// Where a signing session's time went, for its winning attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPhases {
    /// From the session's start to the winning attempt's start: the commitment round (and, after
    /// a failed attempt, the wait for enough ready signers).
    pub commitments: Duration,
    /// From the winning attempt's start to its last share: the signers' compute and the network.
    pub shares: Duration,
    /// Aggregating the shares (and verifying the signature) on the coordinator.
    pub aggregation: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("only {remaining} signers could still sign but {threshold} are needed; excluded: {excluded:?}")]
    NotEnoughSigners { remaining: usize, threshold: u16, excluded: BTreeMap<PeerId, Exclusion> },
    #[error("no attempt completed before the deadline; unresponsive: {unresponsive:?}; excluded: {excluded:?}")]
    Timeout { unresponsive: Vec<PeerId>, excluded: BTreeMap<PeerId, Exclusion> },
    #[error("this watchman holds no key share")]
    NoShare,
    #[error("a session signs 1 to {MAX_MESSAGES_PER_SESSION} messages, not {0}")]
    Size(usize),
    #[error("{0}")]
    Frost(String),
}

/// How to reach each signer: over the mesh, or, for this watchman itself, directly.
pub(crate) struct Signers {
    pub mesh: MeshHandle,
    pub local: Arc<dyn InboundHandler>,
    pub by_identifier: BTreeMap<Identifier, PeerId>,
    /// Commitments the signers made for this coordinator, kept across its sessions.
    pub pool: CommitmentPool,
}

impl Signers {
    async fn ask(&self, peer: PeerId, request: Request) -> Response {
        if peer == self.mesh.local_peer_id() {
            let local = self.local.clone();
            let me = peer;
            return tokio::task::spawn_blocking(move || local.handle(me, request))
                .await
                .unwrap_or_else(|e| Response::Failed { reason: format!("the local signer panicked: {e}") });
        }
        match self.mesh.request(peer, request).await {
            Ok(response) => response,
            Err(error) => Response::Failed { reason: format!("unreachable: {error}") },
        }
    }
}

enum Event {
    Committed { id: Identifier, response: Response },
    Signed { attempt: usize, id: Identifier, response: Response },
}

type Pending<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = Event> + Send + 'a>>>;

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
    started: Instant,
    /// When one of its signers last answered (its start until the first answer).
    progressed: Instant,
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
    fn stalls_at(&self, retry: Duration) -> Instant {
        (self.progressed + retry).min(self.started + retry * MAX_INTERVALS_ALONE)
    }
}

/// Whether a new attempt may start now: at once when no attempt is live, else once every live
/// one has stalled. Returns when it may, if not now (which moves later as answers come).
fn next_attempt_at(attempts: &[Attempt], retry: Duration) -> Option<Instant> {
    attempts.iter().filter(|a| a.live).map(|a| a.stalls_at(retry)).max()
}

/// Runs one signing session to a signature for every request, or to a reason there is none.
/// Starts from the commitments the pool holds for a session of this size, and gives back the
/// ones it did not use.
pub(crate) async fn sign(
    signers: &Signers,
    share: &KeyShare,
    session: SessionId,
    requests: Vec<SigningRequest>,
    timeout: Duration,
    retry: Duration,
) -> Result<SessionOutcome, SessionError> {
    let count = u32::try_from(requests.len()).ok().filter(|c| (1..=MAX_MESSAGES_PER_SESSION).contains(c));
    let Some(count) = count else { return Err(SessionError::Size(requests.len())) };
    let mut ready: Vec<Ready> =
        signers.pool.take(requests.len()).into_iter().map(|(id, set)| Ready { id, set, pooled: true }).collect();
    let outcome = run(signers, share, session, requests, timeout, retry, count, &mut ready).await;
    for Ready { id, set, .. } in ready {
        signers.pool.keep(id, set);
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run(
    signers: &Signers,
    share: &KeyShare,
    session: SessionId,
    requests: Vec<SigningRequest>,
    timeout: Duration,
    retry: Duration,
    count: u32,
    ready: &mut Vec<Ready>,
) -> Result<SessionOutcome, SessionError> {
    let threshold = share.public.min_signers().unwrap_or(*share.key_package.min_signers());
    let started = Instant::now();
    let deadline = started + timeout;
    let tweaked: Vec<frost::keys::PublicKeyPackage> =
        requests.iter().map(|r| r.key_path.tweak_public(&share.public)).collect();
    let everyone: BTreeSet<Identifier> = share.public.verifying_shares().keys().copied().collect();
    let peer_of = |id: &Identifier| signers.by_identifier.get(id).copied();

    let mut pending: Pending<'_> = FuturesUnordered::new();
    let commit = |id: Identifier, delay: Duration| -> Pin<Box<dyn Future<Output = Event> + Send + '_>> {
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let response = match peer_of(&id) {
                Some(peer) => signers.ask(peer, Request::Commit { session, count }).await,
                None => Response::Failed { reason: "no peer has this identifier".into() },
            };
            Event::Committed { id, response }
        })
    };
    // Signers with kept commitments are ready already. The others are asked now if fewer than
    // `t` are, and otherwise only once an attempt fails or stalls with too few ready for the
    // next (so a one-round session does not make every other signer a set it will not use).
    let mut asked: BTreeSet<Identifier> = ready.iter().map(|r| r.id).collect();
    tracing::debug!(%session, pooled = asked.len(), "signing session");

    let mut attempts: Vec<Attempt> = Vec::new();
    let mut excluded: BTreeMap<Identifier, Exclusion> = BTreeMap::new();
    let mut unresponsive: BTreeSet<Identifier> = BTreeSet::new();
    let named = |excluded: &BTreeMap<Identifier, Exclusion>| -> BTreeMap<PeerId, Exclusion> {
        excluded.iter().filter_map(|(id, why)| Some((peer_of(id)?, why.clone()))).collect()
    };

    loop {
        let remaining = everyone.len() - excluded.len();
        if remaining < usize::from(threshold) {
            metrics::counter!("tss_signing_sessions_total", "outcome" => "not_enough").increment(1);
            return Err(SessionError::NotEnoughSigners { remaining, threshold, excluded: named(&excluded) });
        }
        // An excluded signer's kept set is never chosen (nor kept for later).
        ready.retain(|r| !excluded.contains_key(&r.id));
        let hedge_due = next_attempt_at(&attempts, retry).is_none_or(|at| at <= Instant::now());
        if distinct(ready) < usize::from(threshold) && hedge_due {
            for id in everyone.iter().filter(|id| !excluded.contains_key(*id)) {
                if asked.insert(*id) {
                    pending.push(commit(*id, Duration::ZERO));
                }
            }
        }
        // After the above, signers are left unasked only while the hedge is not yet due.
        let unasked = everyone.iter().any(|id| !asked.contains(id) && !excluded.contains_key(id));
        // Start an attempt with `t` ready signers, if no attempt is live or every live one has
        // stalled (the hedge).
        while distinct(ready) >= usize::from(threshold)
            && next_attempt_at(&attempts, retry).is_none_or(|at| at <= Instant::now())
        {
            let chosen = choose(ready, usize::from(threshold));
            debug_assert_eq!(chosen.iter().map(|r| r.id).collect::<BTreeSet<_>>().len(), chosen.len());
            let mut packages = Vec::with_capacity(requests.len());
            for (index, request) in requests.iter().enumerate() {
                let commitments: BTreeMap<Identifier, frost::round1::SigningCommitments> =
                    chosen.iter().map(|r| (r.id, r.set.commitments[index])).collect();
                packages.push(frost::SigningPackage::new(commitments, &request.message));
            }
            // Encoded once for all `t` signers: each point's encoding costs a field inversion,
            // so encoding per request made the fan-out cost `t` times the package.
            let encoded: Vec<Encoded> = packages
                .iter()
                .map(|p| crate::package::encode(p).map(Encoded))
                .collect::<Result<_, _>>()
                .map_err(|e| SessionError::Frost(format!("encoding a signing package: {e}")))?;
            let attempt = attempts.len();
            metrics::counter!("tss_signing_attempts_total").increment(1);
            tracing::debug!(%session, attempt, signers = chosen.len(), "signing attempt");
            for member in &chosen {
                let Some(peer) = peer_of(&member.id) else { continue };
                let request = Request::Sign {
                    session,
                    epoch: member.set.epoch,
                    nonce_id: member.set.nonce_id,
                    requests: requests.clone(),
                    packages: encoded.clone(),
                };
                let id = member.id;
                pending.push(Box::pin(async move {
                    Event::Signed { attempt, id, response: signers.ask(peer, request).await }
                }));
            }
            let now = Instant::now();
            attempts.push(Attempt {
                members: chosen.iter().map(|r| r.id).collect(),
                pooled: chosen.iter().filter(|r| r.pooled).map(|r| r.id).collect(),
                packages,
                shares: BTreeMap::new(),
                live: true,
                started: now,
                progressed: now,
            });
        }

        // Wake for the hedge too when enough signers wait for it, or some were never asked.
        let hedge =
            if distinct(ready) >= usize::from(threshold) || unasked { next_attempt_at(&attempts, retry) } else { None };
        let wake = hedge.map_or(deadline, |at| at.min(deadline));
        let event = match tokio::time::timeout_at(wake, pending.next()).await {
            Ok(Some(event)) => event,
            Err(_) if wake < deadline => continue,
            Ok(None) | Err(_) => {
                metrics::counter!("tss_signing_sessions_total", "outcome" => "timeout").increment(1);
                return Err(SessionError::Timeout {
                    unresponsive: unresponsive.iter().filter_map(&peer_of).collect(),
                    excluded: named(&excluded),
                });
            }
        };
        match event {
            Event::Committed { id, response } => match response {
                Response::Commitments(set) if set.commitments.len() == requests.len() => {
                    unresponsive.remove(&id);
                    ready.push(Ready { id, set, pooled: false });
                }
                Response::Refused { reason } => {
                    excluded.insert(id, Exclusion::Refused { reason });
                }
                Response::Failed { reason } => {
                    tracing::debug!(%session, ?id, %reason, "no commitments; asking again");
                    unresponsive.insert(id);
                    pending.push(commit(id, retry));
                }
                Response::Overloaded(overload) => {
                    // Its limit for us, not a fault: it answers again once we have waited.
                    tracing::debug!(%session, ?id, %overload, "signer busy; asking again");
                    unresponsive.insert(id);
                    pending.push(commit(id, retry));
                }
                other => {
                    excluded.insert(id, Exclusion::Faulty { reason: format!("answered Commit with {}", kind(&other)) });
                }
            },
            Event::Signed { attempt, id, response } => {
                let started_attempts = attempts.len();
                let Some(current) = attempts.get_mut(attempt) else { continue };
                // Any answer is progress; one that ends the attempt leaves it not live anyway.
                current.progressed = Instant::now();
                match response {
                    Response::Shares { shares, next } if shares.len() == requests.len() => {
                        if !excluded.contains_key(&id) {
                            if let Some(set) = next.filter(|n| n.commitments.len() == requests.len()) {
                                ready.push(Ready { id, set, pooled: false });
                            } else {
                                // No fresh set (the signer's rate limit): ask for one later.
                                pending.push(commit(id, retry));
                            }
                        }
                        if !current.live {
                            continue;
                        }
                        current.shares.insert(id, shares);
                        if current.shares.len() == current.members.len() {
                            current.live = false;
                            let last_share = Instant::now();
                            match aggregate(current, &requests, &tweaked) {
                                Ok(signatures) => {
                                    metrics::counter!("tss_signing_sessions_total", "outcome" => "signed").increment(1);
                                    let signers_used = current.members.iter().filter_map(&peer_of).collect();
                                    let phases = SessionPhases {
                                        commitments: current.started.saturating_duration_since(started),
                                        shares: last_share.saturating_duration_since(current.started),
                                        aggregation: last_share.elapsed(),
                                    };
                                    tracing::debug!(%session, attempt, ?phases, "signed");
                                    return Ok(SessionOutcome {
                                        session,
                                        signatures,
                                        signers: signers_used,
                                        excluded: named(&excluded),
                                        attempts: started_attempts,
                                        phases,
                                    });
                                }
                                Err(AggregateError::Cheaters(culprits)) => {
                                    for culprit in culprits {
                                        metrics::counter!("tss_invalid_shares_total").increment(1);
                                        tracing::warn!(%session, peer = ?peer_of(&culprit), "invalid signature share: signer excluded");
                                        excluded.insert(culprit, Exclusion::InvalidShare);
                                    }
                                    ready.retain(|r| !excluded.contains_key(&r.id));
                                }
                                Err(AggregateError::Other(reason)) => return Err(SessionError::Frost(reason)),
                            }
                        }
                    }
                    Response::Refused { reason } => {
                        current.live = false;
                        excluded.insert(id, Exclusion::Refused { reason });
                    }
                    Response::Overloaded(overload) => {
                        current.live = false;
                        tracing::debug!(%session, ?id, %overload, "signer busy during an attempt");
                        unresponsive.insert(id);
                        pending.push(commit(id, retry));
                    }
                    Response::StaleNonces { epoch } => {
                        current.live = false;
                        signers.pool.forget_other_epochs(id, epoch);
                        ready.retain(|r| r.id != id || r.set.epoch == epoch);
                        if current.pooled.contains(&id) {
                            // Kept from an earlier session: it restarted or evicted them. It
                            // answered, so it is live: ask at once.
                            tracing::debug!(%session, ?id, "kept commitments were stale; asking afresh");
                            pending.push(commit(id, Duration::ZERO));
                        } else {
                            // Made for this session and gone already: not normal (a concurrent
                            // session's pressure on its store, or a fault); ask after the retry
                            // interval, so that no signer can make this loop spin.
                            tracing::debug!(%session, ?id, "fresh commitments were stale; asking again later");
                            unresponsive.insert(id);
                            pending.push(commit(id, retry));
                        }
                    }
                    Response::Failed { reason } => {
                        // Unreachable or lost its nonces: this attempt is over; ask it afresh.
                        current.live = false;
                        tracing::debug!(%session, ?id, %reason, "attempt lost a signer");
                        unresponsive.insert(id);
                        pending.push(commit(id, retry));
                    }
                    other => {
                        current.live = false;
                        excluded
                            .insert(id, Exclusion::Faulty { reason: format!("answered Sign with {}", kind(&other)) });
                    }
                }
            }
        }
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

mod hex_64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("expected 64 bytes"))
    }
}
