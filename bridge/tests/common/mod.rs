//! Fixtures shared by the integration tests: a small network and funded wallets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bridge::tx::{Deposit, L1Ref, SystemTx, Transfer, Tx, UserTx, Withdraw};
use bridge::{Address, Amount, AssetConfig, AssetId, BtcNetwork, Chain, CoordinatorKey, NetworkParams, State, Wallet};

pub const TOKEN: Address = Address([0x70; 20]);
pub const REGTEST_P2TR: &str = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6";

pub fn coordinator_key() -> CoordinatorKey {
    CoordinatorKey::from_secret(&[0xc0; 32]).unwrap()
}

pub fn wallet(n: u64) -> Wallet {
    let mut secret = [0x11; 32];
    secret[24..].copy_from_slice(&n.to_be_bytes());
    Wallet::from_secret(&secret).unwrap()
}

pub fn fee_account() -> Address {
    Address([0xfe; 20])
}

pub fn params() -> NetworkParams {
    let mut assets = vec![
        AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) },
        AssetConfig { asset: AssetId::Erc20(TOKEN), min_fee: Amount(0) },
        AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) },
    ];
    assets.sort_by_key(|a| a.asset);
    let params = NetworkParams {
        name: "testnet".into(),
        chain_id: 7_777,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: Some(btc_vault()),
        coordinator_key: coordinator_key().public_key(),
        fee_account: fee_account(),
        assets,
        forced: None,
        webauthn: None,
        rotation: None,
    };
    params.validate().unwrap();
    params
}

/// A Bitcoin vault whose group key is a plain key (the payout tests sign with it directly).
pub fn btc_vault() -> bridge::BtcVaultParams {
    bridge::BtcVaultParams {
        group_key: vault_keypair().x_only_public_key().0.serialize(),
        min_fee_rate: 1,
        max_fee_rate: 100,
    }
}

pub fn vault_keypair() -> secp256k1::Keypair {
    secp256k1::Keypair::from_seckey_slice(secp256k1::SECP256K1, &[0x07; 32]).unwrap()
}

pub fn genesis() -> State {
    State::genesis(params())
}

pub fn deposit(account: Address, asset: AssetId, amount: u128, n: u64) -> Tx {
    let l1_ref = match asset.chain() {
        Chain::Ethereum => L1Ref::Ethereum { tx_hash: [n as u8; 32], log_in_tx: n as u32 },
        Chain::Bitcoin => L1Ref::Bitcoin { txid: [n as u8; 32], vout: n as u32 },
    };
    Tx::System(SystemTx::Deposit(Deposit {
        chain: asset.chain(),
        l1_ref,
        account,
        asset,
        amount: Amount(amount),
        l1_height: n,
    }))
}

pub fn domain() -> bridge::eip712::Domain {
    bridge::eip712::Domain::new(&params())
}

pub fn transfer(from: &Wallet, to: Address, asset: AssetId, amount: u128, fee: u128, nonce: u64) -> Tx {
    let tx =
        UserTx::Transfer(Transfer { from: from.address(), to, asset, amount: Amount(amount), fee: Amount(fee), nonce });
    Tx::User(from.sign(tx, &domain()).verify(&domain()).unwrap())
}

pub fn withdraw(from: &Wallet, asset: AssetId, amount: u128, fee: u128, recipient: &str, nonce: u64) -> Tx {
    let tx = UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset,
        amount: Amount(amount),
        fee: Amount(fee),
        recipient: recipient.into(),
        nonce,
    });
    Tx::User(from.sign(tx, &domain()).verify(&domain()).unwrap())
}

/// `0x` and lowercase hex, as the vector files write bytes.
pub fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Bytes from a vector file's `0x` hex.
pub fn unhex(text: &serde_json::Value) -> Vec<u8> {
    let text = text.as_str().unwrap_or_else(|| panic!("expected a hex string, got {text}"));
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).unwrap()
}

/// Checks `computed` against `docs/vectors/{name}` and returns the stored vectors.
/// `BRIDGE_WRITE_VECTORS=1` rewrites the file first (only for a deliberate, versioned change).
pub fn stored_vectors(name: &str, computed: &serde_json::Value) -> serde_json::Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors").join(name);
    if std::env::var_os("BRIDGE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(computed).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/vectors/{name}: {e}"));
    let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &stored, computed,
        "docs/vectors/{name} no longer matches the code: if the change is deliberate, version it in \
         docs/PROTOCOL.md and rewrite the vectors"
    );
    stored
}
