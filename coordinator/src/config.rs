//! The coordinator's configuration: one TOML file (every option is in
//! `coordinator.example.toml`, with its default), environment overrides
//! `COORDINATOR__<SECTION>__<OPTION>`, and `DATABASE_URL`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bridge::{Address, AssetConfig, BtcNetwork, NetworkParams};
use serde::Deserialize;

/// The annotated example, also shown by `coordinator --help`.
pub const EXAMPLE: &str = include_str!("../coordinator.example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid TOML: {source}")]
    Toml { path: PathBuf, source: Box<toml::de::Error> },
    #[error("the configuration is invalid: {0} (see `coordinator --help` for every option)")]
    Invalid(String),
    #[error("the environment variable {name} does not name an option: {reason}")]
    Env { name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    /// An extra CA (PEM) every HTTP client trusts besides the bundled roots: for an Ethereum
    /// node, Arweave gateway or Bitcoin node behind a private CA (`chains::http`).
    pub tls_ca_file: Option<PathBuf>,
    pub network: NetworkConfig,
    pub coordinator: CoordinatorConfig,
    pub api: ApiConfig,
    pub batch: BatchConfig,
    pub da: DaConfig,
    pub log: LogConfig,
    pub ethereum: EthereumConfig,
    pub bitcoin: BitcoinConfig,
    pub dev: DevConfig,
    /// `[snapshots]`: when the sequencer saves its state (chains::snapshots).
    pub snapshots: chains::snapshots::SnapshotPolicy,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub name: String,
    pub chain_id: u64,
    pub eth_vault: Address,
    pub btc_network: BtcNetwork,
    /// `[network.btc_vault]`: the watchmen's group key and payout fee bounds; without it the
    /// network takes no Bitcoin withdrawals.
    pub btc_vault: Option<bridge::BtcVaultParams>,
    pub fee_account: Address,
    pub coordinator_key: Option<String>,
    pub assets: Vec<AssetConfig>,
    /// `[network.forced]`: forced inclusion through Arweave (docs/PROTOCOL.md, Forced
    /// transactions); needs the Arweave DA.
    pub forced: Option<bridge::forced::ForcedParams>,
    /// `[network.webauthn]`: passkey accounts (docs/PROTOCOL.md, Passkey accounts): the RP ID
    /// and the web origins allowed to sign.
    pub webauthn: Option<bridge::passkey::WebAuthnParams>,
    /// `[network.rotation]`: how a Bitcoin key rotation hands over (the old-key grace, in
    /// batches); absent: the protocol's defaults (docs/PROTOCOL.md, "Bitcoin in a key rotation").
    pub rotation: Option<bridge::rotation::RotationParams>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    pub key_file: Option<PathBuf>,
    pub create_key: bool,
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub max_txs_per_request: usize,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: f64,
    /// What a first request for an account's Bitcoin deposit address costs of the rate limit
    /// (every later one costs 1): each new account is rows in the deposit book for good.
    pub new_deposit_address_cost: f64,
    /// Peers whose `X-Forwarded-For` names the client the rate limit counts (a confirmer
    /// relaying its web page's calls, a reverse proxy); any other peer's header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_txs: usize,
    pub max_age_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaKind {
    Dir,
    Arweave,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaConfig {
    pub kind: DaKind,
    pub dir: Option<PathBuf>,
    pub gateway: Option<String>,
    pub wallet: Option<PathBuf>,
    pub journal_dir: Option<PathBuf>,
    pub confirmations: u64,
    pub publish_retry_ms: u64,
    /// How often the Arweave wallet's balance is read (`bridge_coordinator_arweave_balance_winston`).
    pub balance_poll_s: u64,
    /// The spend rate behind `bridge_coordinator_arweave_days_left` is taken over this many hours.
    pub spend_window_h: u64,
    /// The most one posting may pay per started MiB, in winston: a gateway asking more is
    /// refused and the batch waits (`CoordinatorPublishingStalled`).
    pub max_price_winston_per_mib: u64,
    /// How often the forced-transaction follower looks at the gateway (network.forced only).
    pub forced_poll_ms: u64,
    /// Publish the newest state snapshot to the DA at most every this many batches, for
    /// confirmers that join late (`confirmer follow --checkpoint`); 0: never.
    pub snapshot_every_batches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

/// The Ethereum deposit watcher (`chains::ethereum::DepositWatcher`); off without `rpc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EthereumConfig {
    pub rpc: Option<String>,
    /// The chain id the node must have (`coordinator check` refuses another); unset: not checked.
    pub chain_id: Option<u64>,
    /// `finalized`: credit at the node's finalized block (the depth if the node lacks the tag);
    /// `depth`: credit `depth` blocks below the head.
    pub finality: chains::eth_finality::FinalityRule,
    pub depth: u64,
    /// Where the first start scans from (the vault's deployment block); a later start resumes
    /// after the mark the last run saved, unless this is set past it.
    pub from_block: u64,
    pub poll_ms: u64,
}

impl Default for EthereumConfig {
    fn default() -> Self {
        EthereumConfig {
            rpc: None,
            chain_id: None,
            finality: chains::eth_finality::FinalityRule::Finalized,
            depth: 12,
            from_block: 0,
            poll_ms: 2_000,
        }
    }
}

/// The Bitcoin node the coordinator asks about payouts (`payouts::PayoutKeeper`); off without
/// `rpc`. The password comes from `COORDINATOR__BITCOIN__RPC_PASSWORD`, not from a file in git;
/// `Debug` hides it.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BitcoinConfig {
    pub rpc: Option<String>,
    pub rpc_user: String,
    pub rpc_password: String,
    /// Confirmations before a deposit is credited and before a payout's change is recorded as
    /// the vault's.
    pub depth: u64,
    /// The first block the deposit watcher reads on the first start: the vault's birth height (a
    /// deposit handed in twice is refused by the state, so starting early is safe). A later start
    /// resumes after the mark the last run saved, unless this is set past it.
    pub from_height: u64,
    pub poll_ms: u64,
    /// `estimatesmartfee`'s target in blocks.
    pub fee_target_blocks: u16,
    /// One payout per window: queued withdrawals are paid within about this long (ms) by one
    /// plan that pays them all, planned ahead of the window's end by how long the last plan took
    /// to confirm (0, the default: every round plans what waits; the devnet sets its settlement
    /// window, 30 s).
    pub payout_window_ms: u64,
}

impl std::fmt::Debug for BitcoinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinConfig")
            .field("rpc", &self.rpc.as_deref().map(chains::bitcoin::rpc::redact_url))
            .field("rpc_user", &self.rpc_user)
            .field("rpc_password", &"<redacted>")
            .field("depth", &self.depth)
            .field("from_height", &self.from_height)
            .field("poll_ms", &self.poll_ms)
            .field("fee_target_blocks", &self.fee_target_blocks)
            .field("payout_window_ms", &self.payout_window_ms)
            .finish()
    }
}

