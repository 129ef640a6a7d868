//! The watchman's configuration file (TOML). Secrets never live in it: the key-share passphrase
//! comes from a file or `WATCHMAN_PASSPHRASE`, the Bitcoin RPC password from
//! `WATCHMAN_BTC_RPC_PASSWORD`, Ethereum keys from files named here (the guardian key encrypted
//! under the share's passphrase).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tss::keystore::Zeroizing;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The network's parameters as JSON (`coordinator params` prints them).
    pub params: PathBuf,
    /// Where this watchman keeps what it replayed: sqlite://PATH or postgres://…
    pub database_url: String,
    /// How often to look for new batches and settle, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Where `/metrics` and `/health` are served.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// An extra CA certificate file (PEM) trusted besides the bundled roots by every HTTPS
    /// client: the Arweave gateway, the Ethereum and Bitcoin nodes.
    pub tls_ca_file: Option<PathBuf>,
    pub mesh: MeshSection,
    pub da: DaSection,
    pub ethereum: Option<EthereumSection>,
    pub bitcoin: Option<BitcoinSection>,
    /// The operator's admin endpoint (approvals of unpause, caps, key changes). Without this
    /// section the watchman takes no approvals and refuses every admin signature.
    pub admin: Option<AdminSection>,
    /// `[snapshots]`: when the replayed state is saved (chains::snapshots); every 1,000
    /// batches or 10 minutes of batch time by default.
    #[serde(default)]
    pub snapshots: chains::snapshots::SnapshotPolicy,
    /// `[checkpoints]`: sign checkpoints for confirmers that join late. Without this section
    /// this watchman still co-signs the checkpoints others ask for (its policy checks each
    /// against its own replay), but asks for none.
    pub checkpoints: Option<CheckpointsSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsSection {
    /// Where the signed checkpoint files are written (`checkpoint-N.json`, `latest.json`).
    pub dir: PathBuf,
    /// A checkpoint at every multiple of this many batches, once hard-final here (the
    /// coordinator's `da.snapshot_every_batches`, so a snapshot exists at each).
    #[serde(default = "default_checkpoint_every")]
    pub every_batches: u64,
}

fn default_checkpoint_every() -> u64 {
    1_000
}

fn default_interval() -> u64 {
    1_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9_100))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSection {
    /// The watchmen file of the key ceremony (threshold, every watchman's peer id and address).
    pub watchmen: PathBuf,
    /// This watchman's encrypted libp2p identity (`bridgectl identity new`).
    pub identity: PathBuf,
    /// This watchman's encrypted key share (`bridgectl keygen`).
    pub share: PathBuf,
    /// A file holding the passphrase of both; without it, `WATCHMAN_PASSPHRASE`.
    pub passphrase_file: Option<PathBuf>,
    /// A signing session's deadline, in seconds.
    #[serde(default = "default_session")]
    pub session_timeout_s: u64,
}

fn default_session() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaSection {
    /// A directory DA (the devnet's default).
    pub dir: Option<PathBuf>,
    /// An Arweave gateway, with the coordinator's wallet address.
    pub arweave: Option<String>,
    pub owner: Option<String>,
    #[serde(default = "one")]
    pub confirmations: u64,
    /// How long a batch may stay missing while a later one is published before it is a
    /// `missing_batch` alarm, in seconds.
    #[serde(default = "default_missing_batch_wait")]
    pub missing_batch_wait_s: u64,
}

