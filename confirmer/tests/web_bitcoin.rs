//! A Bitcoin withdrawal's stages past hard-final on the confirmer's web app, over HTTP, from
//! what the confirmer itself verified: the regtest node (Bitcoin Core's kernel), the
//! coordinator planning the payout, three watchmen with shares from a real DKG over libp2p on
//! 127.0.0.1 signing and broadcasting it, and a confirmer (its own replay and its own view of
//! the node) serving the app. The stages move in turn: planned with "signed" not reached; the
//! group's transaction in the mempool, "signed" with its txid and 0 confirmations; mined,
//! "paid" with the same txid and 1, then 3 confirmations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::{AssetId, UserTx, Withdraw};
use common::bitcoin_bridge::{BitcoinBridge, bitcoin_follower, deposit_and_withdraw, recipient, start_watchman, until};
use common::*;
use confirmer::follower::Follower;
use confirmer::watchman::PayoutAction;
use confirmer::web::{WebConfig, WebContext, router};
use serde_json::Value;
use tokio::sync::RwLock;
use tss::GroupKey;

/// The stages the web app reports for `hash`, after one more replay turn of its confirmer.
async fn stages_of(base: &str, follower: &RwLock<Follower>, hash: &str) -> Value {
    follower.write().await.step(64).await.unwrap();
    let answer = reqwest::get(format!("{base}/web/v1/tx/{hash}")).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

fn stage<'a>(tx: &'a Value, name: &str) -> &'a Value {
    tx["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap_or_else(|| panic!("{name}: {tx}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitcoin_withdrawal_is_shown_signed_then_paid_from_what_the_confirmer_verified() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,libp2p=warn").with_test_writer().try_init();
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let BitcoinBridge { node: _bitcoin_node, rpc, miner, dir, params: p, vault: _, coordinator } =
        BitcoinBridge::start(group.internal_key).await;
    let to = recipient();
    deposit_and_withdraw(&coordinator, &rpc, &miner, &p, &to).await;
    // The withdrawal deposit_and_withdraw signed: its id is its EIP-712 digest.
    let withdraw = UserTx::Withdraw(Withdraw {
        from: wallet(1).address(),
        asset: AssetId::Btc,
        amount: bridge::Amount(2_000_000),
        fee: bridge::Amount(10_000),
        recipient: to.to_string(),
        nonce: 0,
    });
    let hash = format!("0x{}", hex::encode(withdraw.signing_hash(&bridge::eip712::Domain::new(&p))));

    // The confirmer serving the app: its own replay, its own view of the node.
    let follower = Arc::new(RwLock::new(bitcoin_follower(dir.path(), &p, &rpc, "web.db").await));
    let app = router(WebContext {
        follower: follower.clone(),
        coordinator: Some(coordinator.url()),
        http: reqwest::Client::new(),
        config: WebConfig::new("/", None, None).unwrap(),
        vault: None,
        btc_rpc: Some(rpc.clone()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let running = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, identity) in identities.iter().enumerate() {
        watchmen.push(start_watchman(i, identity, &running, &shares[i], (dir.path(), &p, &rpc), i == 0).await);
    }
    // Watchmen 1 and 2 (who never broadcast) replay to the hard-final plan.
    for w in [2, 1] {
        until("a hard-final payout plan", async || {
            watchmen[w].step(64).await.unwrap();
            watchmen[w].book().owing_from(1).into_iter().find(|(_, s)| !s.btc_plans.is_empty())
        })
        .await;
    }

    // Planned: the confirmer finds the plan in its own hard-final replay; the node has none of
    // its attempts, so "signed" is not reached.
    let planned = until("the plan on the web app", async || {
        let tx = stages_of(&base, &follower, &hash).await;
        let detail = stage(&tx, "signed")["detail"].as_str().unwrap_or_default().to_owned();
        detail.contains("none of its attempts is on the node").then_some(tx)
    })
    .await;
    assert_eq!(stage(&planned, "hard-final")["reached"], true, "{planned}");
    assert_eq!(stage(&planned, "signed")["reached"], false, "{planned}");
    assert_eq!(stage(&planned, "signed")["source"], "bitcoin");
    assert_eq!(stage(&planned, "paid")["reached"], false);
    assert_eq!(planned["l1_tx"], Value::Null);

    // Watchman 0 gets the payout signed and broadcasts it: in the mempool, "signed" (the
    // witnesses checked here as the group's), 0 confirmations, not yet paid.
    let broadcast = until("the payout to be broadcast", async || {
        let report = watchmen[0].step(64).await.unwrap();
        report.payouts.into_iter().find(|a| matches!(a, PayoutAction::Broadcast { .. }))
    })
    .await;
    let PayoutAction::Broadcast { attempt: 0, txid, .. } = broadcast else { panic!("{broadcast:?}") };
    let signed = stages_of(&base, &follower, &hash).await;
    assert_eq!(stage(&signed, "signed")["reached"], true, "{signed}");
    assert!(stage(&signed, "signed")["detail"].as_str().unwrap().contains(&txid), "{signed}");
    assert_eq!(stage(&signed, "paid")["reached"], false, "{signed}");
    assert_eq!(signed["l1_tx"], serde_json::json!({ "chain": "bitcoin", "hash": txid.as_str(), "confirmations": 0 }));

    // Mined: paid, with the same txid, 1 confirmation, then 3.
    for (blocks, confirmations) in [(1, 1), (2, 3)] {
        rpc.generate_to_address(blocks, &miner.address).await.unwrap();
        let paid = stages_of(&base, &follower, &hash).await;
        assert_eq!(stage(&paid, "paid")["reached"], true, "{paid}");
        assert_eq!(stage(&paid, "paid")["source"], "bitcoin");
        assert_eq!(
            paid["l1_tx"],
            serde_json::json!({ "chain": "bitcoin", "hash": txid.as_str(), "confirmations": confirmations }),
            "{paid}"
        );
        let reached: Vec<&str> = paid["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["reached"] == true)
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        assert_eq!(reached, ["accepted", "batched", "published", "hard-final", "signed", "paid"]);
    }
    coordinator.shutdown().await;
}
