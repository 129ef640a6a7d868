//! The watchmen file every operator of a key ceremony shares: who takes part, where they listen,
//! and the threshold.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tss::mesh::PeerEntry;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchmenFile {
    /// Signatures need this many watchmen.
    pub threshold: u16,
    /// The Bitcoin network the Taproot address is printed for.
    #[serde(default = "default_network")]
    pub bitcoin_network: String,
    #[serde(rename = "watchman")]
    pub watchmen: Vec<Watchman>,
}

fn default_network() -> String {
    "regtest".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchman {
    pub peer_id: String,
    /// A libp2p address, e.g. `/ip4/10.0.0.5/tcp/7000`.
    pub address: String,
}

impl WatchmenFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: WatchmenFile =
            toml::from_str(&text).with_context(|| format!("{} is not a watchmen file", path.display()))?;
        file.entries()?;
        Ok(file)
    }

    pub fn entries(&self) -> anyhow::Result<Vec<PeerEntry>> {
        let mut entries = Vec::new();
        for (i, w) in self.watchmen.iter().enumerate() {
            let peer_id = w.peer_id.parse().with_context(|| format!("watchman {}: peer_id {:?}", i + 1, w.peer_id))?;
            let address = w.address.parse().with_context(|| format!("watchman {}: address {:?}", i + 1, w.address))?;
            entries.push(PeerEntry { peer_id, address });
        }
        let distinct: std::collections::BTreeSet<_> = entries.iter().map(|e| e.peer_id).collect();
        if distinct.len() != entries.len() {
            bail!("a watchman is listed twice");
        }
        let n = entries.len();
        if self.threshold < 2 || usize::from(self.threshold) > n {
            bail!("a threshold of {} with {n} watchmen: it must be at least 2 and at most {n}", self.threshold);
        }
        Ok(entries)
    }

    pub fn bitcoin_network(&self) -> anyhow::Result<bitcoin::Network> {
        self.bitcoin_network.parse().with_context(|| {
            format!("bitcoin_network {:?}: use bitcoin, testnet, signet or regtest", self.bitcoin_network)
        })
    }

    /// The session every participant derives alike, so that no one has to pass a random id
    /// around: a hash of what the ceremony is and who takes part.
    pub fn session(&self, ceremony: &str) -> anyhow::Result<tss::SessionId> {
        let mut peers: Vec<String> = self.entries()?.iter().map(|e| e.peer_id.to_string()).collect();
        peers.sort();
        let mut hash = Sha256::new();
        hash.update(format!("bridge/{ceremony}/{}/{}", self.threshold, peers.join(",")));
        let digest = hash.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(tss::SessionId(id))
    }
}
