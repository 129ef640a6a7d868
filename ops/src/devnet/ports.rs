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
    pub fn free(n: usize) -> anyhow::Result<WatchmanPorts> {
        let mut free = FreePorts::default();
        free.watchmen(n)
    }
}

/// Picks free loopback ports, holding each open until all are chosen so no two parts get the
/// same one.
#[derive(Default)]
struct FreePorts {
    taken: Vec<TcpListener>,
}

impl FreePorts {
    fn next(&mut self) -> anyhow::Result<u16> {
        // Random ports below Linux's ephemeral range (32768–60999): what other programs get from
        // "any free port" never lands there, so a port chosen here is not taken by them in the
        // seconds before its part starts.
        use bitcoin::secp256k1::rand::Rng;
        let mut rng = bitcoin::secp256k1::rand::thread_rng();
        for _ in 0..1_000 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", rng.gen_range(20_000..32_000))) {
                let port = listener.local_addr()?.port();
                self.taken.push(listener);
                return Ok(port);
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
        let port = listener.local_addr()?.port();
        self.taken.push(listener);
        Ok(port)
    }

    fn many(&mut self, n: usize) -> anyhow::Result<Vec<u16>> {
        (0..n).map(|_| self.next()).collect()
    }

    fn watchmen(&mut self, n: usize) -> anyhow::Result<WatchmanPorts> {
        Ok(WatchmanPorts { metrics: self.many(n)?, mesh: self.many(n)?, admin: self.many(n)? })
    }
}

impl Ports {
    pub fn choose(free: bool, watchmen: u16) -> anyhow::Result<Ports> {
        let n = usize::from(watchmen);
        let ports = if free {
            let mut free = FreePorts::default();
            Ports {
                arweave: free.next()?,
                anvil: free.next()?,
                bitcoin: free.next()?,
                coordinator: free.next()?,
                confirmer: free.next()?,
                watchmen: free.watchmen(n)?,
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
        Ok(ports)
    }

    fn all(&self) -> Vec<u16> {
        let mut all = vec![self.arweave, self.anvil, self.bitcoin, self.coordinator, self.confirmer];
        all.extend(&self.watchmen.metrics);
        all.extend(&self.watchmen.mesh);
        all.extend(&self.watchmen.admin);
        all
    }
}
