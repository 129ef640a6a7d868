//! The user's wallet commands through the real `bridgectl` binary: the wallet file, argument
//! checks, clear errors without a bridge, and transfers and withdrawals against a coordinator
//! started in this process (no confirmer or chains: up to the stages the coordinator reports).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Output, Stdio};

use coordinator::config::Config;
use coordinator::node::Node;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const PASSPHRASE: &str = "correct horse battery staple";
/// Anvil's account 0: a well-known test key.
const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const OTHER: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

async fn bridgectl<S: AsRef<std::ffi::OsStr>>(args: &[S], passphrase: &str, stdin: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgectl"));
    command
        .args(args)
        .env("BRIDGE_PASSPHRASE", passphrase)
        .env_remove("BTC_RPC_PASSWORD")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("bridgectl starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    child.wait_with_output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}\nstderr: {}", stdout(output), stderr(output)))
}

#[track_caller]
fn fails_with(output: &Output, needle: &str) {
    assert!(!output.status.success(), "expected failure; stdout: {}", stdout(output));
    let text = stderr(output);
    assert!(text.contains(needle), "stderr lacks {needle:?}: {text}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn wallet_new_address_and_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.wallet");
    let created = bridgectl(&["wallet", "new", "--out", path(&file), "--json"], PASSPHRASE, None).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let address = json(&created)["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with("0x") && address.len() == 42, "{address}");

    let shown = bridgectl(&["wallet", "address", "--wallet", path(&file)], PASSPHRASE, None).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(stdout(&shown), address);

    let imported = dir.path().join("imported.wallet");
    let output =
        bridgectl(&["wallet", "import", "--out", path(&imported)], PASSPHRASE, Some(&format!("0x{KEY}\n"))).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), ADDRESS);
    let shown = bridgectl(&["wallet", "address", "--wallet", path(&imported), "--json"], PASSPHRASE, None).await;
    assert_eq!(json(&shown)["address"], ADDRESS);
    let text = std::fs::read_to_string(&imported).unwrap();
    assert!(!text.contains(KEY), "the key is stored encrypted");
}

#[tokio::test]
async fn wrong_passphrase_overwrite_and_bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.wallet");
    let created = bridgectl(&["wallet", "new", "--out", path(&file)], PASSPHRASE, None).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let before = std::fs::read(&file).unwrap();

    let wrong = bridgectl(&["wallet", "address", "--wallet", path(&file)], "not the passphrase", None).await;
    fails_with(&wrong, "passphrase is wrong");

    let again = bridgectl(&["wallet", "new", "--out", path(&file)], PASSPHRASE, None).await;
    fails_with(&again, "exists");
    let import = bridgectl(&["wallet", "import", "--out", path(&file)], PASSPHRASE, Some(KEY)).await;
    fails_with(&import, "exists");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the wallet is untouched");

    let bad = dir.path().join("bad.wallet");
    fails_with(
        &bridgectl(&["wallet", "import", "--out", path(&bad)], PASSPHRASE, Some("0x1234")).await,
        "64 hex digits",
    );
    fails_with(
        &bridgectl(&["wallet", "import", "--out", path(&bad)], PASSPHRASE, Some(&"00".repeat(32))).await,
        "not a valid",
    );
    assert!(!bad.exists());

    let missing = bridgectl(&["wallet", "address", "--wallet", path(&dir.path().join("none"))], PASSPHRASE, None).await;
    fails_with(&missing, "wallet new");
    let no_passphrase = tokio::process::Command::new(env!("CARGO_BIN_EXE_bridgectl"))
        .args(["wallet", "address", "--wallet", path(&file)])
        .env_remove("BRIDGE_PASSPHRASE")
        .output()
        .await
        .unwrap();
    fails_with(&no_passphrase, "BRIDGE_PASSPHRASE");
}

