//! What `devnet up` leaves behind in `<dir>/devnet.json`: every part it started (so `down` stops
//! those and nothing else) and every endpoint (so the wallet commands find the devnet without
//! flags).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside the devnet directory.
pub const STATE_FILE: &str = "devnet.json";

/// `Debug` hides the wallet passphrase (and `Endpoints` the Bitcoin RPC password).
#[derive(Clone, Serialize, Deserialize)]
pub struct DevnetState {
    /// The devnet directory, absolute.
    pub dir: PathBuf,
    pub endpoints: Endpoints,
    /// The parts in the order they were started; `down` stops them in reverse.
    pub parts: Vec<Part>,
    /// The demo wallets `up` funded, encrypted with `wallet_passphrase`.
    pub demo_wallets: Vec<DemoWallet>,
    /// The devnet's wallet passphrase (a devnet is for trying things out; never reuse it).
    pub wallet_passphrase: String,
    /// The coordinator's batch interval (`batch.max_age_ms`).
    #[serde(default)]
    pub batch_ms: u64,
    /// Seconds between the block producer's Bitcoin blocks.
    #[serde(default)]
    pub btc_block_secs: u64,
    /// The watchmen's Ethereum settlement window (seconds): a withdrawal waits at most this
    /// long for its range's root.
    #[serde(default)]
    pub settlement_window_s: u64,
    /// The watchmen's groups: the one `up` made, then one more per `devnet rotate`, oldest first.
    /// A devnet from before rotations has none (and cannot be rotated).
    #[serde(default)]
    pub groups: Vec<WatchmanGroup>,
    /// Set while `devnet rotate` runs: what it was doing. A rotation that failed leaves it, and
    /// the next one refuses to start on a half-rotated devnet.
    #[serde(default)]
    pub rotating: Option<String>,
}

impl std::fmt::Debug for DevnetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevnetState")
            .field("dir", &self.dir)
            .field("endpoints", &self.endpoints)
            .field("parts", &self.parts)
            .field("demo_wallets", &self.demo_wallets)
            .field("wallet_passphrase", &"<redacted>")
            .field("batch_ms", &self.batch_ms)
            .field("btc_block_secs", &self.btc_block_secs)
            .field("groups", &self.groups)
            .field("rotating", &self.rotating)
            .finish()
    }
}

/// Where each service of the devnet answers.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Endpoints {
    pub coordinator: String,
    pub confirmer: String,
    pub arweave: String,
    pub eth_rpc: String,
    pub eth_chain_id: u64,
    /// The vault contract, 0x hex.
    pub eth_vault: String,
    /// The devnet's ERC-20 test token, 0x hex.
    pub erc20: String,
    pub btc_rpc: String,
    pub btc_rpc_user: String,
    pub btc_rpc_password: String,
    /// The current group's watchmen's `/health` and `/metrics` base URLs (after `devnet
    /// rotate`, the new group's; every group is in `DevnetState::groups`).
    pub watchmen: Vec<String>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("coordinator", &self.coordinator)
            .field("confirmer", &self.confirmer)
            .field("arweave", &self.arweave)
            .field("eth_rpc", &self.eth_rpc)
            .field("eth_chain_id", &self.eth_chain_id)
            .field("eth_vault", &self.eth_vault)
            .field("erc20", &self.erc20)
            .field("btc_rpc", &self.btc_rpc)
            .field("btc_rpc_user", &self.btc_rpc_user)
            .field("btc_rpc_password", &"<redacted>")
            .field("watchmen", &self.watchmen)
            .finish()
    }
}

/// One process the devnet started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): a pid
    /// the kernel has since given to another process does not match, so `down` leaves it alone.
    pub started_ticks: u64,
    pub log: PathBuf,
    /// A URL that answers while the part is healthy, if it serves one.
    pub health: Option<String>,
    /// How it was started, so `devnet restart` can start it again the same way.
    pub launch: Launch,
}

/// A process's command line, environment changes and working directory. `Debug` hides the
/// values of variables that name a secret (passwords, passphrases, keys, tokens).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables set (`Some`) or removed (`None`) for the process.
    pub env: Vec<(String, Option<String>)>,
    pub cwd: Option<PathBuf>,
}

