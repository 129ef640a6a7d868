//! Deposits are checked against L1, never taken on trust. Each chain adapter implements
//! [`DepositVerifier`]; a deposit on a chain without one leaves its batch replayed but not
//! hard-final, and the confirmer says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bridge::{Chain, Deposit};

/// What L1 says about a deposit a batch credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositCheck {
    /// L1 shows it, at the confirmation depth, with this account, asset and amount.
    Confirmed,
    /// L1 shows it, but not yet as deep as the chain requires: check again later.
    NotYetDeep,
    /// L1 does not show it as credited (absent, reorged out, or different): an alarm.
    NotOnL1 { reason: String },
}

#[derive(Debug, thiserror::Error)]
#[error("the {chain} node could not be asked about a deposit: {reason}; retrying")]
pub struct VerifierError {
    pub chain: Chain,
    pub reason: String,
}

#[async_trait]
pub trait DepositVerifier: Send + Sync {
    async fn check(&self, deposit: &Deposit) -> Result<DepositCheck, VerifierError>;
}

/// The verifiers configured, by chain.
#[derive(Clone, Default)]
pub struct DepositVerifiers {
    by_chain: BTreeMap<Chain, Arc<dyn DepositVerifier>>,
}

impl std::fmt::Debug for DepositVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_chain.keys()).finish()
    }
}

impl DepositVerifiers {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn with(mut self, chain: Chain, verifier: Arc<dyn DepositVerifier>) -> Self {
        self.by_chain.insert(chain, verifier);
        self
    }

    pub fn for_chain(&self, chain: Chain) -> Option<&Arc<dyn DepositVerifier>> {
        self.by_chain.get(&chain)
    }
}