#[tokio::test]
async fn bad_arguments_and_missing_or_dead_endpoints_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("absent.wallet");
    let devnet = dir.path().join("no-devnet");
    let common = ["--wallet", path(&wallet), "--devnet", path(&devnet), "--coordinator", "http://127.0.0.1:9"];
    let transfer = |extra: &[&str]| -> Vec<String> {
        ["transfer", "--to", OTHER].iter().chain(&common).chain(extra).map(|a| a.to_string()).collect()
    };
    fails_with(&bridgectl(&transfer(&["--asset", "eth", "--amount", "1.5"]), PASSPHRASE, None).await, "--amount 1.5");
    fails_with(&bridgectl(&transfer(&["--asset", "eth", "--amount", "-1"]), PASSPHRASE, None).await, "--amount");
    fails_with(&bridgectl(&transfer(&["--asset", "eth", "--amount", "0"]), PASSPHRASE, None).await, "above zero");
    fails_with(
        &bridgectl(&transfer(&["--asset", "eth", "--amount", &"9".repeat(40)]), PASSPHRASE, None).await,
        "128 bits",
    );
    fails_with(&bridgectl(&transfer(&["--asset", "doge", "--amount", "1"]), PASSPHRASE, None).await, "--asset doge");
    fails_with(
        &bridgectl(&transfer(&["--asset", "sol:SOL", "--amount", "1"]), PASSPHRASE, None).await,
        "unknown chain",
    );
    fails_with(&bridgectl(&transfer(&["--asset", "erc20", "--amount", "1"]), PASSPHRASE, None).await, "no devnet");
    fails_with(
        &bridgectl(&transfer(&["--asset", "eth", "--amount", "1", "--fee", "x"]), PASSPHRASE, None).await,
        "--fee x",
    );
    let mut bad_to = vec!["transfer", "--to", "0x12", "--asset", "eth", "--amount", "1"];
    bad_to.extend(common);
    fails_with(&bridgectl(&bad_to, PASSPHRASE, None).await, "--to 0x12");
    let mut btc = vec!["withdraw", "--asset", "btc", "--amount", "1000"];
    btc.extend(common);
    fails_with(&bridgectl(&btc, PASSPHRASE, None).await, "--recipient");

    // No flag and no devnet: say which flag to pass.
    let no_endpoint = bridgectl(&["balance", "--address", OTHER, "--devnet", path(&devnet)], PASSPHRASE, None).await;
    fails_with(&no_endpoint, "pass --coordinator URL");
    // A coordinator nobody answers at.
    let dead = bridgectl(
        &["balance", "--address", OTHER, "--coordinator", "http://127.0.0.1:9", "--devnet", path(&devnet)],
        PASSPHRASE,
        None,
    )
    .await;
    fails_with(&dead, "cannot reach the coordinator at http://127.0.0.1:9");
    let bad_hash = bridgectl(&["tx", "0x1234", "--coordinator", "http://127.0.0.1:9"], PASSPHRASE, None).await;
    fails_with(&bad_hash, "64 hex digits");
}

