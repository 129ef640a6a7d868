//! Where a withdrawal is paid: an address on the asset's own chain, checked when the user asks,
//! not when the watchmen pay.

use std::str::FromStr;

use bitcoin::ScriptBuf;

use crate::address::{Address, AddressError};
use crate::amount::Amount;
use crate::asset::{AssetId, Chain};
use crate::network::BtcNetwork;

/// The longest recipient text accepted; longer is refused before parsing.
pub const MAX_RECIPIENT_LEN: usize = 128;

/// Ethereum addresses at or below this one (`0x0000…ffff`) are refused as recipients: the zero
/// address (tokens revert, ether is burnt), the precompiles (`0x01`–`0x11` since Prague, the
/// P-256 verifier at `0x100` since Osaka) and room for the ones to come. No key or contract
/// creation lands there in practice (a 2^-144 chance), so no honest user is refused.
pub const RESERVED_ETH_ADDRESSES_END: u16 = 0xffff;

/// A parsed and validated payout destination.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Recipient {
    Ethereum(Address),
    /// The output script the payout transaction pays to.
    Bitcoin(ScriptBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("the recipient is longer than {MAX_RECIPIENT_LEN} characters")]
    TooLong,
    #[error("the recipient of an Ethereum asset must be an Ethereum address: {0}")]
    Ethereum(AddressError),
    #[error("the recipient of a Bitcoin withdrawal must be a Bitcoin address: {0}")]
    Bitcoin(String),
    #[error("the Bitcoin address is for another network; this bridge pays on {0:?}")]
    BitcoinNetwork(BtcNetwork),
    #[error("{0} sat is more than all the bitcoin there will ever be")]
    AboveSupply(Amount),
    #[error(
        "{amount} sat to this address is below its dust limit of {limit} sat: Bitcoin nodes would not relay the payout"
    )]
    Dust { amount: Amount, limit: u64 },
    #[error("{address} can never be paid: {why}; withdraw to an address you control")]
    Unpayable { address: Address, why: &'static str },
}

/// Why an Ethereum address can never receive a payout from the vault, if it cannot: the zero
/// address, a precompile or reserved system address, or the vault itself (a payout to the vault
/// is refused by it, or would strand the funds inside).
pub fn unpayable_eth_recipient(address: &Address, eth_vault: &Address) -> Option<&'static str> {
    let reserved_prefix = address.0[..18].iter().all(|b| *b == 0);
    if address.0 == [0; 20] {
        Some("it is the zero address")
    } else if reserved_prefix {
        Some("it is a precompile or reserved system address (0x0000…0001 to 0x0000…ffff)")
    } else if address == eth_vault {
        Some("it is the bridge's own vault")
    } else {
        None
    }
}

impl Recipient {
    /// Parses `text` as a destination for `amount` of `asset`. The amount matters on Bitcoin,
    /// where an output below the dust limit would make the whole payout unrelayable. On
    /// Ethereum, an address that can never be paid ([`unpayable_eth_recipient`]) is refused.
    pub fn parse(
        text: &str,
        asset: &AssetId,
        amount: Amount,
        btc_network: BtcNetwork,
        eth_vault: &Address,
    ) -> Result<Self, RecipientError> {
        if text.len() > MAX_RECIPIENT_LEN {
            return Err(RecipientError::TooLong);
        }
        match asset.chain() {
            Chain::Ethereum => {
                let address = Address::from_str(text).map_err(RecipientError::Ethereum)?;
                if let Some(why) = unpayable_eth_recipient(&address, eth_vault) {
                    return Err(RecipientError::Unpayable { address, why });
                }
                Ok(Recipient::Ethereum(address))
            }
            Chain::Bitcoin => {
                let unchecked = bitcoin::Address::from_str(text).map_err(|e| RecipientError::Bitcoin(e.to_string()))?;
                let address = unchecked
                    .require_network(btc_network.into())
                    .map_err(|_| RecipientError::BitcoinNetwork(btc_network))?;
                if amount.units() > u128::from(bitcoin::Amount::MAX_MONEY.to_sat()) {
                    return Err(RecipientError::AboveSupply(amount));
                }
                let script = address.script_pubkey();
                let limit = script.minimal_non_dust().to_sat();
                if amount.units() < u128::from(limit) {
                    return Err(RecipientError::Dust { amount, limit });
                }
                Ok(Recipient::Bitcoin(script))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGTEST_P2TR: &str = "bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6";
    const MAINNET_P2WPKH: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    const VAULT: Address = Address([0xaa; 20]);

    #[test]
    fn ethereum_recipients_that_can_never_be_paid_are_refused() {
        let parse = |text: &str| Recipient::parse(text, &AssetId::Eth, Amount(1), BtcNetwork::Regtest, &VAULT);
        for unpayable in [
            "0x0000000000000000000000000000000000000000",
            "0x0000000000000000000000000000000000000001",
            "0x000000000000000000000000000000000000000a",
            "0x0000000000000000000000000000000000000100",
            "0x000000000000000000000000000000000000ffff",
            "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(matches!(parse(unpayable), Err(RecipientError::Unpayable { .. })), "{unpayable}");
        }
        assert!(matches!(parse("0x0000000000000000000000000000000000010000"), Ok(Recipient::Ethereum(_))));
        // The token's asset does not change the rule.
        let token = AssetId::Erc20(Address([0x11; 20]));
        assert!(matches!(
            Recipient::parse(
                "0x0000000000000000000000000000000000000000",
                &token,
                Amount(1),
                BtcNetwork::Regtest,
                &VAULT
            ),
            Err(RecipientError::Unpayable { .. })
        ));
    }

    #[test]
    fn bitcoin_addresses_are_checked_for_network_and_dust() {
        assert!(matches!(
            Recipient::parse(REGTEST_P2TR, &AssetId::Btc, Amount(10_000), BtcNetwork::Regtest, &VAULT),
            Ok(Recipient::Bitcoin(_))
        ));
        assert_eq!(
            Recipient::parse(MAINNET_P2WPKH, &AssetId::Btc, Amount(10_000), BtcNetwork::Regtest, &VAULT),
            Err(RecipientError::BitcoinNetwork(BtcNetwork::Regtest))
        );
        assert!(matches!(
            Recipient::parse(REGTEST_P2TR, &AssetId::Btc, Amount(100), BtcNetwork::Regtest, &VAULT),
            Err(RecipientError::Dust { limit: 330, .. })
        ));
        assert!(matches!(
            Recipient::parse("not-an-address", &AssetId::Btc, Amount(10_000), BtcNetwork::Regtest, &VAULT),
            Err(RecipientError::Bitcoin(_))
        ));
    }

    #[test]
    fn ethereum_assets_need_ethereum_addresses() {
        assert!(matches!(
            Recipient::parse(REGTEST_P2TR, &AssetId::Eth, Amount(1), BtcNetwork::Regtest, &VAULT),
            Err(RecipientError::Ethereum(_))
        ));
        assert_eq!(
            Recipient::parse(
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                &AssetId::Eth,
                Amount(1),
                BtcNetwork::Regtest,
                &VAULT
            ),
            Ok(Recipient::Ethereum("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".parse().unwrap()))
        );
    }
}