impl Default for BitcoinConfig {
    fn default() -> Self {
        BitcoinConfig {
            rpc: None,
            rpc_user: String::new(),
            rpc_password: String::new(),
            depth: 6,
            from_height: 0,
            poll_ms: 2_000,
            fee_target_blocks: 6,
            payout_window_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    pub deposits: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("coordinator-data"),
            tls_ca_file: None,
            network: NetworkConfig::default(),
            coordinator: CoordinatorConfig { key_file: None, create_key: true, database_url: None },
            api: ApiConfig::default(),
            batch: BatchConfig { max_txs: 10_000, max_age_ms: 1_000 },
            da: DaConfig {
                kind: DaKind::Dir,
                dir: None,
                gateway: None,
                wallet: None,
                journal_dir: None,
                confirmations: 1,
                publish_retry_ms: 2_000,
                forced_poll_ms: 2_000,
                balance_poll_s: 300,
                spend_window_h: 24,
                max_price_winston_per_mib: u64::try_from(chains::da::DEFAULT_MAX_PRICE_WINSTON_PER_MIB)
                    .unwrap_or(u64::MAX),
                snapshot_every_batches: 0,
            },
            log: LogConfig { format: LogFormat::Human, filter: "info".into() },
            ethereum: EthereumConfig::default(),
            bitcoin: BitcoinConfig::default(),
            dev: DevConfig::default(),
            snapshots: chains::snapshots::SnapshotPolicy::default(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            name: "devnet".into(),
            // Anvil's chain, where the default vault address is anvil's first deployment.
            chain_id: 31_337,
            eth_vault: Address(hex_literal("5fbdb2315678afecb367f032d93f642f64180aa3")),
            btc_network: BtcNetwork::Regtest,
            btc_vault: None,
            fee_account: Address(hex_literal("000000000000000000000000000000000000fee5")),
            coordinator_key: None,
            assets: vec![
                AssetConfig { asset: bridge::AssetId::Eth, min_fee: bridge::Amount(0) },
                AssetConfig { asset: bridge::AssetId::Btc, min_fee: bridge::Amount(0) },
            ],
            forced: None,
            webauthn: None,
            rotation: None,
        }
    }
}

impl From<&NetworkParams> for NetworkConfig {
    /// The configuration naming `params` exactly, the coordinator key included.
    fn from(params: &NetworkParams) -> Self {
        NetworkConfig {
            name: params.name.clone(),
            chain_id: params.chain_id,
            eth_vault: params.eth_vault,
            btc_network: params.btc_network,
            btc_vault: params.btc_vault,
            fee_account: params.fee_account,
            coordinator_key: Some(format!("0x{}", hex::encode(params.coordinator_key))),
            assets: params.assets.clone(),
            forced: params.forced,
            webauthn: params.webauthn.clone(),
            rotation: params.rotation,
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Config::default().coordinator
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1 << 20,
            max_txs_per_request: 1_000,
            rate_limit_per_second: 200.0,
            rate_limit_burst: 400.0,
            new_deposit_address_cost: 50.0,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Config::default().batch
    }
}

impl Default for DaConfig {
    fn default() -> Self {
        Config::default().da
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Config::default().log
    }
}

fn hex_literal<const N: usize>(digits: &str) -> [u8; N] {
    let mut out = [0; N];
    hex::decode_to_slice(digits, &mut out).unwrap_or_else(|e| unreachable!("a constant is bad hex: {e}"));
    out
}

const ENV_PREFIX: &str = "COORDINATOR__";

impl Config {
    /// The file at `path` (or the defaults), then the environment's overrides.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|source| ConfigError::Toml { path: path.to_owned(), source: Box::new(source) })?;
                (table, path.to_owned())
            }
            None => (toml::Table::new(), PathBuf::from("(defaults)")),
        };
        let mut database_url = None;
        for (name, value) in env {
            if name == "DATABASE_URL" {
                database_url = Some(value);
            } else if let Some(option) = name.strip_prefix(ENV_PREFIX) {
                set_option(&mut table, &name, option, &value)?;
            }
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Toml { path: origin, source: Box::new(source) })?;
        if database_url.is_some() {
            config.coordinator.database_url = database_url;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.batch.max_txs == 0 || self.batch.max_txs > bridge::batch::MAX_BATCH_TXS {
            return invalid(format!("batch.max_txs must be 1 to {}", bridge::batch::MAX_BATCH_TXS));
        }
        if self.batch.max_age_ms == 0 {
            return invalid("batch.max_age_ms must be at least 1".into());
        }
        if self.api.max_txs_per_request == 0 || self.api.body_limit_bytes < 1024 {
            return invalid("api.max_txs_per_request must be at least 1 and api.body_limit_bytes at least 1024".into());
        }
        let (rate, burst) = (self.api.rate_limit_per_second, self.api.rate_limit_burst);
        if !(rate.is_finite() && rate >= 0.0 && burst.is_finite() && (rate == 0.0 || burst >= 1.0)) {
            return invalid(
                "api.rate_limit_per_second must be 0 (off) or positive, with rate_limit_burst at least 1".into(),
            );
        }
        let cost = self.api.new_deposit_address_cost;
        if !(cost.is_finite() && cost >= 1.0) {
            return invalid("api.new_deposit_address_cost must be at least 1".into());
        }
        if self.da.kind == DaKind::Arweave && (self.da.gateway.is_none() || self.da.wallet.is_none()) {
            return invalid("da.kind = \"arweave\" needs da.gateway and da.wallet".into());
        }
        // At most the window's readings are kept (`arweave_wallet::MAX_SAMPLES`): a poll so
        // frequent that the window would not fit is refused rather than silently shortened.
        let window_s = self.da.spend_window_h.saturating_mul(3_600);
        if self.da.balance_poll_s == 0
            || !(1..=24 * 30).contains(&self.da.spend_window_h)
            || window_s / self.da.balance_poll_s.max(1) > crate::arweave_wallet::MAX_SAMPLES as u64
        {
            return invalid(format!(
                "da.balance_poll_s must be at least 1 and da.spend_window_h 1 to 720, with at most {} readings in the window",
                crate::arweave_wallet::MAX_SAMPLES
            ));
        }
        if self.dev.deposits.is_some() && !["devnet", "test", "bench"].iter().any(|p| self.network.name.starts_with(p))
        {
            return invalid(format!(
                "dev.deposits credits funds no chain has seen; it is refused on network {:?} (only devnet*, test*, bench*)",
                self.network.name
            ));
        }
        Ok(())
    }

