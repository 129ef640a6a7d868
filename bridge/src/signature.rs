//! Account authorization: an Ethereum key signing EIP-712 typed data (what MetaMask-style
//! wallets produce), or a passkey's WebAuthn assertion over the same digest ([`crate::passkey`]).

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, SECP256K1};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::Address;
use crate::hashing::keccak256;

/// How a user transaction is authorized. The variant is part of the canonical encoding.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Authorization {
    /// secp256k1 ECDSA over the EIP-712 digest; the account is the signer's Ethereum address.
    Eip712Secp256k1 { signature: EcdsaSignature } = 0,
    /// A WebAuthn assertion whose challenge is the EIP-712 digest; the account is the passkey's
    /// address ([`crate::passkey::passkey_address`]). Boxed: it is ten times the other's size.
    WebAuthnP256 { assertion: Box<crate::passkey::PasskeyAssertion> } = 1,
}

/// A recoverable ECDSA signature in a canonical form: `y_parity` is a bool, so `v = 0/1` and
/// `v = 27/28` encodings of one signature become the same bytes.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EcdsaSignature {
    pub r: [u8; 32],
    pub s: [u8; 32],
    pub y_parity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a signature is 65 bytes (r ‖ s ‖ v) written as 0x-prefixed hex")]
    Format,
    #[error("the signature's v must be 27, 28, 0 or 1, got {0}")]
    RecoveryId(u8),
    #[error("the signature has a high s value; sign again with a wallet that produces low-s (EIP-2) signatures")]
    HighS,
    #[error("the signature is not a valid secp256k1 signature of this message")]
    Invalid,
}

/// Half the secp256k1 group order: EIP-2 requires `s <= n/2`.
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e,
    0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

impl EcdsaSignature {
    /// From the 65-byte `r ‖ s ‖ v` form wallets return.
    pub fn from_rsv(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: &[u8; 65] = bytes.try_into().map_err(|_| SignatureError::Format)?;
        let y_parity = match bytes[64] {
            0 | 27 => false,
            1 | 28 => true,
            v => return Err(SignatureError::RecoveryId(v)),
        };
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..64]);
        Ok(EcdsaSignature { r, s, y_parity })
    }

    /// The `r ‖ s ‖ v` form with `v = 27/28`.
    pub fn to_rsv(&self) -> [u8; 65] {
        let mut out = [0; 65];
        out[..32].copy_from_slice(&self.r);
        out[32..64].copy_from_slice(&self.s);
        out[64] = 27 + u8::from(self.y_parity);
        out
    }

    /// Recovers the Ethereum address that signed `digest`. High-s signatures are refused
    /// (EIP-2), so each signed message has exactly one accepted signature encoding.
    pub fn recover(&self, digest: &[u8; 32]) -> Result<Address, SignatureError> {
        if self.s > HALF_ORDER {
            return Err(SignatureError::HighS);
        }
        let mut compact = [0u8; 64];
        compact[..32].copy_from_slice(&self.r);
        compact[32..].copy_from_slice(&self.s);
        let id = RecoveryId::from_i32(i32::from(self.y_parity)).map_err(|_| SignatureError::Invalid)?;
        let signature = RecoverableSignature::from_compact(&compact, id).map_err(|_| SignatureError::Invalid)?;
        let key =
            SECP256K1.recover_ecdsa(&Message::from_digest(*digest), &signature).map_err(|_| SignatureError::Invalid)?;
        let uncompressed = key.serialize_uncompressed();
        let hash = keccak256(&uncompressed[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Ok(Address(address))
    }
}

impl fmt::Debug for EcdsaSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.to_rsv()))
    }
}

impl FromStr for EcdsaSignature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").ok_or(SignatureError::Format)?;
        let bytes = hex::decode(digits).map_err(|_| SignatureError::Format)?;
        Self::from_rsv(&bytes)
    }
}

impl Serialize for EcdsaSignature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("0x{}", hex::encode(self.to_rsv())))
    }
}

impl<'de> Deserialize<'de> for EcdsaSignature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsv_round_trip_normalizes_v() {
        let mut bytes = [7u8; 65];
        bytes[64] = 1;
        let sig = EcdsaSignature::from_rsv(&bytes).unwrap();
        assert_eq!(sig.to_rsv()[64], 28);
        bytes[64] = 28;
        assert_eq!(EcdsaSignature::from_rsv(&bytes).unwrap(), sig);
        bytes[64] = 29;
        assert_eq!(EcdsaSignature::from_rsv(&bytes), Err(SignatureError::RecoveryId(29)));
        assert_eq!(EcdsaSignature::from_rsv(&bytes[..64]), Err(SignatureError::Format));
    }

    #[test]
    fn high_s_is_refused_before_recovery() {
        let sig = EcdsaSignature { r: [1; 32], s: [0xff; 32], y_parity: false };
        assert_eq!(sig.recover(&[0; 32]), Err(SignatureError::HighS));
    }
}
