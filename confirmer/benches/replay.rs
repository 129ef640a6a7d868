//! `cargo bench -p confirmer`: the confirmer's replay rate against the coordinator's sustained
//! rate, measured in the same run on the same transactions (DESIGN.md §6). The coordinator
//! path: its sequencer in process (signatures on all cores, apply, durable group commit,
//! sealing every 10,000) on SQLite. The confirmer path: from genesis, every batch fetched from
//! the directory DA (read, decode, coordinator signature), replayed (signatures on all cores,
//! apply, every root), and recorded in its own SQLite store. Goal: ≥ 1.5, so that a confirmer
//! catches up after downtime rather than merely keeping pace. The same transactions are also
//! sent to a coordinator over HTTP (`POST /txs` of 100, 8 in flight, its best path): what a
//! coordinator sustains as a service, the rate a confirmer must outrun in practice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use bridge::tx::{L1Ref, SystemTx, Transfer, UserTx};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, CoordinatorKey, Deposit, NetworkParams, SignedUserTx, Tx,
    Wallet,
};
use chains::da::{DataAvailability, DirDa};
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use coordinator::sequencer::Sequencer;
use coordinator::store::Store;
use rayon::prelude::*;

const ACCOUNTS: u64 = 2_000;
const TXS: usize = 60_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let key = CoordinatorKey::from_secret(&[0xc0; 32]).unwrap();
    let params = NetworkParams {
        name: "bench".into(),
        chain_id: 31_337,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    };
    eprintln!("signing {TXS} transfers from {ACCOUNTS} accounts…");
    let domain = bridge::eip712::Domain::new(&params);
    let wallets: Vec<Wallet> = (0..ACCOUNTS)
        .into_par_iter()
        .map(|n| Wallet::from_secret(&bridge::hashing::sha256(format!("bench/{n}"))).unwrap())
        .collect();
    let signed: Vec<SignedUserTx> = (0..TXS)
        .into_par_iter()
        .map(|i| {
            let wallet = &wallets[i % ACCOUNTS as usize];
            let tx = UserTx::Transfer(Transfer {
                from: wallet.address(),
                to: Address([0x5e; 20]),
                asset: AssetId::Eth,
                amount: Amount(1),
                fee: Amount(0),
                nonce: i as u64 / ACCOUNTS,
            });
            wallet.sign(tx, &domain)
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("coordinator.db").display())).await.unwrap();
    let mut sequencer = Sequencer::recover(store.clone(), params.clone(), key).await.unwrap();
    let funding: Vec<Tx> = wallets
        .iter()
        .enumerate()
        .map(|(n, w)| {
            Tx::System(SystemTx::Deposit(Deposit {
                chain: Chain::Ethereum,
                l1_ref: L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: n as u32 },
                account: w.address(),
                asset: AssetId::Eth,
                amount: Amount(1_000_000),
                l1_height: 0,
            }))
        })
        .collect();
    sequencer.submit(funding).await.unwrap();
    sequencer.seal(1).await.unwrap();
    eprintln!("coordinator: {TXS} transfers through the sequencer…");
    let driven = coordinator::throughput::drive(&mut sequencer, &signed, 10_000, 2).await.unwrap();
    sequencer.seal(3).await.unwrap();
    let coordinator_rate = TXS as f64 / driven.total.as_secs_f64();

    eprintln!("coordinator: the same {TXS} transfers over HTTP…");
    let http_rate = over_http(dir.path(), &params, &wallets, &signed).await;

    let da = DirDa::open(dir.path().join("da"), params.coordinator_key).unwrap();
    let batches = store.batches().await.unwrap();
    for stored in &batches {
        da.publish(&stored.batch).await.unwrap();
    }
    let total_txs: usize = batches.iter().map(|b| b.batch.body.len()).sum();

    eprintln!("confirmer: replaying {} batches ({total_txs} transactions) from genesis…", batches.len());
    let confirmer_store =
        ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("confirmer.db").display())).await.unwrap();
    let mut follower =
        Follower::open(Arc::new(da.clone()), confirmer_store, params, DepositVerifiers::none()).await.unwrap();
    let started = Instant::now();
    loop {
        if follower.step(64).await.unwrap().replayed == 0 {
            break;
        }
    }
    let replay_time = started.elapsed();
    assert_eq!(follower.status().replayed, batches.len() as u64);
    assert!(follower.status().alarms.is_empty());
    let replay_rate = total_txs as f64 / replay_time.as_secs_f64();
    let _ = da.latest().await;

    println!(
        "| confirmer benchmark ({} cores, {ACCOUNTS} accounts, {TXS} transfers) | figure | ratio |",
        rayon::current_num_threads()
    );
    println!("| --- | --- | --- |");
    println!(
        "| coordinator: sequencer in process, sealing every 10,000 (the reference) | {coordinator_rate:.0} tx/s | 1.00 |"
    );
    println!(
        "| coordinator: over HTTP, `POST /txs` of 100, 8 in flight, client on the same cores | {http_rate:.0} tx/s | {:.2} |",
        http_rate / coordinator_rate
    );
    println!(
        "| confirmer: fetch + check + replay + record, from genesis | {replay_rate:.0} tx/s ({} batches in {:.2} s) | {:.2} (goal ≥ 1.5) |",
        batches.len(),
        replay_time.as_secs_f64(),
        replay_rate / coordinator_rate
    );
    println!("| confirmer ÷ coordinator over HTTP | | {:.2} (goal ≥ 1.5) |", replay_rate / http_rate);
}

