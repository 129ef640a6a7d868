//! Ready for a real network, end to end: anvil (finalizing two epochs of 2 slots behind its
//! head) behind an HTTPS proxy whose certificate a test CA signed. The coordinator watches the
//! vault through https with the CA configured (`tls_ca_file`) and credits a deposit only once
//! its block is finalized, though the fallback depth was passed long before; `/status` says
//! `finalized` is the rule in force. The `confirmer` binary with `--tls-ca-file` verifies the
//! deposit through the proxy and hard-finalizes its batch; the same binary without the CA
//! refuses the proxy, replays nothing, and its `/status` names the certificate problem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use alloy::primitives::U256;
use alloy::providers::Provider;
use bridge::AssetId;
use common::coordinator_api::{balance, until};
use common::*;
use contracts::harness::Setup;
use contracts::{Anvil, from_alloy, to_alloy};
use coordinator::node::Node;
use serde_json::Value;

#[path = "../../chains/tests/common/tls_proxy.rs"]
mod tls_proxy;
use tls_proxy::{TestCa, TlsProxy};

/// anvil's finalized block trails its head by two epochs of this many slots.
const SLOTS: u64 = 2;

/// A `confirmer follow` serving its API on a free port; killed when dropped.
struct Confirmer {
    child: Child,
    url: String,
    /// Kept open: a closed pipe would make the binary's next line on stdout fail.
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Confirmer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Confirmer {
    fn start(dir: &Path, name: &str, params: &Path, da: &Path, eth_rpc: &str, ca_file: Option<&Path>) -> Confirmer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_confirmer"));
        command
            .args(["follow", "--params"])
            .arg(params)
            .arg("--da-dir")
            .arg(da)
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join(format!("{name}.db")).display()))
            .args(["--listen", "127.0.0.1:0", "--interval-ms", "100", "--eth-rpc", eth_rpc, "--eth-depth", "1"])
            .env_remove("CONFIRMER_TLS_CA_FILE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ca_file) = ca_file {
            command.arg("--tls-ca-file").arg(ca_file);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("confirmer listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Confirmer { child, url, _stdout: stdout }
    }

    async fn status(&self) -> Value {
        reqwest::get(format!("{}/status", self.url)).await.unwrap().json().await.unwrap()
    }
}

#[tokio::test]
async fn through_an_https_proxy_a_deposit_is_credited_once_finalized_and_verified_only_with_the_ca() {
    let anvil = Anvil::start(&["--slots-in-an-epoch", &SLOTS.to_string()]).await.unwrap();
    let setup = Setup::with_anvil(anvil).await.unwrap();
    let ca = TestCa::new();
    let proxy = TlsProxy::start(&setup.anvil.url(), &ca).await;
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (10,)).await.unwrap();

    // The coordinator: the vault through https, trusting the test CA, finality by the tag.
    let dir = tempfile::tempdir().unwrap();
    let mut p = params();
    p.eth_vault = from_alloy(setup.vault_address());
    let mut config = coordinator_watching(dir.path(), &p, proxy.url.clone());
    config.ethereum.finality = chains::eth_finality::FinalityRule::Finalized;
    config.tls_ca_file = Some(ca.file.clone());
    let coordinator = Node::start(&config).await.unwrap();
    let status_of = async |node: &Node| -> Value {
        reqwest::get(format!("{}/status", node.url())).await.unwrap().json().await.unwrap()
    };

    let user = wallet(1);
    let receipt = setup
        .vault
        .depositETH(to_alloy(user.address()))
        .value(U256::from(31_337u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let height = receipt.block_number.unwrap();

    // Three blocks on top: the fallback depth (1) is long passed, the finalized block is not
    // there yet. Once the watcher has seen that head, the deposit is still not credited.
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (3,)).await.unwrap();
    let seen = until("the watcher to see the head three blocks on", async || {
        let status = status_of(&coordinator).await;
        (status["ethereum"]["head"].as_u64() >= Some(height + 3)).then_some(status)
    })
    .await;
    assert_eq!(seen["ethereum"]["in_force"], "finalized", "{seen}");
    assert_eq!(seen["ethereum"]["finalized"].as_u64(), Some(height + 3 - 2 * SLOTS), "{seen}");
    assert!(seen["ethereum"]["error"].is_null(), "{seen}");
    assert_eq!(balance(&coordinator, user.address(), AssetId::Eth).await, 0, "credited before finalized");

    // One more block finalizes the deposit's.
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (1,)).await.unwrap();
    until("the deposit to be credited", async || {
        (balance(&coordinator, user.address(), AssetId::Eth).await == 31_337).then_some(())
    })
    .await;

    // The confirmer binary, trusting the CA, verifies the deposit through https.
    let params_file = dir.path().join("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&coordinator.params).unwrap()).unwrap();
    let da = config.da_dir();
    let trusting = Confirmer::start(dir.path(), "trusting", &params_file, &da, &proxy.url, Some(&ca.file));
    let status = until("the trusting confirmer to hard-finalize the deposit's batch", async || {
        let status = trusting.status().await;
        (status["hard_final"].as_u64() >= Some(1)).then_some(status)
    })
    .await;
    assert_eq!(status["ethereum"]["configured"], "finalized", "{status}");
    assert_eq!(status["ethereum"]["in_force"], "finalized", "{status}");
    assert!(status["ethereum"]["finalized"].as_u64() >= Some(height), "{status}");
    assert!(status["ethereum"]["error"].is_null(), "{status}");

    // Without the CA: the proxy is refused, nothing replays, and `/status` says why.
    let refusing = Confirmer::start(dir.path(), "refusing", &params_file, &da, &proxy.url, None);
    let status = until("the refusing confirmer to report its node's error", async || {
        let status = refusing.status().await;
        status["ethereum"]["error"].is_string().then_some(status)
    })
    .await;
    let error = status["ethereum"]["error"].as_str().unwrap();
    assert!(error.contains("invalid peer certificate") && error.contains("UnknownIssuer"), "{status}");
    assert_eq!(status["ethereum"]["in_force"], Value::Null, "{status}");
    assert_eq!(status["hard_final"], 0, "{status}");

    // A CA file that is not PEM stops the binary at start, naming the file.
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_confirmer"))
        .args(["follow", "--once", "--params"])
        .arg(&params_file)
        .arg("--da-dir")
        .arg(&da)
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("once.db").display()))
        .args(["--eth-rpc", &proxy.url, "--tls-ca-file"])
        .arg(&not_pem)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-a-ca.pem") && stderr.contains("holds no PEM certificate"), "{stderr}");
    coordinator.shutdown().await;
}
