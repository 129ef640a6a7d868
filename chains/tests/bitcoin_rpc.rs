//! `chains::bitcoin::CoreRpc` against the workspace's regtest node (Bitcoin Core's kernel), and
//! against things that are not a working node: a garbage server, a closed port, wrong credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::secp256k1::{SecretKey, rand};
use bitcoin::{Address, Network};
use chains::bitcoin::{CoreRpc, RpcError, rpc::METHOD_NOT_FOUND};
use regtest::{RegtestConfig, RegtestNode};
use serde_json::{Value, json};

fn address() -> Address {
    let secp = Secp256k1::new();
    let keypair = Keypair::from_secret_key(&secp, &SecretKey::new(&mut rand::thread_rng()));
    Address::p2tr(&secp, keypair.x_only_public_key().0, None, Network::Regtest)
}

async fn node() -> (RegtestNode, CoreRpc) {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    (node, rpc)
}

#[tokio::test]
async fn reads_the_chain_of_the_regtest_node() {
    let (_node, rpc) = node().await;
    let info = rpc.blockchain_info().await.unwrap();
    assert_eq!((info.chain.as_str(), info.blocks), ("regtest", 0));
    let mined = rpc.generate_to_address(2, &address()).await.unwrap();
    assert_eq!(rpc.block_count().await.unwrap(), 2);
    assert_eq!(rpc.block_hash(2).await.unwrap(), mined[1]);
    let header = rpc.header_info(&mined[1]).await.unwrap();
    assert_eq!((header.height, header.confirmations, header.previous), (2, 1, Some(mined[0])));
    let block = rpc.block(&mined[1]).await.unwrap();
    let coinbase = &block.txdata[0];
    let txid = coinbase.compute_txid();
    assert_eq!(rpc.raw_transaction(&txid, None).await.unwrap(), *coinbase);
    assert_eq!(rpc.raw_transaction(&txid, Some(&mined[1])).await.unwrap(), *coinbase);
    let out = rpc.tx_out(&bitcoin::OutPoint { txid, vout: 0 }, true).await.unwrap().unwrap();
    assert_eq!(out.value, bitcoin::Amount::from_int_btc(50));
    assert!(out.coinbase);
    let absent = bitcoin::OutPoint { txid, vout: 5 };
    assert_eq!(rpc.tx_out(&absent, true).await.unwrap(), None, "Core's null result");
    assert_eq!(rpc.raw_mempool().await.unwrap(), vec![]);
    assert_eq!(rpc.estimate_smart_fee(6).await.unwrap(), Some(1_000));
    assert_eq!(rpc.submit_block(&block).await.unwrap().as_deref(), Some("duplicate"));
}

#[tokio::test]
async fn an_unknown_method_is_core_method_not_found() {
    let (_node, rpc) = node().await;
    let err = rpc.call::<Value>("getwalletinfo", json!([])).await.unwrap_err();
    assert_eq!(err.code(), Some(METHOD_NOT_FOUND), "{err}");
    assert!(err.to_string().contains("Method not found"), "{err}");
}

#[tokio::test]
async fn wrong_credentials_are_reported_as_such() {
    let (node, _) = node().await;
    let rpc = CoreRpc::new(node.url(), node.user(), "not-the-password");
    let err = rpc.block_count().await.unwrap_err();
    assert!(matches!(err, RpcError::Unauthorized { status: 401, .. }), "{err}");
}

#[tokio::test]
async fn a_node_that_is_down_is_unreachable() {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = CoreRpc::new(url, "u", "p").block_count().await.unwrap_err();
    assert!(matches!(err, RpcError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// A server answering every request with `body`.
async fn garbage_server(body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || async move { body });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn malformed_answers_are_reported_as_malformed() {
    let not_json = garbage_server("<html>hello</html>").await;
    let err = CoreRpc::new(not_json, "u", "p").block_count().await.unwrap_err();
    assert!(matches!(err, RpcError::Malformed { .. }), "{err}");

    let wrong_shape = garbage_server(r#"{"result":"tall","error":null,"id":"bridge"}"#).await;
    let err = CoreRpc::new(wrong_shape, "u", "p").block_count().await.unwrap_err();
    assert!(matches!(&err, RpcError::Malformed { method, .. } if method == "getblockcount"), "{err}");

    let no_result = garbage_server(r#"{"id":"bridge"}"#).await;
    let outpoint = bitcoin::OutPoint::null();
    let err = CoreRpc::new(no_result, "u", "p").tx_out(&outpoint, true).await.unwrap_err();
    assert!(matches!(err, RpcError::Malformed { .. }), "not read as a spent output: {err}");

    let bad_block = garbage_server(r#"{"result":"00ff","error":null,"id":"bridge"}"#).await;
    let hash = "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206".parse().unwrap();
    let err = CoreRpc::new(bad_block, "u", "p").block(&hash).await.unwrap_err();
    assert!(matches!(err, RpcError::Malformed { .. }), "{err}");
}
