//! The `watchman` binary as an operator runs it: three processes, each with its own encrypted
//! identity and key share (from a real 2-of-3 DKG), its own configuration file, following the
//! DA and checking Bitcoin against the regtest node; one of them pays. A Bitcoin withdrawal made
//! through the coordinator's API is paid on the chain; SIGTERM saves a watchman's state, so its
//! restart replays nothing. A bad configuration is refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::bitcoin_bridge::{BitcoinBridge, deposit_and_withdraw, recipient, until};
use common::*;
use tss::GroupKey;
use tss::keystore::{self, KdfParams, Passphrase};

const PASSPHRASE: &str = "a test passphrase";
/// Cheap Argon2 for tests; operators keep the default.
const TEST_KDF: KdfParams = KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };

/// The watchman processes, killed when the test ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn watchman() -> Command {
    Command::new(env!("CARGO_BIN_EXE_watchman"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_watchman_processes_pay_a_bitcoin_withdrawal() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let bridge = BitcoinBridge::start(group.internal_key).await;
    let dir = bridge.dir.path();

    // What the key ceremony leaves each operator: the shared watchmen file and parameters, and
    // their own encrypted identity and share.
    // Mesh ports are held for the test, so no watchman's API can take another's mesh port.
    let mesh_ports = mesh_ports(identities.len());
    let api_ports = free_ports(identities.len());
    let entries = entries_on(&identities, &mesh_ports);
    let mut roster = String::from("threshold = 2\n");
    for entry in &entries {
        roster.push_str(&format!("\n[[watchman]]\npeer_id = \"{}\"\naddress = \"{}\"\n", entry.peer_id, entry.address));
    }
    std::fs::write(dir.join("watchmen.toml"), roster).unwrap();
    std::fs::write(dir.join("params.json"), serde_json::to_vec_pretty(&bridge.params).unwrap()).unwrap();
    let passphrase = Passphrase::new(PASSPHRASE).unwrap();
    let mut processes = Processes(Vec::new());
    let mut listens = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        let home = dir.join(format!("watchman-{i}"));
        std::fs::create_dir_all(&home).unwrap();
        keystore::save_identity(&home.join("identity.key"), identity, &passphrase, TEST_KDF).unwrap();
        shares[i].save(&home.join("share.key"), &passphrase, TEST_KDF).unwrap();
        let listen = format!("127.0.0.1:{}", api_ports[i]);
        let config = format!(
            r#"params = "../params.json"
database_url = "sqlite://{db}"
interval_ms = 200
listen = "{listen}"

[mesh]
watchmen = "../watchmen.toml"
identity = "identity.key"
share = "share.key"

[da]
dir = "../da"

[bitcoin]
rpc = "{rpc}"
rpc_user = "{user}"
depth = 1
pay = {pay}
"#,
            db = home.join("watchman.db").display(),
            rpc = bridge.node.url(),
            user = bridge.node.user(),
            pay = i == 0,
        );
        std::fs::write(home.join("watchman.toml"), config).unwrap();
        processes.0.push(start(&home, "watchman.log", bridge.node.password()));
        listens.push(listen);
    }

    let to = recipient();
    deposit_and_withdraw(&bridge.coordinator, &bridge.rpc, &bridge.miner, &bridge.params, &to).await;
    let txid = until("the payout in the mempool", async || {
        for child in &mut processes.0 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("a watchman exited with {status}: {}", logs(dir));
            }
        }
        bridge.rpc.raw_mempool().await.unwrap().first().copied()
    })
    .await;
    bridge.rpc.generate_to_address(1, &bridge.miner.address).await.unwrap();
    let tx = bridge.rpc.raw_transaction(&txid, None).await.unwrap();
    assert_eq!(tx.output[0].script_pubkey, to.script_pubkey());
    assert_eq!(tx.output[0].value.to_sat(), 2_000_000, "the recipient is paid the withdrawal exactly");

    // Every watchman serves its health and metrics; none has stopped signing.
    for listen in &listens {
        let health: serde_json::Value =
            reqwest::get(format!("http://{listen}/health")).await.unwrap().json().await.unwrap();
        assert_eq!(health["signing"], true, "{health}");
        // Its loop and its API run under the supervisor, and /health says so.
        for task in ["watchman", "api"] {
            let found = health["tasks"].as_array().into_iter().flatten().find(|t| t["task"] == task);
            assert_eq!(found.map(|t| &t["state"]), Some(&serde_json::json!("running")), "{task}: {health}");
        }
    }
    let metrics = reqwest::get(format!("http://{}/metrics", listens[0])).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("watchman_btc_payouts_broadcast_total"), "{metrics}");

    // SIGTERM: watchman 1 stops cleanly, saving its replayed state though no snapshot is due
    // (every 1,000 batches by default); restarted, it loads that snapshot and replays nothing.
    let home = dir.join("watchman-1");
    let pid = processes.0[1].id();
    assert!(Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success());
    let exit = until("watchman 1 to exit after SIGTERM", async || processes.0[1].try_wait().unwrap()).await;
    assert!(exit.success(), "watchman 1 exited with {exit}: {}", logs(dir));
    let store = confirmer::store::ConfirmerStore::open(&format!("sqlite://{}", home.join("watchman.db").display()))
        .await
        .unwrap();
    let saved = store.snapshots().numbers().await.unwrap();
    let &newest = saved.first().unwrap_or_else(|| panic!("no final snapshot: {}", logs(dir)));
    // The deposit and the withdrawal may share batch 1 when the withdrawal is sent before the
    // deposit's batch is sealed; either way that batch is replayed and saved.
    assert!(newest >= 1, "the deposit's and the withdrawal's batches were replayed: {saved:?}");
    assert!(store.replayed_after(newest, 1).await.unwrap().is_empty(), "the snapshot is of the last replayed batch");
    drop(store);
    processes.0[1] = start(&home, "watchman-restarted.log", bridge.node.password());
    let gauges = until("watchman 1 to serve its metrics again", async || {
        let metrics = reqwest::get(format!("http://{}/metrics", listens[1])).await.ok()?.text().await.ok()?;
        Some((gauge(&metrics, "bridge_snapshot_restored_batch")?, gauge(&metrics, "bridge_start_replayed_batches")?))
    })
    .await;
    assert_eq!(gauges, (newest as f64, 0.0), "restored from the final snapshot, nothing replayed");
}

