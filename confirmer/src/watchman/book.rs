//! What this watchman's own replay says each hard-final batch owes, as the signing policy needs
//! it. The follower loop writes after each step; signers read from any thread.
//!
//! A panic while the book is written poisons its lock and may leave it half-updated: a poisoned
//! book reads as halted and owing nothing, so it can only stop signing, never allow it.
//!
//! The book holds only what is still to be signed or paid, so it grows with the backlog, not
//! with the history. What is done leaves it:
//! - the Ethereum leaves of batches whose vault ranges are paid (every leaf paid, or recorded
//!   as stuck, which keeps its own proof) and were seen so at least [`ETH_PRUNE_DEPTH_BLOCKS`]
//!   ago ([`SettlementBook::note_eth_done`]); up to that horizon no range is signed or built
//!   again ([`SettlementBook::eth_pruned_through`]);
//! - each Bitcoin payout plan once confirmed [`BTC_PRUNE_CONFIRMATIONS`] deep
//!   ([`SettlementBook::prune_btc_plan`]); a pruned plan is no longer in the book, so nothing
//!   signs, pays or bumps it again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use bridge::VaultKeys;
use bridge::batch::Settlement;
use bridge::withdrawals::EthWithdrawalTree;
use chains::ethereum::VaultProgress;

use crate::follower::{Follower, RECENT_HEADERS};
use crate::store::{Horizons, StoreError};

/// Ethereum blocks a paid range must be below the head before its leaves leave the book: the
/// vault's bitmap is then final for every practical purpose (two epochs of proof of stake), so
/// no reorg brings a pruned leaf back unpaid.
pub const ETH_PRUNE_DEPTH_BLOCKS: u64 = 64;

/// Confirmations a Bitcoin payout needs before its plan leaves the book: the usual depth past
/// which a reorg is not expected; before it, a plan stays known to the payout loop and the
/// bump clock as confirmed.
pub const BTC_PRUNE_CONFIRMATIONS: u64 = 6;

/// The height of the block that confirmed a transaction with `confirmations` confirmations at
/// tip `tip`.
pub(super) fn confirmed_height(tip: u64, confirmations: u64) -> u64 {
    tip.saturating_add(1).saturating_sub(confirmations.max(1))
}

/// Whether a payout confirmed in the block at height `confirmed_at` is
/// [`BTC_PRUNE_CONFIRMATIONS`] deep at tip `tip`.
pub(super) fn is_btc_deep(confirmed_at: u64, tip: u64) -> bool {
    tip.saturating_add(1).saturating_sub(confirmed_at) >= BTC_PRUNE_CONFIRMATIONS
}

/// Paid ranges waiting for depth, remembered separately. A paying watchman notes at most one
/// per turn, so 256 spans minutes of turns; beyond it the newest mark takes the newer batch and
/// block (later, so never pruning early).
const MAX_ETH_DONE_MARKS: usize = 256;

/// Hard-final batches read from the follower per query when the book catches up (a restart
/// reads the history it has not pruned in pages, not one query per batch).
const READ_PAGE_BATCHES: u64 = 4_096;

#[derive(Debug, Default)]
struct Entries {
    hard_final: u64,
    /// Only batches that still owe something to sign or pay on L1: Ethereum leaves not yet
    /// pruned, or Bitcoin payout plans not yet confirmed deep.
    settlements: BTreeMap<u64, Arc<Settlement>>,
    /// The Ethereum leaves of batches up to here have left the book (paid, deep): no range
    /// starting at or below it is built or signed here again. 0: none.
    eth_pruned_through: u64,
    /// The last batch of the ranges seen done at least `ETH_PRUNE_DEPTH_BLOCKS` ago: pruned up
    /// to this or hard finality, whichever is lower.
    eth_deep_through: u64,
    /// Ranges seen done, not yet deep: (their last batch, the Ethereum block they were seen
    /// done at), batches ascending; at most `MAX_ETH_DONE_MARKS`.
    eth_done: VecDeque<(u64, u64)>,
    /// Every Bitcoin payout plan of the batches up to here has left the book (confirmed deep).
    btc_pruned_through: u64,
    /// The batches up to here owed nothing more when an earlier run of this watchman saved its
    /// horizons ([`SettlementBook::resume`]): the book is read from after them.
    resumed_through: u64,
    /// Header hashes of the latest hard-final batches (at most `RECENT_HEADERS`), for signed
    /// checkpoints.
    headers: BTreeMap<u64, [u8; 32]>,
    /// Why signing is stopped, if it is: an alarm, or an operator.
    halted: Option<String>,
    /// The halt is the follower's alarm (not an operator's command or a shortfall): it lifts
    /// when the follower has no alarm left, which happens only when a takeover's batch
    /// supersedes a `censorship` alarm (follower/takeover.rs).
    halted_by_alarm: bool,
    /// The Ethereum vault's ranges as this watchman's own node last showed them; `None` before
    /// the first read. Only moves forward (the vault's ranges only grow).
    vault: Option<VaultProgress>,
    /// The Bitcoin vault's keys as the replay shows them (`None` without a Bitcoin vault): what
    /// payout plans are built with. Only grows (a rotation adds a key); a plan depends only on
    /// the keys up to its batch, so the latest keys build every earlier plan the same.
    btc_keys: Option<VaultKeys>,
}

