//! Loopback ports held for a process that will listen on them.
//!
//! Picking a port by binding `127.0.0.1:0` and closing it races: until the process it is for
//! (anvil, arlocal, a devnet's part) binds it, any other `bind(0)` on the machine may get the
//! same port. Two tests then start two nodes on one port; one fails to bind, and its test talks
//! to the other test's node until that test ends and kills it ("connection closed before message
//! completed", seen in CI).
//!
//! A [`PortHold`] closes the race. Each port is bound by a socket without `SO_REUSEADDR`, so the
//! bind fails if anything holds the port, and only then marked reusable. It never listens. The
//! kernel hands a port so held to no other `bind(0)` (it looks for a port no socket is bound to)
//! and to no outgoing connection, and refuses it to another hold; yet the process it is for binds
//! it beside the hold, because its listener sets `SO_REUSEADDR` (Rust's, tokio's, libuv's and
//! libp2p's listeners all do) and a socket that does not listen receives no connections. Drop the
//! hold once the process listens: from then on its listener holds the port.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Linux's ephemeral range starts here: what other programs get from "any free port" and the
/// source ports of outgoing connections come from 32768 up.
const EPHEMERAL_START: u16 = 32_768;
/// Ports tried below the ephemeral range, from 20000 (clear of common services' ports).
const CHOSEN_START: u16 = 20_000;
/// Random tries before falling back to a port the kernel picks. Bounded: on a machine whose
/// chosen range is full the fallback still gives a held port.
const TRIES: usize = 1_000;

/// Loopback ports, each held by a bound, never listening socket until this is dropped.
#[must_use = "the ports are free for anyone once this is dropped"]
#[derive(Debug, Default)]
pub struct PortHold {
    sockets: Vec<Socket>,
}

impl PortHold {
    pub fn new() -> PortHold {
        PortHold::default()
    }

    /// Holds `port` on 127.0.0.1 if nothing is bound to it (a listener or another hold), or, for
    /// `port` 0, a port the kernel picks. Returns the port held.
    pub fn take(&mut self, port: u16) -> std::io::Result<u16> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        // Bound without SO_REUSEADDR, so any socket on the port refuses it ...
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
        // ... then marked reusable, so the listener it is for (SO_REUSEADDR) may bind beside it.
        socket.set_reuse_address(true)?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|address| address.port())
            .ok_or_else(|| std::io::Error::other("a loopback IPv4 bind returned no IPv4 address"))?;
        self.sockets.push(socket);
        Ok(port)
    }

    /// Holds a free port below the ephemeral range, where no other program's "any free port" and
    /// no outgoing connection lands, so it stays free for a process started well after the hold
    /// is dropped too; falls back to one the kernel picks.
    pub fn any(&mut self) -> std::io::Result<u16> {
        for _ in 0..TRIES {
            let offset = getrandom::u32().map_err(std::io::Error::other)? % u32::from(EPHEMERAL_START - CHOSEN_START);
            let port = CHOSEN_START + u16::try_from(offset).unwrap_or(0);
            if let Ok(port) = self.take(port) {
                return Ok(port);
            }
        }
        self.take(0)
    }

    /// `n` distinct free ports ([`PortHold::any`]).
    pub fn many(&mut self, n: usize) -> std::io::Result<Vec<u16>> {
        (0..n).map(|_| self.any()).collect()
    }

    /// The ports held.
    pub fn ports(&self) -> Vec<u16> {
        self.sockets
            .iter()
            .filter_map(|socket| socket.local_addr().ok()?.as_socket().map(|address| address.port()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_held_port_is_refused_to_another_hold_and_taken_by_the_listener_it_is_for() {
        let mut ours = PortHold::new();
        let port = ours.any().unwrap();
        let mut theirs = PortHold::new();
        assert!(theirs.take(port).is_err(), "a held port was held twice");
        // The process it is for binds and listens beside the hold, and is reached.
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let dialled = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), dialled.local_addr().unwrap());
        // Once the hold is dropped, the listener keeps the port from other holds.
        drop(ours);
        assert!(theirs.take(port).is_err(), "a listening port was held");
    }

    #[test]
    fn a_held_port_is_never_handed_out_by_a_bind_to_port_zero() {
        let mut hold = PortHold::new();
        // Held the way a test's node port is: one the kernel picks, in the ephemeral range where
        // every other bind(0) lands.
        for _ in 0..8 {
            hold.take(0).unwrap();
        }
        let held: std::collections::BTreeSet<u16> = hold.ports().into_iter().collect();
        assert_eq!(held.len(), 8, "holds are distinct");
        // 2,000 picks the racy way (Rust's listener sets SO_REUSEADDR), each released at once.
        for _ in 0..2_000 {
            let picked = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            assert!(!held.contains(&picked), "bind(0) returned the held port {picked}");
        }
    }
}
