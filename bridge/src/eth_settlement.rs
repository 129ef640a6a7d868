//! The messages the watchmen's group key signs for the Ethereum vault, and the signature form
//! the vault takes. One place for both the tests and the watchmen; the vault
//! (`contracts/sol/Vault.sol`) recomputes each message from its call data and its own chain id,
//! address and key epoch. Byte formats: docs/PROTOCOL.md, "Ethereum vault messages".
//!
//! Every message is `keccak256(abi.encode(kind, chain_id, vault, …))` where `kind` is the
//! keccak-256 of a versioned name, e.g. `keccak256("bridge/eth/withdrawals-range/v2")`, and each
//! field is one 32-byte ABI word. The group key also signs Bitcoin transactions, whose BIP-341
//! sighashes are SHA-256 tagged hashes of a different shape, so no message here can be read as
//! one of those.

use secp256k1::{Parity, XOnlyPublicKey};

use crate::address::Address;
use crate::hashing::keccak256;

/// The names of the message kinds, hashed into their first word.
pub mod kinds {
    /// v2: one root covers a range of batches [first, last] (v1 was one root per batch).
    pub const WITHDRAWALS_RANGE: &str = "bridge/eth/withdrawals-range/v2";
    pub const SET_CAP: &str = "bridge/eth/set-cap/v1";
    pub const UNPAUSE: &str = "bridge/eth/unpause/v1";
    pub const ROTATE_KEY: &str = "bridge/eth/rotate-key/v2";
    pub const ACCEPT_KEY: &str = "bridge/eth/accept-key/v1";
}

/// Where a message is valid: one chain, one vault, one key epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VaultDomain {
    /// The Ethereum chain id (`block.chainid`).
    pub chain_id: u64,
    pub vault: Address,
    /// The vault's `keyEpoch`: 0 for the key it was deployed with, one more per rotation.
    pub epoch: u64,
}

/// ABI words, each 32 bytes, hashed with keccak-256.
struct Words(Vec<u8>);

impl Words {
    fn new(kind: &str) -> Self {
        Words(keccak256(kind.as_bytes()).to_vec())
    }
    fn word(mut self, word: [u8; 32]) -> Self {
        self.0.extend_from_slice(&word);
        self
    }
    fn uint(self, value: u128) -> Self {
        let mut word = [0u8; 32];
        word[16..].copy_from_slice(&value.to_be_bytes());
        self.word(word)
    }
    fn address(self, address: Address) -> Self {
        let mut word = [0u8; 32];
        word[12..].copy_from_slice(address.as_bytes());
        self.word(word)
    }
    fn domain(self, domain: &VaultDomain) -> Self {
        self.uint(domain.chain_id.into()).address(domain.vault).uint(domain.epoch.into())
    }
    fn hash(self) -> [u8; 32] {
        keccak256(self.0)
    }
}

/// `submitWithdrawals(first, last, root, sig)`: `keccak256(abi.encode(kind, chainid, vault,
/// epoch, uint64 first, uint64 last, bytes32 root))`, the root of the withdrawals of batches
/// `first..=last` ([`crate::withdrawals::EthWithdrawalTree`] over their leaves in order).
pub fn withdrawals_message(domain: &VaultDomain, first: u64, last: u64, root: [u8; 32]) -> [u8; 32] {
    Words::new(kinds::WITHDRAWALS_RANGE).domain(domain).uint(first.into()).uint(last.into()).word(root).hash()
}

/// `setCap(token, limit, window, nonce, sig)`: `keccak256(abi.encode(kind, chainid, vault,
/// epoch, uint64 nonce, address token, uint128 limit, uint64 window))`. `token` is the zero
/// address for ether; `limit == 0` removes the cap.
pub fn set_cap_message(domain: &VaultDomain, nonce: u64, token: Address, limit: u128, window_secs: u64) -> [u8; 32] {
    Words::new(kinds::SET_CAP)
        .domain(domain)
        .uint(nonce.into())
        .address(token)
        .uint(limit)
        .uint(window_secs.into())
        .hash()
}

/// `unpause(nonce, sig)`: `keccak256(abi.encode(kind, chainid, vault, epoch, uint64 nonce))`.
pub fn unpause_message(domain: &VaultDomain, nonce: u64) -> [u8; 32] {
    Words::new(kinds::UNPAUSE).domain(domain).uint(nonce.into()).hash()
}

