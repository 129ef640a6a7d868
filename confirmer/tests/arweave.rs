//! The confirmer following Arweave (arlocal): batches from another wallet are ignored, not
//! alarmed; two batches signed with one number are an equivocation alarm whose evidence checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::Path;
use std::sync::Arc;

use bridge::SignedBatch;
use bridge::codec::{CODEC_NAME, encode_batch};
use chains::arweave::arlocal::Arlocal;
use chains::arweave::{ArweaveWallet, RetryPolicy, Tag, Transaction};
use chains::da::{ArweaveDa, ArweaveDaConfig, DataAvailability};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::deposits::DepositVerifiers;
use confirmer::evidence::Evidence;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

async fn funded_wallet(arlocal: &Arlocal, dir: &Path, name: &str) -> ArweaveWallet {
    let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &generated.stdout).unwrap();
    let wallet = ArweaveWallet::load(&path).unwrap();
    arlocal.mint(wallet.address(), 1_000_000_000_000_000).await.unwrap();
    wallet
}

/// Posts `batch` under `number` from `wallet` with the protocol's tags, bypassing every check a
/// publisher makes: what a stranger, or a cheating coordinator, can do.
async fn post_raw(arlocal: &Arlocal, wallet: &ArweaveWallet, batch: &SignedBatch, number: u64, prev_tx: &str) {
    let tags = vec![
        Tag::new("App-Name", "settlement-bridge"),
        Tag::new("App-Version", "1"),
        Tag::new("Network", &params().name),
        Tag::new("Batch-Number", number.to_string()),
        Tag::new("Prev-Hash", hex::encode(batch.header.prev_hash)),
        Tag::new("State-Root", hex::encode(batch.header.post_state_root)),
        Tag::new("Codec", CODEC_NAME),
        Tag::new("Content-Type", "application/octet-stream"),
        Tag::new("Prev-Tx", prev_tx),
    ];
    let gateway = arlocal.gateway().unwrap();
    let data = encode_batch(batch);
    let anchor = gateway.tx_anchor().await.unwrap();
    let reward = gateway.price(data.len() as u64).await.unwrap();
    let mut tx = Transaction::with_data(data, tags, anchor, reward, wallet.owner().to_vec());
    tx.sign(wallet).unwrap();
    gateway.upload(&tx).await.unwrap();
}

#[tokio::test]
async fn another_wallet_is_ignored_and_an_equivocation_is_an_alarm() {
    let arlocal = Arlocal::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let coordinator = funded_wallet(&arlocal, dir.path(), "coordinator.json").await;
    let stranger = funded_wallet(&arlocal, dir.path(), "stranger.json").await;
    let config = ArweaveDaConfig::new(&params().name, params().coordinator_key, coordinator.address());
    let publisher = ArweaveDa::publisher(
        arlocal.gateway().unwrap(),
        config.clone(),
        ArweaveWallet::load(&dir.path().join("coordinator.json")).unwrap(),
        &dir.path().join("journal"),
    )
    .unwrap();
    let honest = history(4, 10);
    publisher.publish(&honest[0]).await.unwrap();
    let two = publisher.publish(&honest[1]).await.unwrap();
    // A stranger posts a perfectly signed copy of batch 3 from its own wallet, first.
    post_raw(&arlocal, &stranger, &honest[2], 3, &two.locator).await;
    arlocal.mine(2).await.unwrap();

    let gateway = chains::arweave::Gateway::new(arlocal.url(), RetryPolicy::default()).unwrap();
    let follower_da = ArweaveDa::follower(gateway, config);
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("c.db").display())).await.unwrap();
    let mut confirmer = Follower::open(Arc::new(follower_da), store, params(), DepositVerifiers::none()).await.unwrap();
    for _ in 0..3 {
        confirmer.step(16).await.unwrap();
    }
    assert_eq!(confirmer.status().replayed, 2, "the stranger's batch 3 is not the coordinator's");
    assert!(confirmer.status().alarms.is_empty(), "another wallet's posting is no alarm");

    // The coordinator publishes batch 3, then signs two different batches numbered 4.
    let three = publisher.publish(&honest[2]).await.unwrap();
    let mut rival = honest[3].clone();
    rival.header.timestamp += 1;
    let rival = resign(rival);
    post_raw(&arlocal, &coordinator, &rival, 4, &three.locator).await;
    post_raw(&arlocal, &coordinator, &honest[3], 4, &three.locator).await;
    arlocal.mine(2).await.unwrap();

    let mut alarm = None;
    for _ in 0..5 {
        if let Some(raised) = confirmer.step(16).await.unwrap().alarm {
            alarm = Some(raised);
            break;
        }
    }
    let alarm = alarm.expect("an equivocation raises an alarm");
    assert_eq!((alarm.kind, alarm.number), (AlarmKind::Equivocation, 4));
    assert_eq!(confirmer.status().replayed, 3);
    let (_, evidence) = confirmer.store().alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains("equivocated"), "{explanation}");
    let _ = publisher.latest().await;
}
