//! Watchmen's threshold-signing nodes on 127.0.0.1 for the watchman tests.

use std::sync::Arc;
use std::time::Duration;

use tss::mesh::PeerEntry;
use tss::{MeshConfig, SessionId, TssNode, TssNodeConfig};

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports for HTTP servers, held (`loopback`) until this test process exits: a
/// port only picked and released could be picked by another test's server too. The server binds
/// beside the hold (its listener sets `SO_REUSEADDR`), restarts included; nextest runs one test
/// per process, so the hold lasts the test.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut hold = loopback::PortHold::new();
    let ports = hold.many(n).expect("holding loopback ports");
    std::mem::forget(hold);
    ports
}

/// `n` distinct ports for meshes, reserved (`tss::ports`) until this test process exits: a
/// port only picked and released could reach another test's mesh too, and libp2p listens with
/// `SO_REUSEPORT`, so both would listen and half the dials would meet the wrong watchman.
/// nextest runs one test per process, so the hold lasts the test, restarts included.
pub fn mesh_ports(n: usize) -> Vec<u16> {
    let held = tss::ports::reserve(n).expect("reserving loopback ports");
    let ports = held.iter().map(tss::ports::PortReservation::port).collect();
    std::mem::forget(held);
    ports
}

pub fn entries(identities: &[libp2p::identity::Keypair]) -> Vec<PeerEntry> {
    entries_on(identities, &mesh_ports(identities.len()))
}

/// The watchmen's mesh entries on the given ports, one each.
pub fn entries_on(identities: &[libp2p::identity::Keypair], ports: &[u16]) -> Vec<PeerEntry> {
    identities
        .iter()
        .zip(ports)
        .map(|(k, port)| PeerEntry {
            peer_id: k.public().to_peer_id(),
            address: format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        })
        .collect()
}

/// A node's configuration; its threshold is its share's (2 before the DKG).
pub fn tss_config(
    identity: &libp2p::identity::Keypair,
    entries: &[PeerEntry],
    share: Option<tss::KeyShare>,
    policy: Arc<dyn tss::SigningPolicy>,
) -> TssNodeConfig {
    let threshold = share.as_ref().and_then(|s| s.public.min_signers()).unwrap_or(2);
    tss_config_with(identity, entries, share, policy, threshold)
}

pub fn tss_config_with(
    identity: &libp2p::identity::Keypair,
    entries: &[PeerEntry],
    share: Option<tss::KeyShare>,
    policy: Arc<dyn tss::SigningPolicy>,
    threshold: u16,
) -> TssNodeConfig {
    let me = identity.public().to_peer_id();
    let listen = entries.iter().find(|e| e.peer_id == me).unwrap().address.clone();
    TssNodeConfig {
        identity: identity.clone(),
        mesh: MeshConfig { listen, peers: entries.to_vec(), request_timeout: Duration::from_secs(5) },
        threshold,
        share,
        policy,
        session_timeout: Duration::from_secs(20),
        retry: Duration::from_millis(300),
    }
}

/// A fresh 2-of-n DKG among `identities`; the ceremony's nodes are stopped after it.
pub async fn dkg(identities: &[libp2p::identity::Keypair]) -> Vec<tss::KeyShare> {
    dkg_with_threshold(identities, 2).await
}

/// A fresh `t`-of-n DKG among `identities`.
pub async fn dkg_with_threshold(identities: &[libp2p::identity::Keypair], t: u16) -> Vec<tss::KeyShare> {
    let ceremony = entries(identities);
    let mut nodes = Vec::new();
    for identity in identities {
        let policy = Arc::new(tss::RefuseAll("key ceremony".into()));
        nodes.push(TssNode::start(tss_config_with(identity, &ceremony, None, policy, t)).await.unwrap());
    }
    let session = SessionId::random();
    futures::future::join_all(nodes.iter().map(|n| n.dkg(session, Duration::from_secs(60), |_| {})))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}
