//! The devnet's loopback ports: well-known ones by default (what the README and the wallet's
//! defaults assume), or free ones for running beside other things (tests do).

use std::net::TcpListener;

use anyhow::Context;

#[derive(Debug, Clone)]
pub struct Ports {
    pub arweave: u16,
    pub anvil: u16,
    pub bitcoin: u16,
    pub coordinator: u16,
    pub confirmer: u16,
    pub watchmen: WatchmanPorts,
}

/// Each watchman's three listeners.
#[derive(Debug, Clone)]
pub struct WatchmanPorts {
    /// `/metrics`, `/health` and `/approvals`.
    pub metrics: Vec<u16>,
    /// The libp2p mesh.
    pub mesh: Vec<u16>,
    /// The operator's admin endpoint (token-protected approvals and proposals).
    pub admin: Vec<u16>,
}

impl WatchmanPorts {
    /// Free ports for `n` more watchmen (a rotation's new group starts beside the old one).
    /// Held until dropped ([`Held`]).
    pub fn free(n: usize) -> anyhow::Result<(WatchmanPorts, Held)> {
        let mut held = Held::new();
        Ok((watchman_ports(&mut held, n)?, held))
    }
}

/// Ports chosen for parts not started yet, held (never listening) until this is dropped: another
/// devnet's choice is refused a held port, while the part it is for binds it beside the hold
/// ([`loopback::PortHold`]). Drop it once every part listens. Without it, two devnets starting
/// at once (tests do) could both pick a port released by the other in the minute before its part
/// bound it.
pub type Held = loopback::PortHold;

fn watchman_ports(held: &mut Held, n: usize) -> anyhow::Result<WatchmanPorts> {
    Ok(WatchmanPorts { metrics: held.many(n)?, mesh: held.many(n)?, admin: held.many(n)? })
}

impl Ports {
    /// The ports, and (for free ones) their hold: keep it until every part listens.
    pub fn choose(free: bool, watchmen: u16) -> anyhow::Result<(Ports, Held)> {
        let n = usize::from(watchmen);
        let mut held = Held::new();
        let ports = if free {
            Ports {
                arweave: held.any()?,
                anvil: held.any()?,
                bitcoin: held.any()?,
                coordinator: held.any()?,
                confirmer: held.any()?,
                watchmen: watchman_ports(&mut held, n)?,
            }
        } else {
            let ports = Ports {
                arweave: 1984,
                anvil: 8545,
                bitcoin: 18443,
                coordinator: 8080,
                confirmer: 8081,
                watchmen: WatchmanPorts {
                    metrics: (0..watchmen).map(|i| 9101 + i).collect(),
                    mesh: (0..watchmen).map(|i| 9201 + i).collect(),
                    admin: (0..watchmen).map(|i| 9301 + i).collect(),
                },
            };
            for port in ports.all() {
                TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                    format!("port {port} is in use: stop what uses it, or start the devnet with --free-ports")
                })?;
            }
            ports
        };
        Ok((ports, held))
    }

    fn all(&self) -> Vec<u16> {
        let mut all = vec![self.arweave, self.anvil, self.bitcoin, self.coordinator, self.confirmer];
        all.extend(&self.watchmen.metrics);
        all.extend(&self.watchmen.mesh);
        all.extend(&self.watchmen.admin);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_refused_to_another_devnet_until_dropped() {
        let (ours, held) = Ports::choose(true, 3).unwrap();
        let all: std::collections::BTreeSet<u16> = ours.all().into_iter().collect();
        assert_eq!(all.len(), 5 + 3 * 3, "every part has its own port");
        let mut theirs = Held::new();
        for &port in &all {
            assert!(theirs.take(port).is_err(), "port {port} was chosen twice");
        }
        drop(held);
        assert!(all.iter().any(|&port| theirs.take(port).is_ok()), "dropped holds free their ports");
    }
}
