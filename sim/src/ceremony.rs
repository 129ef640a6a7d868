//! The watchmen's key ceremony at the run's start: every watchman runs `tss`'s own [`DkgRun`]
//! (FROST's DKG with the echo round) over the simulated mesh, its round-1 randomness from the
//! seed, and its peers' steps taken by its real [`Signer`]'s DKG inbox. A lossy link may slow it
//! (steps are sent again until taken); a byzantine watchman may send different round-1 packages
//! to different peers ([`WatchmanAttack::SplitsRound1`]).
//!
//! `dkg-agreement`: the honest watchmen end a ceremony the same way: all with shares of one
//! group key, or all aborted, and an abort names a byzantine watchman (or is a timeout). After an
//! abort the operators run it again with the liar behaving (the simulator's stand-in for
//! dropping it from the roster), at most [`MAX_CEREMONIES`] times.

// A DkgError names PeerIds (80 bytes each); ceremonies are a cold path, as in `tss`.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secp256k1::XOnlyPublicKey;
use tss::dkg::{Ceremony, DkgError, DkgRun, DkgSend, DkgStatus, Participants, identifier_of};
use tss::frost::{self, Identifier};
use tss::messages::{DkgStep, Encoded, Request, Response};
use tss::signer::{InboundHandler, Signer};
use tss::{KeyPath, KeyShare, SessionId};

use crate::clock::NodeClock;
use crate::evm::EthVault;
use crate::mesh::{LinkFault, MeshEvent, Question, SimMesh};
use crate::rng::SimRng;
use crate::signing::WatchmanAttack;
use crate::world::World;
use crate::{SimConfig, SimError};

/// A ceremony fails at this age.
const CEREMONY_TIMEOUT: Duration = Duration::from_secs(120);
/// Ceremonies run before the simulator gives up (`dkg-liveness`).
const MAX_CEREMONIES: usize = 3;

/// The group's key and how each watchman is named on the mesh.
pub(crate) struct Keys {
    /// Each watchman's share, by index (empty until a ceremony succeeds).
    pub(crate) shares: Vec<KeyShare>,
    pub(crate) peers: Vec<libp2p::PeerId>,
    pub(crate) by_identifier: BTreeMap<Identifier, libp2p::PeerId>,
    pub(crate) index_of: BTreeMap<Identifier, usize>,
    /// The x-only key the vault verifies a range's signature under.
    pub(crate) vault_key: Option<XOnlyPublicKey>,
    pub(crate) threshold: u16,
}

impl Keys {
    /// `n` watchmen's names on the mesh (FROST identifiers are hashes of them), for a `t`-of-`n`
    /// key.
    pub(crate) fn name(rng: &mut SimRng, config: &SimConfig, t: u16) -> Result<Self, SimError> {
        let setup = |what: String| SimError::Setup(format!("the watchmen's names: {what}"));
        let mut peers = Vec::with_capacity(config.confirmers);
        for _ in 0..config.confirmers {
            let keypair =
                libp2p::identity::Keypair::ed25519_from_bytes(rng.bytes32()).map_err(|e| setup(e.to_string()))?;
            peers.push(keypair.public().to_peer_id());
        }
        let mut by_identifier = BTreeMap::new();
        let mut index_of = BTreeMap::new();
        for (index, peer) in peers.iter().enumerate() {
            let identifier = identifier_of(peer).map_err(|e| setup(e.to_string()))?;
            by_identifier.insert(identifier, *peer);
            index_of.insert(identifier, index);
        }
        Ok(Keys { shares: Vec::new(), peers, by_identifier, index_of, vault_key: None, threshold: t })
    }

    pub(crate) fn index_of_peer(&self, peer: &libp2p::PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }
}

/// The liar's round-1 package of another polynomial, for one peer.
struct Split {
    liar: usize,
    target: libp2p::PeerId,
    request: Request,
}

/// One participant in one ceremony.
struct Participant {
    run: Option<DkgRun>,
    inbox: Signer,
    wake_ms: u64,
    ended: Option<Result<KeyShare, DkgError>>,
}

/// Which ceremony the watchmen run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CeremonyKind {
    /// The key at the run's start.
    Keygen,
    /// New shares of the same key (refresh.rs).
    Refresh,
}

