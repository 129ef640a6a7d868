//! The coordinator's API as the tests use it: balances, submitting, and waiting.

use std::time::Duration;

use bridge::AssetId;
use coordinator::api::request::TxRequest;
use coordinator::node::Node;

/// `account`'s balance of `asset` as the coordinator's API reports it.
pub async fn balance(node: &Node, account: bridge::Address, asset: AssetId) -> u128 {
    let body: serde_json::Value =
        reqwest::get(format!("{}/accounts/{account}", node.url())).await.unwrap().json().await.unwrap();
    body["balances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["asset"] == asset.to_string())
        .map_or(0, |b| b["amount"].as_str().unwrap().parse().unwrap())
}

/// Posts a signed user transaction to the coordinator's API and expects it accepted.
pub async fn submit(node: &Node, signed: &bridge::SignedUserTx) {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/tx", node.url()))
        .json(&TxRequest::from_signed(signed))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
}

/// Runs `step` until it finds something, at most 300 times 100 ms apart.
pub async fn until<T>(what: &str, mut step: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = step().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Signs and posts a withdrawal of `amount` of `asset` to `to` on Ethereum; returns its hash.
pub async fn withdraw(
    coordinator: &Node,
    p: &bridge::NetworkParams,
    from: &bridge::Wallet,
    asset: AssetId,
    amount: u128,
    to: alloy::primitives::Address,
    nonce: u64,
) -> [u8; 32] {
    let tx = bridge::UserTx::Withdraw(bridge::Withdraw {
        from: from.address(),
        asset,
        amount: bridge::Amount(amount),
        fee: bridge::Amount(0),
        recipient: contracts::from_alloy(to).to_string(),
        nonce,
    });
    let domain = bridge::eip712::Domain::new(p);
    let signed = from.sign(tx, &domain);
    submit(coordinator, &signed).await;
    signed.tx.signing_hash(&domain)
}

/// The batch the coordinator sealed `hash` into, once it has.
pub async fn batch_of(coordinator: &Node, hash: [u8; 32]) -> u64 {
    until("the withdrawal to be sealed", async || {
        let body: serde_json::Value =
            reqwest::get(format!("{}/tx/0x{}", coordinator.url(), hex::encode(hash))).await.ok()?.json().await.ok()?;
        body["batch"].as_u64()
    })
    .await
}

/// Every transaction sent to `vault` so far, and whether each succeeded (from anvil's receipts).
pub async fn vault_transactions(setup: &contracts::harness::Setup, vault: alloy::primitives::Address) -> Vec<bool> {
    use alloy::providers::Provider;
    let head = setup.provider.get_block_number().await.unwrap();
    let mut outcomes = Vec::new();
    for number in 0..=head {
        let Some(receipts) = setup.provider.get_block_receipts(number.into()).await.unwrap() else { continue };
        for receipt in receipts {
            if receipt.to == Some(vault) {
                outcomes.push(receipt.status());
            }
        }
    }
    outcomes
}
