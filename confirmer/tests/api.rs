//! The confirmer's API over real HTTP on loopback: status, accounts with proofs that check
//! against the replayed root, transactions, batches, alarms, and JSON errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::commitment::StateProof;
use chains::da::{DataAvailability, DirDa};
use common::*;
use confirmer::api::{ApiContext, router};
use serde_json::Value;
use tokio::sync::RwLock;

async fn get(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_api_serves_finality_proofs_and_clear_errors() {
    let batches = history(5, 20);
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path().join("da"), params().coordinator_key).unwrap();
    // Batch 5 is doctored: a wrong state root, re-signed.
    for batch in &batches[..4] {
        da.publish(batch).await.unwrap();
    }
    let mut bad = batches[4].clone();
    bad.header.post_state_root[0] ^= 1;
    da.publish(&resign(bad)).await.unwrap();

    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut confirmer = follower(&da, &url).await;
    catch_up(&mut confirmer).await;
    let follower = Arc::new(RwLock::new(confirmer));
    let app = router(ApiContext {
        follower: follower.clone(),
        metrics: None,
        coordinator: None,
        confirmations: Default::default(),
        http: reqwest::Client::new(),
        eth_finality: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = get(&base, "/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 4);
    assert_eq!(body["hard_final"], 0);
    assert_eq!(body["unverified"], "batch 1: unverified: deposit on eth");
    assert_eq!(body["behind_da"], 1, "batch 5 is on the DA but refused");
    assert_eq!(body["alarms"], 1);

    // An account's balances with proofs against the root of batch 4.
    let (status, account) = get(&base, &format!("/accounts/{}", wallet(3).address())).await;
    assert_eq!(status, 200, "{account}");
    let root = bridge::serde_hex::parse_fixed::<32>(account["state_root"].as_str().unwrap()).unwrap();
    assert_eq!(root, batches[3].header.post_state_root);
    assert_eq!(account["hard_final"], false);
    let proofs = account["proofs"].as_array().unwrap();
    assert_eq!(proofs.len(), 1, "one proof holds the account's nonce and every balance");
    let proof: StateProof = serde_json::from_value(proofs[0].clone()).unwrap();
    proof.verify(root).unwrap();
    let entry = bridge::state::AccountEntry::decode(proof.value.as_deref().unwrap()).unwrap();
    assert_eq!(account["nonce"], entry.nonce);
    let balances = account["balances"].as_array().unwrap();
    assert!(!balances.is_empty());
    for balance in balances {
        let asset: bridge::AssetId = balance["asset"].as_str().unwrap().parse().unwrap();
        assert_eq!(balance["amount"], entry.balance(&asset).to_string());
    }

    // A transaction of batch 2, and the batch itself.
    let hash = match &batches[1].body[0] {
        bridge::BatchTx::User(user) => user.tx.signing_hash(&bridge::eip712::Domain::new(&params())),
        other => panic!("expected a user tx, got {other:?}"),
    };
    let (status, tx) = get(&base, &format!("/tx/0x{}", hex::encode(hash))).await;
    assert_eq!((status, tx["batch"].as_u64()), (200, Some(2)), "{tx}");
    let (status, batch) = get(&base, "/batches/2").await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["hash"], format!("0x{}", hex::encode(batches[1].hash())));

    // The alarm, with evidence that checks.
    let (status, alarms) = get(&base, "/alarms").await;
    assert_eq!(status, 200);
    let alarm = &alarms.as_array().unwrap()[0];
    assert_eq!(alarm["alarm"]["kind"], "root_mismatch");
    let evidence: confirmer::evidence::Evidence = serde_json::from_value(alarm["evidence"].clone()).unwrap();
    evidence.check().unwrap();

    // Bad input: JSON errors with their own codes.
    for (path, status, code) in [
        ("/accounts/0x12", 400, "bad_address"),
        ("/tx/nothex", 400, "bad_hex"),
        (&format!("/tx/0x{}", "00".repeat(32)), 404, "unknown_tx"),
        ("/batches/x", 400, "bad_batch_number"),
        ("/batches/5", 404, "unknown_batch"),
        ("/nothing", 404, "not_found"),
    ] {
        let (got, body) = get(&base, path).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    let (status, openapi) = get(&base, "/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/status", "/accounts/{address}", "/tx/{hash}", "/batches/{number}", "/alarms"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is missing from /openapi.json");
    }
    let _ = da.latest().await.unwrap();
}
