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
    /// Each watchman's `/metrics` and `/health`.
    pub watchmen: Vec<u16>,
    /// Each watchman's libp2p mesh port.
    pub mesh: Vec<u16>,
}

impl Ports {
    pub fn choose(free: bool, watchmen: u16) -> anyhow::Result<Ports> {
        let n = usize::from(watchmen);
        let ports = if free {
            let mut taken = Vec::new();
            let mut next = || -> anyhow::Result<u16> {
                // Random ports below Linux's ephemeral range (32768–60999): what other programs
                // get from "any free port" never lands there, so a port chosen here is not taken
                // by them in the seconds before its part starts. Held open until all are chosen,
                // so no two parts get the same one.
                use bitcoin::secp256k1::rand::Rng;
                let mut rng = bitcoin::secp256k1::rand::thread_rng();
                for _ in 0..1_000 {
                    if let Ok(listener) = TcpListener::bind(("127.0.0.1", rng.gen_range(20_000..32_000))) {
                        let port = listener.local_addr()?.port();
                        taken.push(listener);
                        return Ok(port);
                    }
                }
                let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
                let port = listener.local_addr()?.port();
                taken.push(listener);
                Ok(port)
            };
            Ports {
                arweave: next()?,
                anvil: next()?,
                bitcoin: next()?,
                coordinator: next()?,
                confirmer: next()?,
                watchmen: (0..n).map(|_| next()).collect::<anyhow::Result<_>>()?,
                mesh: (0..n).map(|_| next()).collect::<anyhow::Result<_>>()?,
            }
        } else {
            let ports = Ports {
                arweave: 1984,
                anvil: 8545,
                bitcoin: 18443,
                coordinator: 8080,
                confirmer: 8081,
                watchmen: (0..watchmen).map(|i| 9101 + i).collect(),
                mesh: (0..watchmen).map(|i| 9201 + i).collect(),
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
        all.extend(&self.watchmen);
        all.extend(&self.mesh);
        all
    }
}
