//! Ethereum withdrawal leaves the vault could not pay (`WithdrawalFailed`: a recipient that
//! refuses ether or burns its gas, a token that refuses the transfer, as a blacklist does). They
//! never hold back their batch or later batches: settlement records them here and moves on, and
//! retries each with exponential backoff. A leaf stays listed (with its proof, so anyone can
//! claim it with `withdraw`, e.g. `bridgectl claim`) until the vault shows it paid.
//!
//! Retries are free until they might succeed: `Submitter::retry` checks the bitmap and simulates
//! `withdraw` first, and sends only when the simulation passes. After `max_attempts` the
//! watchman stops trying itself and only watches (read-only, at the longest interval) for
//! someone to claim it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bridge::withdrawals::{EthWithdrawal, EthWithdrawalTree};
use serde::Serialize;

use crate::store::SavedStuckLeaf;

/// How many stuck leaves are remembered. Each is a paid-for withdrawal, so reaching this takes
/// as many user fees; past it a failed leaf is only counted and logged (it stays claimable on
/// chain), so a flood cannot grow the watchman's memory without bound.
pub const MAX_STUCK_LEAVES: usize = 100_000;

/// When to try a stuck leaf again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each failed retry.
    pub first: Duration,
    /// The longest wait between two retries.
    pub max: Duration,
    /// Retries that may send a transaction before the watchman leaves the leaf to be claimed.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// A minute, doubling to six hours, ten attempts (about two and a half days of trying).
    fn default() -> Self {
        RetryPolicy { first: Duration::from_secs(60), max: Duration::from_secs(6 * 3600), max_attempts: 10 }
    }
}

impl RetryPolicy {
    fn wait(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// One stuck leaf as `GET /withdrawals/stuck` shows it: everything `withdraw` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StuckLeaf {
    /// The vault's range holding the leaf (what `withdraw` takes first), and its batches.
    pub range: u64,
    pub range_first: u64,
    pub range_last: u64,
    pub batch: u64,
    pub index: u32,
    /// `0x000…0` for ether.
    pub token: String,
    pub recipient: String,
    /// Base units, decimal.
    pub amount: String,
    /// The range's withdrawals root (as the vault holds it) and the leaf's proof, 0x-hex.
    pub root: String,
    pub proof: Vec<String>,
    /// Retries so far (after the first failure).
    pub attempts: u32,
    /// When the vault first reported it unpaid (Unix seconds, this watchman's clock).
    pub first_failed_at: u64,
    /// Seconds until this watchman tries again; `null` once it has given up sending (the leaf
    /// can still be claimed by anyone).
    pub next_retry_in_s: Option<u64>,
}

#[derive(Debug)]
struct Entry {
    /// The leaf and its proof in its range's tree (what a retry sends), with its range and
    /// retry count: what a restart keeps. Kept here, so the settlement book may drop the range's
    /// leaves once the range is paid (a few hundred bytes per stuck leaf, at most
    /// `MAX_STUCK_LEAVES` of them).
    saved: SavedStuckLeaf,
    next_retry: Instant,
    given_up: bool,
}

#[derive(Debug, Default)]
struct Record {
    entries: BTreeMap<(u64, u32), Entry>,
    /// Counts the changes a restart must see (a leaf recorded or resolved, a retry counted),
    /// so the watchman saves the record only when it changed.
    changes: u64,
}

/// Cheap to clone; all clones share one record (the settlement writes, the API reads).
#[derive(Debug, Clone, Default)]
pub struct StuckWithdrawals(Arc<RwLock<Record>>);

fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

impl StuckWithdrawals {
    /// Records the leaf at `position` of range `range`'s tree `tree` (batches `first..=last`)
    /// as failed now (`now`, and `unix_s` on the wall clock, for people): a second report of a
    /// known leaf changes nothing. Returns false if the record is full.
    pub fn record(
        &self,
        (range, first, last): (u64, u64, u64),
        tree: &EthWithdrawalTree,
        position: u32,
        policy: &RetryPolicy,
        (now, unix_s): (Instant, u64),
    ) -> bool {
        let (Some(w), Some(proof)) = (tree.withdrawals().get(position as usize), tree.proof(position)) else {
            return false;
        };
        let Ok(mut record) = self.0.write() else { return false };
        let key = (w.batch, w.index);
        if record.entries.contains_key(&key) {
            return true;
        }
        if record.entries.len() >= MAX_STUCK_LEAVES {
            return false;
        }
        let first_failed_at = unix_s;
        let saved = SavedStuckLeaf {
            range,
            range_first: first,
            range_last: last,
            leaf: w.clone(),
            root: tree.root(),
            proof,
            attempts: 0,
            first_failed_at,
        };
        record.entries.insert(key, Entry { saved, next_retry: now + policy.wait(0), given_up: false });
        record.changes += 1;
        metrics::gauge!("watchman_eth_withdrawals_stuck").set(record.entries.len() as f64);
        true
    }

