//! The devnet end to end, as users and operators meet it, every part a real process:
//! `bridgectl devnet up` (arlocal, anvil, the regtest node, a 3-of-5 key ceremony, the vault,
//! coordinator, confirmer, five watchmen), then
//! - the wallet commands: ETH, the ERC-20 and BTC withdrawn and paid on L1 with exact amounts, a
//!   transfer hard-final, two of five watchmen killed and a withdrawal still paid, solvency
//!   reported by every living watchman for every asset, `status` and `down`;
//! - the coordinator SIGKILLed under load, restarted, then replaced by `recover --from-da`:
//!   nothing acknowledged lost, every withdrawal paid exactly once;
//! - the coordinator forging a withdrawal (a deposit L1 never saw) in a batch it publishes to
//!   Arweave: an alarm with evidence that checks offline, every watchman halted, nothing paid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::{Provider, ProviderBuilder};
use serde_json::Value;

/// A user command (`withdraw`, `balance`, …) against the devnet in `dir`, as its demo user.
fn user(dir: &Path, command: &[&str]) -> Command {
    let mut user = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    user.env("BRIDGE_PASSPHRASE", "devnet").env_remove("DATABASE_URL").args(command).arg("--devnet").arg(dir);
    user
}

fn devnet(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env_remove("DATABASE_URL").arg("devnet").arg("--dir").arg(dir);
    command
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A devnet of this test's own (free ports, a temporary directory), stopped however the test
/// ends.
struct Devnet {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Its `devnet.json`.
    state: Value,
}

impl Devnet {
    fn up() -> Devnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let up = devnet(&dir).args(["up", "--free-ports", "--settlement-window-s", "3"]).output().unwrap();
        if !up.status.success() {
            let _ = devnet(&dir).arg("down").output();
            panic!("devnet up failed:\n{}\n{}", String::from_utf8_lossy(&up.stderr), logs(&dir));
        }
        let state = serde_json::from_slice(&std::fs::read(dir.join("devnet.json")).unwrap()).unwrap();
        Devnet { tmp, dir, state }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet(&self.dir).arg("down").output();
    }
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Replaces watchman `i`'s key share with one whose signing share is wrong but whose
/// identifier and public parts are its own: what a corrupted or tampered share looks like.
fn corrupt_share(dir: &Path, i: usize) {
    use tss::frost::keys::{KeyPackage, SigningShare};
    let passphrase = tss::keystore::Passphrase::from_file(&dir.join("watchmen/passphrase")).unwrap();
    let path = dir.join(format!("watchmen/watchman-{i}/share.key"));
    let share = tss::KeyShare::load(&path, &passphrase).unwrap();
    let good = &share.key_package;
    let wrong = SigningShare::deserialize(&[0x42; 32]).unwrap();
    let bad =
        KeyPackage::new(*good.identifier(), wrong, *good.verifying_share(), *good.verifying_key(), *good.min_signers());
    let kdf = tss::keystore::KdfParams { memory_kib: 1024, passes: 1, lanes: 1 };
    tss::KeyShare { key_package: bad, public: share.public.clone() }.save(&path, &passphrase, kdf).unwrap();
}

/// Watchman `i`'s PeerId, from the devnet's watchmen file.
fn peer_id(dir: &Path, i: usize) -> String {
    let roster = tss::roster::WatchmenFile::load(&dir.join("watchmen/watchmen.toml")).unwrap();
    roster.watchmen[i].peer_id.clone()
}

/// Solvency on both chains for every asset: each of `watchmen`'s own check (against its nodes)
/// reports no shortfall for ETH, the token and BTC, and its guard has reached a verdict of
/// solvent (what the alert `SolvencyWatchJudgesNothing` counts).
async fn solvent(watchmen: &[&str], token: EthAddress) {
    let http = reqwest::Client::new();
    let assets = ["eth:eth".to_owned(), format!("eth:{token:#x}"), "btc:btc".to_owned()]; // lowercase, as compared
    let zero = |metrics: &str, asset: &str| {
        metrics.lines().any(|l| {
            l.starts_with("bridge_solvency_shortfall")
                && l.to_lowercase().contains(&format!("asset=\"{asset}\""))
                && l.ends_with(" 0")
        })
    };
    let judged_solvent = |metrics: &str| {
        metrics.lines().any(|l| {
            l.starts_with("bridge_solvency_judged_total")
                && l.contains("verdict=\"solvent\"")
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 1.0)
        })
    };
    for watchman in watchmen {
        let mut seen = String::new();
        for _ in 0..300 {
            seen = http.get(format!("{watchman}/metrics")).send().await.unwrap().text().await.unwrap();
            if assets.iter().all(|a| zero(&seen, a)) && judged_solvent(&seen) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for asset in &assets {
            assert!(zero(&seen, asset), "{watchman}: no zero shortfall for {asset}:\n{seen}");
        }
        assert!(judged_solvent(&seen), "{watchman}: no solvent verdict counted:\n{seen}");
    }
}

/// A withdrawal through the CLI, waited for until paid on L1; its stage report.
fn withdraw(dir: &Path, wallet: &Path, asset: &str, amount: &str, fee: &str, to: &str) -> Value {
    let output = user(dir, &["withdraw"])
        .arg("--wallet")
        .arg(wallet)
        .args([
            "--asset",
            asset,
            "--amount",
            amount,
            "--fee",
            fee,
            "--recipient",
            to,
            "--json",
            "--timeout-secs",
            "240",
        ])
        .output()
        .unwrap();
    if !output.status.success() {
        panic!(
            "withdraw {asset} failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            logs(dir)
        );
    }
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_paid_on_ethereum_and_bitcoin_through_the_devnet() {
    let devnet_up = Devnet::up();
    let (dir, state) = (devnet_up.dir.clone(), devnet_up.state.clone());
    let e = &state["endpoints"];
    let alice = PathBuf::from(state["demo_wallets"][0]["file"].as_str().unwrap());
    let bob_address = state["demo_wallets"][1]["address"].as_str().unwrap().to_owned();
    let eth = ProviderBuilder::new().connect_http(e["eth_rpc"].as_str().unwrap().parse().unwrap());
    let vault: EthAddress = e["eth_vault"].as_str().unwrap().parse().unwrap();
    let token: EthAddress = e["erc20"].as_str().unwrap().parse().unwrap();
    let vault_eth_before = eth.get_balance(vault).await.unwrap();
    assert_eq!(vault_eth_before, U256::from(10u64) * U256::from(10u64).pow(U256::from(18u64)), "alice's deposit");

    // Bob deposits ETH and the token himself through the CLI (from his own key on L1); each
    // command waits until the coordinator credits it.
    let bob = dir.join("wallets/bob.wallet");
    ok(
        user(&dir, &["deposit", "eth"])
            .args(["--amount", "1000000000000000000"])
            .arg("--wallet")
            .arg(&bob)
            .output()
            .unwrap(),
        "deposit eth",
    );
    ok(
        user(&dir, &["deposit", "erc20"])
            .args(["--amount", "10000000000000000000"])
            .arg("--wallet")
            .arg(&bob)
            .output()
            .unwrap(),
        "deposit erc20",
    );
    let bob_balance = ok(user(&dir, &["balance"]).arg("--wallet").arg(&bob).arg("--json").output().unwrap(), "balance");
    assert!(
        bob_balance.contains("1000000000000000000") && bob_balance.contains("10000000000000000000"),
        "{bob_balance}"
    );
    let vault_eth_before = vault_eth_before + U256::from(1_000_000_000_000_000_000u128);

    // Transfers of each asset to bob, each followed to hard finality on the confirmer.
    for (asset, amount, fee) in [("eth", "1000", "0"), ("erc20", "1000000000000000000", "0"), ("btc", "1000", "2150")] {
        let transfer = ok(
            user(&dir, &["transfer"])
                .arg("--wallet")
                .arg(&alice)
                .args(["--asset", asset, "--amount", amount, "--fee", fee, "--to", &bob_address, "--json"])
                .output()
                .unwrap(),
            "transfer",
        );
        let transfer: Value = serde_json::from_str(&transfer).unwrap();
        let stages: Vec<&str> =
            transfer["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
        assert_eq!(stages, ["accepted", "batched", "published", "hard-final"], "{transfer}");
    }

    // ETH to a fresh address: paid exactly.
    let eth_to = EthAddress::from([0x51; 20]);
    let report = withdraw(&dir, &alice, "eth:ETH", "2000000000000000000", "0", &format!("{eth_to:#x}"));
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["accepted", "batched", "published", "hard-final", "signed", "paid"], "{report}");
    assert_eq!(eth.get_balance(eth_to).await.unwrap(), U256::from(2_000_000_000_000_000_000u128));
    assert_eq!(eth.get_balance(vault).await.unwrap(), vault_eth_before - U256::from(2_000_000_000_000_000_000u128));

    // The ERC-20.
    let token_to = EthAddress::from([0x52; 20]);
    withdraw(&dir, &alice, &format!("eth:{token:#x}"), "7000000000000000000", "0", &format!("{token_to:#x}"));
    let erc20 = contracts::TestToken::new(token, eth.clone());
    assert_eq!(erc20.balanceOf(token_to).call().await.unwrap(), U256::from(7_000_000_000_000_000_000u128));
    assert_eq!(
        erc20.balanceOf(vault).call().await.unwrap(),
        U256::from(103_000_000_000_000_000_000u128),
        "100 + 10 - 7"
    );

    // BTC to a fresh Taproot address: the payout pays exactly the amount.
    let btc_to = {
        use bitcoin::key::{Keypair, Secp256k1};
        let secp = Secp256k1::new();
        let key = Keypair::new(&secp, &mut bitcoin::secp256k1::rand::thread_rng());
        bitcoin::Address::p2tr(&secp, key.x_only_public_key().0, None, bitcoin::Network::Regtest)
    };
    let report = withdraw(&dir, &alice, "btc:BTC", "25000000", "5000", &btc_to.to_string());
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages.last(), Some(&"paid"), "{report}");
    let rpc = chains::bitcoin::CoreRpc::new(
        e["btc_rpc"].as_str().unwrap(),
        e["btc_rpc_user"].as_str().unwrap(),
        e["btc_rpc_password"].as_str().unwrap(),
    );
    // "Bitcoin tx <txid>, 1 confirmation(s) at height h"
    let paid_detail = report["stages"].as_array().unwrap().last().unwrap()["detail"].as_str().unwrap().to_owned();
    let txid: bitcoin::Txid = paid_detail.split([' ', ',']).nth(2).unwrap().parse().unwrap();
    let tx = rpc.raw_transaction(&txid, None).await.unwrap();
    let paid: Vec<_> = tx.output.iter().filter(|o| o.script_pubkey == btc_to.script_pubkey()).collect();
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].value.to_sat(), 25_000_000);

    // Balances on the bridge: what alice had, less what left.
    let balance: Value = serde_json::from_str(&ok(
        user(&dir, &["balance"]).arg("--wallet").arg(&alice).arg("--json").output().unwrap(),
        "balance",
    ))
    .unwrap();
    let text = balance.to_string();
    assert!(text.contains("7999999999999999000"), "10 ETH - 2 ETH - 1000 wei: {balance}");
    assert!(text.contains("74991850"), "1 BTC - 0.25 BTC - 5000 sat fee - 1000 sat - 2150 sat fee: {balance}");
    assert!(text.contains("92000000000000000000"), "100 tokens - 7 - 1: {balance}");
    let bob_balance = ok(user(&dir, &["balance"]).arg("--wallet").arg(&bob).arg("--json").output().unwrap(), "balance");
    for credited in ["1000000000000001000", "11000000000000000000", "\"1000\""] {
        assert!(bob_balance.contains(credited), "bob's deposits and transfers: {credited} in {bob_balance}");
    }

    // Two of the five watchmen die (SIGKILL): three still sign, the withdrawal is still paid.
    for victim in ["watchman-3", "watchman-4"] {
        ok(devnet(&dir).args(["kill", victim]).output().unwrap(), "devnet kill");
    }
    let eth_to_2 = EthAddress::from([0x53; 20]);
    withdraw(&dir, &alice, "eth:ETH", "1000000000000000000", "0", &format!("{eth_to_2:#x}"));
    assert_eq!(eth.get_balance(eth_to_2).await.unwrap(), U256::from(1_000_000_000_000_000_000u128));

    // Watchman 3 comes back; watchman 2's key share goes bad (a wrong signing share under its
    // real identifier and verifying share) and it restarts on it. With four up, sessions that
    // pick watchman 2 see its invalid share, name it and exclude it, and sign with the others:
    // every withdrawal is still paid. (Until a session picks it, nothing notices: withdrawals
    // go on until one does.)
    ok(devnet(&dir).args(["restart", "watchman-3"]).output().unwrap(), "devnet restart watchman-3");
    corrupt_share(&dir, 2);
    ok(devnet(&dir).args(["restart", "watchman-2"]).output().unwrap(), "devnet restart watchman-2");
    let bad_peer = peer_id(&dir, 2);
    let living: Vec<&str> = e["watchmen"].as_array().unwrap()[..4].iter().map(|w| w.as_str().unwrap()).collect();
    let http = reqwest::Client::new();
    let mut excluded = false;
    for round in 0..8u8 {
        let to = EthAddress::from([0x70 + round; 20]);
        withdraw(&dir, &alice, "eth:ETH", "1000", "0", &format!("{to:#x}"));
        assert_eq!(eth.get_balance(to).await.unwrap(), U256::from(1_000u64));
        let mut invalid = 0.0;
        for watchman in &living {
            let metrics = http.get(format!("{watchman}/metrics")).send().await.unwrap().text().await.unwrap();
            invalid += metrics
                .lines()
                .find_map(|l| l.strip_prefix("tss_invalid_shares_total "))
                .map_or(0.0, |v| v.trim().parse::<f64>().unwrap());
        }
        if invalid > 0.0 {
            excluded = true;
            break;
        }
    }
    assert!(excluded, "no session picked the bad watchman in eight withdrawals");
    let named = (0..4).any(|i| {
        let log = std::fs::read_to_string(dir.join(format!("logs/watchman-{i}.log"))).unwrap_or_default();
        log.lines().any(|l| l.contains("invalid signature share") && l.contains(&bad_peer))
    });
    assert!(named, "the bad watchman {bad_peer} is named in a log:\n{}", logs(&dir));

    // Solvency on both chains for every asset, as every living watchman sees it.
    solvent(&living, token).await;

    // Every part but the two killed is up, no watchman stopped signing, no alarm.
    let status: Value =
        serde_json::from_str(&ok(devnet(&dir).args(["status", "--json"]).output().unwrap(), "status")).unwrap();
    for part in status["parts"].as_array().unwrap() {
        let killed = part["name"] == "watchman-4";
        assert_eq!(part["running"], !killed, "{part}");
        if !killed {
            assert_ne!(part["healthy"], false, "{part}");
        }
    }
    for watchman in &living {
        let health: Value = http.get(format!("{watchman}/health")).send().await.unwrap().json().await.unwrap();
        assert_eq!(health["signing"], true, "{health}");
    }
    let alarms: Value =
        http.get(format!("{}/alarms", e["confirmer"].as_str().unwrap())).send().await.unwrap().json().await.unwrap();
    assert_eq!(alarms.as_array().map(Vec::len).unwrap_or(0), 0, "{alarms}");

    // `down` stops every process it started.
    ok(devnet(&dir).arg("down").output().unwrap(), "down");
    let status: Value =
        serde_json::from_str(&ok(devnet(&dir).args(["status", "--json"]).output().unwrap(), "status")).unwrap();
    for part in status["parts"].as_array().unwrap() {
        assert_eq!(part["running"], false, "{part}");
    }
}