    /// The trust every HTTP client of the coordinator uses: the bundled roots and `tls_ca_file`.
    pub fn tls(&self) -> Result<chains::http::Tls, ConfigError> {
        chains::http::Tls::load(self.tls_ca_file.as_deref())
            .map_err(|e| ConfigError::Invalid(format!("tls_ca_file: {e}")))
    }

    pub fn key_file(&self) -> PathBuf {
        self.coordinator.key_file.clone().unwrap_or_else(|| self.data_dir.join("coordinator.key"))
    }

    pub fn database_url(&self) -> String {
        self.coordinator
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ledger.db").display()))
    }

    pub fn da_dir(&self) -> PathBuf {
        self.da.dir.clone().unwrap_or_else(|| self.data_dir.join("da"))
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.da.journal_dir.clone().unwrap_or_else(|| self.data_dir.join("arweave-journal"))
    }

    /// The network's parameters with the coordinator's key; checks the configured key, if any.
    pub fn network_params(&self, coordinator_key: [u8; 32]) -> Result<NetworkParams, ConfigError> {
        if let Some(configured) = &self.network.coordinator_key {
            let configured = bridge::serde_hex::parse_fixed::<32>(configured)
                .map_err(|e| ConfigError::Invalid(format!("network.coordinator_key: {e}")))?;
            if configured != coordinator_key {
                return Err(ConfigError::Invalid(format!(
                    "the key file holds coordinator key 0x{}, but network.coordinator_key is 0x{}: wrong key file?",
                    hex::encode(coordinator_key),
                    hex::encode(configured)
                )));
            }
        }
        let n = &self.network;
        let params = NetworkParams {
            name: n.name.clone(),
            chain_id: n.chain_id,
            eth_vault: n.eth_vault,
            btc_network: n.btc_network,
            btc_vault: n.btc_vault,
            coordinator_key,
            fee_account: n.fee_account,
            assets: n.assets.clone(),
            forced: n.forced,
            webauthn: n.webauthn.clone(),
            rotation: n.rotation,
        };
        params.validate().map_err(|e| ConfigError::Invalid(format!("network: {e}")))?;
        Ok(params)
    }
}

