//! The vault's admin calls (`unpause`, `setCap`, `proposeKey`, `acceptKey`) with a group
//! signature, and the vault's admin state. Each call is simulated first, so a refusal comes back
//! as the vault's own error (`StaleNonce`, `NotPaused`, `InvalidSignature`…) and costs no gas.

use alloy::primitives::{Address, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall;
use bridge::eth_settlement::EvmSchnorrSignature;
use contracts::{Vault, to_alloy, vault_signature};

use crate::ethereum::{SubmitError, Submitter};

/// What the vault says of its governance now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VaultAdminState {
    /// The nonce the next unpause, cap setting or key proposal must name.
    pub admin_nonce: u64,
    pub paused: bool,
    pub key_epoch: u64,
    /// The proposed key's x coordinate, zero if none is pending.
    #[serde(with = "hex_word")]
    pub pending_key: [u8; 32],
}

/// One admin call, as the vault takes it (the signature apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultAdminCall {
    Unpause { nonce: u64 },
    SetCap { token: bridge::Address, limit: u128, window_secs: u64, nonce: u64 },
    ProposeKey { new_key: [u8; 32], nonce: u64 },
    AcceptKey,
}

impl Submitter {
    pub async fn admin_state(&self) -> Result<VaultAdminState, SubmitError> {
        let vault = self.vault_contract();
        Ok(VaultAdminState {
            admin_nonce: vault.adminNonce().call().await?,
            paused: vault.paused().call().await?,
            key_epoch: vault.keyEpoch().call().await?,
            pending_key: vault.pendingKey().call().await?.to_be_bytes(),
        })
    }

    /// Sends `call` with the group's signature; simulated first, so the vault's refusal comes back
    /// as [`SubmitError::Refused`] without a transaction.
    pub async fn send_admin(
        &self,
        call: VaultAdminCall,
        sig: &EvmSchnorrSignature,
    ) -> Result<TransactionReceipt, SubmitError> {
        let vault = self.vault_contract();
        let sig = vault_signature(sig);
        let input = match call {
            VaultAdminCall::Unpause { nonce } => {
                vault.unpause(nonce, sig.clone()).call().await?;
                Vault::unpauseCall { nonce, sig }.abi_encode()
            }
            VaultAdminCall::SetCap { token, limit, window_secs, nonce } => {
                let token: Address = to_alloy(token);
                vault.setCap(token, limit, window_secs, nonce, sig.clone()).call().await?;
                Vault::setCapCall { token, limit, window: window_secs, nonce, sig }.abi_encode()
            }
            VaultAdminCall::ProposeKey { new_key, nonce } => {
                let new_key = U256::from_be_bytes(new_key);
                vault.proposeKey(new_key, nonce, sig.clone()).call().await?;
                Vault::proposeKeyCall { newKey: new_key, nonce, sig }.abi_encode()
            }
            VaultAdminCall::AcceptKey => {
                vault.acceptKey(sig.clone()).call().await?;
                Vault::acceptKeyCall { sig }.abi_encode()
            }
        };
        self.send(input).await
    }

    /// The cap the vault holds for `token` (the zero address for ether): `(limit, window_secs)`.
    pub async fn cap_of(&self, token: bridge::Address) -> Result<(u128, u64), SubmitError> {
        let cap = self.vault_contract().caps(to_alloy(token)).call().await?;
        Ok((cap.limit, cap.window))
    }
}

/// A submitter that only reads the vault (no key): what a watchman without a sender key uses to
/// learn the vault's admin nonce and epoch. Sending with it fails at the node.
pub fn reader(url: &str, tls: &crate::http::Tls, vault: bridge::Address) -> Result<Submitter, String> {
    let provider = crate::http::eth_provider(url, tls).map_err(|e| e.to_string())?;
    Ok(Submitter::new(provider, to_alloy(vault), Address::ZERO))
}

mod hex_word {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes = hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("32 bytes of hex"))
    }
}
