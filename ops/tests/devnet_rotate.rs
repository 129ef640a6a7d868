//! Changing the signer set on the devnet, every part a real process (arlocal, anvil, the regtest
//! node, the coordinator, a confirmer, every watchman): `bridgectl devnet up` with a 3-of-5
//! group, then `bridgectl devnet rotate` to 4-of-6 (operator 4 leaves, 5 and 6 join) while alice
//! and bob keep depositing, transferring and withdrawing through `bridgectl`, then a second
//! rotation back to 3-of-4. Afterwards every withdrawal is paid exactly once (those requested
//! after a rotation by the new group), a BTC deposit to bob's old address (asked for before the
//! rotation, paid during it) is credited and swept, the departed watchman's share (with the rest
//! of the old group) gets nothing accepted by the vault, and solvency is exact on both chains:
//! the vault holds the ledger's ETH and tokens, and the Bitcoin outputs the chain has at the
//! vault's and the accounts' addresses (every key's) are exactly the ledger's vault outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::{Provider, ProviderBuilder};
use serde_json::Value;

#[path = "devnet_rotate/onchain.rs"]
mod onchain;

use onchain::{RegtestAddress, Replay, key_of, paid_to, unspent_at};

fn bridgectl() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command.env("BRIDGE_PASSPHRASE", "devnet").env_remove("DATABASE_URL");
    command
}

/// A user command (`withdraw`, `balance`, …) against the devnet in `dir`.
fn user(dir: &Path, command: &[&str]) -> Command {
    let mut user = bridgectl();
    user.args(command).arg("--devnet").arg(dir);
    user
}

fn devnet(dir: &Path) -> Command {
    let mut command = bridgectl();
    command.arg("devnet").arg("--dir").arg(dir);
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

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A devnet of this test's own (free ports, a temporary directory), stopped however it ends.
struct Devnet {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Devnet {
    fn up() -> Devnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("devnet");
        let up = devnet(&dir)
            .args(["up", "--free-ports", "--settlement-window-s", "3", "--old-key-grace-batches", "60"])
            .output()
            .unwrap();
        if !up.status.success() {
            let _ = devnet(&dir).arg("down").output();
            panic!("devnet up failed:\n{}\n{}", String::from_utf8_lossy(&up.stderr), logs(&dir));
        }
        Devnet { _tmp: tmp, dir }
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("devnet.json")).unwrap()).unwrap()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet(&self.dir).arg("down").output();
    }
}

/// Something alice or bob sent, as `bridgectl` acknowledged it.
#[derive(Clone, Debug)]
struct Sent {
    hash: String,
    /// For a withdrawal: the asset, amount and recipient; None for a transfer.
    withdrawal: Option<(String, u128, String)>,
    /// When the coordinator acknowledged it.
    at: Instant,
}

/// Alice and bob at work in the background, every action a `bridgectl` process: bob deposits
/// ether (and waits for the credit), alice sends bob some, withdraws ether to a fresh address
/// (and, every fourth round, bitcoin to a fresh address), bob sends some back. One thread signs,
/// so nonces never race.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    deposited_wei: Arc<Mutex<u128>>,
    /// Commands that timed out: their transaction may or may not have been taken.
    failed: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const ETH_WITHDRAWAL_WEI: u128 = 1_000_000_000_000_000;
const BTC_WITHDRAWAL_SAT: u128 = 50_000;
const BOB_DEPOSIT_WEI: u128 = 10_000_000_000_000_000;