/// Why a poisoned book halts signing.
const POISONED: &str = "the settlement book was poisoned by a panic while it was being written: signing \
     stops until the watchman is restarted (docs/OPERATIONS.md)";

/// Cheap to clone; all clones share one book.
#[derive(Debug, Clone, Default)]
pub struct SettlementBook(Arc<RwLock<Entries>>);

impl SettlementBook {
    /// Takes what the follower has made hard-final since the last call, and halts on any alarm.
    /// A settlement the follower cannot read (its database) is an error and the book does not
    /// move past it: asked again at the next call, never taken as "owes nothing".
    pub async fn update_from(&self, follower: &Follower) -> Result<(), StoreError> {
        let status = follower.status();
        let Ok((known, resumed)) = self.0.read().map(|e| (e.hard_final, e.resumed_through)) else {
            tracing::error!("{POISONED}");
            return Ok(());
        };
        let mut owing = Vec::new();
        // After a restart, not the batches settled before it: a start costs the backlog.
        let mut from = known.max(resumed).saturating_add(1);
        while from <= status.hard_final {
            let to = status.hard_final.min(from.saturating_add(READ_PAGE_BATCHES - 1));
            owing.extend(follower.final_settlements(from, to).await?);
            let Some(next) = to.checked_add(1) else { break };
            from = next;
        }
        let Ok(mut entries) = self.0.write() else {
            tracing::error!("{POISONED}");
            return Ok(());
        };
        // Another writer may have moved the book meanwhile: only what is new to it.
        let after = entries.hard_final;
        for (number, settlement) in owing {
            if number > after && number <= status.hard_final {
                entries.keep(number, &settlement);
            }
        }
        // Only the newest are kept: a start far behind does not walk the whole history.
        let newest_kept = status.hard_final.saturating_sub(RECENT_HEADERS as u64);
        for number in after.max(newest_kept).saturating_add(1)..=status.hard_final {
            if let Some(hash) = follower.recent_header(number) {
                entries.headers.insert(number, hash);
            }
        }
        while entries.headers.len() > RECENT_HEADERS {
            entries.headers.pop_first();
        }
        entries.hard_final = entries.hard_final.max(status.hard_final);
        // Ranges seen done before these batches were final here leave now.
        entries.prune_eth();
        metrics::gauge!("watchman_book_batches").set(entries.settlements.len() as f64);
        if entries.halted_by_alarm && status.alarms.is_empty() {
            tracing::warn!("the alarm that halted signing was superseded by a takeover; this watchman signs again");
            metrics::gauge!("watchman_signing_halted").set(0.0);
            entries.halted = None;
            entries.halted_by_alarm = false;
        }
        entries.btc_keys = bridge::rotation::vault_keys(follower.state());
        if entries.halted.is_none()
            && let Some(alarm) = status.alarms.first()
        {
            tracing::error!(batch = alarm.number, kind = %alarm.kind, "alarm: this watchman stops signing");
            metrics::gauge!("watchman_signing_halted").set(1.0);
            entries.halted = Some(format!("alarm {} at batch {}: {}", alarm.kind, alarm.number, alarm.detail));
            entries.halted_by_alarm = true;
        }
        Ok(())
    }

