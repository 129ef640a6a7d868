//! Ethereum: the vault's deposit watcher, the deposit verifier the confirmer uses, the
//! withdrawal submitter, and the vault's holdings. All through alloy, against any JSON-RPC node.
//!
//! Depth: a deposit in block `b` is handed on (and verified as `Confirmed`) once the head is at
//! least `b + depth`, that is once `depth` blocks sit on top of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log, TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use async_trait::async_trait;
use bridge::eth_settlement::EvmSchnorrSignature;
use bridge::withdrawals::EthWithdrawalTree;
use bridge::{Amount, AssetId, Chain, Deposit, L1Ref};
use contracts::{TestToken, Vault, from_alloy, vault_signature};

pub use crate::deposit::ScanMark;
use crate::deposit::{DepositCheck, DepositVerifier, VerifierError};

mod deposits;
pub mod fees;
mod guardian;
mod submitter;
mod vault;
mod writer;

pub use deposits::*;
pub use fees::{FeeConfig, FeeDecision, FeeError, FeePolicy, Fees};
pub use guardian::Guardian;
pub use submitter::*;
pub use vault::*;
pub use writer::VaultWriter;

pub use crate::eth_finality::{Confirmation, FinalityRule, FinalityStatus, FinalityWatch, SafeHeight};
use crate::http::Tls;

/// `eth_feeHistory` as [`fees::decide`] reads it.
pub async fn fee_history(
    provider: &DynProvider,
    policy: &FeePolicy,
) -> Result<alloy::rpc::types::FeeHistory, SubmitError> {
    let blocks = policy.history_blocks.clamp(1, fees::MAX_HISTORY_BLOCKS);
    let percentile = f64::from(policy.priority_fee_percentile);
    Ok(provider.get_fee_history(blocks, BlockNumberOrTag::Latest, &[percentile]).await?)
}

/// A provider that signs with `key` (a secp256k1 private key, hex) through the node at `url`
/// (http or https, trusting `tls`): what a watchman submits roots and payouts with, and a
/// guardian pauses with. Returns the provider and the key's address.
pub fn signing_provider(url: &str, tls: &Tls, key: &str) -> Result<(DynProvider, Address), String> {
    use alloy::network::EthereumWallet;
    use alloy::providers::ProviderBuilder;
    use alloy::signers::local::PrivateKeySigner;
    let signer: PrivateKeySigner =
        key.trim().parse().map_err(|_| "the Ethereum key is not a secp256k1 private key in hex".to_string())?;
    let address = signer.address();
    let provider = ProviderBuilder::default()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(crate::http::eth_rpc_client(url, tls).map_err(|e| e.to_string())?)
        .erased();
    Ok((provider, address))
}

/// Pauses the vault with the guardian's provider (see [`signing_provider`]): a watchman's answer
/// to an alarm. `None` if the vault is paused already.
///
/// A pause is priced from `eth_feeHistory` like everything the watchmen send, but never waits
/// for the ceiling: whoever can raise fees must not be able to hold it back. Its offer is still
/// bounded (the base fee's margin plus the capped tip).
pub async fn pause_vault(
    provider: &DynProvider,
    vault: bridge::Address,
    fee_policy: &FeePolicy,
) -> Result<Option<TransactionReceipt>, SubmitError> {
    let vault = Vault::new(contracts::to_alloy(vault), provider.clone());
    if vault.paused().call().await? {
        return Ok(None);
    }
    let offer = fees::offer(&fee_history(provider, fee_policy).await?, fee_policy)?;
    if offer.fee_per_gas > fee_policy.max_fee_per_gas {
        tracing::warn!(fee_gwei = gwei(offer.fee_per_gas), "pausing above the fee ceiling: a pause never waits");
    }
    let receipt = vault
        .pause()
        .max_fee_per_gas(offer.max_fee_per_gas)
        .max_priority_fee_per_gas(offer.max_priority_fee_per_gas)
        .send()
        .await?
        .get_receipt()
        .await
        .map_err(|e| SubmitError::Rpc(e.to_string()))?;
    if !receipt.status() {
        return Err(SubmitError::Reverted("pause()".into()));
    }
    Ok(Some(receipt))
}

/// The chain id of the node at `url` (the vault's EIP-712 and signature domain need it).
pub async fn chain_id(url: &str, tls: &Tls) -> Result<u64, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    provider.get_chain_id().await.map_err(|e| format!("the Ethereum node at {url}: {e}"))
}

#[cfg(test)]
mod rpc_url_tests {
    use super::*;

    #[test]
    fn a_malformed_or_non_http_rpc_url_is_refused_at_start_up_and_https_is_taken() {
        let tls = Tls::default();
        let rule = Confirmation::Finalized { fallback_depth: 12 };
        let garbage = EthDepositVerifier::connect("not a url", &tls, bridge::Address::ZERO, rule).unwrap_err();
        assert!(garbage.contains("not a URL for the Ethereum RPC"), "{garbage}");
        let ws = EthDepositVerifier::connect("ws://127.0.0.1:8546", &tls, bridge::Address::ZERO, rule).unwrap_err();
        assert!(ws.contains("must be http or https, not ws"), "{ws}");
        assert!(EthDepositVerifier::connect("http://127.0.0.1:8545", &tls, bridge::Address::ZERO, rule).is_ok());
        assert!(EthDepositVerifier::connect("https://rpc.example", &tls, bridge::Address::ZERO, rule).is_ok());
    }
}
