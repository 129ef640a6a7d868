//! The parameters a bridge network is born with. Their hash (the genesis hash) is the first
//! batch's `prev_hash` and every header's `network`, so a batch can only replay on the network
//! it was made for.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::amount::Amount;
use crate::asset::AssetId;
use crate::btc_vault::{BtcVaultParams, BtcVaultParamsError};
use crate::forced::{ForcedParams, ForcedParamsError};
use crate::hashing::{tagged_hash, tags};
use crate::passkey::{WebAuthnParams, WebAuthnParamsError};
use crate::rotation::{RotationParams, RotationParamsError};

/// The Bitcoin network the vault lives on; addresses of any other network are refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum BtcNetwork {
    Mainnet = 0,
    Testnet = 1,
    Signet = 2,
    Regtest = 3,
}

impl From<BtcNetwork> for bitcoin::Network {
    fn from(n: BtcNetwork) -> Self {
        match n {
            BtcNetwork::Mainnet => bitcoin::Network::Bitcoin,
            BtcNetwork::Testnet => bitcoin::Network::Testnet,
            BtcNetwork::Signet => bitcoin::Network::Signet,
            BtcNetwork::Regtest => bitcoin::Network::Regtest,
        }
    }
}

/// An asset the network accepts, with the smallest fee a user transaction in it must pay.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AssetConfig {
    pub asset: AssetId,
    pub min_fee: Amount,
}

