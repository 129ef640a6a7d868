//! The EIP-712 typed data users sign. A wallet's `eth_signTypedData_v4` over these types, with
//! the network's domain, produces the signature the bridge accepts.

use alloy_primitives::U256;
use alloy_sol_types::{Eip712Domain, SolStruct, sol};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::hashing::keccak256;
use crate::network::{EIP712_NAME, EIP712_VERSION, NetworkParams};
use crate::passkey::PasskeyRules;

sol! {
    /// Move `amount` of `asset` from `from` to `to` inside the bridge, paying `fee`.
    #[derive(Debug, PartialEq, Eq)]
    struct Transfer {
        address from;
        address to;
        string asset;
        uint256 amount;
        uint256 fee;
        uint64 nonce;
    }

    /// Take `amount` of `asset` out of the bridge to `recipient` on the asset's chain.
    #[derive(Debug, PartialEq, Eq)]
    struct Withdraw {
        address from;
        string asset;
        uint256 amount;
        uint256 fee;
        string recipient;
        uint64 nonce;
    }
}

/// The domain's fields exactly as `eth_signTypedData_v4` takes them (`domain` in its JSON), served
/// by `GET /info` as `eip712_domain`, so a browser wallet signs without knowing the rules above.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainFields {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
    pub verifying_contract: crate::Address,
}

impl DomainFields {
    pub fn of(params: &NetworkParams) -> Self {
        DomainFields {
            name: EIP712_NAME.into(),
            version: EIP712_VERSION.into(),
            chain_id: params.chain_id,
            verifying_contract: params.eth_vault,
        }
    }
}

/// The network's EIP-712 domain with its separator computed once; the hot path then hashes
/// only the message struct. It also carries the network's passkey rules, since a passkey signs
/// the same digest and is checked where an EIP-712 signature is.
#[derive(Clone, Debug)]
pub struct Domain {
    domain: Eip712Domain,
    separator: [u8; 32],
    passkeys: Option<Arc<PasskeyRules>>,
}

impl Domain {
    pub fn new(params: &NetworkParams) -> Self {
        let mut domain = Self::of_vault(params.chain_id, params.eth_vault);
        domain.passkeys = params.webauthn.as_ref().map(|w| Arc::new(PasskeyRules::new(w)));
        domain
    }

    /// The network's passkey rules, if it takes passkey transactions.
    pub fn passkey_rules(&self) -> Option<&PasskeyRules> {
        self.passkeys.as_deref()
    }

    /// The domain of the network whose vault is `eth_vault` on the Ethereum chain `chain_id`: all
    /// it depends on, so a wallet that knows only these two (from `/info`) signs the same way.
    pub fn of_vault(chain_id: u64, eth_vault: crate::Address) -> Self {
        let domain = Eip712Domain::new(
            Some(EIP712_NAME.into()),
            Some(EIP712_VERSION.into()),
            Some(U256::from(chain_id)),
            Some(eth_vault.into()),
            None,
        );
        let separator = domain.hash_struct().0;
        Domain { domain, separator, passkeys: None }
    }

    pub fn eip712_domain(&self) -> &Eip712Domain {
        &self.domain
    }

    pub fn separator(&self) -> [u8; 32] {
        self.separator
    }

    /// `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(message))`.
    pub fn signing_hash<T: SolStruct>(&self, message: &T) -> [u8; 32] {
        let mut preimage = [0u8; 66];
        preimage[0] = 0x19;
        preimage[1] = 0x01;
        preimage[2..34].copy_from_slice(&self.separator);
        preimage[34..].copy_from_slice(&message.eip712_hash_struct().0);
        keccak256(preimage)
    }
}
