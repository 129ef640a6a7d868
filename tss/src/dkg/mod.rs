//! FROST's three-part DKG (and the refresh built on the same rounds) over the mesh.
//!
//! Round 1 packages are pushed to every participant. Before anyone answers them, an **echo
//! round** checks that everyone got the same ones: each participant sends every other the SHA-256
//! of each round-1 package it holds. A sender whose package hashes differ between peers sent
//! different packages to different peers (FROST's DKG assumes a broadcast channel; this is the
//! check that makes point-to-point links one), and the DKG aborts naming it. An echo that
//! misstates a participant's *own* package names the echoer instead. Round 2 packages go
//! privately (Noise-encrypted) to their one recipient.
//!
//! The rounds' decisions are [`DkgRun`]'s (`ceremony.rs`), a state machine with no clock and no
//! network; [`run`] is its shell over the mesh, and the simulator drives the same machine.

mod ceremony;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use frost::Identifier;
use frost_secp256k1_tr as frost;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::SessionId;
use crate::keystore::KeyShare;
use crate::mesh::MeshHandle;
use crate::messages::{DkgStep, Encoded, Response};

pub use ceremony::{DkgRun, DkgSend, DkgStatus, RESEND_AFTER, SendTicket};

/// Most DKG/refresh sessions buffered at once (a peer cannot fill memory with sessions).
const MAX_SESSIONS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DkgError {
    #[error("{culprit} sent different round-1 packages to different participants; the DKG is aborted")]
    Inconsistent { culprit: PeerId },
    #[error("{culprit} sent two different {what} messages in one session; the DKG is aborted")]
    Equivocated { culprit: PeerId, what: &'static str },
    #[error(
        "timed out in {stage} waiting for {missing:?}: check that those watchmen are up and on each other's allow-list"
    )]
    Timeout { stage: &'static str, missing: Vec<PeerId> },
    #[error("FROST rejected the {stage} of {culprit:?}: {reason}")]
    Frost { stage: &'static str, culprit: Option<PeerId>, reason: String },
    #[error("the participants are not a valid group: {0}")]
    Participants(String),
    #[error("the refresh changed the group key; the new shares are discarded")]
    GroupKeyChanged,
}

/// Who takes part: every watchman's PeerId, this one's included, and the threshold.
#[derive(Clone, Debug)]
pub struct Participants {
    pub me: PeerId,
    pub by_identifier: BTreeMap<Identifier, PeerId>,
    pub threshold: u16,
}

impl Participants {
    /// FROST identifiers are derived from PeerIds, so every watchman computes the same ones.
    pub fn new(me: PeerId, peers: impl IntoIterator<Item = PeerId>, threshold: u16) -> Result<Self, DkgError> {
        let mut by_identifier = BTreeMap::new();
        for peer in peers.into_iter().chain([me]) {
            by_identifier.insert(identifier_of(&peer).map_err(|e| DkgError::Participants(e.to_string()))?, peer);
        }
        let n = by_identifier.len();
        if threshold < 2 || usize::from(threshold) > n {
            return Err(DkgError::Participants(format!("a threshold of {threshold} with {n} participants")));
        }
        Ok(Participants { me, by_identifier, threshold })
    }

    fn my_identifier(&self) -> Result<Identifier, DkgError> {
        identifier_of(&self.me).map_err(|e| DkgError::Participants(e.to_string()))
    }

    fn others(&self) -> impl Iterator<Item = (&Identifier, &PeerId)> {
        self.by_identifier.iter().filter(|(_, p)| **p != self.me)
    }

    fn count(&self) -> Result<u16, DkgError> {
        u16::try_from(self.by_identifier.len()).map_err(|_| DkgError::Participants("more than 65535".into()))
    }
}

/// The FROST identifier of a watchman: a hash of its PeerId.
pub fn identifier_of(peer: &PeerId) -> Result<Identifier, frost::Error> {
    Identifier::derive(&peer.to_bytes())
}

#[derive(Default)]
struct Mailbox {
    /// Steps as they came, in FROST's encoding: decoded by the run, which names a sender whose
    /// bytes do not decode; equivocation is any difference in the bytes.
    round1: BTreeMap<PeerId, Encoded>,
    echoes: BTreeMap<PeerId, Encoded>,
    round2: BTreeMap<PeerId, Encoded>,
    equivocation: Option<(PeerId, &'static str)>,
}

/// Where DKG steps wait for the local DKG to take them (they may arrive before it starts).
pub struct DkgInbox {
    sessions: Mutex<BTreeMap<SessionId, Mailbox>>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for DkgInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgInbox").finish_non_exhaustive()
    }
}

impl Default for DkgInbox {
    fn default() -> Self {
        DkgInbox { sessions: Mutex::new(BTreeMap::new()), changed: watch::channel(0).0 }
    }
}

fn insert_once<V: PartialEq>(
    map: &mut BTreeMap<PeerId, V>,
    from: PeerId,
    value: V,
    what: &'static str,
    equivocation: &mut Option<(PeerId, &'static str)>,
) {
    match map.get(&from) {
        Some(existing) if *existing != value => *equivocation = Some((from, what)),
        Some(_) => {}
        None => {
            map.insert(from, value);
        }
    }
}

impl DkgInbox {
    pub(crate) fn deliver(&self, session: SessionId, from: PeerId, step: DkgStep) -> Response {
        let Ok(mut sessions) = self.sessions.lock() else {
            return Response::Failed { reason: "internal lock poisoned".into() };
        };
        if !sessions.contains_key(&session) && sessions.len() >= MAX_SESSIONS {
            return Response::Failed { reason: "too many key ceremonies at once".into() };
        }
        let mailbox = sessions.entry(session).or_default();
        let Mailbox { round1, echoes, round2, equivocation } = mailbox;
        match step {
            DkgStep::Round1(package) => insert_once(round1, from, package, "round-1", equivocation),
            DkgStep::Echo(digests) => insert_once(echoes, from, digests, "echo", equivocation),
            DkgStep::Round2(package) => insert_once(round2, from, package, "round-2", equivocation),
        }
        drop(sessions);
        self.changed.send_modify(|n| *n += 1);
        Response::Ack
    }

    /// Reads the session's mailbox (an empty one if nothing came yet).
    fn read<T>(&self, session: SessionId, read: impl FnOnce(&Mailbox) -> T) -> Result<T, DkgError> {
        let sessions = self.sessions.lock().map_err(|_| DkgError::Participants("lock poisoned".into()))?;
        let empty = Mailbox::default();
        Ok(read(sessions.get(&session).unwrap_or(&empty)))
    }

    /// Drops the session's mailbox (its ceremony ended).
    pub fn forget(&self, session: SessionId) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&session);
        }
    }
}

