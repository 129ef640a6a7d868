//! The watchmen's mesh: libp2p over TCP with Noise and Yamux, identify and ping, and one
//! request-response protocol for everything the protocols say.
//!
//! Only peers on the configured allow-list get a connection: a PeerId is known once the Noise
//! handshake has proved it, and the allow-list behaviour denies every other one then (counted
//! in `tss_mesh_refused_connections_total`). Of each pair of watchmen the one with the smaller
//! PeerId dials, and redials with exponential backoff while disconnected, so a restarted
//! watchman rejoins by itself; a request to a peer not connected dials it at once.
//!
//! One task owns the swarm; [`MeshHandle`] talks to it over channels, and inbound requests go
//! out on an [`Inbound`] channel whose receiver answers them. Each peer may have at most
//! [`MAX_INBOUND_PER_PEER`] requests waiting for their answer here; beyond that it is answered
//! [`Overload::QueueFull`] at once, so one peer cannot fill the queue the others need.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, allow_block_list, identify, noise, ping, tcp, yamux};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::messages::{Overload, Request, Response};
use crate::traffic::{Counters, CountingCodec, Traffic};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/bridge-tss/5");
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Requests one peer may have waiting for their answer here. An honest coordinator has one or
/// two per session in flight to each signer (a `Commit`, a `Sign`, a DKG step); a few
/// concurrent sessions fit well within this.
pub const MAX_INBOUND_PER_PEER: u32 = 16;
/// Substreams per connection (inbound and outbound together). Each inbound one may buffer a
/// whole request (up to `MAX_MESSAGE`) before the per-peer queue sees it, so this bounds what a
/// peer can make this watchman hold in flight.
const MAX_STREAMS_PER_CONNECTION: usize = 64;
/// The whole inbound channel: every peer's queue fits in it (allow-lists are far smaller than
/// this over [`MAX_INBOUND_PER_PEER`]).
const INBOUND_CHANNEL: usize = 1024;

/// One watchman of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    pub peer_id: PeerId,
    pub address: Multiaddr,
}

#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Where to listen, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Multiaddr,
    /// Every watchman, this one included (its own entry is not dialled).
    pub peers: Vec<PeerEntry>,
    /// How long one request waits for its answer.
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MeshError {
    #[error("peer {0} is not on the mesh's allow-list")]
    NotAllowed(PeerId),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("the mesh task has stopped")]
    Stopped,
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
}

/// A request from a peer, to be answered through `reply`.
#[derive(Debug)]
pub struct Inbound {
    pub from: PeerId,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

enum Command {
    Request { peer: PeerId, request: Request, reply: oneshot::Sender<Result<Response, MeshError>> },
    Respond { peer: PeerId, channel: ResponseChannel<Response>, response: Response },
}

/// Talks to the mesh task; cheap to clone.
#[derive(Clone, Debug)]
pub struct MeshHandle {
    local: PeerId,
    commands: mpsc::Sender<Command>,
    connected: watch::Receiver<BTreeSet<PeerId>>,
    listening: watch::Receiver<Vec<Multiaddr>>,
    traffic: Arc<Counters>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request { peer, .. } => write!(f, "Request({peer})"),
            Command::Respond { .. } => f.write_str("Respond"),
        }
    }
}

impl MeshHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Sends `request` to `peer` and waits for its answer (or the request timeout).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, MeshError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Request { peer, request, reply }).await.map_err(|_| MeshError::Stopped)?;
        answer.await.map_err(|_| MeshError::Stopped)?
    }

    /// Bytes of messages this mesh has written and read since it started.
    pub fn traffic(&self) -> Traffic {
        self.traffic.snapshot()
    }

    /// The peers with an open connection now.
    pub fn connected(&self) -> BTreeSet<PeerId> {
        self.connected.borrow().clone()
    }

    /// Waits until every one of `peers` is connected, reporting progress through `progress`.
    pub async fn wait_for(
        &self,
        peers: &BTreeSet<PeerId>,
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), BTreeSet<PeerId>> {
        let mut connected = self.connected.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let now: BTreeSet<PeerId> = connected.borrow_and_update().clone();
            let missing: BTreeSet<PeerId> = peers.difference(&now).copied().collect();
            progress(peers.len() - missing.len(), peers.len());
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, connected.changed()).await.is_err() {
                return Err(missing);
            }
        }
    }

    /// The addresses the mesh listens on, once it does.
    pub async fn listen_addresses(&self) -> Vec<Multiaddr> {
        let mut listening = self.listening.clone();
        loop {
            let now = listening.borrow_and_update().clone();
            if !now.is_empty() {
                return now;
            }
            if listening.changed().await.is_err() {
                return Vec::new();
            }
        }
    }
}

