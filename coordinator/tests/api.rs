//! The HTTP API end to end, over real HTTP on loopback, on SQLite and (when `DATABASE_URL` is
//! set) PostgreSQL, publishing to a directory; the Arweave case is in `tests/arweave.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::tx::{Transfer, UserTx, Withdraw};
use bridge::{Address, Amount, AssetId, NetworkParams, Tx, Wallet};
use common::*;
use coordinator::node::Node;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(node: &Node) -> Self {
        Client { http: reqwest::Client::new(), base: node.url() }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).body(body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    /// Everything a refused request must leave as it was.
    async fn snapshot(&self, accounts: &[Address]) -> Value {
        let mut out = Vec::new();
        for account in accounts {
            out.push(self.get(&format!("/accounts/{account}")).await.1);
            // The history's hashes, not its statuses: those move on as batches seal.
            let history = self.get(&format!("/accounts/{account}/txs")).await.1;
            out.extend(history["txs"].as_array().unwrap().iter().map(|tx| tx["hash"].clone()));
        }
        Value::Array(out)
    }
}

fn balance(account: &Value) -> u128 {
    account["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "eth:ETH")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

async fn funded_node(ledger: &Ledger, dir: &std::path::Path, funded: u64) -> Node {
    let node = Node::start(&node_config(dir, &ledger.url, funded)).await.unwrap();
    let client = Client::new(&node);
    for n in 1..=funded {
        let address = wallet(n).address();
        eventually(60, "the dev deposits", || async {
            (balance(&client.get(&format!("/accounts/{address}")).await.1) == ONE_ETH).then_some(())
        })
        .await;
    }
    node
}

#[tokio::test]
async fn transactions_flow_from_post_to_published_batch() {
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        let node = funded_node(&ledger, dir.path(), 2).await;
        let client = Client::new(&node);
        let (alice, bob, carol) = (wallet(1), wallet(2), wallet(3));

        let (status, accepted) = client.post("/tx", &transfer_request(&alice, carol.address(), 1_000, 0)).await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
        assert_eq!(accepted["status"], "accepted");
        let hash = accepted["hash"].as_str().unwrap().to_owned();

        // A status is readable at once and moves on to batched and published.
        let (status, tx) = client.get(&format!("/tx/{hash}")).await;
        assert_eq!(status, StatusCode::OK, "{tx}");
        assert!(["accepted", "batched", "published"].contains(&tx["status"].as_str().unwrap()), "{tx}");
        let published = eventually(120, "publication", || async {
            let tx = client.get(&format!("/tx/{hash}")).await.1;
            (tx["status"] == "published").then_some(tx)
        })
        .await;
        let number = published["batch"].as_u64().unwrap();
        let (status, batch) = client.get(&format!("/batches/{number}")).await;
        assert_eq!(status, StatusCode::OK, "{batch}");
        assert!(batch["tx_hashes"].as_array().unwrap().iter().any(|h| h == &json!(hash)), "{batch}");
        assert_eq!(batch["locator"], published["locator"]);
        assert!(dir.path().join("da").read_dir().unwrap().count() >= 1, "the batch is in the DA directory");

        // POST /txs: each answered on its own, in order.
        let many = json!([
            transfer_request(&alice, carol.address(), 10, 1),
            transfer_request(&bob, carol.address(), 20, 0),
            transfer_request(&alice, carol.address(), 10, 1), // replay of the first
            transfer_request(&bob, carol.address(), 5 * ONE_ETH, 1), // overdraft
            transfer_request(&alice, carol.address(), 10, 2),
        ]);
        let (status, results) = client.post("/txs", &many).await;
        assert_eq!(status, StatusCode::OK, "{results}");
        let statuses: Vec<&str> =
            results["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["accepted", "accepted", "refused", "refused", "accepted"], "{results}");
        assert_eq!(results["results"][2]["error"]["code"], "nonce_replayed");
        assert_eq!(results["results"][3]["error"]["code"], "overdraft");

        let (_, account) = client.get(&format!("/accounts/{}", alice.address())).await;
        assert_eq!(account["nonce"], 3);
        assert_eq!(balance(&account), ONE_ETH - 1_020);
        assert_eq!(balance(&client.get(&format!("/accounts/{}", carol.address())).await.1), 1_040);

        // History, newest first, paged.
        let (_, page) = client.get(&format!("/accounts/{}/txs?limit=2", alice.address())).await;
        let txs = page["txs"].as_array().unwrap();
        assert_eq!(txs.len(), 2, "{page}");
        assert_eq!(txs[0]["tx"]["tx"]["nonce"], 2, "{page}");
        let next = page["next"].as_u64().unwrap();
        let (_, older) = client.get(&format!("/accounts/{}/txs?limit=2&before={next}", alice.address())).await;
        let older = older["txs"].as_array().unwrap();
        // Nonce 0, then the deposit that funded the account.
        assert_eq!(older.len(), 2, "{older:?}");
        assert_eq!(older[0]["tx"]["tx"]["nonce"], 0);
        assert_eq!(older[1]["tx"]["type"], "deposit");

        let (_, info) = client.get("/info").await;
        assert_eq!(info["chain_id"], 31_337);
        assert_eq!(info["coordinator_key"], format!("0x{}", hex::encode(params().coordinator_key)));
        assert_eq!(info["da"]["kind"], "dir");
        assert_eq!(client.get("/health").await.0, StatusCode::OK);

        let metrics = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("bridge_coordinator_txs_total"), "{metrics}");
        assert!(metrics.contains("bridge_coordinator_http_requests_total"), "{metrics}");
        let (_, openapi) = client.get("/openapi.json").await;
        for path in [
            "/tx",
            "/txs",
            "/info",
            "/accounts/{address}",
            "/accounts/{address}/txs",
            "/accounts/{address}/btc-deposit-address",
            "/accounts/{address}/btc-deposits",
            "/tx/{hash}",
            "/batches/{number}",
            "/health",
            "/metrics",
        ] {
            assert!(openapi["paths"].get(path).is_some(), "{path} is not in /openapi.json");
        }
        node.shutdown().await;
    }
}

/// `tx` signed for `params` (maybe another network's), as the API takes it.
fn signed_for(params: &NetworkParams, from: &Wallet, tx: UserTx) -> Value {
    let signed = from.sign(tx, &bridge::eip712::Domain::new(params));
    serde_json::to_value(coordinator::api::request::TxRequest::from_signed(&signed)).unwrap()
}

fn raw_transfer(from: &Wallet, to: Address, asset: AssetId, amount: u128, fee: u128, nonce: u64) -> UserTx {
    UserTx::Transfer(Transfer { from: from.address(), to, asset, amount: Amount(amount), fee: Amount(fee), nonce })
}

fn raw_withdraw(from: &Wallet, recipient: &str, nonce: u64) -> UserTx {
    UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset: AssetId::Eth,
        amount: Amount(1),
        fee: Amount(0),
        recipient: recipient.to_owned(),
        nonce,
    })
}

