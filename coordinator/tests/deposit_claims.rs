//! A Bitcoin deposit the scan passed by, claimed by its payer over real HTTP against the regtest
//! node: an account paid its address (which anyone can derive) before asking the coordinator for
//! it, so the scan read that block before the account was in its book and will not read it again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::secp256k1::{Keypair, SECP256K1, SecretKey};
use bridge::{AssetId, BtcNetwork, BtcVaultParams};
use chains::bitcoin::CoreRpc;
use common::*;
use coordinator::deposits::btc_scan_scope;
use coordinator::node::Node;
use regtest::{RegtestConfig, RegtestNode};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The account's BTC balance as `GET /accounts/{a}` shows it.
async fn btc_balance(http: &reqwest::Client, base: &str, account: bridge::Address) -> u128 {
    let body: Value = http.get(format!("{base}/accounts/{account}")).send().await.unwrap().json().await.unwrap();
    body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == AssetId::Btc.to_string())
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

async fn claim(http: &reqwest::Client, base: &str, account: bridge::Address, body: Value) -> (StatusCode, Value) {
    let response = http.post(format!("{base}/accounts/{account}/btc-deposits")).json(&body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_paid_before_its_account_asked_is_credited_by_its_payer_s_claim_once() {
    let bitcoind = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(bitcoind.url(), bitcoind.user(), bitcoind.password());
    let keypair = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[0x42; 32]).unwrap());
    let group_key = keypair.x_only_public_key().0;
    let anyone = bitcoin::Address::p2tr(SECP256K1, group_key, None, bitcoin::Network::Regtest);
    let vault = BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 100 };

    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &format!("sqlite://{}", dir.path().join("ledger.db").display()), 0);
    config.network.btc_vault = Some(vault);
    config.network.assets.push(bridge::AssetConfig { asset: AssetId::Btc, min_fee: bridge::Amount(0) });
    config.bitcoin.rpc = Some(bitcoind.url());
    config.bitcoin.rpc_user = bitcoind.user().to_owned();
    config.bitcoin.rpc_password = bitcoind.password().to_owned();
    config.bitcoin.depth = 2;
    config.bitcoin.poll_ms = 50;
    let node = Node::start(&config).await.unwrap();
    let (http, base) = (reqwest::Client::new(), node.url());
    let scope = btc_scan_scope(&vault);

    // Alice pays her address, derived offline, from a coinbase; nobody has asked for it yet.
    let alice = wallet(1).address();
    let address = chains::bitcoin::deposit_address(group_key, BtcNetwork::Regtest, &alice);
    let paid_at = rpc.generate_to_address(1, &address).await.unwrap()[0];
    let height = rpc.block_count().await.unwrap();
    let block = rpc.block(&paid_at).await.unwrap();
    let coinbase = &block.txdata[0];
    let (txid, sat) = (coinbase.compute_txid(), coinbase.output[0].value.to_sat());
    let at = json!({ "txid": txid.to_string(), "height": height });

    // One confirmation of the two a deposit needs: not yet. (Asked for Bob: a claim puts its
    // account in the book, and Alice must stay out of it until the scan has passed her block.)
    let bob = wallet(2).address();
    let (status, body) = claim(&http, &base, bob, at.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "not_deep_yet");

    // The scan passes her block while she is not in its book, then she asks for her address.
    rpc.generate_to_address(100, &anyone).await.unwrap();
    eventually(60, "the scan past her block", || async {
        node.store.scan_mark(&scope).await.unwrap().filter(|mark| mark.number > height + 50).map(|_| ())
    })
    .await;
    let asked = http.get(format!("{base}/accounts/{alice}/btc-deposit-address")).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let tip = rpc.block_count().await.unwrap();
    rpc.generate_to_address(3, &anyone).await.unwrap();
    eventually(60, "the scan's next blocks", || async {
        node.store.scan_mark(&scope).await.unwrap().filter(|mark| mark.number > tip).map(|_| ())
    })
    .await;
    assert_eq!(btc_balance(&http, &base, alice).await, 0, "the scan read her block before she was in its book");

    // Her claim credits the deposit, once.
    let (status, body) = claim(&http, &base, alice, at.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputs"], json!([{ "vout": 0, "sat": sat, "outcome": "credited" }]));
    assert_eq!(btc_balance(&http, &base, alice).await, u128::from(sat));
    let (status, body) = claim(&http, &base, alice, at.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputs"][0]["outcome"], "already_credited");
    assert_eq!(btc_balance(&http, &base, alice).await, u128::from(sat), "a claim again credits nothing");

    // Bob cannot claim Alice's deposit, nor anyone a transaction that block does not hold.
    let (status, body) = claim(&http, &base, bob, at.clone()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("pays_no_address")), "{body}");
    assert_eq!(btc_balance(&http, &base, bob).await, 0);
    let (status, body) = claim(&http, &base, alice, json!({ "txid": txid.to_string(), "height": height + 1 })).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_in_block")), "{body}");
    // Bad input is named, and a height past any chain is only not deep yet.
    for (bad, code) in [
        (json!({ "txid": "00", "height": height }), "bad_txid"),
        (json!({ "txid": txid.to_string() }), "malformed_json"),
        (json!({ "txid": txid.to_string(), "height": height, "vout": 0 }), "malformed_json"),
    ] {
        let (status, body) = claim(&http, &base, alice, bad).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{body}");
    }
    let (status, body) = claim(&http, &base, alice, json!({ "txid": txid.to_string(), "height": u64::MAX })).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_deep_yet")), "{body}");
    assert_eq!(btc_balance(&http, &base, alice).await, u128::from(sat));

    // Carol's coinbase is deep enough but not mature: not yet, and no one credits it early.
    // Her claim put her in the book, so she is credited once it matures, by the scan or by her
    // claim again, whichever comes first; never twice.
    let carol = wallet(3).address();
    let address = chains::bitcoin::deposit_address(group_key, BtcNetwork::Regtest, &carol);
    let paid_at = rpc.generate_to_address(1, &address).await.unwrap()[0];
    let height = rpc.block_count().await.unwrap();
    let coinbase = rpc.block(&paid_at).await.unwrap().txdata[0].clone();
    let (txid, sat) = (coinbase.compute_txid(), coinbase.output[0].value.to_sat());
    let at = json!({ "txid": txid.to_string(), "height": height });
    rpc.generate_to_address(1, &anyone).await.unwrap();
    let (status, body) = claim(&http, &base, carol, at.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputs"], json!([{ "vout": 0, "sat": sat, "outcome": "not_yet" }]));
    assert_eq!(btc_balance(&http, &base, carol).await, 0);
    rpc.generate_to_address(100, &anyone).await.unwrap();
    let (status, body) = claim(&http, &base, carol, at).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcome = body["outputs"][0]["outcome"].as_str().unwrap().to_owned();
    assert!(["credited", "already_credited"].contains(&outcome.as_str()), "{body}");
    let tip = rpc.block_count().await.unwrap();
    eventually(60, "the scan at the tip", || async {
        node.store.scan_mark(&scope).await.unwrap().filter(|mark| mark.number + 1 >= tip).map(|_| ())
    })
    .await;
    assert_eq!(btc_balance(&http, &base, carol).await, u128::from(sat), "credited once");
    node.shutdown().await;
    bitcoind.shutdown().await;
}