/// A coordinator serving HTTP in this process, its accounts funded by dev deposits, sent
/// `signed` as `POST /txs` of 100 from 8 lanes (each lane its own accounts, in nonce order).
/// Returns the accepted transactions per second.
async fn over_http(dir: &std::path::Path, params: &NetworkParams, wallets: &[Wallet], signed: &[SignedUserTx]) -> f64 {
    use coordinator::api::request::TxRequest;
    use coordinator::config::{Config, NetworkConfig};
    const LANES: usize = 8;
    const PER_REQUEST: usize = 100;
    let run = dir.join("http");
    std::fs::create_dir_all(&run).unwrap();
    let key_file = run.join("coordinator.key");
    std::fs::write(&key_file, hex::encode([0xc0; 32])).unwrap();
    let deposits: Vec<serde_json::Value> = wallets
        .iter()
        .map(|w| serde_json::json!({"account": w.address().to_string(), "asset": "eth:ETH", "amount": "1000000"}))
        .collect();
    let deposits_file = run.join("deposits.json");
    std::fs::write(&deposits_file, serde_json::to_vec(&deposits).unwrap()).unwrap();
    let mut config = Config { data_dir: run.clone(), ..Config::default() };
    config.network = NetworkConfig::from(params);
    config.coordinator.key_file = Some(key_file);
    config.coordinator.create_key = false;
    config.coordinator.database_url = Some(format!("sqlite://{}", run.join("ledger.db").display()));
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.rate_limit_per_second = 0.0;
    config.dev.deposits = Some(deposits_file);
    let node = coordinator::node::Node::start(&config).await.unwrap();
    let base = node.url();
    let http = reqwest::Client::new();
    let last = wallets.last().unwrap().address();
    loop {
        let body: serde_json::Value =
            http.get(format!("{base}/accounts/{last}")).send().await.unwrap().json().await.unwrap();
        if body["balances"].as_array().is_some_and(|b| !b.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Lane l carries accounts ≡ l (mod LANES); in index order, so each account's nonces ascend.
    let accounts = wallets.len();
    let lanes: Vec<Vec<Vec<TxRequest>>> = (0..LANES)
        .map(|lane| {
            let mine: Vec<TxRequest> = signed
                .iter()
                .enumerate()
                .filter(|(i, _)| (i % accounts) % LANES == lane)
                .map(|(_, tx)| TxRequest::from_signed(tx))
                .collect();
            mine.chunks(PER_REQUEST).map(<[TxRequest]>::to_vec).collect()
        })
        .collect();
    let started = Instant::now();
    let accepted = futures::future::join_all(lanes.into_iter().map(|requests| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let mut accepted = 0usize;
            for body in requests {
                let answer: serde_json::Value =
                    http.post(format!("{base}/txs")).json(&body).send().await.unwrap().json().await.unwrap();
                accepted += answer["results"].as_array().unwrap().iter().filter(|r| r["status"] == "accepted").count();
            }
            accepted
        }
    }))
    .await
    .into_iter()
    .sum::<usize>();
    let elapsed = started.elapsed();
    assert_eq!(accepted, signed.len(), "every transfer is accepted over HTTP too");
    node.shutdown().await;
    accepted as f64 / elapsed.as_secs_f64()
}
