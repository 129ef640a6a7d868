//! Deposits are checked against L1, never taken on trust. Each chain adapter implements
//! [`DepositVerifier`] (defined in `chains::deposit`, re-exported here); a deposit on a chain
//! without one leaves its batch replayed but not hard-final, and the confirmer says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge::Chain;

pub use chains::deposit::{DepositCheck, DepositVerifier, VerifierError};

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
