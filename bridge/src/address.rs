//! Ethereum-style account addresses: 20 bytes, EIP-55 checksummed text.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hashing::keccak256;

/// A bridge account, which is also an Ethereum address (the account of the key that signs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 20]);

/// Why a text is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an address is `0x` followed by 40 hex digits; got {0} characters")]
    Length(usize),
    #[error("an address must start with `0x`")]
    Prefix,
    #[error("an address may contain only hex digits after `0x`")]
    Hex,
    #[error(
        "the address's EIP-55 checksum (its mix of upper and lower case) is wrong: check for a typo; expected {expected}"
    )]
    Checksum { expected: String },
}

impl Address {
    pub const ZERO: Address = Address([0; 20]);

    pub const fn new(bytes: [u8; 20]) -> Self {
        Address(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The EIP-55 mixed-case checksummed form, e.g. `0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed`.
    pub fn to_checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl FromStr for Address {
    type Err = AddressError;

    /// Accepts the EIP-55 checksummed form, and the all-lower or all-upper case forms (which
    /// carry no checksum, as EIP-55 specifies). Mixed case with a wrong checksum is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").ok_or(AddressError::Prefix)?;
        if digits.len() != 40 {
            return Err(AddressError::Length(s.len()));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| AddressError::Hex)?;
        let address = Address(bytes);
        let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            let expected = address.to_checksummed();
            if expected[2..] != *digits {
                return Err(AddressError::Checksum { expected });
            }
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksummed())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksummed())
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_checksummed())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl From<alloy_primitives::Address> for Address {
    fn from(a: alloy_primitives::Address) -> Self {
        Address(a.into_array())
    }
}

impl From<Address> for alloy_primitives::Address {
    fn from(a: Address) -> Self {
        alloy_primitives::Address::new(a.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of EIP-55 itself.
    const EIP55: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_examples_round_trip() {
        for text in EIP55 {
            let address: Address = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn lower_case_is_accepted_without_checksum() {
        let address: Address = EIP55[0].to_lowercase().parse().unwrap();
        assert_eq!(address.to_string(), EIP55[0]);
    }

    #[test]
    fn bad_checksum_is_refused() {
        // Flip the case of one letter: "0x5aAeb…" becomes "0x5AAeb…".
        let bad = EIP55[0].replacen("5a", "5A", 1);
        assert!(matches!(bad.parse::<Address>(), Err(AddressError::Checksum { .. })));
    }

    #[test]
    fn malformed_text_is_refused() {
        assert_eq!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse::<Address>(), Err(AddressError::Prefix));
        assert_eq!("0x1234".parse::<Address>(), Err(AddressError::Length(6)));
        assert_eq!("0xzaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse::<Address>(), Err(AddressError::Hex));
    }
}