fn with(mut request: Value, field: &str, value: Value) -> Value {
    request[field] = value;
    request
}

#[tokio::test]
async fn every_bad_input_gets_its_own_error_and_changes_nothing() {
    for ledger in ledgers().await {
        let dir = tempfile::tempdir().unwrap();
        let mut config = node_config(dir.path(), &ledger.url, 1);
        config.api.body_limit_bytes = 4096;
        let node = Node::start(&config).await.unwrap();
        let client = Client::new(&node);
        let (alice, bob) = (wallet(1), wallet(2));
        let accounts = [alice.address(), bob.address()];
        eventually(60, "the dev deposit", || async {
            (balance(&client.get(&format!("/accounts/{}", alice.address())).await.1) == ONE_ETH).then_some(())
        })
        .await;
        // One good transaction first, so that a replay has something to replay.
        let first = transfer_request(&alice, bob.address(), 1, 0);
        assert_eq!(client.post("/tx", &first).await.0, StatusCode::OK);

        let good = transfer_request(&alice, bob.address(), 1, 1);
        let ours = params();
        let other_chain = NetworkParams { chain_id: 1, ..ours.clone() };
        let other_vault = NetworkParams { eth_vault: Address([0x99; 20]), ..ours.clone() };
        let short_signature = format!("0x{}", "ab".repeat(64));
        let bad_hex_from = format!("0x{}", "zz".repeat(20));
        let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
            ("malformed JSON", br#"{"type": "transfer", "#.to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            ("not an object", b"[1, 2]".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
            ("unknown field", body(with(good.clone(), "memo", json!("hi"))), StatusCode::BAD_REQUEST, "unknown_field"),
            ("missing field", body(without(good.clone(), "fee")), StatusCode::BAD_REQUEST, "missing_field"),
            (
                "unknown type",
                body(with(good.clone(), "type", json!("mint"))),
                StatusCode::BAD_REQUEST,
                "unknown_tx_type",
            ),
            (
                "bad hex address",
                body(with(good.clone(), "to", json!(bad_hex_from))),
                StatusCode::BAD_REQUEST,
                "bad_hex",
            ),
            (
                "bad hex signature",
                body(with(good.clone(), "signature", json!("0xnothex"))),
                StatusCode::BAD_REQUEST,
                "bad_hex",
            ),
            ("short address", body(with(good.clone(), "to", json!("0x1234"))), StatusCode::BAD_REQUEST, "bad_address"),
            (
                "64-byte signature",
                body(with(good.clone(), "signature", json!(short_signature))),
                StatusCode::BAD_REQUEST,
                "bad_signature_length",
            ),
            (
                "signed for another chainId",
                body(signed_for(&other_chain, &alice, raw_transfer(&alice, bob.address(), AssetId::Eth, 1, 0, 1))),
                StatusCode::UNAUTHORIZED,
                "signer_mismatch",
            ),
            (
                "signed for another chainId, saying so",
                body(with(
                    signed_for(&other_chain, &alice, raw_transfer(&alice, bob.address(), AssetId::Eth, 1, 0, 1)),
                    "chain_id",
                    json!(1),
                )),
                StatusCode::BAD_REQUEST,
                "wrong_domain",
            ),
            (
                "signed for another vault",
                body(signed_for(&other_vault, &alice, raw_transfer(&alice, bob.address(), AssetId::Eth, 1, 0, 1))),
                StatusCode::UNAUTHORIZED,
                "signer_mismatch",
            ),
            (
                "signed for another vault, saying so",
                body(with(
                    signed_for(&other_vault, &alice, raw_transfer(&alice, bob.address(), AssetId::Eth, 1, 0, 1)),
                    "vault",
                    json!(Address([0x99; 20]).to_string()),
                )),
                StatusCode::BAD_REQUEST,
                "wrong_domain",
            ),
            ("replayed nonce", body(first.clone()), StatusCode::CONFLICT, "nonce_replayed"),
            (
                "nonce gap",
                body(transfer_request(&alice, bob.address(), 1, 7)),
                StatusCode::UNPROCESSABLE_ENTITY,
                "nonce_gap",
            ),
            (
                "overdraft",
                body(transfer_request(&alice, bob.address(), 2 * ONE_ETH, 1)),
                StatusCode::UNPROCESSABLE_ENTITY,
                "overdraft",
            ),
            (
                "amount over u128",
                body(with(good.clone(), "amount", json!("340282366920938463463374607431768211456"))),
                StatusCode::BAD_REQUEST,
                "amount_overflow",
            ),
            (
                "amount + fee over u128",
                body(signed_for(&ours, &alice, raw_transfer(&alice, bob.address(), AssetId::Eth, u128::MAX, 1, 1))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "overflow",
            ),
            (
                "amount as a JSON number",
                body(with(good.clone(), "amount", json!(5))),
                StatusCode::BAD_REQUEST,
                "invalid_field",
            ),
            ("negative amount", body(with(good.clone(), "amount", json!("-5"))), StatusCode::BAD_REQUEST, "bad_amount"),
            (
                "zero amount",
                body(transfer_request(&alice, bob.address(), 0, 1)),
                StatusCode::UNPROCESSABLE_ENTITY,
                "zero_amount",
            ),
            (
                "unknown chain",
                body(with(good.clone(), "asset", json!("doge:DOGE"))),
                StatusCode::BAD_REQUEST,
                "unknown_asset",
            ),
            (
                "asset this network does not take",
                body(signed_for(&ours, &alice, raw_transfer(&alice, bob.address(), AssetId::Btc, 1, 0, 1))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_asset",
            ),
            ("body over the limit", vec![b' '; 8192], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            (
                "withdrawal to the zero address",
                body(signed_for(&ours, &alice, raw_withdraw(&alice, "0x0000000000000000000000000000000000000000", 1))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unpayable_recipient",
            ),
            (
                "withdrawal to a precompile",
                body(signed_for(&ours, &alice, raw_withdraw(&alice, "0x0000000000000000000000000000000000000001", 1))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unpayable_recipient",
            ),
            (
                "withdrawal to the vault",
                body(signed_for(&ours, &alice, raw_withdraw(&alice, &ours.eth_vault.to_string(), 1))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unpayable_recipient",
            ),
        ];
        for (what, request, status, code) in cases {
            let before = client.snapshot(&accounts).await;
            let (got, error) = client.post_raw("/tx", request).await;
            assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{what}: {error} ({})", ledger.url);
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {error}");
            assert_eq!(client.snapshot(&accounts).await, before, "{what} changed the state");
        }
        // Bad paths and queries are errors too.
        for (path, status, code) in [
            ("/accounts/0xnope", StatusCode::BAD_REQUEST, "bad_address"),
            ("/tx/0x12", StatusCode::BAD_REQUEST, "bad_hex"),
            (&format!("/tx/0x{}", "00".repeat(32)), StatusCode::NOT_FOUND, "unknown_tx"),
            ("/batches/x", StatusCode::BAD_REQUEST, "bad_batch_number"),
            ("/batches/999", StatusCode::NOT_FOUND, "unknown_batch"),
            (&format!("/accounts/{}/txs?limit=0", alice.address()), StatusCode::BAD_REQUEST, "bad_query"),
            (&format!("/accounts/{}/txs?page=2", alice.address()), StatusCode::BAD_REQUEST, "bad_query"),
            ("/no/such/thing", StatusCode::NOT_FOUND, "not_found"),
        ] {
            let (got, error) = client.get(path).await;
            assert_eq!((got, error["code"].as_str()), (status, Some(code)), "{path}: {error}");
        }
        let (got, error) = client.post("/txs", &Value::Array(vec![good; 1001])).await;
        assert_eq!((got, error["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")), "{error}");
        node.shutdown().await;
    }
}

fn body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn without(mut request: Value, field: &str) -> Value {
    request.as_object_mut().unwrap().remove(field);
    request
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_applies_nothing_over_the_limit() {
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &ledger.url, 1);
    config.api.rate_limit_per_second = 2.0;
    config.api.rate_limit_burst = 5.0;
    config.api.max_txs_per_request = 2;
    let node = Node::start(&config).await.unwrap();
    let client = Client::new(&node);
    let (alice, bob) = (wallet(1), wallet(2));
    // The deposit is credited whatever the API's limits.
    eventually(60, "the dev deposit", || async {
        let response = client.http.get(format!("{}/health", client.base)).send().await.unwrap();
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    let mut accepted = 0;
    let mut limited = 0;
    for nonce in 0..30 {
        let response = client
            .http
            .post(format!("{}/tx", client.base))
            .json(&transfer_request(&alice, bob.address(), 1, nonce))
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
                let error: Value = response.json().await.unwrap();
                assert_eq!(error["code"], "rate_limited", "{error}");
                limited += 1;
                break;
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(limited == 1 && (5..30).contains(&accepted), "accepted {accepted}, limited {limited}");
    // Health and metrics stay reachable for the operator.
    assert_eq!(client.http.get(format!("{}/health", client.base)).send().await.unwrap().status(), StatusCode::OK);
    // Nothing over the limit was applied: the nonce counts exactly the accepted ones.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, account) = client.get(&format!("/accounts/{}", alice.address())).await;
    assert_eq!(account["nonce"], accepted, "{account}");
    let (status, error) =
        client.post("/txs", &Value::Array(vec![transfer_request(&alice, bob.address(), 1, accepted); 3])).await;
    assert_eq!((status, error["code"].as_str()), (StatusCode::BAD_REQUEST, Some("too_many_txs")), "{error}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_transaction_is_answered_only_after_it_is_durable() {
    // Sequencer-level proof of durability is in tests/sequencer.rs and the kill -9 test; here:
    // what /tx acknowledged is in the ledger the moment the answer arrives.
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let node = funded_node(&ledger, dir.path(), 1).await;
    let client = Client::new(&node);
    let alice = wallet(1);
    for nonce in 0..5 {
        let (status, accepted) = client.post("/tx", &transfer_request(&alice, wallet(9).address(), 1, nonce)).await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
        let hash = bridge::serde_hex::parse_fixed::<32>(accepted["hash"].as_str().unwrap()).unwrap();
        assert!(node.store.tx_by_hash(&hash).await.unwrap().is_some(), "acknowledged but not in the ledger");
    }
    let _ = Tx::User; // the transactions above are user transactions
    node.shutdown().await;
}

#[tokio::test]
async fn an_account_gets_its_own_bitcoin_deposit_address() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = |dir: &std::path::Path| format!("sqlite://{}", dir.join("ledger.db").display());
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let secret = bitcoin::secp256k1::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let group_key = bitcoin::key::Keypair::from_secret_key(&secp, &secret).x_only_public_key().0;
    let mut config = node_config(dir.path(), &sqlite(dir.path()), 0);
    config.network.btc_vault =
        Some(bridge::BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 100 });
    let node = Node::start(&config).await.unwrap();
    let client = Client::new(&node);

    let alice = wallet(1).address();
    let (status, body) = client.get(&format!("/accounts/{alice}/btc-deposit-address")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = chains::bitcoin::deposit_address(group_key, bridge::BtcNetwork::Regtest, &alice);
    assert_eq!(body["address"], expected.to_string());
    assert_eq!(body["btc_network"], "regtest");
    let (_, bob) = client.get(&format!("/accounts/{}/btc-deposit-address", wallet(2).address())).await;
    assert_ne!(bob["address"], body["address"], "two accounts share a deposit address");
    // Remembered durably, so the deposit watcher indexes the addresses it handed out.
    for account in [alice, wallet(2).address()] {
        assert!(node.store.is_btc_deposit_account(&account).await.unwrap(), "{account} is not in the deposit book");
    }
    assert!(!node.store.is_btc_deposit_account(&wallet(3).address()).await.unwrap());

    let (status, body) = client.get("/accounts/0x1234/btc-deposit-address").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_address")), "{body}");
    node.shutdown().await;

    // A network without a Bitcoin vault says so.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&node_config(dir.path(), &sqlite(dir.path()), 0)).await.unwrap();
    let (status, body) = Client::new(&node).get(&format!("/accounts/{alice}/btc-deposit-address")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_bitcoin_vault")), "{body}");
    node.shutdown().await;
}