/// Starts the watchman whose home is `home`, logging to `log` there.
fn start(home: &Path, log: &str, btc_rpc_password: &str) -> Child {
    let log = std::fs::File::create(home.join(log)).unwrap();
    watchman()
        .arg("--config")
        .arg(home.join("watchman.toml"))
        .env("WATCHMAN_PASSPHRASE", PASSPHRASE)
        .env("WATCHMAN_BTC_RPC_PASSWORD", btc_rpc_password)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// An unlabelled series' value in Prometheus text.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn logs(dir: &Path) -> String {
    (0..3)
        .map(|i| std::fs::read_to_string(dir.join(format!("watchman-{i}/watchman.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn a_bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = watchman().arg("--config").arg(dir.path().join("nope.toml")).output().unwrap();
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("cannot read") && said.contains("nope.toml"), "{said}");

    let file = dir.path().join("watchman.toml");
    std::fs::write(&file, "params = \"p.json\"\ndatabase_url = \"sqlite://x\"\nsurprise = 1\n").unwrap();
    let unknown = watchman().arg("--config").arg(&file).output().unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("is not a watchman configuration"), "{said}");

    // A configuration that parses but whose parameters are missing.
    let config = "params = \"p.json\"\ndatabase_url = \"sqlite://x\"\n[mesh]\nwatchmen = \"w.toml\"\nidentity = \"i\"\nshare = \"s\"\n[da]\ndir = \"da\"\n";
    std::fs::write(&file, config).unwrap();
    let no_params = watchman().arg("--config").arg(&file).output().unwrap();
    assert!(!no_params.status.success());
    let said = String::from_utf8_lossy(&no_params.stderr);
    assert!(said.contains("network parameters") && said.contains("p.json"), "{said}");
}
