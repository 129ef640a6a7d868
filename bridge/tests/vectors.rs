//! The protocol's test vectors (docs/vectors/bridge-v2.json): fixed inputs and the bytes and
//! hashes they must produce, so that another implementation can check itself against ours and
//! so that any change to a format here is caught. `BRIDGE_WRITE_VECTORS=1` rewrites the file
//! (only for a deliberate, versioned format change).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::PathBuf;

use bridge::batch::{BatchBuilder, SealedBatch};
use bridge::codec::to_bytes;
use bridge::tx::{Transfer, UserTx, Withdraw};
use bridge::withdrawals::EthWithdrawal;
use bridge::{Amount, AssetId, StateKey};
use common::*;
use serde_json::{Value, json};

fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn compute() -> Value {
    let p = params();
    let d = domain();
    let alice = wallet(1);
    let bob = wallet(2);

    let transfer = UserTx::Transfer(Transfer {
        from: alice.address(),
        to: bob.address(),
        asset: AssetId::Eth,
        amount: Amount(1_500_000_000_000_000_000),
        fee: Amount(21_000),
        nonce: 0,
    });
    let withdraw = UserTx::Withdraw(Withdraw {
        from: bob.address(),
        asset: AssetId::Btc,
        amount: Amount(50_000),
        fee: Amount(100),
        recipient: REGTEST_P2TR.into(),
        nonce: 0,
    });
    let eip712 = [transfer.clone(), withdraw.clone()]
        .iter()
        .map(|tx| {
            let signed = [&alice, &bob].iter().find(|w| w.address() == tx.from()).unwrap().sign(tx.clone(), &d);
            json!({
                "message": tx,
                "signing_hash": hex0x(tx.signing_hash(&d)),
                "signed_borsh": hex0x(to_bytes(&signed)),
                "signature_rsv": match signed.auth {
                    bridge::signature::Authorization::Eip712Secp256k1 { signature } => hex0x(signature.to_rsv()),
                    bridge::signature::Authorization::WebAuthnP256 { .. } => unreachable!("wallets sign EIP-712"),
                },
            })
        })
        .collect::<Vec<_>>();

    // One batch holding a deposit, the transfer and a withdrawal.
    let mut state = genesis();
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, deposit(alice.address(), AssetId::Eth, 2_000_000_000_000_000_000, 1)).unwrap();
    builder.apply(&mut state, deposit(bob.address(), AssetId::Btc, 80_000, 2)).unwrap();
    builder.apply(&mut state, bridge::Tx::User(alice.sign(transfer, &d).verify(&d).unwrap())).unwrap();
    builder.apply(&mut state, bridge::Tx::User(bob.sign(withdraw, &d).verify(&d).unwrap())).unwrap();
    builder
        .apply(
            &mut state,
            crate::withdraw(&bob, AssetId::Eth, 1_000_000_000_000_000_000, 0, &alice.address().to_string(), 1),
        )
        .unwrap();
    let SealedBatch { batch, settlement } = builder.seal(&mut state, 1_764_000_000_000, &coordinator_key()).unwrap();

    let account_key = StateKey::Account(alice.address());
    let proof = state.prove(&account_key).unwrap();
    let leaf = EthWithdrawal { batch: 7, index: 3, token: TOKEN, recipient: bob.address(), amount: Amount(12345) };

    json!({
        "about": "Test vectors for the bridge protocol, codec version 2. See docs/PROTOCOL.md.",
        "keys": {
            "coordinator_secret": hex0x([0xc0; 32]),
            "alice_secret": hex0x(alice.secret_bytes()),
            "bob_secret": hex0x(bob.secret_bytes()),
        },
        "params": p,
        "params_borsh": hex0x(to_bytes(&p)),
        "genesis_hash": hex0x(p.genesis_hash()),
        "eip712_domain_separator": hex0x(d.separator()),
        "eip712": eip712,
        "batch": {
            "header": batch.header,
            "header_borsh": hex0x(to_bytes(&batch.header)),
            "header_hash": hex0x(batch.header.hash()),
            "signature": hex0x(batch.signature),
            "signed_batch_borsh": hex0x(to_bytes(&batch)),
            "eth_withdrawal_leaves": settlement.eth.withdrawals().iter().map(|w| hex0x(w.leaf())).collect::<Vec<_>>(),
            "btc_payouts_borsh": hex0x(to_bytes(&settlement.btc)),
        },
        "state_proof": {
            "key": "Account(alice)",
            "key_borsh": hex0x(to_bytes(&account_key)),
            "value": proof.value.as_ref().map(hex0x),
            "root": hex0x(state.state_root()),
        },
        "eth_withdrawal_leaf": {
            "withdrawal": leaf,
            "leaf": hex0x(leaf.leaf()),
        },
        "asset_ids": ["eth:ETH", "btc:BTC", AssetId::Erc20(TOKEN).to_string()],
        "asset_ids_borsh": [hex0x(to_bytes(&AssetId::Eth)), hex0x(to_bytes(&AssetId::Btc)), hex0x(to_bytes(&AssetId::Erc20(TOKEN)))],
    })
}

#[test]
fn vectors_match_the_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/bridge-v2.json");
    let computed = compute();
    if std::env::var_os("BRIDGE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&computed).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).expect("docs/vectors/bridge-v2.json is missing");
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored, computed,
        "the protocol's bytes changed: if deliberate, bump the codec version and rewrite the vectors"
    );
}

#[test]
fn stored_batch_decodes_verifies_and_replays() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/bridge-v2.json");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let raw = hex::decode(stored["batch"]["signed_batch_borsh"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let batch: bridge::SignedBatch = bridge::codec::from_bytes(&raw).unwrap();
    let mut state = genesis();
    bridge::replay(&mut state, &batch).unwrap();
    assert_eq!(hex0x(state.state_root()), stored["state_proof"]["root"].as_str().unwrap());
}
