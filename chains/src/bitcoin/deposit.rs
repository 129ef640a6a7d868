//! Per-account deposit addresses: the vault's FROST group key (BIP-340 x-only) as the Taproot
//! internal key, tweaked with a per-account Merkle root, so one DKG key serves every account and
//! nothing per account is stored. The tweak is BIP-341's `TapTweak(P ‖ root)`, which is what
//! `frost-secp256k1-tr`'s `keys::Tweak::tweak(Some(root))` applies when the watchmen sign.

use ::bitcoin::hashes::Hash;
use ::bitcoin::key::{Secp256k1, XOnlyPublicKey};
use ::bitcoin::{Address, ScriptBuf, TapNodeHash};
use bridge::BtcNetwork;

/// The ledger's rule (a payout spends a deposit with the same tweak): see
/// [`bridge::btc_vault::account_merkle_root`].
pub use bridge::btc_vault::account_merkle_root;

/// The vault's own address: the group key on the key path with no tweak but BIP-341's empty one.
pub fn vault_address(group_key: XOnlyPublicKey, network: BtcNetwork) -> Address {
    Address::p2tr(&Secp256k1::verification_only(), group_key, None, ::bitcoin::Network::from(network))
}

/// `account`'s deposit address.
pub fn deposit_address(group_key: XOnlyPublicKey, network: BtcNetwork, account: &bridge::Address) -> Address {
    let root = TapNodeHash::from_byte_array(account_merkle_root(network, account));
    Address::p2tr(&Secp256k1::verification_only(), group_key, Some(root), ::bitcoin::Network::from(network))
}

/// `account`'s deposit script (what the watcher matches outputs against).
pub fn deposit_script(group_key: XOnlyPublicKey, network: BtcNetwork, account: &bridge::Address) -> ScriptBuf {
    deposit_address(group_key, network, account).script_pubkey()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ::bitcoin::key::{Keypair, Parity};
    use ::bitcoin::secp256k1::{Scalar, SecretKey};

    use super::*;
    use bridge::hashing::tagged_hash;

    fn group_key() -> XOnlyPublicKey {
        let secp = Secp256k1::new();
        Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[7; 32]).unwrap()).x_only_public_key().0
    }

    #[test]
    fn the_tweak_is_bip341_taptweak_of_key_and_root() {
        let secp = Secp256k1::new();
        let (p, account) = (group_key(), bridge::Address([0x11; 20]));
        let root = account_merkle_root(BtcNetwork::Regtest, &account);
        let t = tagged_hash("TapTweak", &[&p.serialize(), &root]);
        let (q, _): (XOnlyPublicKey, Parity) = p.add_tweak(&secp, &Scalar::from_be_bytes(t).unwrap()).unwrap();
        let expected = ScriptBuf::new_p2tr_tweaked(::bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(q));
        assert_eq!(deposit_script(p, BtcNetwork::Regtest, &account), expected);
    }

    #[test]
    fn addresses_differ_by_account_and_network_and_from_the_vault() {
        let p = group_key();
        let (a, b) = (bridge::Address([1; 20]), bridge::Address([2; 20]));
        let regtest_a = deposit_address(p, BtcNetwork::Regtest, &a);
        assert_ne!(regtest_a, deposit_address(p, BtcNetwork::Regtest, &b));
        assert_ne!(regtest_a.script_pubkey(), deposit_address(p, BtcNetwork::Mainnet, &a).script_pubkey());
        assert_ne!(regtest_a, vault_address(p, BtcNetwork::Regtest));
        assert!(regtest_a.to_string().starts_with("bcrt1p"));
    }
}
