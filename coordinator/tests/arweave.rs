//! The coordinator publishing to Arweave (arlocal): transactions in over HTTP, batches out to
//! Arweave, and a takeover that reads them back from the gateway alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use chains::arweave::arlocal::Arlocal;
use chains::arweave::{ArweaveWallet, RetryPolicy};
use chains::da::{ArweaveDa, ArweaveDaConfig};
use common::*;
use coordinator::config::DaKind;
use coordinator::node::Node;
use coordinator::store::Store;
use coordinator::takeover::recover_from_da;
use serde_json::Value;

const MINTED: u128 = 1_000_000_000_000_000;

/// The value of an unlabelled gauge in a Prometheus scrape.
fn gauge(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

#[tokio::test]
async fn batches_go_to_arweave_and_a_takeover_reads_them_back() {
    for ledger in ledgers().await {
        let arlocal = Arlocal::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwk = dir.path().join("arweave.json");
        let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
        assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
        std::fs::write(&jwk, &generated.stdout).unwrap();
        let ar_wallet = ArweaveWallet::load(&jwk).unwrap();
        arlocal.mint(ar_wallet.address(), MINTED).await.unwrap();

        let mut config = node_config(dir.path(), &ledger.url, 2);
        config.da.kind = DaKind::Arweave;
        config.da.gateway = Some(arlocal.url().to_owned());
        config.da.wallet = Some(jwk.clone());
        config.da.balance_poll_s = 1;
        config.da.spend_window_h = 1;
        let node = Node::start(&config).await.unwrap();
        let base = node.url();
        let http = reqwest::Client::new();
        let info: Value = http.get(format!("{base}/info")).send().await.unwrap().json().await.unwrap();
        assert_eq!(info["da"]["kind"], "arweave");
        assert_eq!(info["da"]["owner"], ar_wallet.address());

        let mut last = String::new();
        for nonce in 0..3 {
            for n in [1, 2] {
                eventually(60, "the deposits", || async {
                    let request = transfer_request(&wallet(n), wallet(3).address(), 5, nonce);
                    let response = http.post(format!("{base}/tx")).json(&request).send().await.unwrap();
                    let status = response.status();
                    let body: Value = response.json().await.unwrap();
                    // Before the dev deposit is credited the transfer is an overdraft; retry.
                    (status == reqwest::StatusCode::OK).then(|| body["hash"].as_str().unwrap().to_owned())
                })
                .await
                .clone_into(&mut last);
            }
            // Let this round seal into a batch of its own.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let published = eventually(120, "publication to Arweave", || async {
            let tx: Value = http.get(format!("{base}/tx/{last}")).send().await.unwrap().json().await.unwrap();
            (tx["status"] == "published").then_some(tx)
        })
        .await;
        let locator = published["locator"].as_str().unwrap();
        assert_eq!(locator.len(), 43, "an Arweave transaction id: {locator}");
        // Every posting paid the gateway's price from the wallet, and the coordinator exports
        // what is left (and, once it has seen spending, how long that lasts).
        let gateway = chains::arweave::Gateway::new(arlocal.url(), RetryPolicy::default()).unwrap();
        eventually(60, "the wallet's balance in /metrics", || async {
            let left = gateway.wallet_balance_winston(ar_wallet.address()).await.unwrap();
            let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            let exported = gauge(&metrics, "bridge_coordinator_arweave_balance_winston")?;
            assert!(left < MINTED, "publishing paid nothing");
            (exported == left as f64 && gauge(&metrics, "bridge_coordinator_arweave_days_left").is_some()).then_some(())
        })
        .await;
        let info: Value = http.get(format!("{base}/info")).send().await.unwrap().json().await.unwrap();
        let sealed = info["latest_batch"]["number"].as_u64().unwrap();
        assert!(sealed >= 2, "{info}");
        node.shutdown().await;

        // Confirm, then rebuild from the gateway alone.
        arlocal.mine(2).await.unwrap();
        let follower = ArweaveDa::follower(
            gateway,
            ArweaveDaConfig::new(&params().name, params().coordinator_key, ar_wallet.address()),
        );
        let check_dir = tempfile::tempdir().unwrap();
        let check = Store::open(&format!("sqlite://{}", check_dir.path().join("check.db").display())).await.unwrap();
        let rebuilt = recover_from_da(&follower, &check, params(), None, |_, _| {}).await.unwrap();
        let info_root = info["latest_batch"]["state_root"].as_str().unwrap();
        let original = Store::open(&ledger.url).await.unwrap();
        let sealed_now = original.publication().await.unwrap();
        assert_eq!(sealed_now.sealed, sealed_now.published, "shutdown published everything");
        assert_eq!(rebuilt.batches, sealed_now.sealed);
        assert_eq!(rebuilt.txs, 2 + 6, "two deposits and six transfers");
        let last_batch = original.batch(sealed_now.sealed).await.unwrap().unwrap();
        assert_eq!(rebuilt.state_root, last_batch.batch.header.post_state_root);
        if rebuilt.batches == sealed {
            assert_eq!(format!("0x{}", hex::encode(rebuilt.state_root)), info_root);
        }
        let last_hash = bridge::serde_hex::parse_fixed::<32>(&last).unwrap();
        let found = check.tx_by_hash(&last_hash).await.unwrap().unwrap();
        assert!(found.locator.is_some_and(|l| l.len() == 43));
    }
}
