//! The group key as the chains see it.
//!
//! FROST gives an untweaked group key `P`. Everything the watchmen sign is signed under a
//! BIP-341-tweaked key, exactly as `frost-secp256k1-tr` tweaks: the vault key is
//! `Q = lift_x(P) + H_TapTweak(P)·G` (a key-path-only Taproot output), and an account's deposit
//! key is `P` tweaked with that account's Merkle root. Bitcoin pays to `Q`; the Ethereum vault
//! checks BIP-340 signatures against `x(Q)`. One DKG, one key, two chains.

use bitcoin::key::TweakedPublicKey;
use bitcoin::secp256k1::XOnlyPublicKey;
use frost::keys::{PublicKeyPackage, Tweak};
use frost_secp256k1_tr as frost;
use serde::{Deserialize, Serialize};

use crate::TssError;

/// Which key a message is signed under: the vault's own output key, or an account's tweak of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyPath {
    /// `Q = P + H_TapTweak(P)·G`: the vault's Taproot output key and the Ethereum vault's key.
    Vault,
    /// `P + H_TapTweak(P ‖ root)·G`: a per-account deposit address committing to `root`.
    Account { merkle_root: [u8; 32] },
}

impl KeyPath {
    /// The key a Taproot input is spent with, from the script-tree root its output committed
    /// to: none for the vault's own outputs, an account's root for its deposit address.
    pub fn of_merkle_root(merkle_root: Option<[u8; 32]>) -> KeyPath {
        match merkle_root {
            Some(merkle_root) => KeyPath::Account { merkle_root },
            None => KeyPath::Vault,
        }
    }

    pub(crate) fn merkle_root(&self) -> Option<&[u8]> {
        match self {
            KeyPath::Vault => None,
            KeyPath::Account { merkle_root } => Some(merkle_root.as_slice()),
        }
    }

    /// The public key package tweaked for this path, which verifies shares and signatures.
    pub(crate) fn tweak_public(&self, package: &PublicKeyPackage) -> PublicKeyPackage {
        package.clone().tweak(self.merkle_root())
    }
}

/// The group's public key and what each chain needs from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKey {
    /// `x(P)`: the untweaked key FROST produced (the Taproot internal key).
    #[serde(with = "hex_bytes")]
    pub internal_key: [u8; 32],
    /// `x(Q)`: the BIP-340 key every vault signature verifies against.
    #[serde(with = "hex_bytes")]
    pub output_key: [u8; 32],
    /// Whether `Q`'s y is odd (a Taproot control block's parity bit). BIP-340 verification
    /// lifts `x(Q)` to the even y, so the Ethereum vault needs only `output_key`.
    pub output_key_odd_y: bool,
    pub threshold: u16,
    pub signers: u16,
}

impl GroupKey {
    pub fn of(package: &PublicKeyPackage) -> Result<Self, TssError> {
        let internal_key = x_only(package.verifying_key())?;
        let tweaked = KeyPath::Vault.tweak_public(package);
        let element = tweaked.verifying_key().serialize().map_err(TssError::frost)?;
        let (odd, output_key) = split_compressed(&element)?;
        Ok(GroupKey {
            internal_key,
            output_key,
            output_key_odd_y: odd,
            threshold: package
                .min_signers()
                .ok_or_else(|| TssError::Protocol("the public key package does not record its threshold".into()))?,
            signers: u16::try_from(package.verifying_shares().len()).unwrap_or(u16::MAX),
        })
    }

    /// The key a path signs under, x-only, as BIP-340 verifies it.
    pub fn key_for(package: &PublicKeyPackage, path: &KeyPath) -> Result<[u8; 32], TssError> {
        x_only(path.tweak_public(package).verifying_key())
    }

    /// The vault's key-path-only Taproot address on `network`.
    pub fn taproot_address(&self, network: bitcoin::Network) -> Result<bitcoin::Address, TssError> {
        let key = XOnlyPublicKey::from_slice(&self.output_key)
            .map_err(|e| TssError::Protocol(format!("the group output key is not a curve point: {e}")))?;
        Ok(bitcoin::Address::p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(key), network))
    }
}

impl GroupKey {
    pub(crate) fn x_only_of(key: &frost::VerifyingKey) -> Result<[u8; 32], TssError> {
        x_only(key)
    }
}

fn x_only(key: &frost::VerifyingKey) -> Result<[u8; 32], TssError> {
    let bytes = key.serialize().map_err(TssError::frost)?;
    Ok(split_compressed(&bytes)?.1)
}

/// A SEC1 compressed point: (y is odd, x).
fn split_compressed(bytes: &[u8]) -> Result<(bool, [u8; 32]), TssError> {
    match bytes {
        [prefix @ (0x02 | 0x03), x @ ..] if x.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(x);
            Ok((*prefix == 0x03, out))
        }
        _ => Err(TssError::Protocol(format!("a group key of {} bytes is not a compressed point", bytes.len()))),
    }
}

/// A BIP-340 signature as 64 bytes `x(R) ‖ s` (frost-secp256k1-tr's own encoding).
pub fn bip340_bytes(signature: &frost::Signature) -> Result<[u8; 64], TssError> {
    let bytes = signature.serialize().map_err(TssError::frost)?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| TssError::Protocol(format!("a FROST signature of {} bytes is not BIP-340", b.len())))
}

pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}
