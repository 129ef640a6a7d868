//! Test vectors of the Ethereum vault's range root (docs/vectors/eth-withdrawals-range.json):
//! the leaves of three batches, the range's tree root and each leaf's proof, and the v2
//! message the watchmen sign for it, so that another implementation (or the contract's tests)
//! can check itself against these bytes. `BRIDGE_WRITE_VECTORS=1` rewrites the file (only for a
//! deliberate, versioned format change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::PathBuf;

use bridge::eth_settlement::{VaultDomain, kinds, withdrawals_message};
use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree, verify_eth_proof};
use bridge::{Address, Amount};
use serde_json::{Value, json};

fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Batches 5..=8: batch 5 owes two leaves, 6 none, 7 one (an ERC-20), 8 one.
fn batches() -> Vec<EthWithdrawalTree> {
    let leaf = |batch: u64, index: u32, token: Address, recipient: u8, amount: u128| EthWithdrawal {
        batch,
        index,
        token,
        recipient: Address([recipient; 20]),
        amount: Amount(amount),
    };
    let token = Address([0xe2; 20]);
    vec![
        EthWithdrawalTree::new(vec![
            leaf(5, 0, Address::ZERO, 0x51, 1_000_000_000_000_000_000),
            leaf(5, 1, Address::ZERO, 0x52, 2),
        ]),
        EthWithdrawalTree::new(vec![]),
        EthWithdrawalTree::new(vec![leaf(7, 0, token, 0x71, 7_000_000)]),
        EthWithdrawalTree::new(vec![leaf(8, 0, Address::ZERO, 0x81, 8)]),
    ]
}

fn compute() -> Value {
    let domain = VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 2 };
    let (first, last) = (5u64, 8u64);
    let range = EthWithdrawalTree::concat(&batches());
    let leaves: Vec<Value> = range
        .withdrawals()
        .iter()
        .enumerate()
        .map(|(position, w)| {
            let proof = range.proof(position as u32).unwrap();
            assert!(verify_eth_proof(&proof, range.root(), w.leaf()));
            json!({
                "batch": w.batch,
                "index": w.index,
                "token": w.token.to_string(),
                "recipient": w.recipient.to_string(),
                "amount": w.amount.to_string(),
                "leaf": hex32(&w.leaf()),
                "proof": proof.iter().map(|p| hex32(p)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "kind_name": kinds::WITHDRAWALS_RANGE,
        "kind": hex32(&bridge::hashing::keccak256(kinds::WITHDRAWALS_RANGE.as_bytes())),
        "domain": { "chain_id": domain.chain_id, "vault": domain.vault.to_string(), "epoch": domain.epoch },
        "first": first,
        "last": last,
        "leaves": leaves,
        "root": hex32(&range.root()),
        "message": hex32(&withdrawals_message(&domain, first, last, range.root())),
    })
}

#[test]
fn range_vectors_match_the_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/eth-withdrawals-range.json");
    let computed = compute();
    if std::env::var_os("BRIDGE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).expect("docs/vectors/eth-withdrawals-range.json is missing");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, computed, "the range root's bytes changed: if deliberate, bump the message kind's version");
}