/// Progress of a key ceremony, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DkgProgress {
    Round1 { received: usize, of: usize },
    Echo,
    Round2,
    Done,
}

fn digest(bytes: &Encoded) -> [u8; 32] {
    Sha256::digest(&bytes.0).into()
}

/// Decodes every sender's step, naming the first whose bytes are not a valid package.
fn decode_all<T>(
    participants: &Participants,
    received: BTreeMap<Identifier, Encoded>,
    stage: &'static str,
    decode: impl Fn(&[u8]) -> Result<T, frost::Error>,
) -> Result<BTreeMap<Identifier, T>, DkgError> {
    received
        .into_iter()
        .map(|(identifier, bytes)| {
            let package = decode(&bytes.0).map_err(|e| DkgError::Frost {
                stage,
                culprit: participants.by_identifier.get(&identifier).copied(),
                reason: format!("a package that does not decode: {e}"),
            })?;
            Ok((identifier, package))
        })
        .collect()
}

/// The echo's bytes: every participant's round-1 digest in identifier order.
fn encode_echo(participants: &Participants, digests: &BTreeMap<Identifier, [u8; 32]>) -> Encoded {
    let mut bytes = Vec::with_capacity(32 * participants.by_identifier.len());
    for identifier in participants.by_identifier.keys() {
        bytes.extend_from_slice(digests.get(identifier).map_or(&[0u8; 32], |d| d));
    }
    Encoded(bytes)
}

/// An echo's digests by identifier, or `None` if it is not one digest per participant.
fn decode_echo(participants: &Participants, echo: &Encoded) -> Option<BTreeMap<Identifier, [u8; 32]>> {
    if echo.0.len() != 32 * participants.by_identifier.len() {
        return None;
    }
    let digests = echo.0.chunks_exact(32).map(|c| <[u8; 32]>::try_from(c).ok());
    participants.by_identifier.keys().zip(digests).map(|(i, d)| Some((*i, d?))).collect()
}

/// What every other participant sent, by identifier; or who has not sent yet.
fn from_everyone<T: Clone>(
    others: &[(Identifier, PeerId)],
    received: &BTreeMap<PeerId, T>,
) -> Result<BTreeMap<Identifier, T>, Vec<PeerId>> {
    let missing: Vec<PeerId> = others.iter().filter(|(_, p)| !received.contains_key(p)).map(|(_, p)| *p).collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(others.iter().filter_map(|(i, p)| Some((*i, received.get(p)?.clone()))).collect())
}

