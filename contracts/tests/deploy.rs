//! The deploy command against anvil: it deploys the committed vault and verifies it, refuses a
//! node on another chain and a key that is no group key; and the code check tells the vault from
//! another contract and from a vault with another guardian.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use alloy::primitives::Address;
use alloy::providers::Provider;
use contracts::code::{CodeMismatch, verify_vault};
use contracts::harness::{Setup, keypair, signing_provider};
use contracts::{ANVIL_KEY_0, Anvil, TestToken, Vault, group_key};

/// Anvil's account 0, whose key is `ANVIL_KEY_0`.
const DEPLOYER: Address = alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

fn deploy(anvil: &Anvil, chain_id: u64, key: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("deployer.key");
    std::fs::write(&key_file, ANVIL_KEY_0).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["--rpc", &anvil.url(), "--chain-id", &chain_id.to_string(), "--group-key", key])
        .args(["--guardian", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "--key-file"])
        .arg(&key_file)
        .output()
        .unwrap()
}

#[tokio::test]
async fn deploy_prints_the_vault_and_verifies_its_code() {
    let anvil = Anvil::start(&[]).await.unwrap();
    let key = alloy::primitives::B256::from(group_key(&keypair(7))).to_string();
    let out = deploy(&anvil, 31_337, &key);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let address: Address = stdout.lines().find_map(|l| l.strip_prefix("vault")).unwrap().trim().parse().unwrap();
    assert!(stdout.contains("matches contracts/artifacts/Vault.json"), "{stdout}");
    let provider = signing_provider(&anvil.url(), ANVIL_KEY_0).unwrap();
    let vault = Vault::new(address, provider);
    assert_eq!(vault.groupKey().call().await.unwrap(), group_key(&keypair(7)));
}

#[tokio::test]
async fn deploy_refuses_another_chain_and_a_bad_group_key_before_sending() {
    let anvil = Anvil::start(&[]).await.unwrap();
    let key = alloy::primitives::B256::from(group_key(&keypair(7))).to_string();
    let wrong_chain = deploy(&anvil, 11_155_111, &key);
    let stderr = String::from_utf8_lossy(&wrong_chain.stderr);
    assert!(!wrong_chain.status.success() && stderr.contains("on chain 31337, not --chain-id 11155111"), "{stderr}");
    // An x coordinate off the curve (p - 1 has no square root of x^3 + 7 ... any non-key will do).
    let bad = deploy(&anvil, 31_337, &format!("0x{}", "ff".repeat(32)));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("not a BIP-340 x-only public key"), "{stderr}");
    let provider = signing_provider(&anvil.url(), ANVIL_KEY_0).unwrap();
    assert_eq!(provider.get_transaction_count(DEPLOYER).await.unwrap(), 0, "nothing sent");
}

#[tokio::test]
async fn the_code_check_tells_the_vault_from_other_code() {
    let setup = Setup::new().await.unwrap();
    let guardian = setup.vault.guardian().call().await.unwrap();
    let code = setup.provider.get_code_at(setup.vault_address()).await.unwrap();
    assert_eq!(verify_vault(&code, guardian), Ok(()));
    // The same vault named with another guardian: the immutable slot no longer accounts.
    assert!(matches!(verify_vault(&code, Address::repeat_byte(9)), Err(CodeMismatch::Differs { .. })));
    let token = TestToken::deploy(setup.provider.clone()).await.unwrap();
    let other = setup.provider.get_code_at(*token.address()).await.unwrap();
    assert!(verify_vault(&other, guardian).is_err());
    let none = setup.provider.get_code_at(Address::repeat_byte(0x42)).await.unwrap();
    assert_eq!(verify_vault(&none, guardian), Err(CodeMismatch::NoCode));
}
