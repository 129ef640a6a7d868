//! The guardian: the one key with which a single watchman may pause the vault on its own (the
//! answer to an alarm; resuming needs the group, see `confirmer::watchman::admin`).

use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionReceipt;

use super::{FeePolicy, SubmitError, pause_vault, signing_provider};
use crate::http::Tls;

/// A guardian key's provider, bound to one vault and priced by one fee policy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guardian {
    provider: DynProvider,
    vault: bridge::Address,
    fees: FeePolicy,
}

impl Guardian {
    pub fn new(provider: DynProvider, vault: bridge::Address, fees: FeePolicy) -> Self {
        Guardian { provider, vault, fees }
    }

    /// The guardian key `key` (hex) through the node at `url`.
    pub fn connect(url: &str, tls: &Tls, key: &str, vault: bridge::Address, fees: FeePolicy) -> Result<Self, String> {
        let (provider, _) = signing_provider(url, tls, key)?;
        Ok(Guardian::new(provider, vault, fees))
    }

    /// Pauses the vault ([`pause_vault`]); `None` if it is paused already.
    pub async fn pause(&self) -> Result<Option<TransactionReceipt>, SubmitError> {
        pause_vault(&self.provider, self.vault, &self.fees).await
    }

    /// The node's tip, for how deep a pause is.
    pub async fn block_number(&self) -> Result<u64, SubmitError> {
        self.provider.get_block_number().await.map_err(|e| SubmitError::Rpc(e.to_string()))
    }
}