    /// Takes back the leaves an earlier run saved (at start, before the first turn). Each is
    /// due at once: a retry simulates before it sends, so checking costs nothing.
    pub fn restore(&self, saved: Vec<SavedStuckLeaf>, policy: &RetryPolicy, now: Instant) {
        let Ok(mut record) = self.0.write() else { return };
        for saved in saved.into_iter().take(MAX_STUCK_LEAVES) {
            let key = (saved.leaf.batch, saved.leaf.index);
            let given_up = saved.attempts >= policy.max_attempts;
            record.entries.entry(key).or_insert(Entry { saved, next_retry: now, given_up });
        }
        metrics::gauge!("watchman_eth_withdrawals_stuck").set(record.entries.len() as f64);
    }

    /// The record as a restart needs it, with the count of changes it was taken at (see
    /// [`StuckWithdrawals::changes`]).
    pub fn saved(&self) -> (u64, Vec<SavedStuckLeaf>) {
        self.0.read().map(|r| (r.changes, r.entries.values().map(|e| e.saved.clone()).collect())).unwrap_or_default()
    }

    /// How many changes the record has seen: the watchman saves it when this moved.
    pub fn changes(&self) -> u64 {
        self.0.read().map(|r| r.changes).unwrap_or(0)
    }

    /// The leaves whose retry is due at `now`, each with whether a transaction may be sent
    /// (false: the watchman has given up sending and only checks whether it was claimed).
    pub fn due(&self, now: Instant) -> Vec<((u64, u32), bool)> {
        self.0
            .read()
            .map(|r| r.entries.iter().filter(|(_, v)| v.next_retry <= now).map(|(k, v)| (*k, !v.given_up)).collect())
            .unwrap_or_default()
    }

    /// The range holding a recorded leaf: (number, first batch, last batch).
    pub fn range_of(&self, key: (u64, u32)) -> Option<(u64, u64, u64)> {
        let record = self.0.read().ok()?;
        let saved = &record.entries.get(&key)?.saved;
        Some((saved.range, saved.range_first, saved.range_last))
    }

    /// A recorded leaf with what a retry needs: its range's number, the leaf, and its proof.
    pub fn proven(&self, key: (u64, u32)) -> Option<(u64, EthWithdrawal, Vec<[u8; 32]>)> {
        let record = self.0.read().ok()?;
        let saved = &record.entries.get(&key)?.saved;
        Some((saved.range, saved.leaf.clone(), saved.proof.clone()))
    }

    /// The leaf is paid (by this watchman or by a claim): forget it.
    pub fn resolved(&self, key: (u64, u32)) {
        if let Ok(mut record) = self.0.write()
            && record.entries.remove(&key).is_some()
        {
            record.changes += 1;
            metrics::gauge!("watchman_eth_withdrawals_stuck").set(record.entries.len() as f64);
        }
    }

    /// A retry found the leaf still unpayable: wait longer, and give up sending after
    /// `max_attempts` (then check for a claim at the longest interval).
    pub fn still_stuck(&self, key: (u64, u32), policy: &RetryPolicy, now: Instant) {
        let Ok(mut record) = self.0.write() else { return };
        let Some(entry) = record.entries.get_mut(&key) else { return };
        if entry.given_up {
            entry.next_retry = now + policy.max;
            return;
        }
        entry.saved.attempts += 1;
        entry.given_up = entry.saved.attempts >= policy.max_attempts;
        entry.next_retry = now + if entry.given_up { policy.max } else { policy.wait(entry.saved.attempts) };
        record.changes += 1;
    }

