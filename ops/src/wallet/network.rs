//! What the wallet needs to know about the network before it signs: the EIP-712 domain (from
//! the coordinator's `GET /info`), the assets it takes and their least fees, the Bitcoin
//! network; and the parsing of the user's asset and amount arguments.

use std::str::FromStr;

use anyhow::{anyhow, bail};
use bridge::eip712::Domain;
use bridge::{Address, Amount, AssetId, BtcNetwork};
use coordinator::api::views::Info;

use super::endpoints::Api;

/// The network as the coordinator describes it.
#[derive(Debug, Clone)]
pub struct Network {
    pub chain_id: u64,
    pub eth_vault: Address,
    pub btc_network: BtcNetwork,
    /// Accepted assets with their least fee.
    pub fees: Vec<(AssetId, Amount)>,
}

impl Network {
    pub async fn fetch(coordinator: &Api) -> anyhow::Result<Self> {
        let info: Info = coordinator.get("/info").await?;
        let bad = |what: &str, e: &dyn std::fmt::Display| anyhow!("the coordinator's /info has a bad {what}: {e}");
        let eth_vault: Address = info.eth_vault.parse().map_err(|e| bad("eth_vault", &e))?;
        let btc_network: BtcNetwork = serde_json::from_value(serde_json::Value::String(info.btc_network.clone()))
            .map_err(|e| bad("btc_network", &e))?;
        let mut fees = Vec::new();
        for rule in &info.fees {
            let asset: AssetId = rule.asset.parse().map_err(|e| bad("fee asset", &e))?;
            let min_fee: Amount = rule.min_fee.parse().map_err(|e| bad("min_fee", &e))?;
            fees.push((asset, min_fee));
        }
        Ok(Network { chain_id: info.chain_id, eth_vault, btc_network, fees })
    }

    /// The network as its parameters name it (a confirmer's `/info`, for a forced send).
    pub fn from_params(params: &bridge::NetworkParams) -> Self {
        Network {
            chain_id: params.chain_id,
            eth_vault: params.eth_vault,
            btc_network: params.btc_network,
            fees: params.assets.iter().map(|a| (a.asset, a.min_fee)).collect(),
        }
    }

    /// The EIP-712 domain users sign under.
    pub fn domain(&self) -> Domain {
        Domain::of_vault(self.chain_id, self.eth_vault)
    }

    /// The least fee of `asset`, or an error naming the assets the network takes.
    pub fn min_fee(&self, asset: &AssetId) -> anyhow::Result<Amount> {
        match self.fees.iter().find(|(a, _)| a == asset) {
            Some((_, fee)) => Ok(*fee),
            None => {
                let taken: Vec<String> = self.fees.iter().map(|(a, _)| a.to_string()).collect();
                bail!("this network does not take {asset}; it takes {}", taken.join(", "))
            }
        }
    }
}

/// An asset argument: `eth`, `btc`, `erc20` (the devnet's test token), a token address
/// `0x…`, or a full asset id (`eth:ETH`, `eth:0x…`, `btc:BTC`).
pub fn parse_asset(text: &str, devnet_erc20: Option<&str>) -> anyhow::Result<AssetId> {
    let hint = "--asset is eth, btc, erc20 (the devnet's token), a token address 0x…, or eth:ETH, eth:0x…, btc:BTC";
    match text.trim() {
        "eth" | "ETH" => Ok(AssetId::Eth),
        "btc" | "BTC" => Ok(AssetId::Btc),
        "erc20" => {
            let token = devnet_erc20.ok_or_else(|| anyhow!("--asset erc20 means the devnet's test token, but there is no devnet state file; give the token address instead"))?;
            Ok(AssetId::Erc20(Address::from_str(token).map_err(|e| anyhow!("the devnet's token {token}: {e}"))?))
        }
        token if token.starts_with("0x") => Ok(AssetId::Erc20(
            token.parse().map_err(|e| anyhow!("--asset {token}: not a token address: {e} ({hint})"))?,
        )),
        other => other.parse().map_err(|e| anyhow!("--asset {other}: {e} ({hint})")),
    }
}

/// An amount in base units, above zero.
pub fn parse_amount(flag: &str, text: &str) -> anyhow::Result<Amount> {
    let amount: Amount = text
        .trim()
        .parse()
        .map_err(|e| anyhow!("--{flag} {text}: {e} (base units: wei, satoshi, or the token's smallest unit)"))?;
    if flag == "amount" && amount.is_zero() {
        bail!("--amount must be above zero");
    }
    Ok(amount)
}

/// A bridge account address.
pub fn parse_account(flag: &str, text: &str) -> anyhow::Result<Address> {
    text.trim().parse().map_err(|e| anyhow!("--{flag} {text}: {e} (an account is 0x and 40 hex digits)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn asset_arguments() {
        let token = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(parse_asset("eth", None).unwrap(), AssetId::Eth);
        assert_eq!(parse_asset("btc:BTC", None).unwrap(), AssetId::Btc);
        assert_eq!(parse_asset(token, None).unwrap(), AssetId::Erc20(token.parse().unwrap()));
        assert_eq!(parse_asset(&format!("eth:{token}"), None).unwrap(), AssetId::Erc20(token.parse().unwrap()));
        assert_eq!(parse_asset("erc20", Some(token)).unwrap(), AssetId::Erc20(token.parse().unwrap()));
        assert!(parse_asset("erc20", None).unwrap_err().to_string().contains("token address"));
        assert!(parse_asset("doge", None).unwrap_err().to_string().contains("--asset"));
        assert!(parse_asset("0x1234", None).is_err());
    }

    #[test]
    fn amount_arguments() {
        assert_eq!(parse_amount("amount", "1000").unwrap(), Amount(1000));
        assert_eq!(parse_amount("fee", "0").unwrap(), Amount(0));
        assert!(parse_amount("amount", "0").is_err());
        assert!(parse_amount("amount", "1.5").is_err());
        assert!(parse_amount("amount", "-3").is_err());
        assert!(parse_amount("amount", &"9".repeat(40)).is_err());
    }
}
