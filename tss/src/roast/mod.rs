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
//!
//! The decisions above are [`RoastSession`]'s (`session.rs`), a state machine with no clock and
//! no network: answers and the time in, questions and its end out. [`sign`] is its shell over
//! the mesh; the simulator drives the same machine over a simulated mesh.

mod session;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use frost::Identifier;
use frost_secp256k1_tr as frost;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use session::{Effect, Progress, RoastSession, Ticket};

use crate::SessionId;
use crate::keystore::{Generation, KeyShare};
use crate::mesh::MeshHandle;
use crate::messages::{Request, Response};
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
    /// Its share is of another ceremony than the coordinator's (`theirs`; one of them has not
    /// switched to the newest refresh yet): not a fault, but it cannot sign with the
    /// coordinator's generation.
    OtherGeneration { theirs: Generation },
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
    /// `busy` answered, but over their limits for this asker (too many requests or sessions at
    /// once from it): slow down or raise their limits; `unresponsive` did not answer at all.
    #[error(
        "no attempt completed before the deadline; unresponsive: {unresponsive:?}; busy (over their limits for this watchman): {busy:?}; excluded: {excluded:?}"
    )]
    Timeout { unresponsive: Vec<PeerId>, busy: Vec<PeerId>, excluded: BTreeMap<PeerId, Exclusion> },
    #[error("this watchman holds no key share")]
    NoShare,
    #[error("a session signs 1 to {MAX_MESSAGES_PER_SESSION} messages, not {0}")]
    Size(usize),
    #[error("{0}")]
    Frost(String),
    /// A signer that runs sessions apart from its caller (the simulator's mesh) has one under
    /// way for these requests; the caller asks again at its next turn.
    #[error("the session for these requests is still running; ask again later")]
    Unfinished,
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

/// Runs one signing session to a signature for every request, or to a reason there is none:
/// the shell of [`RoastSession`] over the mesh and tokio's clock. Starts from the commitments
/// the pool holds for a session of this size, and gives back the ones it did not use.
pub(crate) async fn sign(
    signers: &Signers,
    share: &KeyShare,
    session: SessionId,
    requests: Vec<SigningRequest>,
    timeout: Duration,
    retry: Duration,
) -> Result<SessionOutcome, SessionError> {
    let origin = Instant::now();
    let kept = signers.pool.take(requests.len());
    let mut machine = RoastSession::new(
        share,
        session,
        requests,
        kept,
        signers.by_identifier.clone(),
        Duration::ZERO,
        timeout,
        retry,
    )?;
    let mut pending: Pending<'_> = FuturesUnordered::new();
    let mut aggregation = Duration::ZERO;
    let outcome = loop {
        let progress = machine.advance(origin.elapsed());
        for effect in machine.take_effects() {
            match effect {
                Effect::Ask { ticket, signer, request } => {
                    let peer = signers.by_identifier.get(&signer).copied();
                    pending.push(Box::pin(async move {
                        let response = match peer {
                            Some(peer) => signers.ask(peer, request).await,
                            None => Response::Failed { reason: "no peer has this identifier".into() },
                        };
                        (ticket, response)
                    }));
                }
                Effect::ForgetOtherEpochs { signer, epoch } => signers.pool.forget_other_epochs(signer, epoch),
            }
        }
        let wake = match progress {
            Progress::Done(outcome) => break outcome,
            Progress::Waiting { wake } => origin + wake,
        };
        if let Ok(Some((ticket, response))) = tokio::time::timeout_at(wake, pending.next()).await {
            // The answer that completes an attempt aggregates inside `answer`: the session's
            // compute, timed here because the machine holds no clock.
            let before = Instant::now();
            machine.answer(before.saturating_duration_since(origin), ticket, response);
            aggregation = before.elapsed();
        }
    };
    for (id, set) in machine.into_unused() {
        signers.pool.keep(id, set);
    }
    outcome.map(|mut signed| {
        signed.phases.aggregation = aggregation;
        signed
    })
}

type Pending<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = (Ticket, Response)> + Send + 'a>>>;

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