/// Where a ceremony's steps travel and its chances come from: the watchmen's mesh and the
/// world's stream for the key at the start; the operators' ceremony nodes' own mesh and the
/// refresh's stream for a refresh, which runs beside the watchmen (refresh.rs).
pub(crate) struct CeremonyNet {
    pub(crate) mesh: SimMesh,
    pub(crate) rng: SimRng,
}

impl World {
    /// Runs key ceremonies until one gives every watchman a share. The world's clock moves to
    /// the first tick after the last one.
    pub(crate) fn key_ceremony(&mut self) -> Result<(), SimError> {
        // The key ceremony is the first thing on the watchmen's mesh, its chances the world's.
        let mut net =
            CeremonyNet { mesh: std::mem::take(&mut self.mesh), rng: std::mem::replace(&mut self.rng, SimRng::new(0)) };
        let ended = self.ceremonies(&mut net, CeremonyKind::Keygen);
        self.mesh = net.mesh;
        self.rng = net.rng;
        if let Some((attempt, shares)) = ended? {
            self.install(shares)?;
            self.log(format!("key ceremony {attempt} done: every watchman holds a share"));
        }
        Ok(())
    }

    /// Runs ceremonies of `kind` on `net` until one gives every watchman a share (with the
    /// attempt that did), checking `dkg-agreement` after each; `None` once an invariant broke.
    pub(crate) fn ceremonies(
        &mut self,
        net: &mut CeremonyNet,
        kind: CeremonyKind,
    ) -> Result<Option<(usize, Vec<KeyShare>)>, SimError> {
        let mut liar = self.byzantine_watchman.filter(|(_, k)| *k == WatchmanAttack::SplitsRound1).map(|(i, _)| i);
        if net.rng.below(3) == 0 && self.confirmers.len() > 1 {
            // A lossy, duplicating link during the ceremony: steps are sent again until taken.
            let until = self.now() + 60_000;
            let (from, to, fault) = LinkFault::random(&mut net.rng, self.confirmers.len(), 3_000, until);
            net.mesh.degrade(from, to, fault);
            self.faults += 1;
            self.log(format!(
                "FAULT mesh link {from}→{to} drops {}% and duplicates {}% during the {}",
                fault.drop_per_million / 10_000,
                fault.duplicate_per_million / 10_000,
                kind.describe(),
            ));
        }
        for attempt in 1..=MAX_CEREMONIES {
            let ended = self.one_ceremony(net, liar, kind)?;
            let finished: Vec<(usize, &KeyShare)> =
                ended.iter().enumerate().filter_map(|(i, e)| Some((i, e.as_ref().ok()?))).collect();
            let honest = |i: &usize| Some(*i) != liar;
            // `dkg-agreement`: every honest participant ended the same way.
            let keys: BTreeSet<Vec<u8>> = finished
                .iter()
                .filter(|(i, _)| honest(i))
                .filter_map(|(_, share)| share.public.verifying_key().serialize().ok())
                .collect();
            let honest_count = (0..ended.len()).filter(honest).count();
            let honest_finished = finished.iter().filter(|(i, _)| honest(i)).count();
            if keys.len() > 1 || (honest_finished > 0 && honest_finished < honest_count) {
                let detail = format!(
                    "{} {attempt}: {honest_finished} of {honest_count} honest watchmen ended with a share, under {} group keys",
                    kind.describe(),
                    keys.len()
                );
                self.violate("dkg-agreement", detail);
                return Ok(None);
            }
            for (index, outcome) in ended.iter().enumerate() {
                if let Err(error) = outcome {
                    let named = match error {
                        DkgError::Inconsistent { culprit } | DkgError::Equivocated { culprit, .. } => Some(*culprit),
                        DkgError::Frost { culprit, .. } => *culprit,
                        _ => None,
                    };
                    let named_index = named.and_then(|p| self.keys.index_of_peer(&p));
                    self.log(format!("watchman {index}'s ceremony aborted: {} (names {named_index:?})", short(error)));
                    if honest(&index) && named_index.is_some_and(|n| honest(&n)) {
                        self.violate(
                            "dkg-agreement",
                            format!("watchman {index} blamed honest watchman {named_index:?}"),
                        );
                        return Ok(None);
                    }
                }
            }
            if honest_finished == honest_count && finished.len() == ended.len() {
                return Ok(Some((attempt, ended.into_iter().filter_map(Result::ok).collect())));
            }
            // Aborted: run again with the liar behaving.
            liar = None;
        }
        self.violate(
            "dkg-liveness",
            format!("{MAX_CEREMONIES} attempts at the {} ended without a key", kind.describe()),
        );
        Ok(None)
    }

