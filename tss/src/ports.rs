//! Loopback ports held for meshes that will listen on them.
//!
//! Picking a port by binding `127.0.0.1:0` and closing it races: until the mesh listens, any
//! other `bind(0)` on the machine may get the same port. And libp2p listens with `SO_REUSEPORT`,
//! so two meshes of one user that picked the same port *both* listen there, and the kernel
//! hashes each incoming connection to one of them: a dialler then meets the wrong PeerId, every
//! time for the same source port, and the two watchmen behind that port are unreachable from it
//! (a DKG seen timing out in "the echo round" for exactly two peers).
//!
//! A [`PortReservation`] closes the race: it binds the port with `SO_REUSEPORT` and never
//! listens. The kernel hands a bound port to no other `bind(0)` and uses it as no outgoing
//! connection's source, while a mesh of the same user may still listen there (both sockets
//! allow port reuse; a socket that does not listen receives no connections). Hold the
//! reservation for as long as the mesh may be restarted on that port.

use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

/// One loopback TCP port, bound and not listening, until dropped.
#[derive(Debug)]
pub struct PortReservation {
    _socket: Socket,
    port: u16,
}

impl PortReservation {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mesh address of this port, `/ip4/127.0.0.1/tcp/PORT`.
    pub fn multiaddr(&self) -> libp2p::Multiaddr {
        libp2p::Multiaddr::empty()
            .with(libp2p::multiaddr::Protocol::Ip4(Ipv4Addr::LOCALHOST))
            .with(libp2p::multiaddr::Protocol::Tcp(self.port))
    }
}

/// `n` distinct loopback ports, each held until its reservation is dropped.
pub fn reserve(n: usize) -> std::io::Result<Vec<PortReservation>> {
    (0..n).map(|_| reserve_one()).collect()
}

fn reserve_one() -> std::io::Result<PortReservation> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // Without SO_REUSEADDR: a later `bind(0)` elsewhere must see the port as taken outright.
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())?;
    let port = socket
        .local_addr()?
        .as_socket_ipv4()
        .map(|address| address.port())
        .ok_or_else(|| std::io::Error::other("a loopback IPv4 bind returned no IPv4 address"))?;
    Ok(PortReservation { _socket: socket, port })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reserved_port_is_never_handed_out_by_another_bind_to_port_zero() {
        let held = reserve(8).unwrap();
        let ports: std::collections::BTreeSet<u16> = held.iter().map(PortReservation::port).collect();
        assert_eq!(ports.len(), 8, "reservations are distinct");
        // 2,000 picks the racy way, each released at once: none lands on a held port.
        for _ in 0..2_000 {
            let picked = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            assert!(!ports.contains(&picked), "bind(0) returned the held port {picked}");
        }
    }

    #[test]
    fn a_plain_listener_cannot_take_a_reserved_port_but_a_reuse_port_listener_can() {
        let held = reserve(1).unwrap();
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, held[0].port());
        assert!(std::net::TcpListener::bind(address).is_err(), "the reservation holds the port");
        // What libp2p's TCP transport does when the mesh listens.
        let mesh = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        mesh.set_reuse_address(true).unwrap();
        mesh.set_reuse_port(true).unwrap();
        mesh.bind(&address.into()).unwrap();
        mesh.listen(16).unwrap();
        let listener: std::net::TcpListener = mesh.into();
        // Every connection reaches the listener, none the reservation (it does not listen).
        for _ in 0..16 {
            let _client = std::net::TcpStream::connect(address).unwrap();
            listener.accept().unwrap();
        }
    }
}