/// Everything the state-transition function depends on besides the state and the batch.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NetworkParams {
    /// A short name, e.g. `devnet` or `mainnet`; also the Arweave `Network` tag.
    pub name: String,
    /// The id of the Ethereum chain the vault lives on, and the EIP-712 domain's `chainId`
    /// (domain version 2): a wallet connected to the vault's chain can sign for the bridge, as
    /// MetaMask refuses typed data whose `chainId` is not the connected chain's. The vault as
    /// `verifyingContract` keeps the domain unique to this network.
    pub chain_id: u64,
    /// The Ethereum vault contract: the EIP-712 `verifyingContract`.
    pub eth_vault: Address,
    pub btc_network: BtcNetwork,
    /// The Bitcoin vault: the watchmen's group key and the payout fee bounds. Without it the
    /// network takes no Bitcoin withdrawals (deposits can still be credited).
    #[serde(default)]
    pub btc_vault: Option<BtcVaultParams>,
    /// The coordinator's identity key (BIP-340 x-only) that signs batch headers.
    #[serde(with = "crate::serde_hex::fixed")]
    pub coordinator_key: [u8; 32],
    /// The account that receives every fee.
    pub fee_account: Address,
    /// Accepted assets, sorted and without duplicates (checked by [`NetworkParams::validate`]).
    pub assets: Vec<AssetConfig>,
    /// Forced inclusion through Arweave (docs/PROTOCOL.md, "Forced transactions"). A network
    /// with it seals version-2 headers. Left out of the struct's borsh so that a network
    /// without it keeps its genesis hash; [`NetworkParams::genesis_hash`] appends it when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[borsh(skip)]
    pub forced: Option<ForcedParams>,
    /// Passkey accounts (docs/PROTOCOL.md, "Passkey accounts"): the RP ID and origins a WebAuthn
    /// assertion must carry. Without it the network takes no passkey transactions. Left out of
    /// the struct's borsh like `forced`, so networks without it keep their genesis hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[borsh(skip)]
    pub webauthn: Option<WebAuthnParams>,
    /// How a Bitcoin key rotation hands over (docs/PROTOCOL.md, "Bitcoin in a key rotation");
    /// `None`: the defaults of [`RotationParams`]. Left out of the struct's borsh like `forced`,
    /// so a network without it keeps its genesis hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[borsh(skip)]
    pub rotation: Option<RotationParams>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("the network name must be 1 to 32 characters of a-z, 0-9 and `-`, got {0:?}")]
    Name(String),
    #[error("the asset list must be sorted and free of duplicates (found {0} out of order)")]
    AssetOrder(AssetId),
    #[error("the coordinator key is not a valid BIP-340 x-only public key")]
    CoordinatorKey,
    #[error(
        "eth:0x0000000000000000000000000000000000000000 is no token: an ERC-20 asset names its token contract's address"
    )]
    ZeroToken,
    #[error(transparent)]
    BtcVault(#[from] BtcVaultParamsError),
    #[error(transparent)]
    Forced(#[from] ForcedParamsError),
    #[error(transparent)]
    WebAuthn(#[from] WebAuthnParamsError),
    #[error(transparent)]
    Rotation(#[from] RotationParamsError),
}

/// The EIP-712 domain name and version; with `chain_id` and `eth_vault` they make the domain.
/// Version 2: `chainId` is the vault's Ethereum chain (version 1 used a bridge-only chain id that
/// no wallet could be connected to; docs/PROTOCOL.md, "Versions").
pub const EIP712_NAME: &str = "Settlement Bridge";
pub const EIP712_VERSION: &str = "2";
/// Set before the rotation rules in the genesis preimage.
const ROTATION_MARKER: &[u8] = b"rotation/v1";

impl NetworkParams {
    pub fn validate(&self) -> Result<(), ParamsError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(ParamsError::Name(self.name.clone()));
        }
        let mut seen = BTreeSet::new();
        let mut previous: Option<AssetId> = None;
        for config in &self.assets {
            // No contract lives at the zero address: every deposit and payout in it would fail.
            if config.asset == AssetId::Erc20(Address::ZERO) {
                return Err(ParamsError::ZeroToken);
            }
            if previous.is_some_and(|p| p >= config.asset) || !seen.insert(config.asset) {
                return Err(ParamsError::AssetOrder(config.asset));
            }
            previous = Some(config.asset);
        }
        secp256k1::XOnlyPublicKey::from_slice(&self.coordinator_key).map_err(|_| ParamsError::CoordinatorKey)?;
        if let Some(vault) = &self.btc_vault {
            vault.validate()?;
        }
        if let Some(forced) = &self.forced {
            forced.validate()?;
        }
        if let Some(webauthn) = &self.webauthn {
            webauthn.validate()?;
        }
        if let Some(rotation) = &self.rotation {
            rotation.validate()?;
        }
        Ok(())
    }

    /// The hash that names this network: the first batch's `prev_hash`, every header's `network`.
    /// Without passkey rules: `tagged_hash("bridge/genesis", borsh(params) [‖ borsh(forced)]
    /// [‖ "rotation/v1" ‖ borsh(rotation)])`. With them: `tagged_hash("bridge/genesis+webauthn",
    /// borsh(params) ‖ borsh(Option(forced)) ‖ borsh(webauthn) [‖ "rotation/v1" ‖
    /// borsh(rotation)])`, under its own tag so it cannot share a hash with a network without
    /// them. Each optional part is appended only when set, so older networks keep their hash.
    pub fn genesis_hash(&self) -> [u8; 32] {
        let params = borsh::to_vec(self).unwrap_or_default();
        let rotation = self
            .rotation
            .as_ref()
            .map(|r| [ROTATION_MARKER, crate::codec::to_bytes(r).as_slice()].concat())
            .unwrap_or_default();
        if let Some(webauthn) = &self.webauthn {
            let forced = crate::codec::to_bytes(&self.forced);
            return tagged_hash(
                tags::GENESIS_WEBAUTHN,
                &[&params, &forced, &crate::codec::to_bytes(webauthn), &rotation],
            );
        }
        let forced = self.forced.as_ref().map(crate::codec::to_bytes).unwrap_or_default();
        tagged_hash(tags::GENESIS, &[&params, &forced, &rotation])
    }

    /// The rotation rules in force: the network's own, or the defaults.
    pub fn rotation_rules(&self) -> RotationParams {
        self.rotation.unwrap_or_default()
    }

    pub fn asset(&self, asset: &AssetId) -> Option<&AssetConfig> {
        self.assets.binary_search_by(|c| c.asset.cmp(asset)).ok().map(|i| &self.assets[i])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(assets: Vec<AssetId>) -> NetworkParams {
        NetworkParams {
            name: "test".into(),
            chain_id: 1,
            eth_vault: Address([9; 20]),
            btc_network: BtcNetwork::Regtest,
            btc_vault: None,
            coordinator_key: secp256k1::Keypair::from_seckey_slice(secp256k1::SECP256K1, &[1; 32])
                .unwrap()
                .x_only_public_key()
                .0
                .serialize(),
            fee_account: Address([1; 20]),
            assets: assets.into_iter().map(|asset| AssetConfig { asset, min_fee: Amount(1) }).collect(),
            forced: None,
            webauthn: None,
            rotation: None,
        }
    }

    #[test]
    fn an_erc20_asset_at_the_zero_address_is_refused() {
        assert_eq!(params(vec![AssetId::Eth, AssetId::Erc20(Address([7; 20]))]).validate(), Ok(()));
        assert_eq!(params(vec![AssetId::Eth, AssetId::Erc20(Address::ZERO)]).validate(), Err(ParamsError::ZeroToken));
    }
}
