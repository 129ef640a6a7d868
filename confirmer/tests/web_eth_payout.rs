//! The explorer's Ethereum payout lookup against anvil: a paid leaf is found by windows from the
//! head, through a node that caps `eth_getLogs` ranges as hosted providers do; a leaf paid
//! before what the lookup reaches is still reported paid (the vault's bitmap), not unpaid; a
//! node that does not answer ends the lookup with an error, without narrowing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use alloy::providers::Provider;
use bridge::Amount;
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use chains::ethereum::VaultReader;
use confirmer::web::payout::{LeafOnChain, leaf};
use contracts::from_alloy;
use contracts::harness::Setup;

#[path = "../../chains/tests/common/lagging_eth.rs"]
mod lagging_eth;

async fn mine(setup: &Setup, blocks: u64) {
    let _: serde_json::Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

#[tokio::test]
async fn a_paid_leaf_is_found_through_a_range_capped_node_and_an_old_one_is_still_shown_paid() {
    let setup = Setup::new().await.unwrap();
    setup.deposit_eth(alloy::primitives::Address::ZERO, 1_000_000).await.unwrap();
    let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
        batch: 3,
        index: 0,
        token: bridge::Address::ZERO,
        recipient: bridge::Address([0x5e; 20]),
        amount: Amount(100),
    }]);
    let receipt = setup.pay(3, &tree, [0]).await.unwrap();
    let paid_hash = receipt.transaction_hash.to_string();
    mine(&setup, 3_000).await;

    let node = lagging_eth::LaggingNode::start(&setup.anvil.url(), 0).await;
    let vault = from_alloy(setup.vault_address());
    let reader = VaultReader::connect(&node.url, &Default::default(), vault).unwrap();
    let look = |batch: u64, index: u32| leaf(&reader, batch, index, bridge::Address::ZERO);
    let head = || async { setup.provider.get_block_number().await.unwrap() };
    let paid_block = receipt.block_number.unwrap();

    // No range covers batch 9; batch 3's leaf 1 was never paid; leaf 0 was, in one request.
    assert_eq!(look(9, 0).await.unwrap(), LeafOnChain { root: None, paid: None });
    let unpaid = look(3, 1).await.unwrap();
    assert!(unpaid.root.is_some() && unpaid.paid.is_none(), "{unpaid:?}");
    let found = look(3, 0).await.unwrap().paid.unwrap();
    assert_eq!((found.hash.as_str(), found.confirmations), (paid_hash.as_str(), head().await + 1 - paid_block));
    assert_eq!(node.log_requests(), (1, 0), "a recent payment costs one request");

    // A node refusing more than 1,000 blocks: 10,000, 5,000, 2,500 and 1,250 are refused, then
    // five windows of 625 reach the payment 3,000 blocks back.
    node.set_log_cap(Some(1_000));
    let found = look(3, 0).await.unwrap().paid.unwrap();
    assert_eq!(found.hash, paid_hash);
    assert_eq!(node.log_requests(), (1 + 5, 4));

    // A node refusing more than 100 blocks: seven refusals, then thirteen windows of 78 blocks,
    // the lookup's bound of 20 requests, end 1,014 blocks back; the payment is further, and the
    // leaf is reported paid by the vault's bitmap, not unpaid. (anvil mines 3,000 blocks in a
    // few seconds and 30,000 in minutes, so the bound is reached by narrowing, not by length.)
    node.set_log_cap(Some(100));
    let why = look(3, 0).await.unwrap_err();
    assert!(why.contains("has paid leaf 0 of batch 3") && why.contains("bitmap"), "{why}");
    assert_eq!(node.log_requests(), (6 + 13, 4 + 7));

    // A node whose log reads are down (HTTP 503) is not a refusal: the lookup says the node did
    // not answer after one request, instead of narrowing through twenty.
    node.set_log_cap(None);
    node.set_logs_down(true);
    let why = look(3, 0).await.unwrap_err();
    assert!(why.contains("did not answer"), "{why}");
    node.set_logs_down(false);
    assert_eq!(look(3, 0).await.unwrap().paid.unwrap().hash, paid_hash, "found again once the node is back");
}
