//! Alarms: what a confirmer refuses to call final, and why. Each stops hard finality at its
//! batch.

use bridge::batch::{ReplayError, RootKind};
use bridge::forced::ForcedError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A root in the header (state, withdrawals) disagrees with the replay.
    RootMismatch,
    /// The header's `prev_hash` is not the previous batch's hash.
    BrokenLink,
    /// A transaction the coordinator signed into a batch is invalid (bad signature, overdraft…).
    InvalidTx,
    /// Anything else a signed batch gets wrong: version, network, count, timestamp.
    InvalidBatch,
    /// Two different batches signed with one number.
    Equivocation,
    /// A deposit credited in a batch that L1 does not show.
    DepositNotOnL1,
    /// A later batch is published while an earlier one stays missing.
    MissingBatch,
    /// A batch records a Bitcoin payout attempt as confirmed that the chain does not show.
    PayoutNotOnL1,
    /// A batch skipped, misread or invented a forced transaction of its range, broke the
    /// forced cursor's chain, or let the cursor fall behind the deadline (crate::forced).
    Censorship,
}

impl AlarmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::RootMismatch => "root_mismatch",
            AlarmKind::BrokenLink => "broken_link",
            AlarmKind::InvalidTx => "invalid_tx",
            AlarmKind::InvalidBatch => "invalid_batch",
            AlarmKind::Equivocation => "equivocation",
            AlarmKind::DepositNotOnL1 => "deposit_not_on_l1",
            AlarmKind::MissingBatch => "missing_batch",
            AlarmKind::PayoutNotOnL1 => "payout_not_on_l1",
            AlarmKind::Censorship => "censorship",
        }
    }

    /// The kind of a replay failure of a batch the coordinator signed. `None` for failures
    /// that are not the coordinator's (a bad signature: someone else's bytes) or a body that
    /// is not the one the header names (someone's edit).
    pub fn of_replay(error: &ReplayError) -> Option<AlarmKind> {
        match error {
            ReplayError::BadSignature { .. } | ReplayError::RootMismatch { root: RootKind::Txs, .. } => None,
            ReplayError::RootMismatch { .. } => Some(AlarmKind::RootMismatch),
            ReplayError::BrokenLink { .. } => Some(AlarmKind::BrokenLink),
            ReplayError::InvalidTx { .. } => Some(AlarmKind::InvalidTx),
            // Records that do not hash to the signed root are someone's edit, like a body.
            ReplayError::Forced { error: ForcedError::RootMismatch { .. }, .. } => None,
            ReplayError::Forced { error: ForcedError::WrongOutcome { .. }, .. } => Some(AlarmKind::InvalidTx),
            ReplayError::Forced { .. } => Some(AlarmKind::InvalidBatch),
            ReplayError::UnsupportedVersion(_)
            | ReplayError::WrongNetwork { .. }
            | ReplayError::UnexpectedNumber { .. }
            | ReplayError::TimestampRegressed { .. }
            | ReplayError::TxCountMismatch { .. }
            | ReplayError::TooManyTxs { .. }
            | ReplayError::Commitment(_) => Some(AlarmKind::InvalidBatch),
        }
    }
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alarm as the confirmer records and serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub number: u64,
    pub kind: AlarmKind,
    pub detail: String,
}
