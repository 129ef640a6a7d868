//! Ethereum deposits end to end: a vault on anvil, the coordinator's `[ethereum]` watcher, and
//! the deposit credited once it is deep enough.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;
use common::*;
use contracts::from_alloy;
use contracts::harness::Setup;
use coordinator::node::Node;

async fn eth_balance(node: &Node, account: bridge::Address) -> u128 {
    let body: serde_json::Value =
        reqwest::get(format!("{}/accounts/{account}", node.url())).await.unwrap().json().await.unwrap();
    body["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["asset"] == "eth:ETH")
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn a_vault_deposit_is_credited_at_depth() {
    let setup = Setup::new().await.unwrap();
    let ledger = ledgers().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(dir.path(), &ledger.url, 0);
    config.network.eth_vault = from_alloy(setup.vault_address());
    config.ethereum.rpc = Some(setup.anvil.url());
    config.ethereum.depth = 2;
    config.ethereum.finality = chains::eth_finality::FinalityRule::Depth;
    config.ethereum.poll_ms = 100;
    let node = Node::start(&config).await.unwrap();

    let account = bridge::Address([0xd1; 20]);
    setup
        .vault
        .depositETH(EthAddress::from(account.0))
        .value(U256::from(5_000))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // Not before its depth.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(eth_balance(&node, account).await, 0);
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (2,)).await.unwrap();
    eventually(60, "the Ethereum deposit", || async { (eth_balance(&node, account).await == 5_000).then_some(()) })
        .await;
    // Once only, however long the watcher keeps polling.
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (5,)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(eth_balance(&node, account).await, 5_000);
    node.shutdown().await;
}