fn default_missing_batch_wait() -> u64 {
    600
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthereumSection {
    /// The Ethereum JSON-RPC node (http or https).
    pub rpc: String,
    /// The chain id the node must have (`watchman check` refuses another); unset: not checked.
    pub chain_id: Option<u64>,
    /// When a deposit counts: `finalized` (at or below the node's finalized block; by `depth`
    /// while the node lacks the tag) or `depth`.
    #[serde(default)]
    pub finality: chains::eth_finality::FinalityRule,
    /// Blocks a deposit needs on top of it (the rule, or the fallback).
    #[serde(default = "default_eth_depth")]
    pub depth: u64,
    /// The vault's key epoch (0 until the first key rotation).
    #[serde(default)]
    pub epoch: u64,
    /// The vault's deployment block: where the solvency watch first reads the vault's payouts
    /// (0: from the chain's first block, a million blocks a check). Later starts go on from
    /// the place saved in the database.
    #[serde(default)]
    pub from_block: u64,
    /// Blocks one `eth_getLogs` request of that read covers at most: the provider's cap if it
    /// is below 10,000. A refused request is asked again narrower anyway; this saves the
    /// refusals.
    #[serde(default = "default_log_range")]
    pub log_range: u64,
    /// A file with the hex private key of the account that pays gas for roots and payouts.
    /// Without it this watchman replays and signs but submits nothing itself.
    pub sender_key_file: Option<PathBuf>,
    /// The guardian's private key, encrypted under the share's passphrase (`bridgectl wallet
    /// import`): on an alarm the vault is paused with it. A plaintext key file is refused.
    pub guardian_key_file: Option<PathBuf>,
    /// `[ethereum.fees]`: the fee ceiling and how fees are read (docs/OPERATIONS.md, "Fees").
    #[serde(default)]
    pub fees: chains::ethereum::FeeConfig,
    /// `[ethereum.settlement]`: how long withdrawals wait for their range's root, how many
    /// leaves a range holds, and this watchman's turn among the submitters.
    #[serde(default)]
    pub settlement: confirmer::watchman::range_plan::SettlementConfig,
}

fn default_eth_depth() -> u64 {
    12
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitcoinSection {
    /// Bitcoin Core's JSON-RPC (`-txindex=1`), or the workspace's test node.
    pub rpc: String,
    #[serde(default)]
    pub rpc_user: String,
    /// Confirmations a deposit or a payout needs.
    #[serde(default = "default_btc_depth")]
    pub depth: u32,
    /// Whether this watchman signs and broadcasts payouts itself (every watchman signs when
    /// asked; one or two that broadcast are enough).
    #[serde(default = "yes")]
    pub pay: bool,
    /// Blocks a payout may wait in the mempool before the next attempt (a higher fee) replaces it.
    #[serde(default = "default_bump")]
    pub bump_after_blocks: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin endpoint listens: loopback unless `allow_remote`.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Serve the admin endpoint on a non-loopback address (behind your own TLS and firewall).
    #[serde(default)]
    pub allow_remote: bool,
    /// The operator's token (made at first start, 0600; a file others can read is refused).
    #[serde(default = "default_token_file")]
    pub token_file: PathBuf,
    /// Where this operator's approvals are kept across restarts.
    #[serde(default = "default_approvals_file")]
    pub approvals_file: PathBuf,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9_101))
}

fn default_token_file() -> PathBuf {
    PathBuf::from("admin.token")
}

fn default_approvals_file() -> PathBuf {
    PathBuf::from("approvals.json")
}

fn default_btc_depth() -> u32 {
    6
}

fn yes() -> bool {
    true
}

fn default_bump() -> u64 {
    3
}

fn default_log_range() -> u64 {
    chains::ethereum_view::LOG_RANGE
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).with_context(|| format!("{} is not a watchman configuration", path.display()))?;
        // Relative paths are relative to the configuration file.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut config.params);
        rebase(&mut config.mesh.watchmen);
        rebase(&mut config.mesh.identity);
        rebase(&mut config.mesh.share);
        if let Some(p) = &mut config.mesh.passphrase_file {
            rebase(p);
        }
        if let Some(p) = &mut config.da.dir {
            rebase(p);
        }
        if let Some(eth) = &mut config.ethereum {
            if eth.log_range == 0 {
                anyhow::bail!("{}: [ethereum] log_range must be at least 1 block", path.display());
            }
            if let Some(p) = &mut eth.sender_key_file {
                rebase(p);
            }
            if let Some(p) = &mut eth.guardian_key_file {
                rebase(p);
            }
        }
        if let Some(checkpoints) = &mut config.checkpoints {
            rebase(&mut checkpoints.dir);
        }
        if let Some(admin) = &mut config.admin {
            rebase(&mut admin.token_file);
            rebase(&mut admin.approvals_file);
        }
        Ok(config)
    }
}