    /// Notes that nothing of the Ethereum leaves of batches up to `through` is needed here any
    /// more as of Ethereum block `head`, and prunes what was noted at least
    /// [`ETH_PRUNE_DEPTH_BLOCKS`] before `head`. The caller vouches: a watchman that pays, for
    /// the vault's ranges it saw every leaf of paid or recorded as stuck (the stuck record keeps
    /// its own proofs); one that only signs, for the batches the vault's ranges cover (its
    /// policy never signs a range there again). Batches not hard-final here yet leave when they
    /// become so.
    pub fn note_eth_done(&self, through: u64, head: u64) {
        let Ok(mut entries) = self.0.write() else { return };
        let newest = entries.eth_done.back().map_or(entries.eth_deep_through, |(batch, _)| *batch);
        if through > newest {
            if entries.eth_done.len() >= MAX_ETH_DONE_MARKS {
                // Merged into the newest mark: its batches now wait for this later block too.
                if let Some(last) = entries.eth_done.back_mut() {
                    *last = (through, last.1.max(head));
                }
            } else {
                entries.eth_done.push_back((through, head));
            }
        }
        while let Some(&(batch, seen)) = entries.eth_done.front()
            && seen.saturating_add(ETH_PRUNE_DEPTH_BLOCKS) <= head
        {
            entries.eth_deep_through = entries.eth_deep_through.max(batch);
            entries.eth_done.pop_front();
        }
        debug_assert!(entries.eth_done.len() <= MAX_ETH_DONE_MARKS);
        entries.prune_eth();
        metrics::gauge!("watchman_book_batches").set(entries.settlements.len() as f64);
    }

    /// Drops Bitcoin payout plan `plan` of batch `batch` from the book: the caller saw it
    /// confirmed at least [`BTC_PRUNE_CONFIRMATIONS`] deep. From then on the book does not list
    /// it, so the policy refuses to sign it and the payout loop and bump clock never see it.
    /// Returns whether the book held it.
    pub fn prune_btc_plan(&self, batch: u64, plan: u64) -> bool {
        let Ok(mut entries) = self.0.write() else { return false };
        let Some(settlement) = entries.settlements.get(&batch).cloned() else { return false };
        if !settlement.btc_plans.iter().any(|p| p.id == plan) {
            return false;
        }
        let kept = Settlement {
            eth: EthWithdrawalTree::new(settlement.eth.withdrawals().to_vec()),
            btc: settlement.btc.clone(),
            btc_plans: settlement.btc_plans.iter().filter(|p| p.id != plan).cloned().collect(),
        };
        entries.settlements.remove(&batch);
        entries.keep(batch, &Arc::new(kept));
        // The horizon: the batches before the first that still has a plan (or hard finality):
        // none of them has a plan left to sign.
        let first_with_plans = entries
            .settlements
            .range(entries.btc_pruned_through.saturating_add(1)..)
            .find(|(_, s)| !s.btc_plans.is_empty())
            .map(|(number, _)| *number);
        let horizon = first_with_plans.map_or(entries.hard_final, |n| n - 1).min(entries.hard_final);
        entries.btc_pruned_through = entries.btc_pruned_through.max(horizon);
        metrics::gauge!("watchman_book_batches").set(entries.settlements.len() as f64);
        true
    }

    /// Starts the book at the horizons an earlier run of this watchman saved (before the first
    /// [`SettlementBook::update_from`]): what they cover owes nothing more, so it is neither
    /// read nor signed again. A book that has read batches already keeps its own horizons.
    pub fn resume(&self, saved: Horizons) {
        let Ok(mut entries) = self.0.write() else { return };
        if entries.hard_final > 0 || entries.resumed_through > 0 {
            return;
        }
        entries.eth_pruned_through = saved.eth_pruned_through;
        entries.eth_deep_through = saved.eth_pruned_through;
        entries.btc_pruned_through = saved.btc_pruned_through;
        entries.resumed_through = saved.settled_through;
        tracing::info!(
            eth_pruned_through = saved.eth_pruned_through,
            btc_pruned_through = saved.btc_pruned_through,
            "the settlement book resumes after the batches an earlier run saw settled"
        );
    }

