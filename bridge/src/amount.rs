//! Amounts in base units. No floats anywhere, and no unchecked arithmetic: `Amount` has no
//! `+` or `-`, only checked operations that say when they fail.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of one asset in its base units (wei, satoshi, the token's smallest unit).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, BorshSerialize, BorshDeserialize)]
pub struct Amount(pub u128);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("an amount is a whole number of base units written in decimal digits, got {0:?}")]
    NotDecimal(String),
    #[error("the amount {0} does not fit in 128 bits (the largest is {max})", max = u128::MAX)]
    TooLarge(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u128::MAX);

    pub const fn new(units: u128) -> Self {
        Amount(units)
    }

    pub const fn units(self) -> u128 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    #[must_use]
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    #[must_use]
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Decimal digits only: no sign, no exponent, no separators, no leading `+`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotDecimal(s.to_owned()));
        }
        s.parse::<u128>().map(Amount).map_err(|_| AmountError::TooLarge(s.to_owned()))
    }
}

// JSON carries amounts as decimal strings: JavaScript numbers lose precision above 2^53.
impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_refuses_the_rest() {
        assert_eq!("0".parse(), Ok(Amount(0)));
        assert_eq!(u128::MAX.to_string().parse(), Ok(Amount::MAX));
        assert!(matches!("340282366920938463463374607431768211456".parse::<Amount>(), Err(AmountError::TooLarge(_))));
        for bad in ["", "-1", "+1", "1.5", "1e18", " 1", "0x10"] {
            assert!(matches!(bad.parse::<Amount>(), Err(AmountError::NotDecimal(_))), "{bad}");
        }
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(5).checked_sub(Amount(2)), Some(Amount(3)));
    }
}
