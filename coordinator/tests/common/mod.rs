//! What the coordinator's tests share: the test network, wallets, transactions, and a ledger
//! per test on SQLite and (when `DATABASE_URL` is set) PostgreSQL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bridge::tx::{Deposit, L1Ref, SystemTx, Transfer, UserTx};
use bridge::{Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, CoordinatorKey, NetworkParams, Tx, Wallet};

pub const KEY_SECRET: [u8; 32] = [0xc0; 32];

pub fn key() -> CoordinatorKey {
    CoordinatorKey::from_secret(&KEY_SECRET).unwrap()
}

pub fn params() -> NetworkParams {
    NetworkParams {
        name: "test-coordinator".into(),
        chain_id: 31_337,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key().public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}

pub fn wallet(n: u64) -> Wallet {
    let mut secret = [0x11; 32];
    secret[24..].copy_from_slice(&n.to_be_bytes());
    Wallet::from_secret(&secret).unwrap()
}

pub fn deposit(account: Address, amount: u128, n: u64) -> Tx {
    let l1_ref = L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: n as u32 };
    Tx::System(SystemTx::Deposit(Deposit {
        chain: Chain::Ethereum,
        l1_ref,
        account,
        asset: AssetId::Eth,
        amount: Amount(amount),
        l1_height: 0,
    }))
}

pub fn transfer(from: &Wallet, to: Address, amount: u128, nonce: u64) -> Tx {
    let domain = bridge::eip712::Domain::new(&params());
    let tx = UserTx::Transfer(Transfer {
        from: from.address(),
        to,
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(0),
        nonce,
    });
    Tx::User(from.sign(tx, &domain).verify(&domain).unwrap())
}

/// A ledger URL per test: a SQLite file, or a fresh Postgres schema when `postgres` is asked.
pub struct Ledger {
    pub url: String,
    pub _dir: tempfile::TempDir,
    /// The Postgres schema to drop when the test is done with it.
    schema: Option<(String, String)>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else { return };
        // A runtime of its own on a thread of its own: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(chains::db::drop_schema(&base, &schema));
        })
        .join();
    }
}

pub async fn ledgers() -> Vec<Ledger> {
    let dir = tempfile::tempdir().unwrap();
    let mut out =
        vec![Ledger { url: format!("sqlite://{}", dir.path().join("ledger.db").display()), _dir: dir, schema: None }];
    if let Ok(base) = std::env::var("DATABASE_URL") {
        let schema = format!("t{}_{}", std::process::id(), unique());
        let url = chains::db::create_schema(&base, &schema).await.unwrap();
        out.push(Ledger { url, _dir: tempfile::tempdir().unwrap(), schema: Some((base, schema)) });
    }
    out
}

/// Unique within this run: a counter and the clock's nanoseconds (processes differ by pid).
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{nanos}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A config for a coordinator on loopback (any free port) over `database_url`, with its files
/// in `dir`, on the test network, funding `funded` wallets (1..=funded) with 1 ETH each through
/// the dev deposits file. No rate limit unless a test sets one.
pub fn node_config(dir: &std::path::Path, database_url: &str, funded: u64) -> coordinator::config::Config {
    use coordinator::config::{Config, NetworkConfig};
    let key_file = dir.join("coordinator.key");
    if !key_file.exists() {
        std::fs::write(&key_file, hex::encode(KEY_SECRET)).unwrap();
    }
    let p = params();
    let mut config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    config.network = NetworkConfig::from(&p);
    config.coordinator.key_file = Some(key_file);
    config.coordinator.create_key = false;
    config.coordinator.database_url = Some(database_url.to_owned());
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.rate_limit_per_second = 0.0;
    config.batch.max_age_ms = 100;
    config.da.publish_retry_ms = 200;
    if funded > 0 {
        let deposits: Vec<serde_json::Value> = (1..=funded)
            .map(|n| serde_json::json!({ "account": wallet(n).address(), "asset": "eth:ETH", "amount": ONE_ETH.to_string() }))
            .collect();
        let path = dir.join("deposits.json");
        std::fs::write(&path, serde_json::to_vec(&deposits).unwrap()).unwrap();
        config.dev.deposits = Some(path);
    }
    config
}

pub const ONE_ETH: u128 = 1_000_000_000_000_000_000;

/// A signed transfer as the API takes it.
pub fn transfer_request(from: &Wallet, to: Address, amount: u128, nonce: u64) -> serde_json::Value {
    let Tx::User(user) = transfer(from, to, amount, nonce) else { unreachable!() };
    serde_json::to_value(coordinator::api::request::TxRequest::from_signed(user.signed())).unwrap()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `seconds`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// [`node_config`] written as a TOML file for the `coordinator` binary, listening on any free
/// port; returns the file's path.
pub fn config_file(dir: &std::path::Path, database_url: &str, funded: u64, extra: &str) -> std::path::PathBuf {
    let config = node_config(dir, database_url, funded);
    let n = &config.network;
    let deposits = match &config.dev.deposits {
        Some(path) => format!("[dev]\ndeposits = {:?}\n", path.display().to_string()),
        None => String::new(),
    };
    let text = format!(
        r#"data_dir = {data_dir:?}

[network]
name = {name:?}
chain_id = {chain_id}
eth_vault = "{vault}"
btc_network = "regtest"
fee_account = "{fee}"
coordinator_key = {key:?}
assets = [{{ asset = "eth:ETH", min_fee = "0" }}]

[coordinator]
key_file = {key_file:?}
create_key = false
database_url = {url:?}

[api]
listen = "127.0.0.1:0"
rate_limit_per_second = 0.0

[batch]
max_age_ms = 50
max_txs = 500

[da]
publish_retry_ms = 200

{deposits}
{extra}
"#,
        data_dir = dir.display().to_string(),
        name = n.name,
        chain_id = n.chain_id,
        vault = n.eth_vault,
        fee = n.fee_account,
        key = n.coordinator_key.clone().unwrap(),
        key_file = config.key_file().display().to_string(),
        url = database_url,
    );
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `coordinator` binary running with a config file; killed (SIGKILL) when dropped.
pub struct Process {
    pub child: tokio::process::Child,
    pub url: String,
}

impl Process {
    /// Starts `coordinator --config <config> run` and waits for it to say where it listens.
    pub async fn start(config: &std::path::Path) -> Process {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "warn")
            // The test's own DATABASE_URL would override the config's ledger.
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the coordinator starts within a minute")
            .unwrap()
            .expect("the coordinator prints where it listens");
        let url =
            line.strip_prefix("coordinator listening on ").unwrap_or_else(|| panic!("unexpected: {line}")).to_owned();
        Process { child, url }
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM, then waits for the clean shutdown (seal and publish what is open).
    pub async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        assert!(exit.success(), "the coordinator exited with {exit}");
    }
}

/// Runs the `coordinator` binary to completion with `args`.
pub fn run_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

/// `account` deposits `wei` into the vault of `setup` (anvil): the block it landed in.
pub async fn deposit_eth(setup: &contracts::harness::Setup, account: Address, wei: u64) -> u64 {
    let receipt = setup
        .vault
        .depositETH(alloy::primitives::Address::from(account.0))
        .value(alloy::primitives::U256::from(wei))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    receipt.block_number.unwrap()
}