/// Who lied, if `echoer`'s hashes differ from this participant's: the package's sender, or the
/// echoer itself when it misstates this participant's own package (this one knows what it sent).
fn echo_mismatch(
    participants: &Participants,
    me: Identifier,
    mine: &BTreeMap<Identifier, [u8; 32]>,
    echoer: PeerId,
    theirs: &Encoded,
) -> Option<PeerId> {
    // An echo that is not one digest per participant is the echoer's own fault.
    let Some(theirs) = decode_echo(participants, theirs) else { return Some(echoer) };
    for (identifier, digest) in mine {
        if theirs.get(identifier) == Some(digest) {
            continue;
        }
        if *identifier == me {
            return Some(echoer);
        }
        return Some(participants.by_identifier.get(identifier).copied().unwrap_or(echoer));
    }
    None
}

/// A fresh DKG, or a refresh of an existing share keeping its group key.
#[derive(Debug)]
pub enum Ceremony {
    Fresh,
    Refresh(Box<KeyShare>),
}

/// Runs one ceremony to its end. Every participant runs it with the same session id.
pub(crate) async fn run(
    mesh: &MeshHandle,
    inbox: &DkgInbox,
    session: SessionId,
    participants: &Participants,
    ceremony: Ceremony,
    timeout: Duration,
    mut progress: impl FnMut(DkgProgress),
) -> Result<KeyShare, DkgError> {
    let result = run_rounds(mesh, inbox, session, participants, ceremony, timeout, &mut progress).await;
    inbox.forget(session);
    if result.is_ok() {
        progress(DkgProgress::Done);
    }
    result
}

async fn run_rounds(
    mesh: &MeshHandle,
    inbox: &DkgInbox,
    session: SessionId,
    participants: &Participants,
    ceremony: Ceremony,
    timeout: Duration,
    progress: &mut impl FnMut(DkgProgress),
) -> Result<KeyShare, DkgError> {
    let origin = Instant::now();
    let mut changed = inbox.changed.subscribe();
    let mut machine = DkgRun::new(session, participants.clone(), ceremony, Duration::ZERO, timeout, &mut OsRng)?;
    let mut pending: Sends<'_> = FuturesUnordered::new();
    loop {
        let status = machine.advance(origin.elapsed(), inbox);
        for stage in machine.take_progress() {
            progress(stage);
        }
        for DkgSend { ticket, to, request } in machine.take_sends() {
            pending.push(Box::pin(async move {
                let taken = match mesh.request(to, request).await {
                    Ok(Response::Ack) => true,
                    Ok(other) => {
                        tracing::debug!(peer = %to, ?other, "DKG step not taken; sending again");
                        false
                    }
                    Err(error) => {
                        tracing::debug!(peer = %to, %error, "DKG step not delivered; sending again");
                        false
                    }
                };
                (ticket, taken)
            }));
        }
        let wake = match status {
            DkgStatus::Done(result) => return result,
            DkgStatus::Waiting { wake } => origin + wake,
        };
        // Wake for a send's answer, a step in the mailbox, or the machine's own time.
        let answer = async {
            match pending.next().await {
                Some(answered) => answered,
                None => std::future::pending().await,
            }
        };
        let event =
            tokio::time::timeout_at(wake, futures::future::select(Box::pin(answer), Box::pin(changed.changed()))).await;
        if let Ok(futures::future::Either::Left(((ticket, taken), _))) = event {
            machine.answer(origin.elapsed(), ticket, taken);
        }
    }
}

type Sends<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = (SendTicket, bool)> + Send + 'a>>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn participants(n: usize) -> Participants {
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        Participants::new(peers[0], peers[1..].iter().copied(), 2).unwrap()
    }

    #[test]
    fn an_echo_is_one_digest_per_participant_in_identifier_order_and_round_trips() {
        let participants = participants(4);
        let digests: BTreeMap<Identifier, [u8; 32]> =
            participants.by_identifier.keys().enumerate().map(|(i, id)| (*id, [i as u8; 32])).collect();
        let echo = encode_echo(&participants, &digests);
        assert_eq!(echo.0.len(), 4 * 32);
        assert_eq!(&echo.0[32..64], &[1u8; 32], "the second identifier's digest second");
        assert_eq!(decode_echo(&participants, &echo), Some(digests));
    }

    #[test]
    fn an_echo_of_the_wrong_length_names_the_echoer() {
        let participants = participants(3);
        let me = participants.my_identifier().unwrap();
        let digests: BTreeMap<Identifier, [u8; 32]> =
            participants.by_identifier.keys().map(|id| (*id, [7u8; 32])).collect();
        let echoer = *participants.by_identifier.values().find(|p| **p != participants.me).unwrap();
        let short = Encoded(vec![7u8; 2 * 32]);
        assert_eq!(echo_mismatch(&participants, me, &digests, echoer, &short), Some(echoer));
        let right = encode_echo(&participants, &digests);
        assert_eq!(echo_mismatch(&participants, me, &digests, echoer, &right), None);
    }
}
