//! Ethereum deposits end to end: a vault on anvil, the coordinator's `[ethereum]` watcher, and
//! the deposit credited once it is deep enough.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

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
    deposit_eth(&setup, account, 5_000).await;
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

/// A restarted coordinator resumes its deposit scan after the mark its last run saved (every
/// deposit at or below it credited), not from `ethereum.from_block`: a restart costs the blocks
/// since, not the chain's history. On SQLite and PostgreSQL.
#[tokio::test]
async fn a_restarted_coordinator_resumes_its_deposit_scan_after_the_saved_mark() {
    for ledger in ledgers().await {
        let setup = Setup::new().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = node_config(dir.path(), &ledger.url, 0);
        let vault = from_alloy(setup.vault_address());
        config.network.eth_vault = vault;
        config.ethereum.rpc = Some(setup.anvil.url());
        config.ethereum.depth = 2;
        config.ethereum.finality = chains::eth_finality::FinalityRule::Depth;
        config.ethereum.poll_ms = 100;
        let deposit = async |account: bridge::Address, wei: u64| deposit_eth(&setup, account, wei).await;
        let mine = async |blocks: u64| {
            let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
        };
        let scope = coordinator::deposits::eth_scan_scope(&vault);
        let (alice, bob) = (bridge::Address([0xa1; 20]), bridge::Address([0xb0; 20]));

        let node = Node::start(&config).await.unwrap();
        let first = deposit(alice, 1_000).await;
        mine(2).await;
        eventually(60, "the first deposit", || async { (eth_balance(&node, alice).await == 1_000).then_some(()) })
            .await;
        node.shutdown().await;
        let store = coordinator::store::Store::open(&ledger.url).await.unwrap();
        let mark = store.scan_mark(&scope).await.unwrap().expect("the scan saved its place");
        assert!(mark.number >= first, "the mark {} is at or past the credited deposit's block {first}", mark.number);

        // While it is down: a deposit and a stretch of blocks. Restarted, it credits the new
        // deposit and not the old one again, and its mark moves on.
        let second = deposit(alice, 2_000).await;
        mine(300).await;
        let node = Node::start(&config).await.unwrap();
        eventually(60, "the second deposit", || async { (eth_balance(&node, alice).await == 3_000).then_some(()) })
            .await;
        node.shutdown().await;
        let later = store.scan_mark(&scope).await.unwrap().expect("still saved");
        assert!(later.number > second, "the mark {} moved past block {second}", later.number);

        // The restart starts after the mark: a deposit below a mark saved past it is not read
        // again (shown with a mark set by hand past bob's deposit; the watcher itself only saves
        // a mark once every deposit below it is credited).
        let skipped = deposit(bob, 500).await;
        mine(3).await;
        let block = setup.provider.get_block_by_number((skipped + 1).into()).await.unwrap().unwrap();
        let past = chains::ethereum::ScanMark { number: skipped + 1, hash: block.header.hash.0 };
        store.set_scan_mark(&scope, past).await.unwrap();
        let node = Node::start(&config).await.unwrap();
        let third = deposit(alice, 4_000).await;
        mine(2).await;
        eventually(60, "a deposit after the mark", || async {
            (eth_balance(&node, alice).await == 7_000).then_some(())
        })
        .await;
        assert_eq!(eth_balance(&node, bob).await, 0, "block {skipped}, below the mark, was not scanned again");
        // The mark is saved after the turn's deposits are credited: a moment after the balance.
        eventually(60, "the mark past the last deposit", || async {
            (store.scan_mark(&scope).await.unwrap().unwrap().number >= third).then_some(())
        })
        .await;
        node.shutdown().await;
    }
}