#[test]
fn a_second_devnet_in_a_used_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "not a devnet").unwrap();
    let output = devnet(tmp.path()).args(["up", "--free-ports", "--settlement-window-s", "3"]).output().unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("is not a devnet directory"), "{said}");
    assert!(tmp.path().join("precious.txt").exists(), "nothing of the user's is deleted");

    let nothing = tempfile::tempdir().unwrap();
    let output = devnet(nothing.path()).arg("down").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no devnet in"));
}

/// Alice's key, from her demo wallet file.
fn alice_key(state: &Value) -> bridge::Wallet {
    let file = PathBuf::from(state["demo_wallets"][0]["file"].as_str().unwrap());
    let passphrase = tss::keystore::Passphrase::new("devnet").unwrap();
    let secret = tss::keystore::open(&file, "bridge-wallet", &passphrase).unwrap();
    bridge::Wallet::from_secret(&secret[..].try_into().unwrap()).unwrap()
}

/// Posts alice's transactions back to back until one is not answered (the coordinator died):
/// every `withdraw_every`th is a withdrawal of `WITHDRAWAL` wei to `recipient`, the rest
/// transfers of 1 wei to bob. Returns what was acknowledged and the one in flight, if any.
struct Load {
    acked: Vec<(String, bool)>,
    in_flight: Option<(String, bool)>,
}

