//! The parts of the forced-inclusion tests: every process on loopback (arlocal, anvil with the
//! vault, the coordinator, a confirmer, three watchmen from a real DKG), killed however a test
//! ends, and the small helpers the tests share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address as EthAddress, U256};
use bridge::forced::ForcedParams;
use chains::arweave::ArweaveWallet;
use chains::arweave::arlocal::Arlocal;
use serde_json::Value;

use crate::mesh;

pub const PASSPHRASE: &str = "correct horse battery staple";
/// The user's bridge key: anvil's account 0, a well-known test key.
pub const USER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub const USER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// Anvil's account 2: pays watchman 0's gas for roots and payouts.
pub const SENDER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
pub const COORDINATOR_SECRET: [u8; 32] = [0xc0; 32];
pub const WATCHMAN_PASSPHRASE: &str = "a test passphrase";
/// Cheap Argon2 for tests; operators keep the default.
pub const TEST_KDF: tss::keystore::KdfParams = tss::keystore::KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };
/// Arlocal mines a block every 200 ms here: a deadline of 30 blocks (6 s) leaves an honest
/// coordinator room to seal, publish and get mined on a loaded machine.
pub const RULES: ForcedParams = ForcedParams { cap: 8, deadline_blocks: 30, confirmations: 1, start_height: 0 };
pub const APP_NAME: &str = "settlement-bridge";
/// Fails a stuck wait; never a measure of speed.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// A workspace binary beside this test's `bridgectl`.
pub fn bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_bridgectl")).with_file_name(name);
    assert!(path.exists(), "{} is missing: cargo build -p coordinator -p confirmer --bins", path.display());
    path
}

/// The processes a test started, killed (by their own pids) however the test ends.
#[derive(Default)]
pub struct Processes(Vec<(String, Child, PathBuf)>);

impl Processes {
    pub fn spawn(&mut self, name: &str, mut command: Command, log: PathBuf) {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        self.0.push((name.to_owned(), child, log));
    }

