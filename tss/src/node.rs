//! A watchman's threshold-signing node: the mesh, the signer answering peers, and the session
//! coordinator for what this watchman wants signed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dkg::{self, Ceremony, DkgError, DkgProgress, Participants};
use crate::group::GroupKey;
use crate::keystore::KeyShare;
use crate::mesh::{self, Inbound, MeshConfig, MeshError, MeshHandle};
use crate::policy::{SigningPolicy, SigningRequest};
use crate::roast::{self, SessionError, SessionOutcome, Signers};
use crate::signer::{InboundHandler, Signer};
use crate::{SessionId, TssError};

pub struct TssNodeConfig {
    pub identity: libp2p::identity::Keypair,
    pub mesh: MeshConfig,
    /// The DKG threshold `t` (a signature needs `t` shares).
    pub threshold: u16,
    pub share: Option<KeyShare>,
    pub policy: Arc<dyn SigningPolicy>,
    /// A signing session's deadline.
    pub session_timeout: Duration,
    /// How long before an unresponsive signer is asked again within a session.
    pub retry: Duration,
}

impl std::fmt::Debug for TssNodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TssNodeConfig")
            .field("mesh", &self.mesh)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

pub struct TssNode {
    mesh: MeshHandle,
    signer: Arc<Signer>,
    /// Every watchman by FROST identifier, this one answered in-process: fixed at start.
    signers: Signers,
    peers: Vec<PeerId>,
    threshold: u16,
    session_timeout: Duration,
    retry: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for TssNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TssNode").field("peer", &self.mesh.local_peer_id()).finish_non_exhaustive()
    }
}

impl TssNode {
    pub async fn start(config: TssNodeConfig) -> Result<Self, MeshError> {
        let signer = Arc::new(Signer::new(config.share.clone(), config.policy.clone()));
        Self::start_with_handler(config, signer.clone(), signer).await
    }