/// A devnet-named coordinator on loopback whose dev deposits fund `funded`.
async fn coordinator(dir: &Path, funded: &str) -> Node {
    let deposits = dir.join("deposits.json");
    std::fs::write(
        &deposits,
        serde_json::json!([{ "account": funded, "asset": "eth:ETH", "amount": "1000000" }]).to_string(),
    )
    .unwrap();
    let mut config = Config { data_dir: dir.join("coordinator"), ..Config::default() };
    config.network.name = "test-wallet".into();
    config.network.assets[0].min_fee = bridge::Amount(3);
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.rate_limit_per_second = 0.0;
    config.batch.max_age_ms = 100;
    config.dev.deposits = Some(deposits);
    Node::start(&config).await.expect("the coordinator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_and_withdraw_against_a_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let node = coordinator(dir.path(), ADDRESS).await;
    let url = node.url();
    let wallet = dir.path().join("alice.wallet");
    let imported = bridgectl(&["wallet", "import", "--out", path(&wallet)], PASSPHRASE, Some(KEY)).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let devnet = dir.path().join("no-devnet");
    let common = ["--wallet", path(&wallet), "--coordinator", url.as_str(), "--devnet", path(&devnet), "--json"];

    // Accepted, then not followed.
    let mut args = vec!["transfer", "--to", OTHER, "--asset", "eth", "--amount", "1000", "--no-wait"];
    args.extend(common);
    let sent = bridgectl(&args, PASSPHRASE, None).await;
    assert!(sent.status.success(), "{}", stderr(&sent));
    let sent = json(&sent);
    assert_eq!(sent["stages"][0]["stage"], "accepted");
    assert_eq!(sent["stages"][0]["at_ms"], 0);
    assert_eq!(sent["fee"], "3", "the network's least fee by default");
    assert_eq!(sent["nonce"], 0);
    assert_eq!(sent["to"], OTHER);
    let hash = sent["hash"].as_str().unwrap().to_owned();

    // Followed without a confirmer that answers: batched and published are reported in order,
    // then the wait for hard finality times out with a clear error and a non-zero exit.
    let mut args = vec!["transfer", "--to", OTHER, "--asset", "eth:ETH", "--amount", "500", "--fee", "5"];
    args.extend(common);
    args.extend(["--confirmer", "http://127.0.0.1:9", "--timeout-secs", "3"]);
    let followed = bridgectl(&args, PASSPHRASE, None).await;
    fails_with(&followed, "hard-final");
    let followed = json(&followed);
    let stages: Vec<&str> =
        followed["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["accepted", "batched", "published"], "{followed}");
    let times: Vec<u64> = followed["stages"].as_array().unwrap().iter().map(|s| s["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(followed["nonce"], 1);
    assert_eq!(followed["complete"], false);
    assert!(followed["batch"].as_u64().is_some());
    assert!(followed["error"].as_str().unwrap().contains("cannot reach the confirmer"), "{followed}");

    // A withdrawal to the wallet's own Ethereum address (the default recipient).
    let mut args = vec!["withdraw", "--asset", "eth", "--amount", "2000", "--no-wait"];
    args.extend(common);
    let withdrawn = bridgectl(&args, PASSPHRASE, None).await;
    assert!(withdrawn.status.success(), "{}", stderr(&withdrawn));
    assert_eq!(json(&withdrawn)["recipient"], ADDRESS);

    // Refusals by the network, with its code: a fee below its least, a nonce replayed,
    // an overdraft, an asset it does not take.
    let mut args = vec!["transfer", "--to", OTHER, "--asset", "eth", "--amount", "1", "--fee", "1", "--no-wait"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "least fee");
    let mut args = vec!["transfer", "--to", OTHER, "--asset", "eth", "--amount", "1", "--nonce", "0", "--no-wait"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "the coordinator refused POST /tx");
    let mut args = vec!["transfer", "--to", OTHER, "--asset", "eth", "--amount", "999999999", "--no-wait"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "the coordinator refused POST /tx");
    let token = "eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let mut args = vec!["transfer", "--to", OTHER, "--asset", token, "--amount", "1", "--no-wait"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "does not take");

    // A Bitcoin deposit claim: a bad transaction id is named, and this network takes no bitcoin.
    let txid = "ab".repeat(32);
    let mut args = vec!["deposit", "btc-claim", "--txid", "0xzz", "--height", "7"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "64 hex digits");
    let mut args = vec!["deposit", "btc-claim", "--txid", txid.as_str(), "--height", "7"];
    args.extend(common);
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "no Bitcoin vault");

    // The views: the transaction and the balance (no confirmer: said so, not fatal).
    let shown =
        bridgectl(&["tx", &hash, "--coordinator", &url, "--devnet", path(&devnet), "--json"], PASSPHRASE, None).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown = json(&shown);
    assert_eq!(shown["hash"], hash.as_str());
    assert!(shown["confirmer_error"].as_str().unwrap().contains("--confirmer"), "{shown}");
    let unknown = format!("0x{}", "ab".repeat(32));
    fails_with(&bridgectl(&["tx", &unknown, "--coordinator", &url], PASSPHRASE, None).await, "never accepted");

    let balance = bridgectl(
        &["balance", "--wallet", path(&wallet), "--coordinator", &url, "--devnet", path(&devnet), "--json"],
        PASSPHRASE,
        None,
    )
    .await;
    assert!(balance.status.success(), "{}", stderr(&balance));
    let balance = json(&balance);
    assert_eq!(balance["nonce"], 3);
    // 1_000_000 - (1000 + 3) - (500 + 5) - (2000 + 3)
    assert_eq!(balance["balances"][0]["amount"], "996489", "{balance}");
    let human =
        bridgectl(&["balance", "--address", OTHER, "--coordinator", &url, "--devnet", path(&devnet)], PASSPHRASE, None)
            .await;
    assert!(human.status.success(), "{}", stderr(&human));
    assert!(stdout(&human).contains("1500  eth:ETH"), "{}", stdout(&human));

    node.shutdown().await;
}

/// A stand-in confirmer that calls every transaction hard-final in `batch` 0 (the wallet reads
/// only `hard_final` from it; the coordinator gives the batch).
async fn hard_final_confirmer() -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let hash = text.split_whitespace().nth(1).unwrap_or("").trim_start_matches("/tx/").to_owned();
                let body = serde_json::json!({ "hash": hash, "batch": 0, "hard_final": true }).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

/// Ethereum on anvil: `deposit eth` pays the vault from the wallet's own key; `withdraw` is
/// followed through every stage while this test plays the watchmen (it submits a root for the
/// withdrawal's batch, then pays the leaf), with a stand-in confirmer for hard finality.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_and_withdraw_on_ethereum_through_every_stage() {
    use alloy::primitives::U256;
    use alloy::providers::Provider;
    use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
    use contracts::harness::Setup;

    let setup = Setup::new().await.unwrap();
    let eth_rpc = setup.anvil.url();
    let vault = contracts::from_alloy(setup.vault_address());
    let dir = tempfile::tempdir().unwrap();
    let deposits = dir.path().join("deposits.json");
    std::fs::write(
        &deposits,
        serde_json::json!([{ "account": ADDRESS, "asset": "eth:ETH", "amount": "1000000" }]).to_string(),
    )
    .unwrap();
    let mut config = Config { data_dir: dir.path().join("coordinator"), ..Config::default() };
    config.network.name = "test-wallet-eth".into();
    config.network.eth_vault = vault;
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.rate_limit_per_second = 0.0;
    config.batch.max_age_ms = 100;
    config.dev.deposits = Some(deposits);
    let node = Node::start(&config).await.unwrap();
    let url = node.url();
    let confirmer = hard_final_confirmer().await;
    let wallet = dir.path().join("w.wallet");
    assert!(bridgectl(&["wallet", "import", "--out", path(&wallet)], PASSPHRASE, Some(KEY)).await.status.success());
    let devnet = dir.path().join("no-devnet");
    let common = [
        "--wallet",
        path(&wallet),
        "--coordinator",
        url.as_str(),
        "--confirmer",
        confirmer.as_str(),
        "--eth-rpc",
        eth_rpc.as_str(),
        "--devnet",
        path(&devnet),
        "--json",
    ];

    let args: Vec<&str> = ["deposit", "eth", "--amount", "500000", "--no-wait"].into_iter().chain(common).collect();
    let deposited = bridgectl(&args, PASSPHRASE, None).await;
    assert!(deposited.status.success(), "{}", stderr(&deposited));
    let deposited = json(&deposited);
    assert!(deposited["l1_tx"].as_str().unwrap().starts_with("0x"), "{deposited}");
    assert_eq!(setup.provider.get_balance(setup.vault_address()).await.unwrap(), U256::from(500_000));

    // The withdrawal's hash is its EIP-712 digest: known here before it is sent.
    let params = bridge::NetworkParams {
        name: String::new(),
        chain_id: config.network.chain_id,
        eth_vault: vault,
        btc_network: bridge::BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: [0; 32],
        fee_account: bridge::Address::ZERO,
        assets: vec![],
        forced: None,
        webauthn: None,
        rotation: None,
    };
    let recipient: bridge::Address = OTHER.parse().unwrap();
    let tx = bridge::UserTx::Withdraw(bridge::Withdraw {
        from: ADDRESS.parse().unwrap(),
        asset: bridge::AssetId::Eth,
        amount: bridge::Amount(2000),
        fee: bridge::Amount(0),
        recipient: recipient.to_string(),
        nonce: 0,
    });
    let hash = format!("0x{}", hex::encode(tx.signing_hash(&bridge::eip712::Domain::new(&params))));
    let args: Vec<&str> =
        ["withdraw", "--asset", "eth", "--amount", "2000", "--recipient", OTHER, "--timeout-secs", "60"]
            .into_iter()
            .chain(common)
            .collect();
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let command = tokio::spawn(async move { bridgectl(&args, PASSPHRASE, None).await });

    // The watchmen's part: once the coordinator has batched it, a root for that batch, then
    // the payment of its leaf.
    let http = reqwest::Client::new();
    let batch = loop {
        if let Ok(response) = http.get(format!("{url}/tx/{hash}")).send().await
            && let Ok(view) = response.json::<Value>().await
            && let Some(batch) = view["batch"].as_u64()
        {
            break batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch,
        index: 0,
        token: bridge::Address::ZERO,
        recipient,
        amount: bridge::Amount(2000),
    }]);
    let range = setup.submit(batch, &tree, 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let payout = contracts::payouts(&tree, [0]);
    let receipt = setup.vault.withdrawMany(range, payout).send().await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());

    let output = command.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = json(&output);
    assert_eq!(result["hash"], hash.as_str());
    assert_eq!(result["batch"], batch);
    let stages: Vec<&str> = result["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["accepted", "batched", "published", "hard-final", "signed", "paid"], "{result}");
    let times: Vec<u64> = result["stages"].as_array().unwrap().iter().map(|s| s["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[5] >= times[4] + 400, "signed and paid are told apart: {times:?}");
    node.shutdown().await;
}

/// `claim` on anvil: a leaf whose recipient contract refused its payout in `withdrawMany` is
/// listed by a watchman's `/withdrawals/stuck` (the real route, over a real record); claiming
/// fails clearly while the recipient still refuses, and pays it once the recipient accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_pays_a_stuck_leaf_with_the_proof_a_watchman_lists() {
    use alloy::primitives::{Address as EthAddress, U256};
    use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
    use confirmer::watchman::{RetryPolicy, StuckWithdrawals};
    use contracts::harness::Setup;

    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(EthAddress::ZERO, 10_000).await.unwrap();
    let refuser = contracts::recipients::RevertingRecipient::deploy(setup.provider.clone()).await.unwrap();
    let honest = bridge::Address([0x71; 20]);
    let tree = EthWithdrawalTree::new(vec![
        EthWithdrawal {
            batch: 1,
            index: 0,
            token: bridge::Address::ZERO,
            recipient: contracts::from_alloy(*refuser.address()),
            amount: bridge::Amount(100),
        },
        EthWithdrawal {
            batch: 1,
            index: 1,
            token: bridge::Address::ZERO,
            recipient: honest,
            amount: bridge::Amount(200),
        },
    ]);
    let range = setup.submit(1, &tree, 0).await.unwrap();
    let submitter = chains::ethereum::Submitter::new(setup.provider.clone(), setup.vault_address(), setup.deployer);
    assert_eq!(submitter.pay(range, &tree).await.unwrap().failed, vec![(1, 0)]);

    let stuck = StuckWithdrawals::default();
    assert!(stuck.record((range, 1, 1), &tree, 0, &RetryPolicy::default(), (std::time::Instant::now(), 1_700_000_000)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let watchman = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, confirmer::api::stuck_withdrawals_router(stuck)).await });

    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("w.wallet");
    assert!(bridgectl(&["wallet", "import", "--out", path(&wallet)], PASSPHRASE, Some(KEY)).await.status.success());
    let vault = contracts::from_alloy(setup.vault_address()).to_string();
    let eth_rpc = setup.anvil.url();
    let devnet = dir.path().join("no-devnet");
    let args = [
        "claim",
        "--batch",
        "1",
        "--index",
        "0",
        "--vault",
        vault.as_str(),
        "--wallet",
        path(&wallet),
        "--confirmer",
        watchman.as_str(),
        "--eth-rpc",
        eth_rpc.as_str(),
        "--devnet",
        path(&devnet),
        "--json",
    ];
    fails_with(&bridgectl(&args, PASSPHRASE, None).await, "still refuses");
    fails_with(&bridgectl(&["claim", "--vault", vault.as_str()], PASSPHRASE, None).await, "--wallet");

    refuser.setAccepting(true).send().await.unwrap().get_receipt().await.unwrap();
    let claimed = bridgectl(&args, PASSPHRASE, None).await;
    assert!(claimed.status.success(), "{}", stderr(&claimed));
    let claimed = json(&claimed);
    assert!(claimed["claims"][0]["l1_tx"].as_str().unwrap().starts_with("0x"), "{claimed}");
    assert_eq!(setup.balance(*refuser.address()).await.unwrap(), U256::from(100));
    assert!(setup.vault.isPaid(1, 0).call().await.unwrap());
}