    /// The horizons, as a restart needs them ([`SettlementBook::resume`]). Every hard-final
    /// batch before the first the book holds owes nothing more: the book drops only batches
    /// that owe nothing or whose debts are paid and pruned.
    pub fn horizons(&self) -> Option<Horizons> {
        let entries = self.0.read().ok()?;
        let before_first_held = entries.settlements.keys().next().map_or(entries.hard_final, |n| n.saturating_sub(1));
        Some(Horizons {
            eth_pruned_through: entries.eth_pruned_through,
            btc_pruned_through: entries.btc_pruned_through,
            settled_through: before_first_held.max(entries.resumed_through),
        })
    }

    /// The Ethereum horizon: the leaves of batches up to here are paid and pruned; no range
    /// starting at or below it is built or signed ([`SettlementBook::range_tree`] refuses).
    pub fn eth_pruned_through(&self) -> u64 {
        self.0.read().map(|e| e.eth_pruned_through).unwrap_or(u64::MAX)
    }

    /// The Bitcoin horizon: every payout plan of the batches up to here is confirmed deep and
    /// pruned; nothing of them is signed.
    pub fn btc_pruned_through(&self) -> u64 {
        self.0.read().map(|e| e.btc_pruned_through).unwrap_or(u64::MAX)
    }

