//! One watchman: its own follower feeding its own settlement book, its threshold-signing node
//! (whose policy reads that book), and the chains' settlement steps. [`Watchman::step`] is one
//! turn of the loop a watchman process runs forever.

use std::sync::Arc;

use tss::TssNode;

use super::book::SettlementBook;
use super::payout::{BtcPayouts, PayoutAction, PayoutError};
use super::settle::{EthSettlement, SettleError, SettledRange};
use crate::follower::{FollowError, Follower};
use crate::store::Horizons;

#[derive(Debug, Default)]
pub struct StepReport {
    /// Batches replayed in this turn.
    pub replayed: u64,
    pub hard_final: u64,
    pub settled: Vec<SettledRange>,
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
    /// Reads the vault's ranges for the policy when this watchman does not settle Ethereum
    /// itself (settling reads them anyway).
    vault_reader: Option<chains::ethereum::VaultReader>,
    btc: Option<BtcPayouts>,
    /// What this run saved last (see [`Watchman::save_progress`]); `None` before the first turn,
    /// which first takes back what the last run saved.
    saved: Option<Saved>,
}

/// What a watchman last saved of its settlement progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Saved {
    horizons: Horizons,
    stuck_changes: u64,
}

impl Watchman {
    /// `tss` must have been started with a [`ReplayPolicy`](super::ReplayPolicy) reading `book`.
    pub fn new(
        follower: Follower,
        book: SettlementBook,
        tss: impl Into<Arc<TssNode>>,
        eth: Option<EthSettlement>,
    ) -> Self {
        Watchman { follower, book, tss: tss.into(), eth, vault_reader: None, btc: None, saved: None }
    }

    /// Reads the vault's ranges each turn for the signing policy (a watchman that signs range
    /// roots but submits nothing; one that settles reads them anyway).
    pub fn with_vault_reader(mut self, reader: chains::ethereum::VaultReader) -> Self {
        self.vault_reader = Some(reader);
        self
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

    /// The Ethereum settlement, if this watchman pays.
    pub fn eth(&self) -> Option<&EthSettlement> {
        self.eth.as_ref()
    }

    pub fn tss(&self) -> &TssNode {
        &self.tss
    }

    /// A clean stop: the follower's state saved unless it already is ([`Follower::finish_snapshots`]).
    pub async fn finish_snapshots(&mut self) -> Result<Option<u64>, FollowError> {
        self.follower.finish_snapshots().await
    }

    /// The signing node, to share with the admin endpoint.
    pub fn tss_shared(&self) -> Arc<TssNode> {
        self.tss.clone()
    }

    /// Replays what is new (up to `limit` batches), updates the book (halting on an alarm),
    /// then settles what became hard-final. A failed settlement is reported and retried at the
    /// next turn; a failed replay is an error of the turn.
    pub async fn step(&mut self, limit: usize) -> Result<StepReport, FollowError> {
        if self.saved.is_none() {
            self.resume().await?;
        }
        let step = self.follower.step(limit).await?;
        self.book.update_from(&self.follower).await?;
        let mut report =
            StepReport { replayed: step.replayed, hard_final: self.book.hard_final(), ..StepReport::default() };
        if let Some(reader) = &self.vault_reader {
            match reader.progress().await {
                Ok(progress) => {
                    self.book.note_vault(progress);
                    // A watchman that pays nothing never signs a range the vault covers: the
                    // covered batches' leaves may leave its book once deep. (One that pays
                    // prunes only what it saw paid: a covered range may still be its to pay.)
                    if self.eth.is_none()
                        && progress.settled_through > self.book.eth_pruned_through()
                        && let Ok(head) = reader.block_number().await
                    {
                        self.book.note_eth_done(progress.settled_through, head);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the vault's ranges failed; the policy keeps its last view")
                }
            }
        }
        if let Some(eth) = &mut self.eth {
            // The window of the waiting withdrawals runs from their batch's own time.
            if let Some(batch) = eth.waiting_batch()
                && let Ok(Some(replayed)) = self.follower.store().replayed_batch(batch).await
            {
                eth.note_batch_time(batch, replayed.batch.header.timestamp);
            }
            match eth.settle(&*self.tss).await {
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
            match btc.settle(&*self.tss).await {
                Ok(actions) => report.payouts = actions,
                Err(PayoutError::Halted(why)) => report.settle_error = Some(format!("halted: {why}")),
                Err(error) => {
                    metrics::counter!("watchman_settle_failures_total").increment(1);
                    tracing::warn!(%error, "Bitcoin payouts failed; retrying next turn");
                    report.settle_error = Some(error.to_string());
                }
            }
        }
        self.save_progress().await;
        Ok(report)
    }

    /// Takes back what the last run saved (its book's horizons and its stuck leaves), so the
    /// book is read from the first batch that still owed something, not from genesis, and the
    /// vault's ranges are not walked again.
    async fn resume(&mut self) -> Result<(), FollowError> {
        let store = self.follower.store();
        let horizons = store.watchman_horizons().await?;
        self.book.resume(horizons);
        let mut stuck_changes = 0;
        // Only a paying watchman records stuck leaves.
        if let Some(eth) = &self.eth {
            eth.restore_stuck(store.stuck_leaves().await?);
            stuck_changes = eth.stuck().changes();
        }
        self.saved = Some(Saved { horizons, stuck_changes });
        Ok(())
    }

    /// Saves what changed of the settlement progress: the stuck leaves first, then the
    /// horizons (a saved horizon past a leaf the vault could not pay must find that leaf saved).
    /// A failure is logged and retried next turn; until then a restart reads a little more.
    async fn save_progress(&mut self) {
        let Some(saved) = self.saved else { return };
        let store = self.follower.store();
        let mut now = saved;
        // The record is copied only when it changed: it may hold up to `MAX_STUCK_LEAVES`.
        if let Some(eth) = &self.eth
            && eth.stuck().changes() != saved.stuck_changes
        {
            let (changes, leaves) = eth.stuck().saved();
            if let Err(error) = store.save_stuck_leaves(&leaves).await {
                tracing::warn!(%error, "saving the stuck withdrawals failed; retried next turn");
                return;
            }
            now.stuck_changes = changes;
        }
        if let Some(horizons) = self.book.horizons()
            && horizons != saved.horizons
        {
            match store.save_watchman_horizons(horizons).await {
                Ok(()) => now.horizons = horizons,
                Err(error) => tracing::warn!(%error, "saving the settlement book's horizons failed; retried next turn"),
            }
        }
        self.saved = Some(now);
    }
}