    fn install(&mut self, shares: Vec<KeyShare>) -> Result<(), SimError> {
        let public = shares.first().map(|s| s.public.clone()).ok_or_else(|| SimError::Setup("no share".into()))?;
        let key = tss::GroupKey::key_for(&public, &KeyPath::Vault).map_err(|e| SimError::Setup(e.to_string()))?;
        self.keys.vault_key = Some(XOnlyPublicKey::from_slice(&key).map_err(|e| SimError::Setup(e.to_string()))?);
        self.keys.shares = shares;
        let vault = EthVault::deploy(key, self.params.chain_id).map_err(SimError::Setup)?;
        self.log(format!("the vault is deployed at {} under the group's key", EthVault::address()));
        self.evm = Some(vault);
        Ok(())
    }

    /// One ceremony among every watchman on `net`, to its end for each; `liar` splits its
    /// round 1. A key ceremony moves the world's clock to the first tick after its end; a
    /// refresh runs beside the world and leaves it where it was.
    fn one_ceremony(
        &mut self,
        net: &mut CeremonyNet,
        liar: Option<usize>,
        kind: CeremonyKind,
    ) -> Result<Vec<Result<KeyShare, DkgError>>, SimError> {
        let session = SessionId(net.rng.bytes16());
        let start = self.now();
        let mesh_before = self.mesh_ms.load(Ordering::SeqCst);
        let n = self.keys.peers.len();
        let mut participants = Vec::with_capacity(n);
        for index in 0..n {
            let me = self.keys.peers[index];
            let others = self.keys.peers.iter().copied().filter(|p| *p != me);
            let roster =
                Participants::new(me, others, self.keys.threshold).map_err(|e| SimError::Setup(e.to_string()))?;
            let ceremony = match kind {
                CeremonyKind::Keygen => Ceremony::Fresh,
                CeremonyKind::Refresh => {
                    let share = self.keys.shares.get(index).cloned().ok_or_else(|| SimError::Role {
                        what: "share refresh",
                        reason: format!("watchman {index} holds no share"),
                    })?;
                    Ceremony::Refresh(Box::new(share))
                }
            };
            let mut rng = ChaCha20Rng::from_seed(net.rng.bytes32());
            let run = DkgRun::new(session, roster, ceremony, Duration::from_millis(start), CEREMONY_TIMEOUT, &mut rng)
                .map_err(|e| SimError::Setup(e.to_string()))?;
            let seed = net.rng.bytes32();
            let inbox =
                self.signer_from(seed, None, Arc::new(tss::ApproveAll), Default::default(), &NodeClock::default());
            participants.push(Participant { run: Some(run), inbox, wake_ms: start, ended: None });
        }
        let split = liar.and_then(|liar| self.split(net, liar, session, kind));
        for index in 0..n {
            self.step_participant(net, &mut participants, index, start, split.as_ref());
        }
        while participants.iter().any(|p| p.ended.is_none()) {
            let Some((at, event)) = net.mesh.pop_due(u64::MAX) else {
                return Err(SimError::Role { what: kind.describe(), reason: "nothing left to happen".into() });
            };
            self.mesh_ms.store(at, Ordering::SeqCst);
            match event {
                MeshEvent::Deliver { slot, ticket, asker, signer, request } => {
                    let response = participants[signer].inbox.handle(self.keys.peers[asker], request);
                    net.mesh.answer(&mut net.rng, at, (slot, ticket), (signer, asker), response);
                }
                MeshEvent::Answer { slot, ticket, response } => {
                    if let Some(run) = participants.get_mut(slot).and_then(|p| p.run.as_mut()) {
                        run.answer(Duration::from_millis(at), ticket, matches!(response, Response::Ack));
                    }
                }
                MeshEvent::Wake { slot } => {
                    if participants.get(slot).is_some_and(|p| p.wake_ms != at) {
                        continue;
                    }
                }
            }
            // A step in a mailbox may move any participant on.
            for index in 0..n {
                self.step_participant(net, &mut participants, index, at, split.as_ref());
            }
        }
        // The ceremony's leftovers are dropped.
        let end = self.mesh_ms.load(Ordering::SeqCst);
        while net.mesh.pop_due(u64::MAX).is_some() {}
        match kind {
            CeremonyKind::Keygen => {
                // The world resumes at the first tick after the ceremony.
                let tick = self.config.tick_ms;
                self.now_ms.store(end.div_ceil(tick) * tick, Ordering::SeqCst);
                self.mesh_ms.store(self.now(), Ordering::SeqCst);
            }
            CeremonyKind::Refresh => self.mesh_ms.store(mesh_before, Ordering::SeqCst),
        }
        Ok(participants
            .into_iter()
            .map(|p| p.ended.unwrap_or_else(|| Err(DkgError::Participants("never ran".into()))))
            .collect())
    }

