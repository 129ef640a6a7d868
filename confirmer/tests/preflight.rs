//! Preflight against real parts: anvil with the committed vault, the regtest Bitcoin node, arlocal
//! and a running coordinator. Each role's check passes on a right configuration, and each
//! mismatch (wrong chain id, wrong vault code, wrong group key, wrong key epoch, empty Arweave
//! wallet, wrong Bitcoin network, wrong coordinator key) fails alone, with its own message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;

use alloy::primitives::U256;
use bridge::{BtcNetwork, BtcVaultParams, NetworkParams};
use chains::arweave::ArweaveWallet;
use chains::arweave::arlocal::Arlocal;
use chains::bitcoin::CoreRpc;
use chains::preflight::{self, Report};
use contracts::harness::{Setup, keypair};
use contracts::{TestToken, Vault, from_alloy};
use coordinator::config::{Config, DaKind};
use regtest::{RegtestConfig, RegtestNode};
use tss::keystore::{self, KdfParams, Passphrase};

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");
const SEPOLIA: u64 = 11_155_111;
const PASSPHRASE: &str = "a test passphrase";
/// Cheap Argon2 for tests; operators keep the default.
const TEST_KDF: KdfParams = KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };

/// The parts a real network has, on loopback.
struct Parts {
    eth: Setup,
    /// A vault whose key is the Taproot output key of `internal()`, as `bridgectl keygen` and
    /// `devnet up` deploy it.
    vault: alloy::primitives::Address,
    btc: RegtestNode,
    arlocal: Arlocal,
    dir: tempfile::TempDir,
}

impl Parts {
    async fn start() -> Parts {
        let eth = Setup::new().await.unwrap();
        let vault_key = preflight::vault_key_of(internal()).unwrap();
        let vault = Vault::deploy(eth.provider.clone(), U256::from_be_bytes(vault_key), eth.deployer).await.unwrap();
        let vault = *vault.address();
        let btc = RegtestNode::start(RegtestConfig::default()).await.unwrap();
        // Block 1's coinbase is what the -txindex probe looks up.
        let rpc = CoreRpc::new(btc.url(), btc.user(), btc.password());
        rpc.generate_to_address(1, &common::btc::recipient()).await.unwrap();
        let arlocal = Arlocal::start_in_ram().await.unwrap();
        Parts { eth, vault, btc, arlocal, dir: tempfile::tempdir().unwrap() }
    }

    /// The network whose vaults are of `internal()`, on regtest.
    fn params(&self) -> NetworkParams {
        let mut p = common::params();
        p.chain_id = self.eth.chain_id;
        p.eth_vault = from_alloy(self.vault);
        p.btc_vault = Some(BtcVaultParams { group_key: internal(), min_fee_rate: 1, max_fee_rate: 50 });
        p
    }

    fn rpc(&self) -> CoreRpc {
        CoreRpc::new(self.btc.url(), self.btc.user(), self.btc.password())
    }

    /// A fresh Arweave wallet, funded with `winston`.
    async fn wallet(&self, name: &str, winston: u128) -> std::path::PathBuf {
        let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
        assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
        let path = self.dir.path().join(name);
        std::fs::write(&path, &generated.stdout).unwrap();
        if winston > 0 {
            let wallet = ArweaveWallet::load(&path).unwrap();
            self.arlocal.mint(wallet.address(), winston).await.unwrap();
        }
        path
    }

    /// The coordinator's configuration for `params`: every endpoint set, Arweave DA with `wallet`.
    fn coordinator(&self, params: &NetworkParams, wallet: &Path) -> Config {
        let home = self.dir.path().join(format!("coordinator-{}", rand_suffix()));
        std::fs::create_dir_all(&home).unwrap();
        let mut config = common::coordinator_config(&home, params);
        config.ethereum.rpc = Some(self.eth.anvil.url());
        config.ethereum.chain_id = Some(self.eth.chain_id);
        config.bitcoin.rpc = Some(self.btc.url());
        config.bitcoin.rpc_user = self.btc.user().into();
        config.bitcoin.rpc_password = self.btc.password().into();
        config.da.kind = DaKind::Arweave;
        config.da.gateway = Some(self.arlocal.url().to_owned());
        config.da.wallet = Some(wallet.to_path_buf());
        config.batch.max_age_ms = 60_000;
        config
    }
}