    /// Starts with `handler` answering peers (tests use a handler that misbehaves; watchmen use
    /// the [`Signer`] itself).
    pub async fn start_with_handler(
        config: TssNodeConfig,
        signer: Arc<Signer>,
        handler: Arc<dyn InboundHandler>,
    ) -> Result<Self, MeshError> {
        let local = config.identity.public().to_peer_id();
        let peers: Vec<PeerId> = config.mesh.peers.iter().map(|p| p.peer_id).filter(|p| *p != local).collect();
        let by_identifier: BTreeMap<_, _> =
            peers.iter().chain([&local]).filter_map(|p| Some((dkg::identifier_of(p).ok()?, *p))).collect();
        let (mesh, inbound, mesh_task) = mesh::start(config.identity, config.mesh).await?;
        let inbound_task = tokio::spawn(answer_in_turn(inbound, handler.clone()));
        Ok(TssNode {
            signers: Signers { mesh: mesh.clone(), local: handler, by_identifier, pool: Default::default() },
            mesh,
            signer,
            peers,
            threshold: config.threshold,
            session_timeout: config.session_timeout,
            retry: config.retry,
            tasks: vec![mesh_task, inbound_task],
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.mesh.local_peer_id()
    }

    pub fn mesh(&self) -> &MeshHandle {
        &self.mesh
    }

    pub fn share(&self) -> Option<KeyShare> {
        self.signer.share()
    }

    pub fn group_key(&self) -> Option<Result<GroupKey, TssError>> {
        self.share().map(|s| GroupKey::of(&s.public))
    }

    fn participants(&self) -> Result<Participants, DkgError> {
        Participants::new(self.peer_id(), self.peers.iter().copied(), self.threshold)
    }

    /// Runs the DKG with every configured watchman (all must run it with `session`), installs the
    /// share, and returns it.
    pub async fn dkg(
        &self,
        session: SessionId,
        timeout: Duration,
        progress: impl FnMut(DkgProgress),
    ) -> Result<KeyShare, DkgError> {
        let participants = self.participants()?;
        let inbox = self.signer.dkg_inbox();
        let share = dkg::run(&self.mesh, &inbox, session, &participants, Ceremony::Fresh, timeout, progress).await?;
        self.signer.set_share(share.clone());
        self.signers.pool.clear();
        Ok(share)
    }

    /// New shares of the same group key, made with every watchman; the old shares stop working
    /// together with the new ones.
    pub async fn refresh(
        &self,
        session: SessionId,
        timeout: Duration,
        progress: impl FnMut(DkgProgress),
    ) -> Result<KeyShare, DkgError> {
        let participants = self.participants()?;
        let old = self.share().ok_or(DkgError::Participants("no share to refresh".into()))?;
        let inbox = self.signer.dkg_inbox();
        let ceremony = Ceremony::Refresh(Box::new(old));
        let share = dkg::run(&self.mesh, &inbox, session, &participants, ceremony, timeout, progress).await?;
        self.signer.set_share(share.clone());
        self.signers.pool.clear();
        Ok(share)
    }

    /// Commitment sets this watchman keeps of its peers for its next sessions.
    pub fn pooled_commitment_sets(&self) -> usize {
        self.signers.pool.len()
    }

    /// Signs every request in one robust session coordinated by this watchman.
    pub async fn sign(&self, requests: Vec<SigningRequest>) -> Result<SessionOutcome, SessionError> {
        let share = self.share().ok_or(SessionError::NoShare)?;
        let started = std::time::Instant::now();
        let outcome =
            roast::sign(&self.signers, &share, SessionId::random(), requests, self.session_timeout, self.retry).await;
        metrics::histogram!("tss_signing_seconds").record(started.elapsed().as_secs_f64());
        outcome
    }
}

/// Whoever runs a signing session for a caller: the watchman's [`TssNode`] over the libp2p mesh,
/// or the simulator's mesh.
#[async_trait::async_trait]
pub trait ThresholdSigner: Send + Sync {
    /// One session signing every request, or why not.
    async fn sign(&self, requests: Vec<SigningRequest>) -> Result<SessionOutcome, SessionError>;
}

/// The watchman's: a session coordinated by this watchman, to its end.
#[async_trait::async_trait]
impl ThresholdSigner for TssNode {
    async fn sign(&self, requests: Vec<SigningRequest>) -> Result<SessionOutcome, SessionError> {
        TssNode::sign(self, requests).await
    }
}

/// Answers peers' requests one at a time per peer, in turn: a peer's requests wait behind its
/// own, never behind another's, and each peer has at most one answer being computed, so a greedy
/// peer gets one thread of this watchman, not all of them. The queues are bounded by the mesh
/// (`MAX_INBOUND_PER_PEER` each).
async fn answer_in_turn(mut inbound: mpsc::Receiver<Inbound>, handler: Arc<dyn InboundHandler>) {
    let mut queues: BTreeMap<PeerId, VecDeque<Inbound>> = BTreeMap::new();
    let mut answering = FuturesUnordered::new();
    let mut busy: BTreeSet<PeerId> = BTreeSet::new();
    loop {
        tokio::select! {
            request = inbound.recv() => match request {
                Some(request) => queues.entry(request.from).or_default().push_back(request),
                None => break,
            },
            Some(peer) = answering.next(), if !answering.is_empty() => {
                busy.remove(&peer);
            }
        }
        let idle: Vec<PeerId> = queues.keys().filter(|p| !busy.contains(*p)).copied().collect();
        for peer in idle {
            let Some(request) = queues.get_mut(&peer).and_then(VecDeque::pop_front) else { continue };
            if queues.get(&peer).is_some_and(VecDeque::is_empty) {
                queues.remove(&peer);
            }
            busy.insert(peer);
            let handler = handler.clone();
            // Shares and DKG steps cost milliseconds of curve arithmetic: off the reactor.
            let answer = tokio::task::spawn_blocking(move || {
                let response = handler.handle(request.from, request.request);
                let _ = request.reply.send(response);
            });
            // A handler that panicked has dropped its reply (the mesh answers `Failed`); the
            // peer's turn comes round again all the same.
            answering.push(async move {
                if let Err(error) = answer.await {
                    tracing::error!(%peer, %error, "answering a peer's request panicked");
                }
                peer
            });
        }
    }
}

impl Drop for TssNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
