//! Real wallets' signatures are accepted: `cast wallet sign --data` (Foundry, producing what
//! `eth_signTypedData_v4` returns) and alloy's `PrivateKeySigner`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::path::PathBuf;
use std::process::Command;

use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use bridge::signature::{Authorization, EcdsaSignature};
use bridge::tx::{SignedUserTx, Transfer, UserTx, Withdraw};
use bridge::{Amount, AssetId};
use common::*;

fn tools_bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/tools/node_modules/.bin").join(name);
    assert!(path.exists(), "{} is missing: run `bash ops/tools/install.sh` first", path.display());
    path
}

fn sample_txs() -> Vec<UserTx> {
    let from = wallet(5).address();
    vec![
        UserTx::Transfer(Transfer {
            from,
            to: wallet(6).address(),
            asset: AssetId::Erc20(TOKEN),
            amount: Amount(u128::MAX),
            fee: Amount(3),
            nonce: 41,
        }),
        UserTx::Withdraw(Withdraw {
            from,
            asset: AssetId::Btc,
            amount: Amount(123_456),
            fee: Amount(0),
            recipient: REGTEST_P2TR.into(),
            nonce: 0,
        }),
    ]
}

/// The typed-data JSON a dapp hands to `eth_signTypedData_v4`, its `domain` exactly as `GET
/// /info` serves it (`eip712_domain`).
fn typed_data_json(tx: &UserTx) -> serde_json::Value {
    let p = params();
    let domain = serde_json::to_value(bridge::eip712::DomainFields::of(&p)).unwrap();
    assert_eq!(
        domain,
        serde_json::json!({
            "name": "Settlement Bridge",
            "version": "2",
            "chainId": p.chain_id,
            "verifyingContract": p.eth_vault.to_string(),
        })
    );
    let domain_type = serde_json::json!([
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]);
    let (primary, fields, message) = match tx {
        UserTx::Transfer(t) => (
            "Transfer",
            serde_json::json!([
                {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
                {"name": "asset", "type": "string"}, {"name": "amount", "type": "uint256"},
                {"name": "fee", "type": "uint256"}, {"name": "nonce", "type": "uint64"},
            ]),
            serde_json::json!({
                "from": t.from.to_string(), "to": t.to.to_string(), "asset": t.asset.to_string(),
                "amount": t.amount.to_string(), "fee": t.fee.to_string(), "nonce": t.nonce,
            }),
        ),
        UserTx::Withdraw(w) => (
            "Withdraw",
            serde_json::json!([
                {"name": "from", "type": "address"}, {"name": "asset", "type": "string"},
                {"name": "amount", "type": "uint256"}, {"name": "fee", "type": "uint256"},
                {"name": "recipient", "type": "string"}, {"name": "nonce", "type": "uint64"},
            ]),
            serde_json::json!({
                "from": w.from.to_string(), "asset": w.asset.to_string(), "amount": w.amount.to_string(),
                "fee": w.fee.to_string(), "recipient": w.recipient, "nonce": w.nonce,
            }),
        ),
    };
    serde_json::json!({
        "types": { "EIP712Domain": domain_type, primary: fields },
        "primaryType": primary,
        "domain": domain,
        "message": message,
    })
}

fn accept(tx: UserTx, rsv: &[u8]) {
    let signature = EcdsaSignature::from_rsv(rsv).unwrap();
    let signed = SignedUserTx { tx, auth: Authorization::Eip712Secp256k1 { signature } };
    let verified = signed.verify(&domain()).unwrap();
    assert_eq!(verified.tx().from(), wallet(5).address());
}

#[test]
fn cast_typed_data_signatures_are_accepted() {
    let cast = tools_bin("cast");
    let dir = std::env::temp_dir().join(format!("bridge-cast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, tx) in sample_txs().into_iter().enumerate() {
        let file = dir.join(format!("typed-{i}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&typed_data_json(&tx)).unwrap()).unwrap();
        let output = Command::new(&cast)
            .args(["wallet", "sign", "--data", "--from-file"])
            .arg(&file)
            .args(["--private-key", &format!("0x{}", hex::encode(wallet(5).secret_bytes()))])
            .output()
            .unwrap();
        assert!(output.status.success(), "cast failed: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        let rsv = hex::decode(text.trim().trim_start_matches("0x")).unwrap();
        accept(tx.clone(), &rsv);
        // Our own wallet signs the same bytes (RFC 6979 is deterministic).
        let ours = wallet(5).sign(tx, &domain());
        let Authorization::Eip712Secp256k1 { signature } = ours.auth.clone() else { panic!("an EIP-712 signature") };
        assert_eq!(signature.to_rsv().to_vec(), rsv);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn alloy_private_key_signer_signatures_are_accepted() {
    let signer = PrivateKeySigner::from_slice(&wallet(5).secret_bytes()).unwrap();
    let eip712 = domain().eip712_domain().clone();
    for tx in sample_txs() {
        let signature = match &tx {
            UserTx::Transfer(t) => signer.sign_typed_data_sync(&t.to_eip712(), &eip712).unwrap(),
            UserTx::Withdraw(w) => signer.sign_typed_data_sync(&w.to_eip712(), &eip712).unwrap(),
        };
        accept(tx, &signature.as_bytes());
    }
}

/// The withdrawal leaf is OpenZeppelin's double-hashed `abi.encode(...)`: checked against
/// Foundry's own ABI encoder and keccak.
#[test]
fn withdrawal_leaf_matches_cast_abi_encoding() {
    let cast = tools_bin("cast");
    let w = bridge::withdrawals::EthWithdrawal {
        batch: 7,
        index: 3,
        token: TOKEN,
        recipient: wallet(2).address(),
        amount: Amount(u128::MAX - 5),
    };
    let run = |args: &[&str]| {
        let output = Command::new(&cast).args(args).output().unwrap();
        assert!(output.status.success(), "cast {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let encoded = run(&[
        "abi-encode",
        "f(uint64,uint32,address,address,uint256)",
        &w.batch.to_string(),
        &w.index.to_string(),
        &w.token.to_string(),
        &w.recipient.to_string(),
        &w.amount.to_string(),
    ]);
    let inner = run(&["keccak", &encoded]);
    let leaf = run(&["keccak", &inner]);
    assert_eq!(leaf, format!("0x{}", hex::encode(w.leaf())));
}
