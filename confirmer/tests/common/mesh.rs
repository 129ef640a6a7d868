//! Watchmen's threshold-signing nodes on 127.0.0.1 for the watchman tests.

use std::sync::Arc;
use std::time::Duration;

use tss::mesh::PeerEntry;
use tss::{MeshConfig, SessionId, TssNode, TssNodeConfig};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn entries(identities: &[libp2p::identity::Keypair]) -> Vec<PeerEntry> {
    identities
        .iter()
        .map(|k| PeerEntry {
            peer_id: k.public().to_peer_id(),
            address: format!("/ip4/127.0.0.1/tcp/{}", free_port()).parse().unwrap(),
        })
        .collect()
}

pub fn tss_config(
    identity: &libp2p::identity::Keypair,
    entries: &[PeerEntry],
    share: Option<tss::KeyShare>,
    policy: Arc<dyn tss::SigningPolicy>,
) -> TssNodeConfig {
    let me = identity.public().to_peer_id();
    let listen = entries.iter().find(|e| e.peer_id == me).unwrap().address.clone();
    TssNodeConfig {
        identity: identity.clone(),
        mesh: MeshConfig { listen, peers: entries.to_vec(), request_timeout: Duration::from_secs(5) },
        threshold: 2,
        share,
        policy,
        session_timeout: Duration::from_secs(20),
        retry: Duration::from_millis(300),
    }
}

/// A fresh 2-of-n DKG among `identities`; the ceremony's nodes are stopped after it.
pub async fn dkg(identities: &[libp2p::identity::Keypair]) -> Vec<tss::KeyShare> {
    let ceremony = entries(identities);
    let mut nodes = Vec::new();
    for identity in identities {
        let policy = Arc::new(tss::RefuseAll("key ceremony".into()));
        nodes.push(TssNode::start(tss_config(identity, &ceremony, None, policy)).await.unwrap());
    }
    let session = SessionId::random();
    futures::future::join_all(nodes.iter().map(|n| n.dkg(session, Duration::from_secs(60), |_| {})))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}
