//! The coordinator and a confirmer together: thousands of transfers in over the coordinator's
//! HTTP API, batches out to a directory DA, and a confirmer that replays every one of them and
//! agrees with every root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::{AssetId, StateKey};
use chains::da::DirDa;
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::api::request::TxRequest;
use coordinator::node::Node;

const WALLETS: u64 = 20;
const ROUNDS: u64 = 100;
const FUNDS: u128 = 1_000_000;

#[tokio::test]
async fn a_confirmer_agrees_with_the_coordinator_on_thousands_of_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let p = params();
    let deposits: Vec<serde_json::Value> = (0..WALLETS)
        .map(|n| serde_json::json!({ "account": wallet(n).address(), "asset": "eth:ETH", "amount": FUNDS.to_string() }))
        .collect();
    std::fs::write(dir.path().join("deposits.json"), serde_json::to_vec(&deposits).unwrap()).unwrap();
    let mut config = coordinator_config(dir.path(), &p);
    config.batch.max_txs = 500;
    config.dev.deposits = Some(dir.path().join("deposits.json"));
    let node = Node::start(&config).await.unwrap();
    let http = reqwest::Client::new();
    let base = node.url();

    // Wait for the deposits, then send every round of transfers as one POST /txs.
    let last = wallet(WALLETS - 1).address();
    for _ in 0..600 {
        let account: serde_json::Value =
            http.get(format!("{base}/accounts/{last}")).send().await.unwrap().json().await.unwrap();
        if account["nonce"] == 0 && !account["balances"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let domain = bridge::eip712::Domain::new(&p);
    for round in 0..ROUNDS {
        let requests: Vec<TxRequest> = (0..WALLETS)
            .map(|n| {
                let tx = bridge::UserTx::Transfer(bridge::Transfer {
                    from: wallet(n).address(),
                    to: wallet((n + 1) % WALLETS).address(),
                    asset: AssetId::Eth,
                    amount: bridge::Amount(u128::from(n + 1)),
                    fee: bridge::Amount(0),
                    nonce: round,
                });
                TxRequest::from_signed(&wallet(n).sign(tx, &domain))
            })
            .collect();
        let results: serde_json::Value =
            http.post(format!("{base}/txs")).json(&requests).send().await.unwrap().json().await.unwrap();
        for result in results["results"].as_array().unwrap() {
            assert_eq!(result["status"], "accepted", "{result}");
        }
    }
    let store = node.store.clone();
    node.shutdown().await;
    let sealed = store.batches().await.unwrap();
    assert!(sealed.iter().all(|b| b.locator.is_some()), "everything is published at shutdown");
    let total: usize = sealed.iter().map(|b| b.batch.body.len()).sum();
    assert_eq!(total as u64, WALLETS + WALLETS * ROUNDS);

    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    let confirmer_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("confirmer.db").display())).await.unwrap();
    let mut confirmer =
        Follower::open(Arc::new(da), confirmer_store, p.clone(), DepositVerifiers::none()).await.unwrap();
    catch_up(&mut confirmer).await;
    let status = confirmer.status();
    assert_eq!(status.replayed, sealed.len() as u64);
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    let last_batch = &sealed.last().unwrap().batch;
    assert_eq!(confirmer.state().state_root(), last_batch.header.post_state_root);
    // Each wallet sent n + 1 per round and received n per round (n + 1 from wallet n - 1).
    for n in 0..WALLETS {
        let received = if n == 0 { WALLETS } else { n };
        let expected = FUNDS - u128::from(ROUNDS) * u128::from(n + 1) + u128::from(ROUNDS) * u128::from(received);
        assert_eq!(confirmer.state().balance(&wallet(n).address(), &AssetId::Eth).units(), expected, "wallet {n}");
        let proof = confirmer.state().prove(&StateKey::Account(wallet(n).address())).unwrap();
        proof.verify(last_batch.header.post_state_root).unwrap();
    }
}
