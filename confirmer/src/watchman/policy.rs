//! The watchman's answer to "sign this?": yes only if this watchman's own replay has made the
//! batch hard-final and produced exactly the message asked for. Anything else is refused with
//! the reason, logged as an error and counted: a mismatch means some watchman's replay (or the
//! session's coordinator) disagrees with this one, which an operator must look at.

use bridge::eth_settlement::{VaultDomain, withdrawals_message};
use tss::{Decision, KeyPath, SigningPolicy, SigningRequest};

use super::book::SettlementBook;

/// `SigningContext::purpose` of the Ethereum vault's `submitWithdrawals` message.
pub const SETTLE_ETH_WITHDRAWALS: &str = "eth-withdrawals-root";

#[derive(Debug, Clone)]
pub struct ReplayPolicy {
    book: SettlementBook,
    /// The Ethereum vault this watchman signs for; `None` if it signs for none.
    eth_vault: Option<VaultDomain>,
}

impl ReplayPolicy {
    pub fn new(book: SettlementBook, eth_vault: Option<VaultDomain>) -> Self {
        ReplayPolicy { book, eth_vault }
    }

    fn check(&self, request: &SigningRequest) -> Result<(), String> {
        if let Some(why) = self.book.halted() {
            return Err(format!("signing is stopped: {why}"));
        }
        match (request.context.chain.as_str(), request.context.purpose.as_str()) {
            ("ethereum", SETTLE_ETH_WITHDRAWALS) => self.check_eth_withdrawals(request),
            ("bitcoin", _) => Err("this watchman does not sign Bitcoin payouts yet".into()),
            (chain, purpose) => Err(format!("unknown request: chain {chain:?}, purpose {purpose:?}")),
        }
    }

    fn check_eth_withdrawals(&self, request: &SigningRequest) -> Result<(), String> {
        let Some(domain) = &self.eth_vault else {
            return Err("this watchman is not configured for an Ethereum vault".into());
        };
        if request.key_path != KeyPath::Vault {
            return Err("the vault's messages are signed with the vault key only".into());
        }
        let Some(batch) = request.context.batch else {
            return Err("a withdrawals root names no batch".into());
        };
        let Some(settlement) = self.book.settlement(batch) else {
            return Err(format!("batch {batch} is not hard-final in this watchman's replay"));
        };
        let root = settlement.eth.root();
        if settlement.eth.withdrawals().is_empty() {
            return Err(format!("batch {batch} owes no Ethereum withdrawals in this watchman's replay"));
        }
        let expected = withdrawals_message(domain, batch, root);
        if request.message.as_slice() != expected.as_slice() {
            return Err(format!(
                "the message is not batch {batch}'s withdrawals root {} for this vault and epoch as replayed here",
                hex::encode(root)
            ));
        }
        Ok(())
    }
}

impl SigningPolicy for ReplayPolicy {
    fn decide(&self, request: &SigningRequest) -> Decision {
        match self.check(request) {
            Ok(()) => {
                metrics::counter!("watchman_policy_approvals_total").increment(1);
                Decision::Approve
            }
            Err(reason) => {
                metrics::counter!("watchman_policy_refusals_total").increment(1);
                tracing::error!(chain = %request.context.chain, batch = ?request.context.batch, %reason, "refused to sign");
                Decision::Refuse { reason }
            }
        }
    }
}