#[derive(NetworkBehaviour)]
struct MeshBehaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rpc: request_response::Behaviour<CountingCodec>,
}

/// Starts the mesh task. Returns once it listens.
pub async fn start(
    identity: libp2p::identity::Keypair,
    config: MeshConfig,
) -> Result<(MeshHandle, mpsc::Receiver<Inbound>, tokio::task::JoinHandle<()>), MeshError> {
    let local = identity.public().to_peer_id();
    let listen_error = |reason: String| MeshError::Listen { address: config.listen.clone(), reason };
    let timeout = config.request_timeout;
    let counters = Arc::new(Counters::default());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| listen_error(e.to_string()))?
        .with_behaviour(|key| {
            let codec = request_response::cbor::codec::Codec::<Request, Response>::default()
                .set_request_size_maximum(MAX_MESSAGE)
                .set_response_size_maximum(MAX_MESSAGE);
            let codec = CountingCodec::new(codec, counters.clone());
            MeshBehaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new("/bridge-tss/5".into(), key.public())),
                ping: ping::Behaviour::default(),
                rpc: request_response::Behaviour::with_codec(
                    codec,
                    [(PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(timeout)
                        .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
                ),
            }
        })
        .map_err(|e| listen_error(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();

    let mut addresses = BTreeMap::new();
    for peer in &config.peers {
        if peer.peer_id != local {
            swarm.behaviour_mut().allow.allow_peer(peer.peer_id);
            addresses.insert(peer.peer_id, peer.address.clone());
        }
    }
    swarm.listen_on(config.listen.clone()).map_err(|e| listen_error(e.to_string()))?;

    let (commands_tx, commands) = mpsc::channel(1024);
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_CHANNEL);
    let (connected_tx, connected) = watch::channel(BTreeSet::new());
    let (listening_tx, listening) = watch::channel(Vec::new());
    let handle = MeshHandle { local, commands: commands_tx.clone(), connected, listening, traffic: counters };
    let mut task = MeshTask {
        swarm,
        addresses,
        commands,
        responder: commands_tx,
        inbound: inbound_tx,
        connected: connected_tx,
        listening: listening_tx,
        pending: BTreeMap::new(),
        redial: BTreeMap::new(),
        waiting: BTreeMap::new(),
    };
    let join = tokio::spawn(async move { task.run().await });
    let mut ready = handle.clone();
    if tokio::time::timeout(Duration::from_secs(10), ready.listen_addresses()).await.is_err() {
        join.abort();
        return Err(MeshError::Listen { address: config.listen, reason: "no listening address after 10 s".into() });
    }
    let _ = &mut ready;
    Ok((handle, inbound, join))
}

struct Redial {
    at: Instant,
    backoff: Duration,
}

struct MeshTask {
    swarm: libp2p::Swarm<MeshBehaviour>,
    addresses: BTreeMap<PeerId, Multiaddr>,
    commands: mpsc::Receiver<Command>,
    responder: mpsc::Sender<Command>,
    inbound: mpsc::Sender<Inbound>,
    connected: watch::Sender<BTreeSet<PeerId>>,
    listening: watch::Sender<Vec<Multiaddr>>,
    pending: BTreeMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<Response, MeshError>>)>,
    redial: BTreeMap<PeerId, Redial>,
    /// Inbound requests each peer has waiting for their answer.
    waiting: BTreeMap<PeerId, u32>,
}