impl Traffic {
    fn start(dir: &Path, state: &Value) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let deposited_wei = Arc::new(Mutex::new(0u128));
        let (dir, alice, bob) = (
            dir.to_path_buf(),
            state["demo_wallets"][0]["file"].as_str().unwrap().to_owned(),
            state["demo_wallets"][1]["file"].as_str().unwrap().to_owned(),
        );
        let bob_address = state["demo_wallets"][1]["address"].as_str().unwrap().to_owned();
        let alice_address = state["demo_wallets"][0]["address"].as_str().unwrap().to_owned();
        let failed = Arc::new(Mutex::new(0usize));
        let thread = {
            let (stop, sent, deposited_wei) = (stop.clone(), sent.clone(), deposited_wei.clone());
            let failed_clone = failed.clone();
            std::thread::spawn(move || {
                let failed = failed_clone;
                // A command that failed on a timeout (the machine is shared and loaded) is counted
                // and the round goes on; anything else fails the test.
                let run = |command: &mut Command, what: &str| -> Option<String> {
                    let output = command.output().unwrap();
                    if output.status.success() {
                        return Some(String::from_utf8(output.stdout).unwrap());
                    }
                    let said = String::from_utf8_lossy(&output.stderr);
                    assert!(said.contains("timed out"), "{what} failed:\n{said}");
                    eprintln!("{what} timed out (counted, not fatal):\n{said}");
                    *failed.lock().unwrap() += 1;
                    None
                };
                let send = |wallet: &str, args: &[&str], withdrawal: Option<(String, u128, String)>| {
                    let mut command = user(&dir, args);
                    command.args(["--wallet", wallet, "--no-wait", "--json"]);
                    let Some(out) = run(&mut command, &args.join(" ")) else { return };
                    let json: Value = serde_json::from_str(&out).unwrap();
                    let hash = json["hash"].as_str().unwrap().to_owned();
                    sent.lock().unwrap().push(Sent { hash, withdrawal, at: Instant::now() });
                };
                let mut round: u64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    let amount = BOB_DEPOSIT_WEI.to_string();
                    let mut deposit = user(&dir, &["deposit", "eth", "--amount", &amount, "--wallet", &bob]);
                    if run(&mut deposit, "bob's deposit").is_some() {
                        *deposited_wei.lock().unwrap() += BOB_DEPOSIT_WEI;
                    }
                    send(&alice, &["transfer", "--asset", "eth", "--amount", "1000", "--to", &bob_address], None);
                    let to = format!("0x5e{round:038x}");
                    let amount = ETH_WITHDRAWAL_WEI.to_string();
                    let asset = "eth:ETH".to_owned();
                    send(
                        &alice,
                        &["withdraw", "--asset", &asset, "--amount", &amount, "--fee", "0", "--recipient", &to],
                        Some((asset.clone(), ETH_WITHDRAWAL_WEI, to.clone())),
                    );
                    if round.is_multiple_of(4) {
                        let to = fresh_btc_address().to_string();
                        let amount = BTC_WITHDRAWAL_SAT.to_string();
                        let asset = "btc:BTC".to_owned();
                        send(
                            &alice,
                            &["withdraw", "--asset", &asset, "--amount", &amount, "--fee", "5000", "--recipient", &to],
                            Some((asset.clone(), BTC_WITHDRAWAL_SAT, to.clone())),
                        );
                    }
                    send(&bob, &["transfer", "--asset", "eth", "--amount", "500", "--to", &alice_address], None);
                    round += 1;
                }
            })
        };
        Traffic { stop, sent, deposited_wei, failed, thread: Some(thread) }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits until the traffic has acknowledged a withdrawal of `asset` after `since` (so a
    /// phase of the test really had users at work), failing if the traffic thread died.
    fn until_sent_after(&self, since: Instant, asset: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.sent().iter().any(|s| s.at > since && s.withdrawal.as_ref().is_some_and(|w| w.0 == asset)) {
            assert!(!self.thread.as_ref().unwrap().is_finished(), "the users' traffic stopped early");
            assert!(Instant::now() < deadline, "the users sent nothing for three minutes");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the users; what they sent, what bob deposited, and how many commands timed out.
    fn finish(mut self) -> (Vec<Sent>, u128, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
        let failed = *self.failed.lock().unwrap();
        assert!(failed <= 5, "{failed} user commands timed out: the devnet is not keeping up");
        (self.sent(), *self.deposited_wei.lock().unwrap(), failed)
    }
}

fn fresh_btc_address() -> bitcoin::Address {
    use bitcoin::key::{Keypair, Secp256k1};
    let secp = Secp256k1::new();
    let key = Keypair::new(&secp, &mut bitcoin::secp256k1::rand::thread_rng());
    bitcoin::Address::p2tr(&secp, key.x_only_public_key().0, None, bitcoin::Network::Regtest)
}

/// Runs `devnet rotate` with `args`; calls `during` with the devnet's state each time it is
/// re-read while the command runs. Returns the step lines it printed (with their times).
async fn rotate(dir: &Path, args: &[&str], mut during: impl FnMut(&Value)) -> Vec<String> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command
        .env_remove("DATABASE_URL")
        .arg("devnet")
        .arg("--dir")
        .arg(dir)
        .arg("rotate")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    let output = child.wait_with_output();
    tokio::pin!(output);
    // A guard against a hang, not a speed test: a rotation takes minutes here, and several times
    // that on a slow two-core machine running other tests beside it (the retire waits out the
    // deposit grace, batches made while users are at work).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    let output = loop {
        tokio::select! {
            output = &mut output => break output.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                assert!(tokio::time::Instant::now() < deadline, "devnet rotate {args:?} ran for 30 minutes\n{}", logs(dir));
                if let Ok(bytes) = std::fs::read(dir.join("devnet.json"))
                    && let Ok(state) = serde_json::from_slice::<Value>(&bytes)
                {
                    during(&state);
                }
            }
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "devnet rotate {args:?} failed:\n{stderr}\n{}", logs(dir));
    // "[3/6] Ethereum proposeKey… digest …; pendingKey … (2.1 s)": one line per step.
    let steps: Vec<String> = stderr.lines().filter(|l| l.starts_with('[')).map(str::to_owned).collect();
    assert_eq!(steps.len(), if args.contains(&"--retire") { 7 } else { 6 }, "{stderr}");
    steps
}