    /// Panics with every log's tail if a process has exited.
    pub fn check(&mut self) {
        for (name, child, _) in &mut self.0 {
            if let Some(status) = child.try_wait().unwrap() {
                let name = name.clone();
                panic!("{name} exited with {status}:\n{}", self.logs());
            }
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _, log) in &self.0 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name}\n{}\n", lines[lines.len().saturating_sub(20)..].join("\n")));
        }
        out
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `probe` until it gives something; a stuck wait fails with what it waited for.
pub async fn until<T>(what: &str, processes: &mut Processes, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        processes.check();
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", processes.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_json(url: &str) -> Option<Value> {
    let response = reqwest::get(url).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// A new Arweave wallet (RSA, by arweave-js) at `path`, funded on arlocal; its address.
pub async fn arweave_wallet(arlocal: &Arlocal, path: &Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/arweave-check.js");
    let generated = Command::new("node").arg(script).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    std::fs::write(path, &generated.stdout).unwrap();
    let address = ArweaveWallet::load(path).unwrap().address().to_owned();
    arlocal.mint(&address, 1_000_000_000_000_000).await.unwrap();
    address
}

/// Mines one arlocal block every 200 ms until aborted.
pub fn keep_mining(arlocal: &Arlocal) -> tokio::task::JoinHandle<()> {
    let url = arlocal.url().to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let _ = http.get(format!("{url}/mine/1")).send().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
pub fn succeeded(output: &Output, what: &str, processes: &Processes) -> Value {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output),
        processes.logs()
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The user's encrypted wallet file in `dir`.
pub async fn user_wallet(dir: &Path) -> PathBuf {
    let file = dir.join("user.wallet");
    let mut import = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .args(["wallet", "import", "--out", file.to_str().unwrap()])
        .env("BRIDGE_PASSPHRASE", PASSPHRASE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    import.stdin.take().unwrap().write_all(USER_KEY.as_bytes()).await.unwrap();
    let output = import.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    file
}

/// Every forced entry of `network` on Arweave so far (what is posted is mined first).
pub async fn forced_entries(arlocal: &Arlocal, network: &str) -> usize {
    arlocal.mine(1).await.unwrap();
    let gateway = arlocal.gateway().unwrap();
    let tip = gateway.height().await.unwrap();
    gateway.list_forced(APP_NAME, network, 0, tip, 1_000).await.unwrap().listings.len()
}

/// The stages of a `--json` report, and a line of their times for the closing note.
pub fn stages(report: &Value) -> (Vec<String>, String) {
    let stages = report["stages"].as_array().unwrap();
    let names = stages.iter().map(|s| s["stage"].as_str().unwrap().to_owned()).collect();
    let times = stages
        .iter()
        .map(|s| format!("{} {:.2}s", s["stage"].as_str().unwrap(), s["at_ms"].as_u64().unwrap() as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ");
    (names, times)
}

/// The whole bridge on loopback, its processes killed however the test ends.
pub struct Bridge {
    pub processes: Processes,
    pub dir: PathBuf,
    pub arlocal: Arlocal,
    pub setup: contracts::harness::Setup,
    /// The vault under the watchmen's group key.
    pub vault: EthAddress,
    pub network: String,
    pub coordinator: String,
    pub confirmer: String,
    pub user_wallet: PathBuf,
    pub user_jwk: PathBuf,
    pub mining: tokio::task::JoinHandle<()>,
    _tmp: tempfile::TempDir,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.mining.abort();
    }
}

impl Bridge {
    pub async fn start() -> Bridge {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut processes = Processes::default();

        // The watchmen's key ceremony: a real 2-of-3 FROST DKG over libp2p on loopback.
        let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        let shares = mesh::dkg(&identities).await;
        let group = tss::GroupKey::of(&shares[0].public).unwrap();

        // Ethereum: anvil mining a block a second, the vault under the group's key.
        let anvil = contracts::Anvil::start(&["--block-time", "1"]).await.unwrap();
        let setup = contracts::harness::Setup::with_anvil(anvil).await.unwrap();
        let vault =
            contracts::Vault::deploy(setup.provider.clone(), U256::from_be_bytes(group.output_key), setup.deployer)
                .await
                .unwrap();
        let eth_rpc = setup.anvil.url();

        // Arweave.
        let arlocal = Arlocal::start_in_ram().await.unwrap();
        let mining = keep_mining(&arlocal);
        let owner = arweave_wallet(&arlocal, &dir.join("coordinator.jwk")).await;
        let user_jwk = dir.join("user.jwk");
        arweave_wallet(&arlocal, &user_jwk).await;

        // The coordinator binary: Arweave DA, forced rules, the vault's deposits at depth 1.
        let network = "test-forced".to_owned();
        let ports = mesh::free_ports(5);
        let coordinator = format!("http://127.0.0.1:{}", ports[0]);
        std::fs::create_dir_all(dir.join("coordinator")).unwrap();
        let key_file = dir.join("coordinator.key");
        std::fs::write(&key_file, hex::encode(COORDINATOR_SECRET)).unwrap();
        let config = format!(
            r#"data_dir = "{data}"

[network]
name = "{network}"
chain_id = {chain_id}
eth_vault = "{vault}"
btc_network = "regtest"
fee_account = "0x000000000000000000000000000000000000fee5"
assets = [{{ asset = "eth:ETH", min_fee = "0" }}]

[network.forced]
cap = {cap}
deadline_blocks = {deadline}
confirmations = {confirmations}
start_height = 0

[coordinator]
key_file = "{key}"
create_key = false

[api]
listen = "127.0.0.1:{port}"
rate_limit_per_second = 0.0

[batch]
max_age_ms = 200

[da]
kind = "arweave"
gateway = "{arweave}"
wallet = "{jwk}"
publish_retry_ms = 200
forced_poll_ms = 200

[ethereum]
rpc = "{eth_rpc}"
finality = "depth"
depth = 1
poll_ms = 200
"#,
            data = dir.join("coordinator").display(),
            chain_id = setup.chain_id,
            vault = vault.address(),
            cap = RULES.cap,
            deadline = RULES.deadline_blocks,
            confirmations = RULES.confirmations,
            key = key_file.display(),
            port = ports[0],
            arweave = arlocal.url(),
            jwk = dir.join("coordinator.jwk").display(),
        );
        let config_file = dir.join("coordinator.toml");
        std::fs::write(&config_file, config).unwrap();
        let params = Command::new(bin("coordinator")).arg("--config").arg(&config_file).arg("params").output().unwrap();
        assert!(params.status.success(), "coordinator params: {}", String::from_utf8_lossy(&params.stderr));
        let params_file = dir.join("params.json");
        std::fs::write(&params_file, &params.stdout).unwrap();
        let mut command = Command::new(bin("coordinator"));
        command.arg("--config").arg(&config_file).arg("run");
        processes.spawn("coordinator", command, dir.join("coordinator.log"));

        // A confirmer checking deposits against anvil and forced entries against arlocal.
        let confirmer = format!("http://127.0.0.1:{}", ports[1]);
        let mut command = Command::new(bin("confirmer"));
        command
            .arg("follow")
            .arg("--params")
            .arg(&params_file)
            .args(["--arweave", arlocal.url(), "--owner", &owner, "--interval-ms", "200"])
            .args(["--eth-rpc", &eth_rpc, "--eth-finality", "depth", "--eth-depth", "1"])
            .args(["--listen", &format!("127.0.0.1:{}", ports[1]), "--no-web"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("confirmer.db").display()));
        processes.spawn("confirmer", command, dir.join("confirmer.log"));

        // Three watchman processes as the ceremony leaves their operators; watchman 0 pays gas.
        let mesh_ports = mesh::mesh_ports(3);
        let entries = mesh::entries_on(&identities, &mesh_ports);
        let mut roster = String::from("threshold = 2\n");
        for entry in &entries {
            roster.push_str(&format!(
                "\n[[watchman]]\npeer_id = \"{}\"\naddress = \"{}\"\n",
                entry.peer_id, entry.address
            ));
        }
        std::fs::write(dir.join("watchmen.toml"), roster).unwrap();
        let passphrase = tss::keystore::Passphrase::new(WATCHMAN_PASSPHRASE).unwrap();
        let mut health = Vec::new();
        for (i, identity) in identities.iter().enumerate() {
            let home = dir.join(format!("watchman-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            tss::keystore::save_identity(&home.join("identity.key"), identity, &passphrase, TEST_KDF).unwrap();
            shares[i].save(&home.join("share.key"), &passphrase, TEST_KDF).unwrap();
            let sender = if i == 0 {
                std::fs::write(home.join("sender.key"), SENDER_KEY).unwrap();
                "sender_key_file = \"sender.key\"\n"
            } else {
                ""
            };
            let listen = format!("127.0.0.1:{}", ports[2 + i]);
            let config = format!(
                r#"params = "{params}"
database_url = "sqlite://{home}/watchman.db"
interval_ms = 200
listen = "{listen}"

[mesh]
watchmen = "../watchmen.toml"
identity = "identity.key"
share = "share.key"
session_timeout_s = 20

[da]
arweave = "{arweave}"
owner = "{owner}"
confirmations = 1

[ethereum]
rpc = "{eth_rpc}"
finality = "depth"
depth = 1
{sender}
[ethereum.settlement]
window_s = 0
"#,
                params = params_file.display(),
                home = home.display(),
                arweave = arlocal.url(),
            );
            std::fs::write(home.join("watchman.toml"), config).unwrap();
            let mut command = Command::new(bin("watchman"));
            command.arg("--config").arg(home.join("watchman.toml")).env("WATCHMAN_PASSPHRASE", WATCHMAN_PASSPHRASE);
            processes.spawn(&format!("watchman-{i}"), command, home.join("watchman.log"));
            health.push(format!("http://{listen}/health"));
        }
        let coordinator_health = format!("{coordinator}/health");
        let confirmer_status = format!("{confirmer}/status");
        for url in health.iter().chain([&coordinator_health, &confirmer_status]) {
            until(url, &mut processes, async || get_json(url).await).await;
        }

        // The user's money: a deposit into the vault, credited and hard-final.
        let user_wallet = user_wallet(&dir).await;
        vault
            .depositETH(USER.parse().unwrap())
            .value(U256::from(1_000_000u64))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        let account = format!("{confirmer}/accounts/{USER}");
        until("the deposit hard-final at the confirmer", &mut processes, async || {
            let view = get_json(&account).await?;
            (view["hard_final"] == true && view["balances"][0]["amount"] == "1000000").then_some(())
        })
        .await;

        Bridge {
            processes,
            dir,
            arlocal,
            vault: *vault.address(),
            setup,
            network,
            coordinator,
            confirmer,
            user_wallet,
            user_jwk,
            mining,
            _tmp: tmp,
        }
    }

    /// `bridgectl withdraw` of `amount` wei to `recipient` with `extra` flags, followed to L1.
    pub async fn withdraw(&self, amount: u64, recipient: EthAddress, extra: &[&str]) -> Output {
        let amount = amount.to_string();
        let recipient = recipient.to_string();
        let mut args = vec![
            "withdraw",
            "--wallet",
            self.user_wallet.to_str().unwrap(),
            "--asset",
            "eth",
            "--amount",
            &amount,
            "--recipient",
            &recipient,
            "--arweave",
            self.arlocal.url(),
            "--confirmer",
            &self.confirmer,
            "--devnet",
            "no-devnet-here",
            "--json",
            "--timeout-secs",
            "180",
            "--poll-ms",
            "100",
        ];
        let eth_rpc = self.setup.anvil.url();
        args.extend(["--eth-rpc", &eth_rpc]);
        args.extend(extra);
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgectl"));
        command
            .args(&args)
            .env("BRIDGE_PASSPHRASE", PASSPHRASE)
            .env_remove("DATABASE_URL")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        command.output().await.unwrap()
    }

    pub async fn eth_balance(&self, who: EthAddress) -> U256 {
        self.setup.balance(who).await.unwrap()
    }
}
