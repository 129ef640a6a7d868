//! JSON forms for byte strings: `0x`-prefixed lower-case hex, as Ethereum tools write them.

use serde::{Deserialize, Deserializer, Serializer};

pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Parses `0x`-prefixed hex of exactly `N` bytes.
pub fn parse_fixed<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let digits = text.strip_prefix("0x").ok_or_else(|| format!("expected 0x-prefixed hex, got {text:?}"))?;
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|_| format!("expected {N} bytes of hex, got {text:?}"))?;
    Ok(out)
}

pub mod fixed {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(deserializer: D) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_fixed(&text).map_err(serde::de::Error::custom)
    }
}

/// Byte strings of any length as `0x` hex.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| serde::de::Error::custom(format!("expected 0x-prefixed hex, got {text:?}")))?;
        hex::decode(digits).map_err(|_| serde::de::Error::custom(format!("expected hex, got {text:?}")))
    }
}