/// `proposeKey(newKey, nonce, sig)`, signed by the current key (`domain.epoch` is the current
/// epoch): `keccak256(abi.encode(kind, chainid, vault, epoch, uint64 nonce, uint256 newKey,
/// uint64 epoch + 1))`. The nonce is the vault's `adminNonce`, consumed by the call, so a
/// proposal replaced by a later one cannot be put back with its old signature.
pub fn rotate_key_message(domain: &VaultDomain, nonce: u64, new_key: [u8; 32]) -> [u8; 32] {
    Words::new(kinds::ROTATE_KEY)
        .domain(domain)
        .uint(nonce.into())
        .word(new_key)
        .uint(u128::from(domain.epoch) + 1)
        .hash()
}

/// `acceptKey(sig)`, signed by the new key: `keccak256(abi.encode(kind, chainid, vault,
/// uint64 newEpoch, uint256 newKey))`, with `domain.epoch` the new epoch.
pub fn accept_key_message(domain: &VaultDomain, new_key: [u8; 32]) -> [u8; 32] {
    Words::new(kinds::ACCEPT_KEY).domain(domain).word(new_key).hash()
}

/// A BIP-340 signature as the vault takes it: `r` and `s` as in the 64 bytes, and `ry`, the
/// even y coordinate of the point with x = `r`, which the contract checks rather than computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EvmSchnorrSignature {
    pub r: [u8; 32],
    pub ry: [u8; 32],
    pub s: [u8; 32],
}

impl EvmSchnorrSignature {
    /// From a 64-byte BIP-340 signature `r ‖ s`; `None` if `r` is not the x of a curve point
    /// (no valid signature has such an `r`).
    pub fn from_bip340(sig: &[u8; 64]) -> Option<Self> {
        let mut r = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let point = XOnlyPublicKey::from_slice(&r).ok()?.public_key(Parity::Even);
        let uncompressed = point.serialize_uncompressed();
        let mut ry = [0u8; 32];
        ry.copy_from_slice(&uncompressed[33..65]);
        Some(EvmSchnorrSignature { r, ry, s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> VaultDomain {
        VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 0 }
    }

    #[test]
    fn every_field_changes_the_message() {
        let base = withdrawals_message(&domain(), 5, 9, [7; 32]);
        assert_ne!(base, withdrawals_message(&VaultDomain { chain_id: 1, ..domain() }, 5, 9, [7; 32]));
        assert_ne!(base, withdrawals_message(&VaultDomain { vault: Address([0x12; 20]), ..domain() }, 5, 9, [7; 32]));
        assert_ne!(base, withdrawals_message(&VaultDomain { epoch: 1, ..domain() }, 5, 9, [7; 32]));
        assert_ne!(base, withdrawals_message(&domain(), 6, 9, [7; 32]));
        assert_ne!(base, withdrawals_message(&domain(), 5, 10, [7; 32]));
        assert_ne!(base, withdrawals_message(&domain(), 5, 9, [8; 32]));
        assert_ne!(unpause_message(&domain(), 0), unpause_message(&domain(), 1));
        assert_ne!(rotate_key_message(&domain(), 0, [1; 32]), accept_key_message(&domain(), [1; 32]));
        // A key proposal names the admin nonce: one replaced by a later proposal is dead.
        assert_ne!(rotate_key_message(&domain(), 0, [1; 32]), rotate_key_message(&domain(), 1, [1; 32]));
    }

    #[test]
    fn the_withdrawals_message_is_abi_encoded_words() {
        let d = domain();
        let mut words = keccak256(kinds::WITHDRAWALS_RANGE.as_bytes()).to_vec();
        let mut w = [0u8; 32];
        w[24..].copy_from_slice(&31337u64.to_be_bytes());
        words.extend_from_slice(&w);
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(&[0x11; 20]);
        words.extend_from_slice(&w);
        words.extend_from_slice(&[0; 32]);
        let mut w = [0u8; 32];
        w[31] = 5;
        words.extend_from_slice(&w);
        w[31] = 9;
        words.extend_from_slice(&w);
        words.extend_from_slice(&[7; 32]);
        assert_eq!(words.len(), 7 * 32);
        assert_eq!(withdrawals_message(&d, 5, 9, [7; 32]), keccak256(words));
    }

    #[test]
    fn ry_is_even_and_on_the_curve() {
        use secp256k1::{Keypair, Message, SECP256K1, SecretKey};
        let key = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[3; 32]).unwrap());
        let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest([9; 32]), &key);
        let evm = EvmSchnorrSignature::from_bip340(&sig.serialize()).unwrap();
        assert_eq!(evm.ry[31] & 1, 0);
        let mut compressed = [2u8; 33];
        compressed[1..].copy_from_slice(&evm.r);
        let point = secp256k1::PublicKey::from_slice(&compressed).unwrap();
        assert_eq!(point.serialize_uncompressed()[33..], evm.ry);
    }
}