    fn step_participant(
        &mut self,
        net: &mut CeremonyNet,
        participants: &mut [Participant],
        index: usize,
        at: u64,
        split: Option<&Split>,
    ) {
        let participant = &mut participants[index];
        let Some(run) = participant.run.as_mut() else { return };
        let status = run.advance(Duration::from_millis(at), &participant.inbox.dkg_inbox());
        let sends = run.take_sends();
        match status {
            DkgStatus::Waiting { wake } => {
                let wake_ms = u64::try_from(wake.as_millis()).unwrap_or(u64::MAX).max(at + 1);
                if wake_ms != participant.wake_ms {
                    participant.wake_ms = wake_ms;
                    net.mesh.schedule(wake_ms, MeshEvent::Wake { slot: index });
                }
            }
            DkgStatus::Done(result) => {
                participant.run = None;
                participant.ended = Some(result);
            }
        }
        for DkgSend { ticket, to, request } in sends {
            let Some(signer) = self.keys.index_of_peer(&to) else { continue };
            let request = match split {
                Some(split)
                    if split.liar == index
                        && split.target == to
                        && matches!(request, Request::Dkg { step: DkgStep::Round1(_), .. }) =>
                {
                    split.request.clone()
                }
                _ => request,
            };
            net.mesh.ask(&mut net.rng, at, Question { slot: index, ticket, asker: index, signer, request });
        }
    }

    /// The liar's round-1 package for its first peer: of another polynomial than the one it
    /// sends the rest (and every send of it again is the same lie).
    fn split(&mut self, net: &mut CeremonyNet, liar: usize, session: SessionId, kind: CeremonyKind) -> Option<Split> {
        let identifier = self.keys.index_of.iter().find(|(_, i)| **i == liar).map(|(id, _)| *id)?;
        let target = *self.keys.peers.iter().enumerate().find(|(i, _)| *i != liar)?.1;
        let n = u16::try_from(self.keys.peers.len()).ok()?;
        let mut rng = ChaCha20Rng::from_seed(net.rng.bytes32());
        let t = self.keys.threshold;
        let (_, package) = match kind {
            CeremonyKind::Keygen => frost::keys::dkg::part1(identifier, n, t, &mut rng),
            CeremonyKind::Refresh => frost::keys::refresh::refresh_dkg_part1(identifier, n, t, &mut rng),
        }
        .ok()?;
        let bytes = package.serialize().ok()?;
        let index = self.keys.index_of_peer(&target)?;
        self.log(format!("watchman {liar} sends watchman {index} a different round-1 package than the others"));
        Some(Split { liar, target, request: Request::Dkg { session, step: DkgStep::Round1(Encoded(bytes)) } })
    }
}

impl CeremonyKind {
    fn describe(self) -> &'static str {
        match self {
            CeremonyKind::Keygen => "key ceremony",
            CeremonyKind::Refresh => "share refresh",
        }
    }
}

fn short(error: &DkgError) -> String {
    match error {
        DkgError::Inconsistent { .. } => "inconsistent round-1 packages".into(),
        DkgError::Equivocated { what, .. } => format!("two different {what} messages"),
        DkgError::Timeout { stage, missing } => format!("timed out in {stage} waiting for {} peers", missing.len()),
        DkgError::Frost { stage, .. } => format!("FROST rejected {stage}"),
        other => other.to_string(),
    }
}
