//! Assets, named by chain and token: `eth:ETH`, `eth:0x…` (an ERC-20), `btc:BTC`.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::{Address, AddressError};

/// The layer-1 chains the bridge holds funds on.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Chain {
    Ethereum = 0,
    Bitcoin = 1,
}

impl Chain {
    pub fn prefix(self) -> &'static str {
        match self {
            Chain::Ethereum => "eth",
            Chain::Bitcoin => "btc",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// An asset the ledger can hold.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum AssetId {
    /// Ether, in wei.
    Eth = 0,
    /// An ERC-20 token held by the Ethereum vault, in the token's base units.
    Erc20(Address) = 1,
    /// Bitcoin, in satoshi.
    Btc = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    #[error("an asset is written `chain:token`, one of `eth:ETH`, `eth:0x<token address>`, `btc:BTC`; got {0:?}")]
    Form(String),
    #[error("unknown chain {0:?}: the chains are `eth` and `btc`")]
    Chain(String),
    #[error("unknown Bitcoin asset {0:?}: the only one is `btc:BTC`")]
    BitcoinToken(String),
    #[error("bad ERC-20 token address in {text:?}: {source}")]
    Token { text: String, source: AddressError },
}

impl AssetId {
    pub fn chain(&self) -> Chain {
        match self {
            AssetId::Eth | AssetId::Erc20(_) => Chain::Ethereum,
            AssetId::Btc => Chain::Bitcoin,
        }
    }

    /// The token contract as the Ethereum vault names it: the zero address for ether.
    pub fn eth_token(&self) -> Option<Address> {
        match self {
            AssetId::Eth => Some(Address::ZERO),
            AssetId::Erc20(token) => Some(*token),
            AssetId::Btc => None,
        }
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssetId::Eth => f.write_str("eth:ETH"),
            AssetId::Erc20(token) => write!(f, "eth:{token}"),
            AssetId::Btc => f.write_str("btc:BTC"),
        }
    }
}

impl fmt::Debug for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for AssetId {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (chain, token) = s.split_once(':').ok_or_else(|| AssetError::Form(s.to_owned()))?;
        match chain {
            "eth" if token == "ETH" => Ok(AssetId::Eth),
            "eth" if token.starts_with("0x") => {
                token.parse().map(AssetId::Erc20).map_err(|source| AssetError::Token { text: s.to_owned(), source })
            }
            "eth" => Err(AssetError::Form(s.to_owned())),
            "btc" if token == "BTC" => Ok(AssetId::Btc),
            "btc" => Err(AssetError::BitcoinToken(s.to_owned())),
            _ => Err(AssetError::Chain(chain.to_owned())),
        }
    }
}

impl Serialize for AssetId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AssetId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in ["eth:ETH", "btc:BTC", "eth:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"] {
            let asset: AssetId = text.parse().unwrap();
            assert_eq!(asset.to_string(), text);
        }
    }

    #[test]
    fn refuses_what_is_not_an_asset() {
        assert!(matches!("ETH".parse::<AssetId>(), Err(AssetError::Form(_))));
        assert!(matches!("eth:eth".parse::<AssetId>(), Err(AssetError::Form(_))));
        assert!(matches!("sol:SOL".parse::<AssetId>(), Err(AssetError::Chain(_))));
        assert!(matches!("btc:0x00".parse::<AssetId>(), Err(AssetError::BitcoinToken(_))));
        assert!(matches!("eth:0x1234".parse::<AssetId>(), Err(AssetError::Token { .. })));
    }
}