impl MeshTask {
    async fn run(&mut self) {
        let now = Instant::now();
        // Of each pair, the peer with the smaller PeerId keeps the connection up, so a mesh of n
        // holds n(n-1)/2 connections, not twice that; requests still dial on demand.
        let local = *self.swarm.local_peer_id();
        for peer in self.addresses.keys().filter(|p| local < **p) {
            self.redial.insert(*peer, Redial { at: now, backoff: BACKOFF_MIN });
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => self.redial_due(),
            }
        }
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self.redial.iter().filter(|(_, r)| r.at <= now).map(|(p, _)| *p).collect();
        for peer in due {
            if self.swarm.is_connected(&peer) {
                self.redial.remove(&peer);
                continue;
            }
            let Some(address) = self.addresses.get(&peer).cloned() else { continue };
            if let Err(error) = self.swarm.dial(DialOpts::peer_id(peer).addresses(vec![address]).build()) {
                tracing::debug!(%peer, %error, "dial not started");
            }
            if let Some(redial) = self.redial.get_mut(&peer) {
                redial.at = now + redial.backoff;
                redial.backoff = (redial.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { peer, request, reply } => {
                let Some(address) = self.addresses.get(&peer).cloned() else {
                    let _ = reply.send(Err(MeshError::NotAllowed(peer)));
                    return;
                };
                // With the address, a request to a peer not yet connected dials it first.
                let id = self.swarm.behaviour_mut().rpc.send_request_with_addresses(&peer, request, vec![address]);
                self.pending.insert(id, (peer, reply));
            }
            Command::Respond { peer, channel, response } => {
                if let Some(waiting) = self.waiting.get_mut(&peer) {
                    *waiting = waiting.saturating_sub(1);
                    if *waiting == 0 {
                        self.waiting.remove(&peer);
                    }
                }
                if self.swarm.behaviour_mut().rpc.send_response(channel, response).is_err() {
                    tracing::debug!("a peer went away before its answer was sent");
                }
            }
        }
    }

    /// Answers at once that `peer` is over its queue: cheap, and the peer knows to wait.
    fn refuse(&mut self, peer: PeerId, channel: ResponseChannel<Response>, overload: Overload) {
        metrics::counter!("tss_overload_refusals_total", "reason" => overload.reason()).increment(1);
        tracing::debug!(%peer, %overload, "refused a request over the peer's queue");
        if self.swarm.behaviour_mut().rpc.send_response(channel, Response::Overloaded(overload)).is_err() {
            tracing::debug!(%peer, "a peer went away before its refusal was sent");
        }
    }

    fn publish_connected(&mut self) {
        let connected: BTreeSet<PeerId> = self.swarm.connected_peers().copied().collect();
        metrics::gauge!("tss_mesh_connected_peers").set(connected.len() as f64);
        self.connected.send_replace(connected);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<MeshBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "mesh listening");
                self.listening.send_modify(|all| all.push(address));
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                tracing::debug!(peer = %peer_id, "connected");
                self.redial.remove(&peer_id);
                self.publish_connected();
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::info!(peer = %peer_id, "disconnected; redialling with backoff");
                if self.addresses.contains_key(&peer_id) && *self.swarm.local_peer_id() < peer_id {
                    self.redial.insert(peer_id, Redial { at: Instant::now() + BACKOFF_MIN, backoff: BACKOFF_MIN });
                }
                self.publish_connected();
            }
            SwarmEvent::IncomingConnectionError { error: ListenError::Denied { cause }, send_back_addr, .. } => {
                metrics::counter!("tss_mesh_refused_connections_total").increment(1);
                tracing::warn!(from = %send_back_addr, %cause, "refused a connection from a peer not on the allow-list");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let DialError::Denied { cause } = &error {
                    metrics::counter!("tss_mesh_refused_connections_total").increment(1);
                    tracing::warn!(?peer_id, %cause, "refused an outgoing connection");
                } else {
                    tracing::debug!(?peer_id, %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(MeshBehaviourEvent::Rpc(event)) => self.on_rpc(event),
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let queued = self.waiting.get(&peer).copied().unwrap_or(0);
                    if queued >= MAX_INBOUND_PER_PEER {
                        self.refuse(peer, channel, Overload::QueueFull { queued, max: MAX_INBOUND_PER_PEER });
                        return;
                    }
                    let (reply, answer) = oneshot::channel();
                    if self.inbound.try_send(Inbound { from: peer, request, reply }).is_err() {
                        tracing::warn!(%peer, "the inbound channel is full; refusing a request");
                        self.refuse(peer, channel, Overload::QueueFull { queued, max: MAX_INBOUND_PER_PEER });
                        return;
                    }
                    *self.waiting.entry(peer).or_insert(0) += 1;
                    let responder = self.responder.clone();
                    tokio::spawn(async move {
                        let response = answer
                            .await
                            .unwrap_or_else(|_| Response::Failed { reason: "the request was not answered".into() });
                        let _ = responder.send(Command::Respond { peer, channel, response }).await;
                    });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(MeshError::Request { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
