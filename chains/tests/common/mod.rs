//! Shared by the `chains` integration tests: a network, its coordinator key, chained batches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // each test file uses a different part

pub mod btc;

use bridge::tx::{Deposit, L1Ref, SystemTx};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BatchBuilder, BtcNetwork, Chain, CoordinatorKey, NetworkParams, SignedBatch,
    State, Tx,
};

pub fn key() -> CoordinatorKey {
    CoordinatorKey::from_secret(&[0xc0; 32]).unwrap()
}

pub fn params(key: &CoordinatorKey) -> NetworkParams {
    NetworkParams {
        name: "chains-test".into(),
        chain_id: 1,
        eth_vault: Address([1; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    }
}

pub fn deposit(seed: u64) -> Tx {
    // Hash-like references and accounts, so the batch does not compress to nothing.
    let tx_hash = bridge::hashing::sha256(seed.to_be_bytes());
    let mut account = [0u8; 20];
    account.copy_from_slice(&bridge::hashing::sha256(tx_hash)[..20]);
    Tx::System(SystemTx::Deposit(Deposit {
        chain: Chain::Ethereum,
        l1_ref: L1Ref::Ethereum { tx_hash, log_in_tx: seed as u32 },
        account: Address(account),
        asset: AssetId::Eth,
        amount: Amount(u128::from(seed) + 1),
        l1_height: 0,
    }))
}

/// `count` chained batches of `per_batch` deposits each, and the state after them.
pub fn batches_of(count: u64, per_batch: u64, key: &CoordinatorKey) -> (Vec<SignedBatch>, State) {
    let mut state = State::genesis(params(key));
    let mut seed = 0;
    let batches = (1..=count)
        .map(|i| {
            let mut builder = BatchBuilder::new(&state);
            for _ in 0..per_batch {
                seed += 1;
                builder.apply(&mut state, deposit(seed)).unwrap();
            }
            builder.seal(&mut state, i, key).unwrap().batch
        })
        .collect();
    (batches, state)
}

/// `n` chained batches, each crediting one deposit.
pub fn batches(n: u64, key: &CoordinatorKey) -> Vec<SignedBatch> {
    batches_of(n, 1, key).0
}
