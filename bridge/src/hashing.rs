//! The hash functions of the protocol, in one place so that every rule names its domain.

use sha2::{Digest, Sha256};

/// Keccak-256, as Ethereum uses it (EIP-712, addresses, the withdrawals tree).
pub fn keccak256(data: impl AsRef<[u8]>) -> [u8; 32] {
    alloy_primitives::keccak256(data).0
}

pub fn sha256(data: impl AsRef<[u8]>) -> [u8; 32] {
    Sha256::digest(data.as_ref()).into()
}

/// A BIP-340 style tagged hash: `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ parts…)`. Every hash the
/// bridge defines for itself has its own tag, so a digest of one kind can never be read as
/// another.
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let tag_hash = Sha256::digest(tag.as_bytes());
    let mut hasher = Sha256::new();
    hasher.update(tag_hash);
    hasher.update(tag_hash);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The tags used by the protocol. Listed together so that a new one cannot collide by accident.
pub mod tags {
    pub const GENESIS: &str = "bridge/genesis";
    pub const BATCH_HEADER: &str = "bridge/batch-header";
    pub const TXS_LEAF: &str = "bridge/txs-leaf";
    pub const TXS_NODE: &str = "bridge/txs-node";
    pub const BTC_WITHDRAWALS: &str = "bridge/btc-withdrawals";
    /// Transaction id version 2: a system transaction's id names its place in the history.
    /// (Version 1, `"bridge/system-tx"` over the transaction alone, was not unique and is retired.)
    pub const SYSTEM_TX_ID: &str = "bridge/system-tx-id/v2";
    pub const BTC_DEPOSIT: &str = "bridge/btc-deposit";
    pub const FORCED_RECORD: &str = "bridge/forced-record";
    pub const FORCED_NODE: &str = "bridge/forced-node";
    /// What the old group signs to hand the ledger to a new key (docs/PROTOCOL.md, Key rotation).
    pub const KEY_ROTATION: &str = "bridge/key-rotation/v1";
    /// A passkey account's address from its P-256 public key (docs/PROTOCOL.md, Passkey accounts).
    pub const PASSKEY_ADDRESS: &str = "bridge/passkey-address/v1";
    /// The genesis hash of a network with passkey rules: they are appended to its parameters.
    pub const GENESIS_WEBAUTHN: &str = "bridge/genesis+webauthn";
    /// What the watchmen sign to vouch for a batch's header (docs/PROTOCOL.md, Signed checkpoints).
    pub const CHECKPOINT: &str = "bridge/checkpoint/v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(hex::encode(keccak256(b"")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        assert_eq!(hex::encode(sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tagged_hash_concatenates_parts() {
        assert_eq!(tagged_hash("t", &[b"ab", b"c"]), tagged_hash("t", &[b"abc"]));
        assert_ne!(tagged_hash("t", &[b"abc"]), tagged_hash("u", &[b"abc"]));
    }
}