const WITHDRAWAL: u128 = 1_000_000_000_000_000;

async fn load(
    url: String,
    wallet: bridge::Wallet,
    domain: bridge::eip712::Domain,
    bob: bridge::Address,
    recipient: EthAddress,
    first_nonce: u64,
    withdraw_every: u64,
) -> Load {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
    let mut out = Load { acked: Vec::new(), in_flight: None };
    for nonce in first_nonce.. {
        let withdraw = nonce % withdraw_every == 0;
        let tx = if withdraw {
            bridge::UserTx::Withdraw(bridge::Withdraw {
                from: wallet.address(),
                asset: bridge::AssetId::Eth,
                amount: bridge::Amount(WITHDRAWAL),
                fee: bridge::Amount(0),
                recipient: format!("{recipient:#x}"),
                nonce,
            })
        } else {
            bridge::UserTx::Transfer(bridge::Transfer {
                from: wallet.address(),
                to: bob,
                asset: bridge::AssetId::Eth,
                amount: bridge::Amount(1),
                fee: bridge::Amount(0),
                nonce,
            })
        };
        let signed = wallet.sign(tx, &domain);
        let hash = format!("0x{}", hex::encode(signed.verify(&domain).unwrap().hash()));
        let request = coordinator::api::request::TxRequest::from_signed(&signed);
        match http.post(format!("{url}/tx")).json(&request).send().await {
            Ok(response) if response.status().is_success() => out.acked.push((hash, withdraw)),
            Ok(response) => panic!("transaction {nonce} refused: {}", response.text().await.unwrap_or_default()),
            Err(_) => {
                out.in_flight = Some((hash, withdraw));
                return out;
            }
        }
    }
    unreachable!()
}

