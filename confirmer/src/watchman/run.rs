//! One watchman: its own follower feeding its own settlement book, its threshold-signing node
//! (whose policy reads that book), and the chains' settlement steps. [`Watchman::step`] is one
//! turn of the loop a watchman process runs forever.

use std::sync::Arc;

use tss::TssNode;

use super::book::SettlementBook;
use super::payout::{BtcPayouts, PayoutAction, PayoutError};
use super::settle::{EthSettlement, SettleError, SettledBatch};
use crate::follower::{FollowError, Follower};

#[derive(Debug, Default)]
pub struct StepReport {
    /// Batches replayed in this turn.
    pub replayed: u64,
    pub hard_final: u64,
    pub settled: Vec<SettledBatch>,
    pub payouts: Vec<PayoutAction>,
    /// Why settling stopped in this turn (retried next turn), if it did.
    pub settle_error: Option<String>,
}

#[derive(Debug)]
pub struct Watchman {
    follower: Follower,
    book: SettlementBook,
    /// Shared with the admin endpoint, which coordinates its own signing sessions.
    tss: Arc<TssNode>,
    eth: Option<EthSettlement>,
    btc: Option<BtcPayouts>,
}

impl Watchman {
    /// `tss` must have been started with a [`ReplayPolicy`](super::ReplayPolicy) reading `book`.
    pub fn new(
        follower: Follower,
        book: SettlementBook,
        tss: impl Into<Arc<TssNode>>,
        eth: Option<EthSettlement>,
    ) -> Self {
        Watchman { follower, book, tss: tss.into(), eth, btc: None }
    }

    /// Also pay Bitcoin plans.
    pub fn with_bitcoin(mut self, btc: BtcPayouts) -> Self {
        self.btc = Some(btc);
        self
    }

    pub fn follower(&self) -> &Follower {
        &self.follower
    }

    pub fn book(&self) -> &SettlementBook {
        &self.book
    }

    pub fn tss(&self) -> &TssNode {
        &self.tss
    }

    /// The signing node, to share with the admin endpoint.
    pub fn tss_shared(&self) -> Arc<TssNode> {
        self.tss.clone()
    }

    /// Replays what is new (up to `limit` batches), updates the book (halting on an alarm),
    /// then settles what became hard-final. A failed settlement is reported and retried at the
    /// next turn; a failed replay is an error of the turn.
    pub async fn step(&mut self, limit: usize) -> Result<StepReport, FollowError> {
        let step = self.follower.step(limit).await?;
        self.book.update_from(&self.follower);
        let mut report =
            StepReport { replayed: step.replayed, hard_final: self.book.hard_final(), ..StepReport::default() };
        if let Some(eth) = &mut self.eth {
            match eth.settle(&self.tss).await {
                Ok(settled) => report.settled = settled,
                Err(SettleError::Halted(why)) => report.settle_error = Some(format!("halted: {why}")),
                // Not a failure: counted and logged as a deferral by `settle`.
                Err(error @ SettleError::FeeDeferred { .. }) => report.settle_error = Some(error.to_string()),
                Err(error) => {
                    metrics::counter!("watchman_settle_failures_total").increment(1);
                    tracing::warn!(%error, "settling failed; retrying next turn");
                    report.settle_error = Some(error.to_string());
                }
            }
        }
        if let Some(btc) = &mut self.btc {
            match btc.settle(&self.tss).await {
                Ok(actions) => report.payouts = actions,
                Err(PayoutError::Halted(why)) => report.settle_error = Some(format!("halted: {why}")),
                Err(error) => {
                    metrics::counter!("watchman_settle_failures_total").increment(1);
                    tracing::warn!(%error, "Bitcoin payouts failed; retrying next turn");
                    report.settle_error = Some(error.to_string());
                }
            }
        }
        Ok(report)
    }
}
