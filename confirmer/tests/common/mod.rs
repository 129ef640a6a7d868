//! What the confirmer's tests share: the test network, an honest history of signed batches,
//! doctoring as a cheating coordinator would, and a store per test on SQLite and (when
//! `DATABASE_URL` is set) PostgreSQL.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bitcoin_bridge;
#[path = "../../../chains/tests/common/btc.rs"]
pub mod btc;
pub mod coordinator_api;
pub mod eth_group;
pub mod mesh;
pub mod withholding_gateway;
#[allow(unused_imports)] // not every test runs watchmen
pub use mesh::*;

use std::sync::Arc;

use bridge::batch::BatchBuilder;
use bridge::tx::{L1Ref, SystemTx, Transfer, UserTx};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, CoordinatorKey, Deposit, NetworkParams, SignedBatch,
    State, Tx, Wallet,
};
use chains::da::DirDa;
use confirmer::deposits::DepositVerifiers;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;

const COORDINATOR_SECRET: [u8; 32] = [0xc0; 32];

pub fn key() -> CoordinatorKey {
    CoordinatorKey::from_secret(&COORDINATOR_SECRET).unwrap()
}

/// A coordinator on network `p` with [`key`], its data in `dir`, its API on a free port without
/// a rate limit, sealing every 100 ms.
pub fn coordinator_config(dir: &std::path::Path, p: &NetworkParams) -> coordinator::config::Config {
    use coordinator::config::{Config, NetworkConfig};
    let key_file = dir.join("coordinator.key");
    std::fs::write(&key_file, hex::encode(COORDINATOR_SECRET)).unwrap();
    let mut config = Config { data_dir: dir.to_path_buf(), ..Config::default() };
    config.network = NetworkConfig::from(p);
    config.coordinator.key_file = Some(key_file);
    config.coordinator.create_key = false;
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.api.rate_limit_per_second = 0.0;
    config.batch.max_age_ms = 100;
    config
}

/// [`coordinator_config`] with the Ethereum deposit watcher following the vault on `rpc` at depth
/// 1, polling every 100 ms (as the watchman tests' anvil mines).
pub fn coordinator_watching(dir: &std::path::Path, p: &NetworkParams, rpc: String) -> coordinator::config::Config {
    let mut config = coordinator_config(dir, p);
    config.ethereum.rpc = Some(rpc);
    config.ethereum.depth = 1;
    config.ethereum.finality = chains::eth_finality::FinalityRule::Depth;
    config.ethereum.poll_ms = 100;
    config
}

pub fn params() -> NetworkParams {
    NetworkParams {
        name: "test-confirmer".into(),
        chain_id: 31_337,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key().public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}

pub fn wallet(n: u64) -> Wallet {
    let mut secret = [0x22; 32];
    secret[24..].copy_from_slice(&n.to_be_bytes());
    Wallet::from_secret(&secret).unwrap()
}

pub fn deposit(account: Address, amount: u128, n: u64) -> Tx {
    Tx::System(SystemTx::Deposit(Deposit {
        chain: Chain::Ethereum,
        l1_ref: L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: n as u32 },
        account,
        asset: AssetId::Eth,
        amount: Amount(amount),
        l1_height: 0,
    }))
}

pub fn transfer(from: &Wallet, to: Address, amount: u128, nonce: u64) -> Tx {
    let domain = bridge::eip712::Domain::new(&params());
    let tx = UserTx::Transfer(Transfer {
        from: from.address(),
        to,
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(0),
        nonce,
    });
    Tx::User(from.sign(tx, &domain).verify(&domain).unwrap())
}

/// An honest history: batch 1 funds ten wallets, batches 2.. move funds between them.
pub fn history(batches: u64, per_batch: u64) -> Vec<SignedBatch> {
    let mut state = State::genesis(params());
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(&state);
    for n in 0..10 {
        builder.apply(&mut state, deposit(wallet(n).address(), 1_000_000, n)).unwrap();
    }
    out.push(builder.seal(&mut state, 1, &key()).unwrap().batch);
    let mut nonces = [0u64; 10];
    for b in 1..batches {
        let mut builder = BatchBuilder::new(&state);
        for i in 0..per_batch {
            let from = ((b * per_batch + i) % 10) as usize;
            let to = wallet((from as u64 + 1) % 10).address();
            builder.apply(&mut state, transfer(&wallet(from as u64), to, 1 + i as u128, nonces[from])).unwrap();
            nonces[from] += 1;
        }
        out.push(builder.seal(&mut state, 1 + b, &key()).unwrap().batch);
    }
    out
}

/// A doctored batch re-signed by the coordinator key, its txs_root matching its body: what a
/// cheating coordinator publishes.
pub fn resign(mut batch: SignedBatch) -> SignedBatch {
    batch.header.txs_root = bridge::batch::txs_root(&batch.body);
    batch.signature = key().sign(&batch.header.hash());
    batch
}

pub struct Ledger {
    pub url: String,
    _dir: tempfile::TempDir,
    /// The Postgres schema to drop at the end.
    schema: Option<(String, String)>,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else { return };
        // A runtime of its own on a thread of its own: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(chains::db::drop_schema(&base, &schema));
        })
        .join();
    }
}

pub async fn stores() -> Vec<Ledger> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![Ledger {
        url: format!("sqlite://{}", dir.path().join("confirmer.db").display()),
        _dir: dir,
        schema: None,
    }];
    if let Ok(base) = std::env::var("DATABASE_URL") {
        let schema = format!(
            "c{}_{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        let url = chains::db::create_schema(&base, &schema).await.unwrap();
        out.push(Ledger { url, _dir: tempfile::tempdir().unwrap(), schema: Some((base, schema)) });
    }
    out
}

pub async fn follower(da: &DirDa, url: &str) -> Follower {
    let store = ConfirmerStore::open(url).await.unwrap();
    Follower::open(Arc::new(da.clone()), store, params(), DepositVerifiers::none()).await.unwrap()
}

pub async fn catch_up(follower: &mut Follower) {
    for _ in 0..100 {
        let step = follower.step(16).await.unwrap();
        if step.replayed == 0 {
            return;
        }
    }
    panic!("the follower never caught up");
}
