//! Transaction ids are unique in the history, and the coordinator and a confirmer answer the
//! same for each over HTTP: two identical `BtcPayoutPlan { fee_rate: 1 }` in two batches have two
//! ids, each found in its own batch by both services (issue 25). The coordinator sequences the
//! batches itself, publishes them to a directory DA and serves `/tx`; the confirmer replays them
//! from that DA and serves its `/tx`. Both serve `/info` with the complete network parameters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::tx::{L1Ref, SystemTx, UserTx, Withdraw};
use bridge::{Amount, AssetConfig, AssetId, BtcVaultParams, Chain, Deposit, NetworkParams, Tx};
use chains::da::DirDa;
use common::coordinator_api::until;
use common::*;
use confirmer::api::{ApiContext, ConfirmationsView, router};
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::node::Node;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;
use serde_json::Value;
use tokio::sync::RwLock;

const REGTEST_P2TR: &str = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6";

fn btc_params() -> NetworkParams {
    // x(G): any valid x-only key serves; nothing is signed here.
    let group_key = hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
    let mut p = params();
    p.name = "test-tx-ids".into();
    p.btc_vault = Some(BtcVaultParams { group_key: group_key.try_into().unwrap(), min_fee_rate: 1, max_fee_rate: 100 });
    p.assets = vec![
        AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) },
        AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) },
    ];
    p.validate().unwrap();
    p
}

/// A Bitcoin deposit to `wallet(1)`, its withdrawal, and the same payout plan as every batch.
fn batch_txs(p: &NetworkParams, n: u64) -> Vec<Tx> {
    let bob = wallet(1);
    let domain = bridge::eip712::Domain::new(p);
    let withdraw = UserTx::Withdraw(Withdraw {
        from: bob.address(),
        asset: AssetId::Btc,
        amount: Amount(50_000),
        fee: Amount(1_000),
        recipient: REGTEST_P2TR.into(),
        nonce: n,
    });
    vec![
        Tx::System(SystemTx::Deposit(Deposit {
            chain: Chain::Bitcoin,
            l1_ref: L1Ref::Bitcoin { txid: [n as u8 + 1; 32], vout: 0 },
            account: bob.address(),
            asset: AssetId::Btc,
            amount: Amount(100_000),
            l1_height: 1,
        })),
        Tx::User(bob.sign(withdraw, &domain).verify(&domain).unwrap()),
        Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 1 }),
    ]
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn identical_system_txs_get_their_own_ids_and_both_services_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = btc_params();
    let config = coordinator_config(dir.path(), &p);

    // The coordinator's sequencer makes two batches, each ending in the same payout plan.
    let mut ids: Vec<(u64, [u8; 32])> = Vec::new();
    {
        let store = Store::open(&config.database_url()).await.unwrap();
        let mut sequencer = Sequencer::recover(store, p.clone(), key()).await.unwrap();
        for n in 0..2u64 {
            let outcomes = sequencer.submit(batch_txs(&p, n)).await.unwrap();
            for outcome in outcomes {
                ids.push((n + 1, outcome.unwrap().tx_hash));
            }
            sequencer.seal(1_000 + n).await.unwrap().unwrap();
        }
    }
    let plans = [ids[2].1, ids[5].1];
    assert_ne!(plans[0], plans[1], "two identical system transactions, two ids");

    // The coordinator serves them and publishes the batches.
    let node = Node::start(&config).await.unwrap();
    let coordinator = node.url();
    let last = format!("0x{}", hex::encode(plans[1]));
    until("batch 2 published", async || {
        let (_, tx) = get(&coordinator, &format!("/tx/{last}")).await;
        (tx["status"] == "published").then_some(())
    })
    .await;

    // A confirmer replays them from the DA and serves its own answers.
    let da = DirDa::open(config.da_dir(), p.coordinator_key).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = ConfirmerStore::open(&format!("sqlite://{}", store_dir.path().join("c.db").display())).await.unwrap();
    let mut follower = Follower::open(Arc::new(da), store, p.clone(), DepositVerifiers::none()).await.unwrap();
    catch_up(&mut follower).await;
    let follower = Arc::new(RwLock::new(follower));
    let confirmations = ConfirmationsView { ethereum_blocks: None, bitcoin_blocks: Some(6), arweave: None };
    let app = router(ApiContext {
        follower,
        metrics: None,
        coordinator: None,
        confirmations,
        http: reqwest::Client::new(),
        eth_finality: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let confirmer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    for (batch, id) in &ids {
        let path = format!("/tx/0x{}", hex::encode(id));
        let (status, on_coordinator) = get(&coordinator, &path).await;
        assert_eq!(status, 200, "{on_coordinator}");
        let (status, on_confirmer) = get(&confirmer, &path).await;
        assert_eq!(status, 200, "{on_confirmer}");
        assert_eq!(on_coordinator["batch"], *batch, "{on_coordinator}");
        assert_eq!(on_confirmer["batch"], *batch, "{on_confirmer}");
        assert_eq!(on_coordinator["hash"], on_confirmer["hash"]);
    }
    // The retired version-1 hash of the plan (over the transaction alone) names nothing.
    let v1 = bridge::hashing::tagged_hash(
        "bridge/system-tx",
        &[&bridge::codec::to_bytes(&SystemTx::BtcPayoutPlan { fee_rate: 1 })],
    );
    for base in [&coordinator, &confirmer] {
        let (status, body) = get(base, &format!("/tx/0x{}", hex::encode(v1))).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("unknown_tx")), "{base}: {body}");
    }

    // Both serve the complete parameters, which hash to the genesis hash, and the vault's keys.
    let (_, coordinator_info) = get(&coordinator, "/info").await;
    let (status, confirmer_info) = get(&confirmer, "/info").await;
    assert_eq!(status, 200, "{confirmer_info}");
    for info in [&coordinator_info, &confirmer_info] {
        let served: NetworkParams = serde_json::from_value(info["params"].clone()).unwrap();
        assert_eq!(served, p);
        assert_eq!(info["genesis_hash"], format!("0x{}", hex::encode(served.genesis_hash())));
        let vault = p.btc_vault.unwrap();
        assert_eq!(info["btc_vault"]["group_key"], format!("0x{}", hex::encode(vault.group_key)));
        assert_eq!(info["btc_vault"]["output_key"], format!("0x{}", hex::encode(vault.output_key())));
        assert_ne!(info["btc_vault"]["group_key"], info["btc_vault"]["output_key"]);
        assert_eq!(info["btc_vault"]["min_fee_rate"], 1);
        assert_eq!(info["btc_vault"]["max_fee_rate"], 100);
        assert!(info["btc_vault"]["address"].as_str().unwrap().starts_with("bcrt1p"), "{info}");
    }
    assert_eq!(coordinator_info["confirmations"]["ethereum_blocks"], config.ethereum.depth);
    assert_eq!(coordinator_info["confirmations"]["bitcoin_blocks"], config.bitcoin.depth);
    assert_eq!(coordinator_info["confirmations"]["arweave"], config.da.confirmations);
    assert_eq!(confirmer_info["confirmations"]["bitcoin_blocks"], 6);
    assert!(confirmer_info["confirmations"]["ethereum_blocks"].is_null(), "no Ethereum node: nothing checked");
    node.shutdown().await;
}
