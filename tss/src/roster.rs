//! The watchmen file every operator shares: who takes part, where they listen, and the
//! threshold. The key ceremony (`bridgectl keygen`) and every watchman process read it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SessionId;
use crate::mesh::PeerEntry;

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

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read the watchmen file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a watchmen file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("watchman {index}: {what} {value:?} does not parse")]
    Entry { index: usize, what: &'static str, value: String },
    #[error("a watchman is listed twice")]
    Duplicate,
    #[error("a threshold of {threshold} with {n} watchmen: it must be at least 2 and at most {n}")]
    Threshold { threshold: u16, n: usize },
    #[error("bitcoin_network {0:?}: use bitcoin, testnet, signet or regtest")]
    Network(String),
}

impl WatchmenFile {
    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RosterError::Read { path: path.to_owned(), source })?;
        let file: WatchmenFile =
            toml::from_str(&text).map_err(|e| RosterError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        file.entries()?;
        Ok(file)
    }

    pub fn entries(&self) -> Result<Vec<PeerEntry>, RosterError> {
        let mut entries = Vec::new();
        for (i, w) in self.watchmen.iter().enumerate() {
            let entry = |what, value: &String| RosterError::Entry { index: i + 1, what, value: value.clone() };
            let peer_id = w.peer_id.parse().map_err(|_| entry("peer_id", &w.peer_id))?;
            let address = w.address.parse().map_err(|_| entry("address", &w.address))?;
            entries.push(PeerEntry { peer_id, address });
        }
        let distinct: std::collections::BTreeSet<_> = entries.iter().map(|e| e.peer_id).collect();
        if distinct.len() != entries.len() {
            return Err(RosterError::Duplicate);
        }
        let n = entries.len();
        if self.threshold < 2 || usize::from(self.threshold) > n {
            return Err(RosterError::Threshold { threshold: self.threshold, n });
        }
        Ok(entries)
    }

    pub fn bitcoin_network(&self) -> Result<bitcoin::Network, RosterError> {
        self.bitcoin_network.parse().map_err(|_| RosterError::Network(self.bitcoin_network.clone()))
    }

    /// The session every participant derives alike, so that no one has to pass a random id
    /// around: a hash of what the ceremony is and who takes part.
    pub fn session(&self, ceremony: &str) -> Result<SessionId, RosterError> {
        let mut peers: Vec<String> = self.entries()?.iter().map(|e| e.peer_id.to_string()).collect();
        peers.sort();
        let mut hash = Sha256::new();
        hash.update(format!("bridge/{ceremony}/{}/{}", self.threshold, peers.join(",")));
        let digest = hash.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(SessionId(id))
    }
}