    /// Every stuck leaf, in (batch, index) order.
    pub fn list(&self) -> Vec<StuckLeaf> {
        let now = Instant::now();
        self.0
            .read()
            .map(|r| {
                r.entries
                    .values()
                    .map(|entry| {
                        let saved = &entry.saved;
                        StuckLeaf {
                            range: saved.range,
                            range_first: saved.range_first,
                            range_last: saved.range_last,
                            batch: saved.leaf.batch,
                            index: saved.leaf.index,
                            token: saved.leaf.token.to_string(),
                            recipient: saved.leaf.recipient.to_string(),
                            amount: saved.leaf.amount.to_string(),
                            root: hex32(&saved.root),
                            proof: saved.proof.iter().map(|p| hex32(p)).collect(),
                            attempts: saved.attempts,
                            first_failed_at: saved.first_failed_at,
                            next_retry_in_s: (!entry.given_up)
                                .then(|| entry.next_retry.saturating_duration_since(now).as_secs()),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.read().map(|r| r.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::withdrawals::EthWithdrawal;
    use bridge::{Address, Amount};

    #[test]
    fn retries_back_off_and_stop_sending_after_the_last_attempt() {
        let tree = EthWithdrawalTree::new(vec![EthWithdrawal {
            batch: 3,
            index: 0,
            token: Address::ZERO,
            recipient: Address([0x42; 20]),
            amount: Amount(5),
        }]);
        let policy = RetryPolicy { first: Duration::from_secs(10), max: Duration::from_secs(40), max_attempts: 3 };
        let stuck = StuckWithdrawals::default();
        let t0 = Instant::now();
        assert!(stuck.record((0, 1, 3), &tree, 0, &policy, (t0, 1_700_000_000)));
        assert_eq!(stuck.range_of((3, 0)), Some((0, 1, 3)));
        // Its own copy of the leaf and proof, for retries after the book has let the range go.
        let (range, leaf, proof) = stuck.proven((3, 0)).unwrap();
        assert_eq!((range, &leaf), (0, &tree.withdrawals()[0]));
        assert!(bridge::withdrawals::verify_eth_proof(&proof, tree.root(), leaf.leaf()));
        assert!(stuck.due(t0).is_empty());
        assert_eq!(stuck.due(t0 + Duration::from_secs(10)), vec![((3, 0), true)]);
        let mut now = t0 + Duration::from_secs(10);
        // Waits of 20, 40 (the max), then given up: only claim checks, every 40 s.
        for (wait, sending) in [(20, true), (40, true), (40, false), (40, false)] {
            stuck.still_stuck((3, 0), &policy, now);
            assert!(stuck.due(now + Duration::from_secs(wait - 1)).is_empty());
            now += Duration::from_secs(wait);
            assert_eq!(stuck.due(now), vec![((3, 0), sending)], "after a wait of {wait}");
        }
        assert_eq!(stuck.list()[0].attempts, 3);
        assert_eq!(stuck.list()[0].next_retry_in_s, None);

        // A restart takes the saved record back: the same list, given up as before, due now.
        let (changes, saved) = stuck.saved();
        assert_eq!(changes, 1 + 3, "recorded, then three retries counted");
        let restarted = StuckWithdrawals::default();
        restarted.restore(saved, &policy, now);
        let (before, after) = (stuck.list(), restarted.list());
        assert_eq!(after.len(), 1);
        assert_eq!((&after[0].proof, after[0].attempts, after[0].next_retry_in_s), (&before[0].proof, 3, None));
        assert_eq!(restarted.due(now), vec![((3, 0), false)], "only watched for a claim");
        assert_eq!(restarted.proven((3, 0)), stuck.proven((3, 0)));

        stuck.resolved((3, 0));
        assert!(stuck.is_empty());
        assert_eq!(stuck.changes(), 5);
    }
}