/// The guardian's key as hex (what the Ethereum signer takes), from its encrypted file; a
/// plaintext file is refused with the command that encrypts it.
pub fn load_guardian_key(path: &Path, passphrase: &tss::keystore::Passphrase) -> anyhow::Result<Zeroizing<String>> {
    use anyhow::Context;
    let key = tss::keystore::open_account_key(path, passphrase)
        .with_context(|| format!("opening the guardian key {}", path.display()))?;
    Ok(Zeroizing::new(hex::encode(key.as_slice())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn passphrase() -> tss::keystore::Passphrase {
        tss::keystore::Passphrase::new("guardian test passphrase").unwrap()
    }

    const KEY: [u8; 32] = [0x42; 32];
    const CHEAP: tss::keystore::KdfParams = tss::keystore::KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };

    #[test]
    fn the_guardian_key_is_read_from_its_encrypted_file_with_the_shares_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("guardian.key");
        tss::keystore::seal_account_key(&file, &KEY, &passphrase(), CHEAP).unwrap();
        assert!(!std::fs::read_to_string(&file).unwrap().contains(&hex::encode(KEY)), "plaintext on disk");
        assert_eq!(load_guardian_key(&file, &passphrase()).unwrap().as_str(), hex::encode(KEY));
        let wrong = tss::keystore::Passphrase::new("another").unwrap();
        let error = format!("{:#}", load_guardian_key(&file, &wrong).unwrap_err());
        assert!(error.contains("passphrase is wrong"), "{error}");
    }

    #[test]
    fn a_plaintext_guardian_key_is_refused_with_how_to_encrypt_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("guardian.key");
        std::fs::write(&file, format!("0x{}\n", hex::encode(KEY))).unwrap();
        let error = format!("{:#}", load_guardian_key(&file, &passphrase()).unwrap_err());
        assert!(error.contains("plaintext") && error.contains("bridgectl wallet import"), "{error}");
    }

    #[test]
    fn the_example_is_a_valid_configuration() {
        let config: Config = toml::from_str(include_str!("../../../watchman.example.toml")).unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.bitcoin.unwrap().bump_after_blocks, 3);
        let ethereum = config.ethereum.unwrap();
        assert!(ethereum.sender_key_file.is_none());
        // The example spells out the fee defaults, and they are valid.
        assert_eq!(ethereum.fees, chains::ethereum::FeeConfig::default());
        assert_eq!(ethereum.fees.policy().unwrap(), chains::ethereum::FeePolicy::default());
        // And the settlement defaults.
        assert_eq!(ethereum.settlement, confirmer::watchman::range_plan::SettlementConfig::default());
        // The example tells how the guardian key is kept: encrypted, never plaintext.
        let example = include_str!("../../../watchman.example.toml");
        assert!(example.contains("bridgectl wallet import") && example.contains("encrypted"), "{example}");
    }

    /// A log range of zero blocks could read nothing: refused at load, with the key named.
    #[test]
    fn the_payout_scan_reads_10000_blocks_a_request_unless_configured_and_never_zero() {
        let example = include_str!("../../../watchman.example.toml");
        let config: Config = toml::from_str(example).unwrap();
        assert_eq!(config.ethereum.unwrap().log_range, chains::ethereum_view::LOG_RANGE);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watchman.toml");
        for (range, loads) in [("2000", true), ("0", false)] {
            let text = example.replace("# log_range = 10000", &format!("log_range = {range}"));
            assert_ne!(text, example);
            std::fs::write(&file, text).unwrap();
            match Config::load(&file) {
                Ok(config) => assert!(loads && config.ethereum.unwrap().log_range == 2000),
                Err(error) => {
                    let error = format!("{error:#}");
                    assert!(!loads && error.contains("[ethereum] log_range must be at least 1"), "{error}");
                }
            }
        }
    }
}