    /// Batches the book holds (each still owes something to sign or pay).
    pub fn len(&self) -> usize {
        self.0.read().map(|e| e.settlements.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops all signing (an alarm, or an operator's command).
    pub fn halt(&self, why: String) {
        if let Ok(mut entries) = self.0.write()
            && entries.halted.is_none()
        {
            metrics::gauge!("watchman_signing_halted").set(1.0);
            entries.halted = Some(why);
        }
    }

    /// Why signing is stopped; a poisoned book is halted.
    pub fn halted(&self) -> Option<String> {
        match self.0.read() {
            Ok(entries) => entries.halted.clone(),
            Err(_) => {
                metrics::gauge!("watchman_signing_halted").set(1.0);
                Some(POISONED.to_owned())
            }
        }
    }

    /// The Bitcoin vault's keys as this watchman's replay shows them.
    pub fn btc_keys(&self) -> Option<VaultKeys> {
        self.0.read().ok()?.btc_keys.clone()
    }

    pub fn hard_final(&self) -> u64 {
        self.0.read().map(|e| e.hard_final).unwrap_or(0)
    }

    /// What hard-final batch `number` still owes; `None` if it is not hard-final here. A
    /// hard-final batch that owes nothing, or whose debts were paid and pruned, has an empty
    /// settlement (see the horizons, [`SettlementBook::eth_pruned_through`] and
    /// [`SettlementBook::btc_pruned_through`]).
    pub fn settlement(&self, number: u64) -> Option<Arc<Settlement>> {
        let entries = self.0.read().ok()?;
        if number == 0 || number > entries.hard_final {
            return None;
        }
        Some(entries.settlements.get(&number).cloned().unwrap_or_else(|| Arc::new(Settlement::empty())))
    }

    /// The header hash of hard-final batch `number` in this watchman's replay, if it is among
    /// the latest it keeps; `None` otherwise (not hard-final here, or too old to vouch for).
    pub fn final_header(&self, number: u64) -> Option<[u8; 32]> {
        let entries = self.0.read().ok()?;
        if number == 0 || number > entries.hard_final {
            return None;
        }
        entries.headers.get(&number).copied()
    }

    /// Notes what this watchman's own Ethereum node shows of the vault's ranges, as it shows
    /// it: lower than before too. An Ethereum reorg can drop a range the vault took, and a view
    /// that never went back would refuse that range as an overlap forever, so no watchman would
    /// sign it again and settlement would stop (found by the simulator, seed 8). A reading that
    /// is merely stale costs at most a signature the vault refuses as an overlap.
    pub fn note_vault(&self, progress: VaultProgress) {
        if let Ok(mut entries) = self.0.write() {
            #[cfg(feature = "planted-bugs")]
            if bridge::planted::active(bridge::planted::PlantedBug::VaultViewNeverGoesBack)
                && entries.vault.is_some_and(|known| progress.range_count < known.range_count)
            {
                return;
            }
            entries.vault = Some(progress);
            // A range seen paid that the vault no longer shows (an Ethereum reorg took it back,
            // or this node fell behind it) vouches for nothing: its mark goes, and is made again,
            // from a later block, once the range is seen paid again. Kept, it would ripen into a
            // pruned horizon over a range the vault does not hold, and every later range reaching
            // into it would be refused for good (a real bug the simulator found).
            #[cfg(feature = "planted-bugs")]
            if bridge::planted::active(bridge::planted::PlantedBug::DoneMarkOutlivesReorg) {
                return;
            }
            while entries.eth_done.back().is_some_and(|(batch, _)| *batch > progress.settled_through) {
                entries.eth_done.pop_back();
            }
        }
    }

    /// The vault's ranges as last read from this watchman's node; `None` before the first read.
    pub fn vault(&self) -> Option<VaultProgress> {
        self.0.read().ok()?.vault
    }

    /// The Ethereum withdrawals tree of batches `first..=last` as this watchman replayed them;
    /// `None` unless every one of them is hard-final here, and `None` for a range reaching into
    /// the pruned horizon (its leaves are gone: the tree would not be the range's).
    pub fn range_tree(&self, first: u64, last: u64) -> Option<EthWithdrawalTree> {
        let entries = self.0.read().ok()?;
        if first == 0 || last < first || last > entries.hard_final {
            return None;
        }
        if first <= entries.eth_pruned_through {
            tracing::warn!(
                first,
                last,
                pruned_through = entries.eth_pruned_through,
                "a range reaching into the pruned, paid batches is not built"
            );
            return None;
        }
        Some(EthWithdrawalTree::concat(entries.settlements.range(first..=last).map(|(_, s)| &s.eth)))
    }

    /// Hard-final batches after `after` that owe Ethereum withdrawals, each with how many;
    /// `None` if `after` is below the pruned horizon (the list would miss the pruned batches).
    pub fn eth_owing_after(&self, after: u64) -> Option<Vec<(u64, usize)>> {
        let entries = self.0.read().ok()?;
        if after < entries.eth_pruned_through {
            return None;
        }
        Some(
            entries
                .settlements
                .range(after.saturating_add(1)..)
                .filter(|(_, s)| !s.eth.withdrawals().is_empty())
                .map(|(n, s)| (*n, s.eth.withdrawals().len()))
                .collect(),
        )
    }

    /// Hard-final batches that owe something on L1, from `from` on.
    pub fn owing_from(&self, from: u64) -> Vec<(u64, Arc<Settlement>)> {
        self.0.read().map(|e| e.settlements.range(from..).map(|(n, s)| (*n, s.clone())).collect()).unwrap_or_default()
    }
}

impl Entries {
    /// Keeps what batch `number` owes, less what is pruned already; nothing if that is nothing.
    fn keep(&mut self, number: u64, settlement: &Arc<Settlement>) {
        let eth_pruned = number <= self.eth_pruned_through && !settlement.eth.withdrawals().is_empty();
        let settlement = if eth_pruned {
            Arc::new(Settlement {
                eth: EthWithdrawalTree::new(Vec::new()),
                btc: settlement.btc.clone(),
                btc_plans: settlement.btc_plans.clone(),
            })
        } else {
            settlement.clone()
        };
        // Queued Bitcoin payouts alone sign nothing: the plans that pay them do.
        if settlement.eth.withdrawals().is_empty() && settlement.btc_plans.is_empty() {
            self.settlements.remove(&number);
            return;
        }
        self.settlements.insert(number, settlement);
    }

    /// Drops the Ethereum leaves of the batches seen done deep, up to hard finality.
    fn prune_eth(&mut self) {
        let through = self.eth_deep_through.min(self.hard_final);
        if through <= self.eth_pruned_through {
            return;
        }
        let from = self.eth_pruned_through + 1;
        self.eth_pruned_through = through;
        let numbers: Vec<u64> = self.settlements.range(from..=through).map(|(number, _)| *number).collect();
        for number in numbers {
            if let Some(settlement) = self.settlements.get(&number).cloned() {
                self.keep(number, &settlement);
            }
        }
        tracing::debug!(through, batches = self.settlements.len(), "paid Ethereum leaves pruned from the book");
    }
}

/// Books for the watchman's unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure should panic
pub(super) mod fixtures {
    use super::*;
    use bridge::btc_payout::PayoutPlan;
    use bridge::withdrawals::EthWithdrawal;
    use bridge::{Address, Amount};

    pub(in crate::watchman) fn leaf(batch: u64, index: u32) -> EthWithdrawal {
        EthWithdrawal { batch, index, token: Address::ZERO, recipient: Address([0x42; 20]), amount: Amount(5) }
    }

    pub(in crate::watchman) fn plan(id: u64, batch: u64) -> PayoutPlan {
        PayoutPlan { id, batch, fee_rate: 1, budget_sat: 1_000, inputs: Vec::new(), payouts: Vec::new() }
    }

    /// A book hard-final through `hard_final` holding these batches' leaves and plans.
    pub(in crate::watchman) fn book_with(hard_final: u64, owing: &[(u64, u32, &[u64])]) -> SettlementBook {
        let book = SettlementBook::default();
        let mut entries = book.0.write().unwrap();
        entries.hard_final = hard_final;
        for &(batch, leaves, plans) in owing {
            let settlement = Settlement {
                eth: EthWithdrawalTree::new((0..leaves).map(|index| leaf(batch, index)).collect()),
                btc: Vec::new(),
                btc_plans: plans.iter().map(|id| plan(*id, batch)).collect(),
            };
            entries.keep(batch, &Arc::new(settlement));
        }
        drop(entries);
        book
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use super::*;

    use super::fixtures::book_with;

    #[test]
    fn the_view_of_the_vault_goes_back_when_a_reorg_drops_a_range() {
        let book = SettlementBook::default();
        book.note_vault(VaultProgress { range_count: 5, settled_through: 40 });
        // An Ethereum reorg dropped range 4 (batches 36..=40): the node shows four ranges.
        book.note_vault(VaultProgress { range_count: 4, settled_through: 35 });
        assert_eq!(book.vault(), Some(VaultProgress { range_count: 4, settled_through: 35 }));
    }

    #[test]
    fn a_range_seen_paid_that_a_reorg_takes_back_is_not_pruned_when_its_mark_would_have_ripened() {
        let book = book_with(10, &[(2, 2, &[]), (4, 1, &[]), (7, 3, &[])]);
        book.note_vault(VaultProgress { range_count: 1, settled_through: 4 });
        book.note_eth_done(4, 100);
        // Eleven blocks later a reorg takes range 0 (batches 1..=4) back.
        book.note_vault(VaultProgress { range_count: 0, settled_through: 0 });
        book.note_eth_done(0, 164);
        assert_eq!(book.eth_pruned_through(), 0, "nothing the vault does not hold is pruned");
        assert!(book.range_tree(1, 7).is_some(), "the range can be signed again");
        // It is taken and paid again at block 170: deep 64 blocks after that, not before.
        book.note_vault(VaultProgress { range_count: 1, settled_through: 4 });
        book.note_eth_done(4, 170);
        book.note_eth_done(4, 233);
        assert_eq!(book.eth_pruned_through(), 0);
        book.note_eth_done(4, 234);
        assert_eq!(book.eth_pruned_through(), 4);
    }

    #[test]
    fn paid_ranges_leave_the_book_once_64_blocks_deep_and_are_never_built_again() {
        let book = book_with(10, &[(2, 2, &[]), (4, 1, &[9]), (7, 3, &[])]);
        let whole = book.range_tree(1, 7).unwrap().root();
        assert_eq!(book.len(), 3);

        // Ranges through batch 4 seen paid at block 100: kept until block 164.
        book.note_eth_done(4, 100);
        book.note_eth_done(4, 163);
        assert_eq!(book.len(), 3, "not deep yet");
        assert_eq!(book.eth_pruned_through(), 0);
        assert_eq!(book.range_tree(1, 7).unwrap().root(), whole);

        book.note_eth_done(4, 164);
        assert_eq!(book.eth_pruned_through(), 4);
        assert_eq!(book.len(), 2, "batch 2 owed only Ethereum leaves: gone");
        let four = book.settlement(4).unwrap();
        assert!(four.eth.withdrawals().is_empty(), "batch 4's leaves are gone");
        assert_eq!(four.btc_plans.len(), 1, "its unconfirmed plan stays");
        assert!(book.settlement(2).unwrap().is_empty());

        // A range reaching into the pruned batches would be another tree: refused, not built.
        assert!(book.range_tree(1, 7).is_none());
        assert!(book.range_tree(4, 7).is_none());
        assert_eq!(book.range_tree(5, 7).unwrap().withdrawals().len(), 3);
        assert_eq!(book.eth_owing_after(3), None, "a list missing the pruned batches is refused");
        assert_eq!(book.eth_owing_after(4), Some(vec![(7, 3)]));
    }

    #[test]
    fn pruning_waits_for_hard_finality_and_marks_are_bounded() {
        let book = book_with(5, &[(3, 1, &[]), (8, 1, &[])]);
        // The vault's ranges (paid by others) reach past what is hard-final here.
        book.note_eth_done(9, 0);
        book.note_eth_done(9, 64);
        assert_eq!(book.eth_pruned_through(), 5, "never past hard finality");
        // Batch 8 became final after that: its leaves leave at the next update.
        {
            let mut entries = book.0.write().unwrap();
            entries.hard_final = 9;
            entries.prune_eth();
        }
        assert_eq!(book.eth_pruned_through(), 9);
        assert!(book.is_empty());

        // Many marks before any is deep: at most MAX_ETH_DONE_MARKS, the newest merged (later,
        // so nothing is pruned early).
        let book = book_with(5_000, &[(4_000, 1, &[]), (4_500, 1, &[])]);
        for through in 1..=4_000 {
            book.note_eth_done(through, through / 100);
        }
        assert_eq!(book.0.read().unwrap().eth_done.len(), MAX_ETH_DONE_MARKS);
        book.note_eth_done(4_000, 40 + ETH_PRUNE_DEPTH_BLOCKS - 1);
        assert!(book.settlement(4_000).unwrap().eth.withdrawals().len() == 1, "the merged mark is not deep yet");
        book.note_eth_done(4_000, 40 + ETH_PRUNE_DEPTH_BLOCKS);
        assert_eq!(book.eth_pruned_through(), 4_000);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn a_deep_payout_plan_leaves_the_book_and_the_horizon_follows() {
        let book = book_with(10, &[(2, 0, &[1, 2]), (3, 1, &[]), (5, 0, &[3])]);
        assert_eq!(book.len(), 3);
        assert!(book.prune_btc_plan(2, 1));
        assert!(!book.prune_btc_plan(2, 1), "pruned once");
        assert!(!book.prune_btc_plan(5, 2), "not batch 5's plan");
        assert_eq!(book.btc_pruned_through(), 1, "batch 2 still has plan 2");
        assert_eq!(
            book.owing_from(1).iter().flat_map(|(_, s)| s.btc_plans.iter().map(|p| p.id)).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(book.prune_btc_plan(2, 2));
        assert_eq!(book.len(), 2, "batch 2 owed nothing else");
        assert_eq!(book.btc_pruned_through(), 4, "up to the batch before plan 3's");
        assert!(book.prune_btc_plan(5, 3));
        assert_eq!(book.btc_pruned_through(), 10);
        assert_eq!(book.len(), 1, "batch 3's Ethereum leaf stays");
        assert!(book.owing_from(1).iter().all(|(_, s)| s.btc_plans.is_empty()));
    }

    #[test]
    fn a_poisoned_book_reads_as_halted_and_approves_nothing() {
        let book = SettlementBook::default();
        book.0.write().unwrap().hard_final = 3;
        book.0.write().unwrap().settlements.insert(2, Arc::new(Settlement::empty()));
        assert_eq!(book.halted(), None);
        assert!(book.settlement(2).is_some());

        // A panic while the book is being written.
        let writer = book.clone();
        let _ = std::thread::spawn(move || {
            let _entries = writer.0.write().unwrap();
            panic!("a panic half-way through an update");
        })
        .join();
        assert!(book.0.is_poisoned());

        let why = book.halted().expect("a poisoned book is halted");
        assert!(why.contains("poisoned"), "{why}");
        assert!(book.settlement(2).is_none(), "a poisoned book justifies no signature");
        assert!(book.owing_from(1).is_empty(), "a poisoned book owes nothing to pay");
        assert!(book.range_tree(1, 3).is_none());
        assert_eq!(book.eth_owing_after(0), None);
        assert_eq!(book.eth_pruned_through(), u64::MAX, "a poisoned book signs no range at all");
        book.note_eth_done(3, 1_000);
        assert!(!book.prune_btc_plan(2, 1));
        // Halting it again is harmless and it stays halted.
        book.halt("operator".into());
        assert!(book.halted().is_some());
    }
}
