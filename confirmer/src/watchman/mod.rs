//! The watchman: a confirmer that holds a share of the group key. It signs only what its own
//! replay of the DA justifies ([`policy::ReplayPolicy`]), and stops signing on any alarm.
//!
//! `book`: what this watchman's replay says each hard-final batch owes, shared between the
//! follower loop (writer) and the signing policy (reader); `policy`: the `SigningPolicy`;
//! `settle`: sign, submit and pay the Ethereum withdrawals of ranges of hard-final batches
//! (`range_plan`: which range, when, whose turn); `payout`: sign,
//! broadcast and bump each hard-final Bitcoin payout plan, each on its own; `bump_clock`: when this
//! watchman's own node allows a fee bump; `stuck`: leaves the vault could not pay, retried with
//! backoff and listed for claims; `admin`: the vault's admin messages, signed only with this
//! operator's approval of each; `checkpoint`: signed checkpoints (batch, header hash) for
//! confirmers that join late; `run`: the replay-and-settle step of a turn
//! (replay, book, settle, pay); `duties`: the whole turn as a supervised task (the step,
//! solvency, the guardian's pause, checkpoints).

pub mod admin;
pub mod book;
pub mod bump_clock;
pub mod checkpoint;
pub mod duties;
pub mod payout;
pub mod policy;
pub mod range_plan;
pub mod run;
pub mod settle;
pub mod stuck;

pub use book::SettlementBook;
pub use bump_clock::{BUMP_CLOCK_TASK, BumpClock, BumpClockTask};
pub use checkpoint::{
    CHECKPOINT_RETRY, CheckpointDuty, CheckpointSchedule, CheckpointSignError, CheckpointWriter,
    checkpoint_from_session, checkpoint_request, checkpoint_signing_request, due_checkpoint, sign_checkpoint,
};
pub use duties::{Duties, OnDuty, WATCHMAN_TASK};
pub use payout::{BtcPayouts, PayoutAction, PayoutError};
pub use policy::{
    PayoutInput, RangeDetail, ReplayPolicy, SETTLE_ETH_WITHDRAWALS, SIGN_BTC_PAYOUT_INPUT, SIGN_CHECKPOINT,
};
pub use range_plan::{RangeDecision, RangeLimits, Turns};
pub use run::{StepReport, Watchman};
pub use settle::{EthSettlement, SettleError, SettledRange};
pub use stuck::{RetryPolicy, StuckLeaf, StuckWithdrawals};