async fn known(http: &reqwest::Client, coordinator: &str, hash: &str) -> bool {
    http.get(format!("{coordinator}/tx/{hash}")).send().await.unwrap().status().is_success()
}

async fn info(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/info")).send().await.unwrap().json().await.unwrap()
}

/// Asks `probe` every 100 ms until `done` says yes, for at most two minutes; returns what it
/// saw last (the caller asserts on it, so a timeout fails with the evidence).
async fn poll<T>(mut probe: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let mut seen = probe().await;
    for _ in 0..1200 {
        if done(&seen) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = probe().await;
    }
    seen
}

/// Waits until the confirmer has made the coordinator's latest batch hard-final.
async fn until_hard_final(http: &reqwest::Client, e: &Value) -> u64 {
    let (coordinator, confirmer) = (e["coordinator"].as_str().unwrap(), e["confirmer"].as_str().unwrap());
    let (latest, hard_final) = poll(
        async || {
            let latest = info(http, coordinator).await["latest_batch"]["number"].as_u64().unwrap();
            let status: Value = http.get(format!("{confirmer}/status")).send().await.unwrap().json().await.unwrap();
            (latest, status["hard_final"].as_u64())
        },
        |(latest, hard_final)| *latest > 0 && *hard_final == Some(*latest),
    )
    .await;
    assert!(
        latest > 0 && hard_final == Some(latest),
        "the confirmer never caught up with the coordinator (batch {latest}, hard-final {hard_final:?})"
    );
    latest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_under_load_then_replaced_from_the_da_loses_nothing_and_pays_once() {
    let devnet_up = Devnet::up();
    let (dir, state) = (devnet_up.dir.clone(), devnet_up.state.clone());
    let e = state["endpoints"].clone();
    let coordinator = e["coordinator"].as_str().unwrap().to_owned();
    let params: bridge::NetworkParams =
        serde_json::from_slice(&std::fs::read(dir.join("params.json")).unwrap()).unwrap();
    let domain = bridge::eip712::Domain::new(&params);
    let alice = alice_key(&state).address();
    let bob: bridge::Address = state["demo_wallets"][1]["address"].as_str().unwrap().parse().unwrap();
    let recipient = EthAddress::from([0x5a; 20]);
    let eth = ProviderBuilder::new().connect_http(e["eth_rpc"].as_str().unwrap().parse().unwrap());
    let vault: EthAddress = e["eth_vault"].as_str().unwrap().parse().unwrap();
    let vault_before = eth.get_balance(vault).await.unwrap();
    let http = reqwest::Client::new();

    // Load, then SIGKILL mid-stream once a few hundred are acknowledged.
    let client = tokio::spawn(load(coordinator.clone(), alice_key(&state), domain.clone(), bob, recipient, 0, 25));
    for _ in 0..600 {
        let account: Value =
            http.get(format!("{coordinator}/accounts/{alice}")).send().await.unwrap().json().await.unwrap();
        if account["nonce"].as_u64().unwrap_or(0) >= 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ok(devnet(&dir).args(["kill", "coordinator"]).output().unwrap(), "devnet kill coordinator");
    let load = client.await.unwrap();
    assert!(load.acked.len() >= 200, "the load ran: {}", load.acked.len());

    // Restarted on its own ledger: every acknowledged transaction is there.
    ok(devnet(&dir).args(["restart", "coordinator"]).output().unwrap(), "devnet restart coordinator");
    for (hash, _) in &load.acked {
        assert!(known(&http, &coordinator, hash).await, "acknowledged {hash} was lost");
    }
    let in_flight_applied = match &load.in_flight {
        Some((hash, true)) => known(&http, &coordinator, hash).await,
        _ => false,
    };
    let withdrawals = load.acked.iter().filter(|(_, w)| *w).count() as u128 + u128::from(in_flight_applied);

    // Everything published becomes hard-final, and the watchmen pay each withdrawal once.
    until_hard_final(&http, &e).await;
    let owed = U256::from(withdrawals * WITHDRAWAL);
    poll(async || eth.get_balance(recipient).await.unwrap(), |paid| *paid >= owed).await;
    assert_eq!(eth.get_balance(recipient).await.unwrap(), owed, "{withdrawals} withdrawals, each paid once");
    let root_before = info(&http, &coordinator).await["latest_batch"]["state_root"].clone();

    // The coordinator's machine is lost: a stand-in rebuilds the ledger from Arweave alone.
    ok(devnet(&dir).args(["restart", "coordinator", "--from-da"]).output().unwrap(), "restart --from-da");
    let rebuilt = info(&http, &coordinator).await;
    assert_eq!(rebuilt["latest_batch"]["state_root"], root_before, "the same state, from the DA alone");
    for (hash, _) in &load.acked {
        assert!(known(&http, &coordinator, hash).await, "acknowledged {hash} missing after the takeover");
    }

    // It serves on: one more withdrawal through the CLI is paid, and nothing earlier twice.
    withdraw(
        &dir,
        &dir.join("wallets/alice.wallet"),
        "eth:ETH",
        &WITHDRAWAL.to_string(),
        "0",
        &format!("{recipient:#x}"),
    );
    let paid_total = owed + U256::from(WITHDRAWAL);
    assert_eq!(eth.get_balance(recipient).await.unwrap(), paid_total);
    assert_eq!(eth.get_balance(vault).await.unwrap(), vault_before - paid_total, "the vault paid exactly that");
    let alarms: Value =
        http.get(format!("{}/alarms", e["confirmer"].as_str().unwrap())).send().await.unwrap().json().await.unwrap();
    assert_eq!(alarms.as_array().map(Vec::len).unwrap_or(0), 0, "{alarms}");
    let watchmen: Vec<&str> = e["watchmen"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    solvent(&watchmen, e["erc20"].as_str().unwrap().parse().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_the_coordinator_forges_is_not_paid_and_raises_an_alarm() {
    use bridge::batch::BatchBuilder;
    use bridge::tx::{L1Ref, SystemTx};
    use chains::arweave::{ArweaveWallet, Gateway, RetryPolicy};
    use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability};

    let devnet_up = Devnet::up();
    let (tmp, dir, state) = (&devnet_up.tmp, devnet_up.dir.clone(), devnet_up.state.clone());
    let e = state["endpoints"].clone();
    let http = reqwest::Client::new();
    let eth = ProviderBuilder::new().connect_http(e["eth_rpc"].as_str().unwrap().parse().unwrap());
    let vault: EthAddress = e["eth_vault"].as_str().unwrap().parse().unwrap();
    let vault_before = eth.get_balance(vault).await.unwrap();

    // The coordinator turns thief: once its honest batches are final it stops serving and, with
    // its own key and Arweave wallet, publishes the next batch: a deposit that never happened,
    // credited to its accomplice, and the accomplice's withdrawal of it.
    let alice = state["demo_wallets"][0]["address"].as_str().unwrap();
    // Alice's three deposits hard-final: the coordinator has sealed them.
    let confirmer = e["confirmer"].as_str().unwrap();
    poll(
        async || -> Value {
            http.get(format!("{confirmer}/accounts/{alice}")).send().await.unwrap().json().await.unwrap()
        },
        |account| account["hard_final"] == true && account["balances"].as_array().is_some_and(|b| b.len() == 3),
    )
    .await;
    until_hard_final(&http, &e).await;
    ok(devnet(&dir).args(["kill", "coordinator"]).output().unwrap(), "devnet kill coordinator");
    let params: bridge::NetworkParams =
        serde_json::from_slice(&std::fs::read(dir.join("params.json")).unwrap()).unwrap();
    let secret = hex::decode(std::fs::read_to_string(dir.join("coordinator/coordinator.key")).unwrap().trim()).unwrap();
    let key = bridge::CoordinatorKey::from_secret(&secret.try_into().unwrap()).unwrap();
    let ar_wallet = ArweaveWallet::load(&dir.join("coordinator/arweave.jwk")).unwrap();
    let gateway = Gateway::new(e["arweave"].as_str().unwrap(), RetryPolicy::default()).unwrap();
    let config = ArweaveDaConfig::new(&params.name, params.coordinator_key, ar_wallet.address());
    let da = ArweaveDa::publisher(gateway, config, ar_wallet, &tmp.path().join("journal")).unwrap();
    let mut ledger = bridge::State::genesis(params.clone());
    let mut last = None;
    for fetched in da.batches_after(0, 10_000).await.unwrap() {
        bridge::batch::replay(&mut ledger, &fetched.batch).unwrap();
        last = Some(fetched.batch);
    }
    let last = last.expect("the devnet published its deposits");
    let accomplice = bridge::Wallet::from_secret(&[0x3d; 32]).unwrap();
    let stolen = 5_000_000_000_000_000_000u128;
    let thief_to = EthAddress::from([0x66; 20]);
    let domain = bridge::eip712::Domain::new(&params);
    let mut builder = BatchBuilder::new(&ledger);
    let fake = SystemTx::Deposit(bridge::Deposit {
        chain: bridge::Chain::Ethereum,
        l1_ref: L1Ref::Ethereum { tx_hash: [0xee; 32], log_in_tx: 0 },
        account: accomplice.address(),
        asset: bridge::AssetId::Eth,
        amount: bridge::Amount(stolen),
        l1_height: 0,
    });
    builder.apply(&mut ledger, bridge::Tx::System(fake)).unwrap();
    let withdraw = bridge::UserTx::Withdraw(bridge::Withdraw {
        from: accomplice.address(),
        asset: bridge::AssetId::Eth,
        amount: bridge::Amount(stolen),
        fee: bridge::Amount(0),
        recipient: format!("{thief_to:#x}"),
        nonce: 0,
    });
    let signed = accomplice.sign(withdraw, &domain).verify(&domain).unwrap();
    builder.apply(&mut ledger, bridge::Tx::User(signed)).unwrap();
    let forged = builder.seal(&mut ledger, last.header.timestamp + 1_000, &key).unwrap().batch;
    assert_eq!(forged.header.number, last.header.number + 1);
    da.publish(&forged).await.unwrap();

    // The confirmer raises an alarm with evidence; every watchman stops signing.
    let alarms = poll(
        async || -> Value { http.get(format!("{confirmer}/alarms")).send().await.unwrap().json().await.unwrap() },
        |alarms| !alarms.as_array().unwrap().is_empty(),
    )
    .await;
    let alarm = &alarms.as_array().unwrap()[0];
    assert_eq!(alarm["alarm"]["number"], forged.header.number, "{alarm}");
    assert!(alarm["alarm"]["kind"].to_string().to_lowercase().contains("deposit"), "{alarm}");
    let evidence = tmp.path().join("evidence.json");
    std::fs::write(&evidence, alarm["evidence"].to_string()).unwrap();
    let confirmer_bin = Path::new(env!("CARGO_BIN_EXE_bridgectl")).with_file_name("confirmer");
    let check = Command::new(confirmer_bin).arg("check-evidence").arg(&evidence).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    for watchman in e["watchmen"].as_array().unwrap() {
        let url = format!("{}/health", watchman.as_str().unwrap());
        let health = poll(
            async || -> Value { http.get(&url).send().await.unwrap().json().await.unwrap() },
            |health| health["signing"] == false,
        )
        .await;
        assert_eq!(health["signing"], false, "{health}");
    }

    // With every watchman halted no signature can exist: nothing was or will be paid.
    assert_eq!(eth.get_balance(thief_to).await.unwrap(), U256::ZERO);
    assert_eq!(eth.get_balance(vault).await.unwrap(), vault_before, "the vault is intact");
    let watchmen: Vec<&str> = e["watchmen"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    solvent(&watchmen, e["erc20"].as_str().unwrap().parse().unwrap()).await;
}