/// The group's internal key x(P) in these tests.
fn internal() -> [u8; 32] {
    keypair(7).x_only_public_key().0.serialize()
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

/// The report failed exactly `name`, with a detail containing `says`.
fn fails_alone(report: &Report, name: &str, says: &str) {
    let failed: Vec<_> = report.failures().collect();
    assert!(failed.len() == 1 && failed[0].name == name, "expected only {name} to fail:\n{}", report.table());
    assert!(failed[0].detail.contains(says), "{name} should say {says:?}:\n{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_preflight_passes_and_names_each_mismatch() {
    let parts = Parts::start().await;
    let funded = parts.wallet("funded.json", 1_000_000_000_000_000).await;
    let params = parts.params();
    let run = async |config: &Config| coordinator::preflight::run(config, 16 * 1024).await;

    let report = run(&parts.coordinator(&params, &funded)).await;
    assert!(report.passed(), "{}", report.table());
    for name in [
        preflight::COORDINATOR_KEY,
        preflight::ETH_CHAIN,
        preflight::VAULT_CODE,
        preflight::VAULT_GROUP_KEY,
        preflight::BTC_NETWORK,
        preflight::BTC_RPCS,
        preflight::BTC_TXINDEX,
        preflight::ARWEAVE_FUNDS,
    ] {
        assert!(report.row(name).is_some(), "{name} did not run:\n{}", report.table());
    }

    // The node is Ethereum's, but not the chain the configuration names.
    let mut config = parts.coordinator(&params, &funded);
    config.ethereum.chain_id = Some(SEPOLIA);
    fails_alone(&run(&config).await, preflight::ETH_CHAIN, "on chain 31337, the configuration says 11155111");

    // Another contract at the vault address. Its group key cannot be read either; both rows say so.
    let token = TestToken::deploy(parts.eth.provider.clone()).await.unwrap();
    let mut other = params.clone();
    other.eth_vault = from_alloy(*token.address());
    let report = run(&parts.coordinator(&other, &funded)).await;
    let code = report.row(preflight::VAULT_CODE).unwrap();
    assert!(!code.ok && code.detail.contains("differs from the committed artifact"), "{}", report.table());
    assert!(report.row(preflight::VAULT_GROUP_KEY).unwrap().detail.contains("it is not the vault"));
    assert_eq!(report.failures().count(), 2, "{}", report.table());

    // The network's Bitcoin vault key is not the Ethereum vault's.
    let mut other = params.clone();
    other.btc_vault =
        Some(BtcVaultParams { group_key: keypair(8).x_only_public_key().0.serialize(), ..params.btc_vault.unwrap() });
    fails_alone(
        &run(&parts.coordinator(&other, &funded)).await,
        preflight::VAULT_GROUP_KEY,
        "network.btc_vault.group_key makes 0x",
    );

    // An empty Arweave wallet.
    let empty = parts.wallet("empty.json", 0).await;
    fails_alone(&run(&parts.coordinator(&params, &empty)).await, preflight::ARWEAVE_FUNDS, "fund the wallet");

    // The parameters say testnet; the node is regtest.
    let mut other = params.clone();
    other.btc_network = BtcNetwork::Testnet;
    fails_alone(&run(&parts.coordinator(&other, &funded)).await, preflight::BTC_NETWORK, "on \"regtest\"");

    // The key file is not the key the network names.
    let mut config = parts.coordinator(&params, &funded);
    config.network.coordinator_key = Some(format!("0x{}", hex::encode(keypair(9).x_only_public_key().0.serialize())));
    fails_alone(&run(&config).await, preflight::COORDINATOR_KEY, "wrong key file or parameters");

    // An endpoint that does not answer fails its check, naming the URL.
    let mut config = parts.coordinator(&params, &funded);
    config.bitcoin.rpc = Some("http://127.0.0.1:9".into());
    fails_alone(&run(&config).await, preflight::BTC_NETWORK, "http://127.0.0.1:9 did not answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmer_check_compares_the_coordinator_and_the_chains() {
    let parts = Parts::start().await;
    let params = parts.params();
    let home = parts.dir.path().join("coordinator");
    std::fs::create_dir_all(&home).unwrap();
    let coordinator = coordinator::node::Node::start(&common::coordinator_config(&home, &params)).await.unwrap();
    let params_file = parts.dir.path().join("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&params).unwrap()).unwrap();
    let setup = confirmer::preflight::Setup {
        params: params_file.clone(),
        coordinator: Some(coordinator.url()),
        arweave: Some(parts.arlocal.url().to_owned()),
        eth_rpc: Some(parts.eth.anvil.url()),
        eth_chain_id: Some(parts.eth.chain_id),
        btc: Some(parts.rpc()),
        btc_group_key: Some(hex::encode(internal())),
        tls: Default::default(),
    };
    let report = confirmer::preflight::run(&setup).await;
    assert!(report.passed(), "{}", report.table());
    assert!(report.row(preflight::COORDINATOR_NETWORK).is_some() && report.row(preflight::ARWEAVE_GATEWAY).is_some());

    // Parameters of another network than the coordinator's.
    let mut other = params.clone();
    other.name = "test-other".into();
    let other_file = parts.dir.path().join("other.json");
    std::fs::write(&other_file, serde_json::to_vec(&other).unwrap()).unwrap();
    let report = confirmer::preflight::run(&confirmer::preflight::Setup { params: other_file, ..setup.clone() }).await;
    fails_alone(&report, preflight::COORDINATOR_NETWORK, "take them from `coordinator params`");

    // A --btc-group-key that is not the vault's.
    let wrong_key = hex::encode(keypair(8).x_only_public_key().0.serialize());
    let report =
        confirmer::preflight::run(&confirmer::preflight::Setup { btc_group_key: Some(wrong_key), ..setup.clone() })
            .await;
    fails_alone(&report, preflight::VAULT_GROUP_KEY, "--btc-group-key makes 0x");

    // The binary, with follow's options: a wrong chain id fails and exits non-zero, naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confirmer"))
        .args(["check", "--params", params_file.to_str().unwrap(), "--da-dir", "unused"])
        .args(["--eth-rpc", &parts.eth.anvil.url(), "--eth-chain-id", &SEPOLIA.to_string()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("ethereum chain id") && stdout.contains("FAIL"), "{stdout}");
    assert!(stderr.contains("1 of 3 checks failed; fix: ethereum chain id"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchman_check_reads_its_share_and_the_vaults_key_and_epoch() {
    let parts = Parts::start().await;
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = common::dkg(&identities).await;
    let group = tss::GroupKey::of(&shares[0].public).unwrap();
    // A vault of this share's key on the same anvil.
    let guardian = parts.eth.deployer;
    let vault =
        Vault::deploy(parts.eth.provider.clone(), U256::from_be_bytes(group.output_key), guardian).await.unwrap();
    let mut params = parts.params();
    params.eth_vault = from_alloy(*vault.address());
    params.btc_vault = Some(BtcVaultParams { group_key: group.internal_key, min_fee_rate: 1, max_fee_rate: 50 });
    let dir = parts.dir.path();
    std::fs::write(dir.join("params.json"), serde_json::to_vec_pretty(&params).unwrap()).unwrap();
    let entries = common::entries(&identities);
    let mut roster = String::from("threshold = 2\n");
    for entry in &entries {
        roster.push_str(&format!("\n[[watchman]]\npeer_id = \"{}\"\naddress = \"{}\"\n", entry.peer_id, entry.address));
    }
    std::fs::write(dir.join("watchmen.toml"), roster).unwrap();
    let passphrase = Passphrase::new(PASSPHRASE).unwrap();
    keystore::save_identity(&dir.join("identity.key"), &identities[0], &passphrase, TEST_KDF).unwrap();
    shares[0].save(&dir.join("share.key"), &passphrase, TEST_KDF).unwrap();
    let check = |epoch: u64| {
        let config = format!(
            r#"params = "params.json"
database_url = "sqlite://{db}"

[mesh]
watchmen = "watchmen.toml"
identity = "identity.key"
share = "share.key"

[da]
arweave = "{gateway}"
owner = "unused"

[ethereum]
rpc = "{eth}"
chain_id = {chain_id}
epoch = {epoch}

[bitcoin]
rpc = "{btc}"
rpc_user = "{user}"
"#,
            db = dir.join("watchman.db").display(),
            gateway = parts.arlocal.url(),
            eth = parts.eth.anvil.url(),
            chain_id = parts.eth.chain_id,
            btc = parts.btc.url(),
            user = parts.btc.user(),
        );
        let file = dir.join(format!("watchman-{epoch}.toml"));
        std::fs::write(&file, config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_watchman"))
            .arg("--config")
            .arg(&file)
            .arg("check")
            .env("WATCHMAN_PASSPHRASE", PASSPHRASE)
            .env("WATCHMAN_BTC_RPC_PASSWORD", parts.btc.password())
            .output()
            .unwrap()
    };
    let out = check(0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for row in ["watchman share", "vault group key", "vault key epoch", "bitcoin txindex", "arweave gateway"] {
        assert!(stdout.lines().any(|l| l.starts_with(row) && l.contains(" ok ")), "{row} is not ok:\n{stdout}");
    }
    let out = check(1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("vault key epoch: the vault is at epoch 0, ethereum.epoch is 1"), "{stderr}");
}
