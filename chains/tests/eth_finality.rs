//! Ethereum finality by the `finalized` tag, on anvil. Anvil serves the tag as the head minus
//! two epochs (`--slots-in-an-epoch`, 32 by default; 2 here, so `finalized = head - 4`). A
//! deposit is handed on by the watcher, and confirmed by the verifier, only once its block is
//! at or below that, even where the fallback depth (1) would already count it; a node that does
//! not serve the tag is counted by the depth, and the status says which rule was in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use bridge::Deposit;
use chains::deposit::{DepositCheck, DepositVerifier};
use chains::eth_finality::FinalityRule;
use chains::ethereum::{Confirmation, DepositWatcher, EthDepositVerifier, deposit_from_log};
use chains::http::Tls;
use contracts::harness::{Setup, signing_provider};
use contracts::{ANVIL_KEY_0, Anvil};
use serde_json::{Value, json};

/// Anvil's slots per epoch here: its finalized block trails the head by twice this.
const SLOTS: u64 = 2;
const FINALITY_LAG: u64 = 2 * SLOTS;
/// Smaller than the finality lag, so a deposit the depth would count is not yet final.
const FALLBACK_DEPTH: u64 = 1;
const RULE: Confirmation = Confirmation::Finalized { fallback_depth: FALLBACK_DEPTH };

async fn anvil_with_short_epochs() -> Setup {
    let anvil = Anvil::start(&["--slots-in-an-epoch", &SLOTS.to_string()]).await.unwrap();
    Setup::with_anvil(anvil).await.unwrap()
}

async fn mine(setup: &Setup, blocks: u64) {
    let _: Value = setup.provider.raw_request("anvil_mine".into(), (blocks,)).await.unwrap();
}

async fn deposit_eth(setup: &Setup, wei: u64) -> (u64, Deposit) {
    let provider = signing_provider(&setup.anvil.url(), ANVIL_KEY_0).unwrap();
    let receipt = contracts::Vault::new(setup.vault_address(), provider)
        .depositETH(Address::repeat_byte(0xcd))
        .value(U256::from(wei))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let height = receipt.block_number.unwrap();
    (height, deposit_from_log(&receipt.inner.logs()[0], 0, height).unwrap())
}

#[tokio::test]
async fn a_deposit_is_handed_on_and_confirmed_only_once_its_block_is_finalized() {
    let setup = anvil_with_short_epochs().await;
    mine(&setup, 10).await;
    let mut watcher = DepositWatcher::new(setup.provider.clone(), setup.vault_address(), RULE, 0);
    let verifier = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), RULE);

    let (height, deposit) = deposit_eth(&setup, 4242).await;
    // The fallback depth is reached and passed, the finalized block is not: nothing counts.
    for _ in 1..FINALITY_LAG {
        mine(&setup, 1).await;
        assert!(watcher.poll().await.unwrap().deposits.is_empty(), "credited before its block was finalized");
        assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::NotYetDeep);
        let status = watcher.finality().status();
        assert_eq!(status.in_force, Some(FinalityRule::Finalized));
        let head = setup.provider.get_block_number().await.unwrap();
        assert_eq!(status.finalized, Some(head - FINALITY_LAG), "anvil finalizes two epochs back");
        assert!(status.finalized < Some(height));
    }

    // One more block: anvil's finalized block is the deposit's.
    mine(&setup, 1).await;
    assert_eq!(watcher.poll().await.unwrap().deposits, vec![deposit.clone()]);
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::Confirmed);
    let status = verifier.finality().refresh().await;
    assert_eq!((status.configured, status.in_force), (FinalityRule::Finalized, Some(FinalityRule::Finalized)));
    assert_eq!((status.finalized, status.safe, status.error), (Some(height), Some(height), None));
    // Handed on once only.
    mine(&setup, 3).await;
    assert!(watcher.poll().await.unwrap().deposits.is_empty());
}

#[tokio::test]
async fn a_deposit_reorged_out_before_finality_is_never_handed_on() {
    let setup = anvil_with_short_epochs().await;
    mine(&setup, 10).await;
    let mut watcher = DepositWatcher::new(setup.provider.clone(), setup.vault_address(), RULE, 0);
    let (height, deposit) = deposit_eth(&setup, 5).await;
    mine(&setup, FALLBACK_DEPTH + 1).await;
    assert!(watcher.poll().await.unwrap().deposits.is_empty(), "deep enough for the depth, not finalized");
    // A reorg replaces the deposit's block and those on top (within the finality lag).
    let head = setup.provider.get_block_number().await.unwrap();
    let depth = head - height + 1;
    let _: Value = setup.provider.raw_request("anvil_reorg".into(), (depth, Vec::<Value>::new())).await.unwrap();
    mine(&setup, FINALITY_LAG + 2).await;
    let scanned = watcher.poll().await.unwrap();
    assert!(scanned.deposits.is_empty(), "a deposit reorged out before finality was credited");
    let verifier = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), RULE);
    assert!(
        matches!(verifier.check(&deposit).await.unwrap(), DepositCheck::NotOnL1 { .. }),
        "the verifier calls it absent once the node finalized past its block"
    );
}

/// A JSON-RPC proxy in front of anvil that does not serve the `finalized` tag (as a chain
/// without a beacon chain answers).
async fn node_without_the_finalized_tag(upstream: String) -> String {
    async fn answer(State(upstream): State<Arc<(String, reqwest::Client)>>, Json(request): Json<Value>) -> Json<Value> {
        if request["method"] == "eth_getBlockByNumber" && request["params"][0] == "finalized" {
            return Json(
                json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32602, "message": "unknown block tag"}}),
            );
        }
        let (url, client) = &*upstream;
        Json(client.post(url).json(&request).send().await.unwrap().json().await.unwrap())
    }
    let app = axum::Router::new().route("/", post(answer)).with_state(Arc::new((upstream, reqwest::Client::new())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_node_without_the_finalized_tag_is_counted_by_the_fallback_depth_and_the_status_says_so() {
    let setup = anvil_with_short_epochs().await;
    mine(&setup, 10).await;
    let url = node_without_the_finalized_tag(setup.anvil.url()).await;
    let vault = contracts::from_alloy(setup.vault_address());
    let verifier = EthDepositVerifier::connect(&url, &Tls::default(), vault, RULE).unwrap();
    let (_, deposit) = deposit_eth(&setup, 9).await;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::NotYetDeep);
    mine(&setup, FALLBACK_DEPTH).await;
    assert_eq!(verifier.check(&deposit).await.unwrap(), DepositCheck::Confirmed, "by the depth");
    let status = verifier.finality().refresh().await;
    assert_eq!((status.configured, status.in_force), (FinalityRule::Finalized, Some(FinalityRule::Depth)));
    assert_eq!(status.finalized, None);

    // Configured for the depth, the tag is not even asked for, on a node that serves it.
    let by_depth = EthDepositVerifier::new(setup.provider.clone(), setup.vault_address(), Confirmation::Depth(1));
    assert_eq!(by_depth.check(&deposit).await.unwrap(), DepositCheck::Confirmed);
    let status = by_depth.finality().refresh().await;
    assert_eq!(
        (status.configured, status.in_force, status.finalized),
        (FinalityRule::Depth, Some(FinalityRule::Depth), None)
    );
}