/// Asks `probe` every 200 ms until it gives something, for at most `secs` seconds.
async fn until<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// An account's balance of `asset` as the coordinator or a confirmer (`base`) tells it.
async fn balance(http: &reqwest::Client, base: &str, account: &str, asset: &str) -> u128 {
    let view = get(http, &format!("{base}/accounts/{account}")).await;
    view["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["asset"].as_str().is_some_and(|a| a.eq_ignore_ascii_case(asset)))
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_set_rotates_twice_on_the_devnet_while_users_carry_on_and_nothing_is_lost() {
    let net = Devnet::up();
    let dir = net.dir.clone();
    let state = net.state();
    let e = state["endpoints"].clone();
    let (coordinator, confirmer) = (e["coordinator"].as_str().unwrap().to_owned(), e["confirmer"].as_str().unwrap());
    let http = reqwest::Client::new();
    let eth = ProviderBuilder::new().connect_http(e["eth_rpc"].as_str().unwrap().parse().unwrap());
    let vault: EthAddress = e["eth_vault"].as_str().unwrap().parse().unwrap();
    let token: EthAddress = e["erc20"].as_str().unwrap().parse().unwrap();
    let rpc = chains::bitcoin::CoreRpc::new(
        e["btc_rpc"].as_str().unwrap(),
        e["btc_rpc_user"].as_str().unwrap(),
        e["btc_rpc_password"].as_str().unwrap(),
    );
    let vault_admin = chains::vault_admin::reader(
        e["eth_rpc"].as_str().unwrap(),
        &Default::default(),
        e["eth_vault"].as_str().unwrap().parse().unwrap(),
    )
    .unwrap();
    let alice = state["demo_wallets"][0]["file"].as_str().unwrap().to_owned();
    let bob = state["demo_wallets"][1]["file"].as_str().unwrap().to_owned();
    let bob_address = state["demo_wallets"][1]["address"].as_str().unwrap().to_owned();
    let groups = |state: &Value| state["groups"].as_array().unwrap().clone();
    assert_eq!(groups(&state).len(), 1, "up records its group");

    // Bob asks for his Bitcoin deposit address before the rotation; alice pays the fee account
    // enough bitcoin (a transfer's fee) that sweeps never wait for funding.
    let old_address: Value = serde_json::from_str(&ok(
        user(&dir, &["deposit", "btc", "--wallet", &bob, "--json"]).output().unwrap(),
        "deposit btc",
    ))
    .unwrap();
    let old_address = old_address["address"].as_str().unwrap().to_owned();
    ok(
        user(&dir, &["transfer", "--asset", "btc", "--amount", "1000", "--fee", "30000", "--to", &bob_address])
            .args(["--wallet", &alice])
            .output()
            .unwrap(),
        "a BTC transfer with a fee",
    );

    let traffic = Traffic::start(&dir, &state);
    traffic.until_sent_after(Instant::now(), "eth:ETH");

    // Rotation 1: 3-of-5 → 4-of-6; operator 4 leaves, 5 and 6 join. While it runs (once the
    // ledger has the new key), 0.2 BTC arrives at bob's old address.
    let bob_btc_before = balance(&http, &coordinator, &bob_address, "btc:BTC").await;
    let old_deposit = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let steps_1 = rotate(&dir, &["--watchmen", "6", "--threshold", "4", "--leave", "4"], |state| {
        let mut paid = old_deposit.lock().unwrap();
        if paid.is_none() && groups(state).len() == 2 {
            let txid = ok(
                devnet(&dir).args(["pay-btc", &old_address, "--sats", "20000000"]).output().unwrap(),
                "pay-btc to the old address",
            );
            *paid = Some(txid.trim().to_owned());
        }
    })
    .await;
    let rotated_1 = Instant::now();
    let state = net.state();
    let all_groups = groups(&state);
    let new_group = &all_groups[1];
    assert_eq!(new_group["epoch"], 1);
    let operators: Vec<u64> =
        new_group["members"].as_array().unwrap().iter().map(|m| m["operator"].as_u64().unwrap()).collect();
    assert_eq!(operators, [0, 1, 2, 3, 5, 6]);
    let admin = vault_admin.admin_state().await.unwrap();
    assert_eq!((admin.key_epoch, admin.pending_key), (1, [0; 32]), "the vault holds the new key");
    assert!(traffic.sent().iter().any(|s| s.at > started && s.at < rotated_1), "users were at work during it");

    // Bob's address is now the new key's; what arrived at the old one is credited (grace).
    let new_address = get(&http, &format!("{coordinator}/accounts/{bob_address}/btc-deposit-address")).await;
    assert_ne!(new_address["address"].as_str().unwrap(), old_address, "a new key, a new address");
    let old_txid: bitcoin::Txid =
        old_deposit.lock().unwrap().clone().expect("paid during the rotation").parse().unwrap();
    until("the deposit to the old address credited", 120, async || {
        (balance(&http, &coordinator, &bob_address, "btc:BTC").await == bob_btc_before + 20_000_000).then_some(())
    })
    .await;

    // The departed watchman's share, with two more of the old group, signs a proposeKey its
    // operators approved; the vault, now at the new key, refuses it.
    let old_group = &all_groups[0];
    let member = |group: &Value, operator: u64| -> Value {
        group["members"].as_array().unwrap().iter().find(|m| m["operator"] == operator).unwrap().clone()
    };
    let admin_cmd = |m: &Value, verb: &str| {
        let mut command = bridgectl();
        let token = PathBuf::from(m["home"].as_str().unwrap()).join("admin.token");
        command.args(["admin", verb, "--admin", m["admin"].as_str().unwrap()]).arg("--token-file").arg(token);
        command
    };
    let back = ["propose-key", "--new-key", old_group["output_key"].as_str().unwrap()];
    for operator in [4, 0, 1] {
        ok(admin_cmd(&member(old_group, operator), "approve").args(back).output().unwrap(), "old approve");
    }
    let refused = admin_cmd(&member(old_group, 0), "propose").args(back).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("the vault refused"), "{said}");
    let admin = vault_admin.admin_state().await.unwrap();
    assert_eq!((admin.key_epoch, admin.pending_key), (1, [0; 32]), "nothing the old group signed took");

    // The old group retires once the grace is over and the old key is empty (users at work
    // make the batches), then its processes are gone from the devnet.
    ok(devnet(&dir).args(["retire", "--grace-timeout-secs", "600"]).output().unwrap(), "retire");
    let state = net.state();
    assert_eq!(groups(&state)[0]["retired"], true);
    for m in groups(&state)[0]["members"].as_array().unwrap() {
        assert!(state["parts"].as_array().unwrap().iter().all(|p| p["name"] != m["part"]), "{m} stopped");
    }
    let deposit_outpoint = {
        let tx = rpc.raw_transaction(&old_txid, None).await.unwrap();
        let script = bitcoin::Address::from_str_regtest(&old_address).script_pubkey();
        let vout = tx.output.iter().position(|o| o.script_pubkey == script).unwrap();
        bitcoin::OutPoint { txid: old_txid, vout: vout as u32 }
    };
    assert!(rpc.tx_out(&deposit_outpoint, true).await.unwrap().is_none(), "the old-address deposit was swept");

    // Rotation 2: back to 3-of-4 (operators 5 and 6 leave), retiring the 4-of-6 group.
    let started_2 = Instant::now();
    let steps_2 =
        rotate(&dir, &["--watchmen", "4", "--threshold", "3", "--leave", "5", "--leave", "6", "--retire"], |_| {})
            .await;
    let rotated_2 = Instant::now();
    let state = net.state();
    let all_groups = groups(&state);
    let last = &all_groups[2];
    assert_eq!((last["epoch"].as_u64(), last["threshold"].as_u64()), (Some(2), Some(3)));
    assert_eq!(groups(&state)[1]["retired"], true);
    let admin = vault_admin.admin_state().await.unwrap();
    assert_eq!(admin.key_epoch, 2);

    // Users go on after it (a BTC withdrawal too); then they stop, and everything they asked
    // for is paid exactly once.
    // A withdrawal of each asset after it: on a fast machine the BTC one alone can come first.
    traffic.until_sent_after(rotated_2, "btc:BTC");
    traffic.until_sent_after(rotated_2, "eth:ETH");
    let (sent, bob_deposited, timed_out) = traffic.finish();
    assert!(sent.iter().any(|s| s.at > started_2 && s.at < rotated_2), "users were at work during rotation 2");
    let withdrawals: Vec<(Instant, String, u128, String)> =
        sent.iter().filter_map(|s| s.withdrawal.clone().map(|(asset, amount, to)| (s.at, asset, amount, to))).collect();
    for (_, asset, amount, to) in withdrawals.iter().filter(|w| w.1 == "eth:ETH") {
        let to: EthAddress = to.parse().unwrap();
        let paid = until(&format!("the {asset} withdrawal to {to} paid"), 600, async || {
            let paid = eth.get_balance(to).await.unwrap();
            (paid > U256::ZERO).then_some(paid)
        })
        .await;
        assert_eq!(paid, U256::from(*amount), "{to} paid exactly once");
    }
    let btc: Vec<(Instant, u128, bitcoin::ScriptBuf)> = withdrawals
        .iter()
        .filter(|w| w.1 == "btc:BTC")
        .map(|(at, _, amount, to)| (*at, *amount, bitcoin::Address::from_str_regtest(to).script_pubkey()))
        .collect();
    let scripts: BTreeSet<bitcoin::ScriptBuf> = btc.iter().map(|w| w.2.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let paid = loop {
        let paid = paid_to(&rpc, &scripts).await;
        if paid.len() == scripts.len() {
            break paid;
        }
        assert!(
            Instant::now() < deadline,
            "BTC withdrawals unpaid after 10 minutes: {} of {}",
            paid.len(),
            scripts.len()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    // Each paid once and exactly; those requested after a rotation from the outputs of a key
    // made by a rotation (after the last one: the newest group's vault address only). The ETH
    // ones requested after a rotation had their roots accepted under the new key, the only key
    // the vault took since.
    let vault_of = |group: &Value| {
        chains::bitcoin::vault_address(key_of(group["internal_key"].as_str().unwrap()), bridge::BtcNetwork::Regtest)
            .script_pubkey()
    };
    let (group_1, new_vault) = (vault_of(&all_groups[1]), vault_of(&all_groups[2]));
    let mut checked = [0usize; 2];
    for (at, amount, script) in &btc {
        let outputs = &paid[script];
        assert_eq!(outputs.len(), 1, "paid once: {outputs:?}");
        assert_eq!(u128::from(outputs[0].1), *amount);
        if *at < rotated_1 {
            continue;
        }
        let payout = rpc.raw_transaction(&outputs[0].0, None).await.unwrap();
        for input in &payout.input {
            let spent = rpc.raw_transaction(&input.previous_output.txid, None).await.unwrap();
            let owner = &spent.output[input.previous_output.vout as usize].script_pubkey;
            if *at > rotated_2 {
                assert_eq!(owner, &new_vault, "paid by the newest group");
            } else {
                assert!(owner == &group_1 || owner == &new_vault, "paid by a rotated group");
            }
        }
        checked[usize::from(*at > rotated_2)] += 1;
    }
    assert!(checked[0] > 0 && checked[1] > 0, "BTC withdrawals after each rotation: {checked:?}");
    assert!(withdrawals.iter().any(|w| w.0 > rotated_2 && w.1 == "eth:ETH"), "an ETH withdrawal after");

    // Nothing acknowledged is lost: every transaction is in the ledger and hard-final.
    for s in &sent {
        let hash = &s.hash;
        until(&format!("{hash} hard-final"), 300, async || {
            let tx = get(&http, &format!("{confirmer}/tx/{hash}")).await;
            (tx["hard_final"] == true).then_some(())
        })
        .await;
    }

    // Solvency, exact, from the ledger replayed here from Arweave alone (until it has recorded
    // every payout the chain confirmed): the vault holds the ledger's ETH and tokens, and the
    // chain's outputs at every key's vault address and alice's and bob's addresses under every
    // key are exactly the ledger's vault outputs, all under the newest key.
    let params: bridge::NetworkParams =
        serde_json::from_slice(&std::fs::read(dir.join("params.json")).unwrap()).unwrap();
    let mut ledger = Replay::new(&dir, &params, e["arweave"].as_str().unwrap());
    let mut watched = BTreeSet::new();
    for group in &all_groups {
        let key = key_of(group["internal_key"].as_str().unwrap());
        watched.insert(chains::bitcoin::vault_address(key, bridge::BtcNetwork::Regtest).script_pubkey());
        for wallet in state["demo_wallets"].as_array().unwrap() {
            let account: bridge::Address = wallet["address"].as_str().unwrap().parse().unwrap();
            watched
                .insert(chains::bitcoin::deposit_address(key, bridge::BtcNetwork::Regtest, &account).script_pubkey());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let on_chain = loop {
        ledger.more().await;
        let on_chain = unspent_at(&rpc, &watched).await;
        let in_ledger: BTreeSet<bitcoin::OutPoint> =
            ledger.state.vault_utxos().map(|u| bitcoin::OutPoint::from(u.outpoint)).collect();
        if on_chain.keys().copied().collect::<BTreeSet<_>>() == in_ledger && ledger.state.btc_plans().count() == 0 {
            break on_chain;
        }
        assert!(
            Instant::now() < deadline,
            "the chain's vault outputs are not the ledger's:\n chain {on_chain:?}\n ledger {in_ledger:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let ledger = ledger.state;
    let held: u64 = on_chain.values().map(|(v, _)| v).sum();
    assert_eq!(held, ledger.btc_vault_holdings_sat());
    assert!(on_chain.values().all(|(_, s)| s == &new_vault), "nothing left under an old key");
    assert!(!on_chain.contains_key(&deposit_outpoint));
    let report = confirmer::solvency::SolvencyWatch {
        eth_rpc: Some(e["eth_rpc"].as_str().unwrap().to_owned()),
        btc: Some(std::sync::Arc::new(rpc.clone())),
        btc_depth: 1,
        tls: Default::default(),
    }
    .check(&ledger)
    .await
    .unwrap();
    assert_eq!(report.len(), 3, "{report:?}");
    for asset in &report {
        assert_eq!(asset.detail, None, "{asset:?}");
        if asset.asset.chain() == bridge::Chain::Ethereum {
            assert_eq!(asset.held, asset.owed, "every ETH and token withdrawal is paid: {asset:?}");
        } else {
            assert!(asset.held >= asset.owed && asset.held == u128::from(held), "{asset:?}");
        }
    }
    let eth_owed = ledger.supply(&bridge::AssetId::Eth).liabilities.units();
    assert_eq!(eth.get_balance(vault).await.unwrap(), U256::from(eth_owed));
    let eth_paid = withdrawals.iter().filter(|w| w.1 == "eth:ETH").count() as u128 * ETH_WITHDRAWAL_WEI;
    if timed_out == 0 {
        // Every command answered, so every deposit and withdrawal is known here.
        assert_eq!(eth_owed, 10_000_000_000_000_000_000 + bob_deposited - eth_paid, "deposits less withdrawals");
    }
    let token_held = contracts::TestToken::new(token, eth.clone()).balanceOf(vault).call().await.unwrap();
    let token_asset = bridge::AssetId::Erc20(bridge::Address(token.0.0));
    assert_eq!(token_held, U256::from(ledger.supply(&token_asset).liabilities.units()));

    // Every part the devnet runs is healthy; no alarm.
    let alarms = get(&http, &format!("{confirmer}/alarms")).await;
    assert_eq!(alarms.as_array().map(Vec::len).unwrap_or(0), 0, "{alarms}");
    let status: Value =
        serde_json::from_str(&ok(devnet(&dir).args(["status", "--json"]).output().unwrap(), "status")).unwrap();
    let watchmen: Vec<&Value> = status["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("watchman-"))
        .collect();
    assert_eq!(watchmen.len(), 4, "only the newest group runs: {status}");
    for part in &watchmen {
        assert_eq!((&part["running"], &part["healthy"]), (&Value::Bool(true), &Value::Bool(true)), "{part}");
    }

    println!("rotation 1 (3-of-5 → 4-of-6) in {:.1} s:", (rotated_1 - started).as_secs_f64());
    for line in &steps_1 {
        println!("  {line}");
    }
    println!("rotation 2 (4-of-6 → 3-of-4, with --retire) in {:.1} s:", (rotated_2 - started_2).as_secs_f64());
    for line in &steps_2 {
        println!("  {line}");
    }
    println!("{} transactions acknowledged, {} withdrawals paid once each", sent.len(), withdrawals.len());
}
