//! The API's limits over real HTTP on loopback: the rate limit charges a `POST /txs` its whole
//! size and a new account's Bitcoin deposit address its cost, and /openapi.json says what a path
//! parameter must look like.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use common::*;
use coordinator::node::Node;
use reqwest::StatusCode;
use serde_json::Value;

async fn started(config: &coordinator::config::Config) -> (Node, reqwest::Client, String) {
    let node = Node::start(config).await.unwrap();
    let base = node.url();
    let http = reqwest::Client::new();
    eventually(60, "the dev deposit", || async {
        let response = http.get(format!("{base}/health")).send().await.unwrap();
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    (node, http, base)
}

#[tokio::test]
async fn a_post_txs_larger_than_the_burst_is_charged_whole_and_the_client_then_waits() {
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &ledger.url, 1);
    // 10 transactions a second, 20 at once; one request may carry 100.
    config.api.rate_limit_per_second = 10.0;
    config.api.rate_limit_burst = 20.0;
    config.api.max_txs_per_request = 100;
    let (node, http, base) = started(&config).await;
    let (alice, bob) = (wallet(1), wallet(2));

    // From a full bucket, 100 transactions pass whole...
    let txs: Vec<Value> = (0..100).map(|nonce| transfer_request(&alice, bob.address(), 1, nonce)).collect();
    let response = http.post(format!("{base}/txs")).json(&txs).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let results: Value = response.json().await.unwrap();
    assert!(results["results"].as_array().unwrap().iter().all(|r| r["status"] == "accepted"), "{results}");

    // ... and were charged whole: the client owes 80 and waits about 8 s, so even one more
    // transaction is refused now, with a JSON error that says when to come back.
    let response = http.post(format!("{base}/tx")).json(&transfer_request(&alice, bob.address(), 1, 100)).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "rate_limited", "{error}");
    let wait: f64 = error["message"]
        .as_str()
        .and_then(|m| m.split("retry in ").nth(1))
        .and_then(|m| m.split(' ').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {error}"));
    assert!(wait > 5.0, "the client should owe the rest of its request, not {wait} s: {error}");
    // A second large request is refused whole too: nothing of it is applied.
    let more: Vec<Value> = (100..120).map(|nonce| transfer_request(&alice, bob.address(), 1, nonce)).collect();
    let response = http.post(format!("{base}/txs")).json(&more).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    eventually(30, "the accepted transactions in the ledger", || async {
        let account: Value =
            http.get(format!("{base}/accounts/{}", alice.address())).send().await.ok()?.json().await.ok()?;
        (account["nonce"] == 100).then_some(())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn openapi_json_gives_address_and_hash_parameters_their_pattern() {
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let (node, http, base) = started(&node_config(dir.path(), &ledger.url, 1)).await;
    let openapi: Value = http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    let cases = [
        ("/accounts/{address}", "address", "^0x[0-9a-fA-F]{40}$"),
        ("/accounts/{address}/txs", "address", "^0x[0-9a-fA-F]{40}$"),
        ("/accounts/{address}/btc-deposit-address", "address", "^0x[0-9a-fA-F]{40}$"),
        ("/tx/{hash}", "hash", "^0x[0-9a-fA-F]{64}$"),
    ];
    for (path, name, pattern) in cases {
        let parameters = openapi["paths"][path]["get"]["parameters"].as_array().unwrap();
        let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(parameter["schema"]["pattern"], pattern, "{path}: {parameter}");
    }
    node.shutdown().await;
}

/// Who could fill the deposit book: anyone, asking for the addresses of made-up accounts. A new
/// account costs `new_deposit_address_cost` of the client's rate limit, so a client adds few
/// a second, while asking again for an account already in the book costs 1 and is answered.
#[tokio::test]
async fn a_new_account_s_deposit_address_costs_more_of_the_rate_limit_than_asking_again() {
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &ledger.url, 1);
    let secret = bitcoin::secp256k1::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let group_key =
        bitcoin::key::Keypair::from_secret_key(bitcoin::secp256k1::SECP256K1, &secret).x_only_public_key().0;
    config.network.btc_vault =
        Some(bridge::BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 100 });
    // A bucket of 120, refilling one a second: a new account costs 50, asking again 1.
    config.api.rate_limit_per_second = 1.0;
    config.api.rate_limit_burst = 120.0;
    config.api.new_deposit_address_cost = 50.0;
    let (node, http, base) = started(&config).await;
    let ask = |n: u64| {
        let (http, url) = (http.clone(), format!("{base}/accounts/{}/btc-deposit-address", wallet(n).address()));
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    // Two new accounts and one asked again take 101 of the 120.
    assert_eq!(ask(1).await.0, StatusCode::OK);
    assert_eq!(ask(1).await.0, StatusCode::OK, "asking again costs one");
    assert_eq!(ask(2).await.0, StatusCode::OK);
    // A third new one finds fewer than 50 left: refused, and not remembered.
    let (status, error) = ask(3).await;
    assert_eq!((status, error["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")), "{error}");
    assert!(!node.store.is_btc_deposit_account(&wallet(3).address()).await.unwrap());
    // An account already in the book is still answered.
    let (status, body) = ask(2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = chains::bitcoin::deposit_address(group_key, bridge::BtcNetwork::Regtest, &wallet(2).address());
    assert_eq!(body["address"], expected.to_string());
    node.shutdown().await;
}
