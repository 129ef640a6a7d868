//! What the tss benchmarks share: watchmen's addresses on 127.0.0.1.

use tss::mesh::PeerEntry;

/// One mesh entry per identity, each on its own free port. Every listener is held until all
/// ports are picked: a port picked and dropped one at a time could be handed out again to a
/// later watchman, and the two would share an address (the mesh then never connects).
pub fn entries(identities: &[libp2p::identity::Keypair]) -> Vec<PeerEntry> {
    let listeners: Vec<_> = identities.iter().map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    identities
        .iter()
        .zip(&listeners)
        .map(|(k, listener)| PeerEntry {
            peer_id: k.public().to_peer_id(),
            address: format!("/ip4/127.0.0.1/tcp/{}", listener.local_addr().unwrap().port()).parse().unwrap(),
        })
        .collect()
}
