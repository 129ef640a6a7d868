//! FROST's three-part DKG (and the refresh built on the same rounds) over the mesh.
//!
//! Round 1 packages are pushed to every participant. Before anyone answers them, an **echo
//! round** checks that everyone got the same ones: each participant sends every other the SHA-256
//! of each round-1 package it holds. A sender whose package hashes differ between peers sent
//! different packages to different peers (FROST's DKG assumes a broadcast channel; this is the
//! check that makes point-to-point links one), and the DKG aborts naming it. An echo that
//! misstates a participant's *own* package names the echoer instead. Round 2 packages go
//! privately (Noise-encrypted) to their one recipient.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use frost::Identifier;
use frost::keys::dkg::{round1, round2};
use frost_secp256k1_tr as frost;
use libp2p::PeerId;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::SessionId;
use crate::keystore::KeyShare;
use crate::mesh::MeshHandle;
use crate::messages::{DkgStep, Encoded, Request, Response};

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

    /// Waits until `take` finds what it needs in the session's mailbox.
    async fn wait<T>(
        &self,
        session: SessionId,
        deadline: Instant,
        stage: &'static str,
        mut take: impl FnMut(&Mailbox) -> Result<T, Vec<PeerId>>,
    ) -> Result<T, DkgError> {
        let mut changed = self.changed.subscribe();
        loop {
            let missing = {
                let sessions = self.sessions.lock().map_err(|_| DkgError::Participants("lock poisoned".into()))?;
                let empty = Mailbox::default();
                let mailbox = sessions.get(&session).unwrap_or(&empty);
                if let Some((culprit, what)) = mailbox.equivocation {
                    return Err(DkgError::Equivocated { culprit, what });
                }
                match take(mailbox) {
                    Ok(found) => return Ok(found),
                    Err(missing) => missing,
                }
            };
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(DkgError::Timeout { stage, missing });
            }
        }
    }

    fn forget(&self, session: SessionId) {
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

/// Sends `request` to `peer`, retrying until `deadline` (peers may still be connecting).
async fn send_until(mesh: &MeshHandle, peer: PeerId, request: Request, deadline: Instant) -> Result<(), PeerId> {
    loop {
        match mesh.request(peer, request.clone()).await {
            Ok(Response::Ack) => return Ok(()),
            Ok(other) => tracing::debug!(%peer, ?other, "DKG step not taken; retrying"),
            Err(error) => tracing::debug!(%peer, %error, "DKG step not delivered; retrying"),
        }
        if Instant::now() + Duration::from_millis(250) > deadline {
            return Err(peer);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn send_all(
    mesh: &MeshHandle,
    requests: Vec<(PeerId, Request)>,
    deadline: Instant,
    stage: &'static str,
) -> Result<(), DkgError> {
    let results =
        futures::future::join_all(requests.into_iter().map(|(peer, r)| send_until(mesh, peer, r, deadline))).await;
    let missing: Vec<PeerId> = results.into_iter().filter_map(Result::err).collect();
    if missing.is_empty() { Ok(()) } else { Err(DkgError::Timeout { stage, missing }) }
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
pub(crate) enum Ceremony {
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
    let deadline = Instant::now() + timeout;
    let me = participants.my_identifier()?;
    let n = participants.count()?;
    let t = participants.threshold;
    let frost_error =
        |stage: &'static str| move |e: frost::Error| DkgError::Frost { stage, culprit: None, reason: e.to_string() };
    let (secret1, package1) = match &ceremony {
        Ceremony::Fresh => frost::keys::dkg::part1(me, n, t, OsRng),
        Ceremony::Refresh(_) => frost::keys::refresh::refresh_dkg_part1(me, n, t, OsRng),
    }
    .map_err(frost_error("part 1"))?;
    let package1 = Encoded(package1.serialize().map_err(frost_error("round-1 encoding"))?);

    let others: Vec<(Identifier, PeerId)> = participants.others().map(|(i, p)| (*i, *p)).collect();
    let round1_requests = others
        .iter()
        .map(|(_, peer)| (*peer, Request::Dkg { session, step: DkgStep::Round1(package1.clone()) }))
        .collect();
    send_all(mesh, round1_requests, deadline, "round 1").await?;

    let total = others.len();
    let round1_bytes: BTreeMap<Identifier, Encoded> =
        inbox.wait(session, deadline, "round 1", |mailbox| from_everyone(&others, &mailbox.round1)).await?;
    progress(DkgProgress::Round1 { received: round1_bytes.len(), of: total });
    // Decoded before the echo, so a sender of bytes that are no package is named at once.
    let round1_received: BTreeMap<Identifier, round1::Package> =
        decode_all(participants, round1_bytes.clone(), "round 1", round1::Package::deserialize)?;

    // The echo round: everyone must hold the same round-1 packages, byte for byte.
    let mut digests = BTreeMap::new();
    digests.insert(me, digest(&package1));
    for (identifier, bytes) in &round1_bytes {
        digests.insert(*identifier, digest(bytes));
    }
    let echo = encode_echo(participants, &digests);
    let echo_requests =
        others.iter().map(|(_, peer)| (*peer, Request::Dkg { session, step: DkgStep::Echo(echo.clone()) })).collect();
    send_all(mesh, echo_requests, deadline, "the echo round").await?;
    // Checked as each echo arrives: a cheater need not echo at all for its lie to be caught.
    inbox
        .wait(session, deadline, "the echo round", |mailbox| {
            for (echoer, their_digests) in &mailbox.echoes {
                if let Some(culprit) = echo_mismatch(participants, me, &digests, *echoer, their_digests) {
                    return Ok(Err(culprit));
                }
            }
            from_everyone(&others, &mailbox.echoes).map(|_| Ok(()))
        })
        .await?
        .map_err(|culprit| {
            metrics::counter!("tss_dkg_aborts_total").increment(1);
            DkgError::Inconsistent { culprit }
        })?;
    progress(DkgProgress::Echo);

    let culprit_of = |e: &frost::Error| e.culprits().first().and_then(|c| participants.by_identifier.get(c)).copied();
    let (secret2, round2_out) = match &ceremony {
        Ceremony::Fresh => frost::keys::dkg::part2(secret1, &round1_received),
        Ceremony::Refresh(_) => frost::keys::refresh::refresh_dkg_part2(secret1, &round1_received),
    }
    .map_err(|e| DkgError::Frost { stage: "part 2", culprit: culprit_of(&e), reason: e.to_string() })?;
    let mut round2_requests = Vec::new();
    for (identifier, package) in round2_out {
        let Some(peer) = participants.by_identifier.get(&identifier) else { continue };
        let bytes = Encoded(package.serialize().map_err(frost_error("round-2 encoding"))?);
        round2_requests.push((*peer, Request::Dkg { session, step: DkgStep::Round2(bytes) }));
    }
    send_all(mesh, round2_requests, deadline, "round 2").await?;
    let round2_bytes =
        inbox.wait(session, deadline, "round 2", |mailbox| from_everyone(&others, &mailbox.round2)).await?;
    let round2_received: BTreeMap<Identifier, round2::Package> =
        decode_all(participants, round2_bytes, "round 2", round2::Package::deserialize)?;
    progress(DkgProgress::Round2);

    let (key_package, public) = match ceremony {
        Ceremony::Fresh => frost::keys::dkg::part3(&secret2, &round1_received, &round2_received),
        Ceremony::Refresh(old) => {
            let old = *old;
            let old_key = *old.public.verifying_key();
            let refreshed = frost::keys::refresh::refresh_dkg_shares(
                &secret2,
                &round1_received,
                &round2_received,
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
    }
    .map_err(|e| DkgError::Frost { stage: "part 3", culprit: culprit_of(&e), reason: e.to_string() })?;
    let signers: BTreeSet<_> = public.verifying_shares().keys().copied().collect();
    let expected: BTreeSet<_> = participants.by_identifier.keys().copied().collect();
    if signers != expected {
        return Err(DkgError::Participants("the key's signer set differs from the participants".into()));
    }
    Ok(KeyShare { key_package, public })
}

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