/// Whether an environment variable's name says it holds a secret.
pub fn names_a_secret(variable: &str) -> bool {
    let name = variable.to_ascii_uppercase();
    ["PASSWORD", "PASSPHRASE", "SECRET", "TOKEN", "KEY", "JWK"].iter().any(|word| name.contains(word))
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<(&str, Option<&str>)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref().map(|v| if names_a_secret(k) { "<redacted>" } else { v })))
            .collect();
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl Launch {
    pub fn of(command: &std::process::Command) -> Launch {
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        Launch {
            program: PathBuf::from(command.get_program()),
            args: command.get_args().map(text).collect(),
            env: command.get_envs().map(|(k, v)| (text(k), v.map(text))).collect(),
            cwd: command.get_current_dir().map(PathBuf::from),
        }
    }

    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// One group of watchmen: a key ceremony's members, the key they made, their processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchmanGroup {
    /// The vault's key epoch this group signs for (0: the group `up` made).
    pub epoch: u64,
    pub threshold: u16,
    /// The group's directory: its watchmen file, passphrase and each member's home.
    pub dir: PathBuf,
    /// `x(P)`, hex: the internal key (the ledger's and the Bitcoin vault's).
    pub internal_key: String,
    /// `x(Q)`, hex: the output key (what the Ethereum vault holds as `groupKey`).
    pub output_key: String,
    /// The first batch under this group's key (0 for the genesis group).
    pub from_batch: u64,
    pub members: Vec<GroupMember>,
    /// Its watchmen were stopped after the deposit grace (`devnet retire`).
    #[serde(default)]
    pub retired: bool,
}

/// One watchman of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupMember {
    /// The operator's number: it stays with the operator from group to group (`watchman-3` is
    /// operator 3; `devnet rotate --leave 3`).
    pub operator: u16,
    /// Its process's name among the parts.
    pub part: String,
    /// Its home directory (identity, share, configuration, admin token).
    pub home: PathBuf,
    /// `/health`, `/metrics`, `/approvals`.
    pub url: String,
    /// The operator's admin endpoint; its token is `admin.token` in the home.
    pub admin: String,
    /// Whether it sends transactions to the vault (it holds a sender key): a proposal is made
    /// through such a watchman.
    pub sends: bool,
}

impl GroupMember {
    pub fn token_file(&self) -> PathBuf {
        self.home.join("admin.token")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoWallet {
    pub name: String,
    pub address: String,
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no devnet in {0}: {STATE_FILE} is missing (start one with `bridgectl devnet up`)")]
    Missing(PathBuf),
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a devnet state file: {source}")]
    Format { path: PathBuf, source: serde_json::Error },
}

impl DevnetState {
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::Missing(dir.into())),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Format { path, source })
    }

    /// Written atomically, so a crash mid-write never leaves `down` without the pids.
    pub fn save(&self) -> Result<(), StateError> {
        let path = self.dir.join(STATE_FILE);
        let io = |source| StateError::Io { path: path.clone(), source };
        let text =
            serde_json::to_vec_pretty(self).map_err(|source| StateError::Format { path: path.clone(), source })?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_hides_the_passphrase_the_rpc_password_and_secret_variables() {
        let mut command = std::process::Command::new("coordinator");
        command.env("COORDINATOR__BITCOIN__RPC_PASSWORD", "rpc-secret-1").env("RUST_LOG", "info");
        let state = DevnetState {
            dir: "/tmp/devnet".into(),
            endpoints: Endpoints { btc_rpc_password: "rpc-secret-2".into(), ..Endpoints::default() },
            parts: vec![Part {
                name: "coordinator".into(),
                pid: 1,
                started_ticks: 0,
                log: "coordinator.log".into(),
                health: None,
                launch: Launch::of(&command),
            }],
            demo_wallets: vec![],
            wallet_passphrase: "passphrase-secret-3".into(),
            batch_ms: 0,
            btc_block_secs: 0,
            settlement_window_s: 0,
            groups: vec![],
            rotating: None,
        };
        let shown = format!("{state:?}");
        for secret in ["rpc-secret-1", "rpc-secret-2", "passphrase-secret-3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("RUST_LOG") && shown.contains("info"), "{shown}");
    }
}
