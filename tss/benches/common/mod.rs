//! What the tss benchmarks share: watchmen's addresses on 127.0.0.1.

use tss::mesh::PeerEntry;
use tss::ports::PortReservation;

/// One mesh entry per identity, each on its own reserved port (`tss::ports`: no other bind on
/// the machine gets it, and no two watchmen share it). Hold the reservations while the mesh runs.
pub fn entries(identities: &[libp2p::identity::Keypair]) -> (Vec<PeerEntry>, Vec<PortReservation>) {
    let held = tss::ports::reserve(identities.len()).expect("reserving loopback ports");
    let entries = identities
        .iter()
        .zip(&held)
        .map(|(k, port)| PeerEntry { peer_id: k.public().to_peer_id(), address: port.multiaddr() })
        .collect();
    (entries, held)
}
