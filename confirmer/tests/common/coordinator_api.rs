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