/// Sets `section.option` (from `COORDINATOR__SECTION__OPTION`) in `table`. The value is read as
/// TOML when it parses as a TOML value (numbers, booleans, arrays), else as a string.
fn set_option(table: &mut toml::Table, name: &str, option: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = option.split("__").map(str::to_lowercase).collect();
    if path.iter().any(String::is_empty) || path.len() > 2 {
        return Err(ConfigError::Env { name: name.into(), reason: "use COORDINATOR__SECTION__OPTION".into() });
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut target = table;
    for section in &path[..path.len() - 1] {
        let entry = target.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        target = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env { name: name.into(), reason: format!("{section} is not a section") })?;
    }
    target.insert(path[path.len() - 1].clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_hides_the_bitcoin_rpc_password() {
        let config = BitcoinConfig { rpc_password: "hunter2-secret".into(), ..BitcoinConfig::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2-secret") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(Config::load(Some(&path), []).unwrap(), Config::default());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env = [
            ("COORDINATOR__API__LISTEN".to_owned(), "127.0.0.1:9999".to_owned()),
            ("COORDINATOR__BATCH__MAX_TXS".to_owned(), "77".to_owned()),
            ("COORDINATOR__DATA_DIR".to_owned(), "/tmp/x".to_owned()),
            ("DATABASE_URL".to_owned(), "postgres://u@h/db".to_owned()),
        ];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.api.listen.port(), 9999);
        assert_eq!(config.batch.max_txs, 77);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.database_url(), "postgres://u@h/db");
    }

    #[test]
    fn unknown_options_and_bad_values_are_refused() {
        let unknown = Config::load(None, [("COORDINATOR__API__LISTEN_ON".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(unknown.to_string().contains("listen_on"), "{unknown}");
        let bad = Config::load(None, [("COORDINATOR__BATCH__MAX_TXS".to_owned(), "0".to_owned())]).unwrap_err();
        assert!(bad.to_string().contains("max_txs"), "{bad}");
        let dev = Config::load(
            None,
            [
                ("COORDINATOR__NETWORK__NAME".to_owned(), "mainnet".to_owned()),
                ("COORDINATOR__DEV__DEPOSITS".to_owned(), "d.json".to_owned()),
            ],
        )
        .unwrap_err();
        assert!(dev.to_string().contains("refused on network"), "{dev}");
    }
}
