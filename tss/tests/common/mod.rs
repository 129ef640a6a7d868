#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Watchmen on 127.0.0.1: real libp2p nodes in this test process.

use std::sync::Arc;
use std::time::Duration;

use tss::mesh::PeerEntry;
use tss::signer::{InboundHandler, Signer};
use tss::{
    ApproveAll, KeyShare, MeshConfig, SessionId, SigningContext, SigningPolicy, SigningRequest, TssNode, TssNodeConfig,
};

/// `n` distinct ports for meshes, reserved (`tss::ports`) until this test process exits: nextest
/// runs one test per process, so the hold lasts the test, restarts on the same port included.
pub fn mesh_ports(n: usize) -> Vec<u16> {
    let held = tss::ports::reserve(n).expect("reserving loopback ports");
    let ports = held.iter().map(tss::ports::PortReservation::port).collect();
    std::mem::forget(held);
    ports
}

/// Turns the honest signer into the handler a test wants (lying, counting, slow).
pub type Wrap = Box<dyn FnOnce(Arc<Signer>) -> Arc<dyn InboundHandler>>;

/// How each watchman of a test cluster behaves.
pub struct Member {
    pub policy: Arc<dyn SigningPolicy>,
    /// Wraps the honest signer (to lie, count or delay); `None` answers honestly.
    pub wrap: Option<Wrap>,
    pub share: Option<KeyShare>,
}

impl Member {
    pub fn honest() -> Self {
        Member { policy: Arc::new(ApproveAll), wrap: None, share: None }
    }
}

pub struct Cluster {
    pub identities: Vec<libp2p::identity::Keypair>,
    pub entries: Vec<PeerEntry>,
    pub nodes: Vec<Option<TssNode>>,
    pub threshold: u16,
}

pub fn identities(n: usize) -> (Vec<libp2p::identity::Keypair>, Vec<PeerEntry>) {
    let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let entries = identities
        .iter()
        .zip(mesh_ports(n))
        .map(|(k, port)| PeerEntry {
            peer_id: k.public().to_peer_id(),
            address: format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        })
        .collect();
    (identities, entries)
}

pub fn node_config(
    identity: libp2p::identity::Keypair,
    entries: &[PeerEntry],
    me: usize,
    t: u16,
    member: &Member,
) -> TssNodeConfig {
    TssNodeConfig {
        identity,
        mesh: MeshConfig {
            listen: entries[me].address.clone(),
            peers: entries.to_vec(),
            request_timeout: Duration::from_secs(5),
        },
        threshold: t,
        share: member.share.clone(),
        policy: member.policy.clone(),
        session_timeout: Duration::from_secs(60),
        retry: Duration::from_millis(300),
    }
}

pub async fn start_member(
    identity: libp2p::identity::Keypair,
    entries: &[PeerEntry],
    me: usize,
    t: u16,
    member: Member,
) -> TssNode {
    start_member_tuned(identity, entries, me, t, member, |_| {}).await
}

/// [`start_member`] with its configuration changed by `tune` first.
pub async fn start_member_tuned(
    identity: libp2p::identity::Keypair,
    entries: &[PeerEntry],
    me: usize,
    t: u16,
    member: Member,
    tune: fn(&mut TssNodeConfig),
) -> TssNode {
    let mut config = node_config(identity, entries, me, t, &member);
    tune(&mut config);
    let signer = Arc::new(Signer::new(member.share.clone(), member.policy.clone()));
    let handler: Arc<dyn InboundHandler> = match member.wrap {
        Some(wrap) => wrap(signer.clone()),
        None => signer.clone(),
    };
    TssNode::start_with_handler(config, signer, handler).await.unwrap()
}

impl Cluster {
    pub async fn start(n: usize, t: u16, members: impl FnMut(usize) -> Member) -> Cluster {
        Self::start_tuned(n, t, members, |_| {}).await
    }

    /// Every node's configuration changed by `tune` first.
    pub async fn start_tuned(
        n: usize,
        t: u16,
        mut members: impl FnMut(usize) -> Member,
        tune: fn(&mut TssNodeConfig),
    ) -> Cluster {
        let (identities, entries) = identities(n);
        let mut nodes = Vec::new();
        for (i, identity) in identities.iter().enumerate() {
            nodes.push(Some(start_member_tuned(identity.clone(), &entries, i, t, members(i), tune).await));
        }
        Cluster { identities, entries, nodes, threshold: t }
    }

    pub fn node(&self, i: usize) -> &TssNode {
        self.nodes[i].as_ref().unwrap()
    }

    /// Every running node runs the DKG in one session.
    pub async fn dkg(&self) -> Vec<KeyShare> {
        let session = SessionId::random();
        let runs = self.nodes.iter().flatten().map(|node| node.dkg(session, Duration::from_secs(60), |_| {}));
        futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect()
    }

    pub fn stop(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Starts watchman `i` again as a new process would: same identity and address, the share
    /// from its key store, nothing else (no nonces). Polls until its port is free again.
    pub async fn restart(&mut self, i: usize, share: KeyShare) {
        self.nodes[i] = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let member = Member { share: Some(share.clone()), ..Member::honest() };
            let config = node_config(self.identities[i].clone(), &self.entries, i, self.threshold, &member);
            let signer = Arc::new(Signer::new(member.share.clone(), member.policy.clone()));
            match TssNode::start_with_handler(config, signer.clone(), signer).await {
                Ok(node) => {
                    self.nodes[i] = Some(node);
                    return;
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    eprintln!("restarting watchman {i}: {error}; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("watchman {i} did not restart: {error}"),
            }
        }
    }

    /// Waits until watchman `from` is connected to every running watchman.
    pub async fn wait_connected(&self, from: usize) {
        let others = (0..self.nodes.len())
            .filter(|j| *j != from && self.nodes[*j].is_some())
            .map(|j| self.entries[j].peer_id)
            .collect();
        self.node(from).mesh().wait_for(&others, Duration::from_secs(30), |_, _| {}).await.unwrap();
    }
}

pub fn request(message: [u8; 32]) -> SigningRequest {
    SigningRequest {
        message: message.to_vec(),
        key_path: tss::KeyPath::Vault,
        context: SigningContext {
            chain: "test".into(),
            batch: Some(1),
            purpose: "a test message".into(),
            detail: vec![],
        },
    }
}

pub fn verify_bip340(signature: &[u8; 64], message: &[u8], key: &[u8; 32]) -> bool {
    let secp = secp256k1::Secp256k1::verification_only();
    let signature = secp256k1::schnorr::Signature::from_slice(signature).unwrap();
    let key = secp256k1::XOnlyPublicKey::from_slice(key).unwrap();
    let message = secp256k1::Message::from_digest_slice(message).unwrap();
    secp.verify_schnorr(&signature, &message, &key).is_ok()
}
