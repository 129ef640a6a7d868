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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge::withdrawals::EthWithdrawalTree;
use serde::Serialize;

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
    view: StuckLeaf,
    next_retry: Instant,
    given_up: bool,
}

/// Cheap to clone; all clones share one record (the settlement writes, the API reads).
#[derive(Debug, Clone, Default)]
pub struct StuckWithdrawals(Arc<RwLock<BTreeMap<(u64, u32), Entry>>>);

fn hex32(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

impl StuckWithdrawals {
    /// Records the leaf at `position` of range `range`'s tree `tree` (batches `first..=last`)
    /// as failed now (a second report of a known leaf changes nothing). Returns false if the
    /// record is full.
    pub fn record(
        &self,
        (range, first, last): (u64, u64, u64),
        tree: &EthWithdrawalTree,
        position: u32,
        policy: &RetryPolicy,
        now: Instant,
    ) -> bool {
        let Some(w) = tree.withdrawals().get(position as usize) else { return false };
        let Ok(mut entries) = self.0.write() else { return false };
        let key = (w.batch, w.index);
        if entries.contains_key(&key) {
            return true;
        }
        if entries.len() >= MAX_STUCK_LEAVES {
            return false;
        }
        let first_failed_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let view = StuckLeaf {
            range,
            range_first: first,
            range_last: last,
            batch: w.batch,
            index: w.index,
            token: w.token.to_string(),
            recipient: w.recipient.to_string(),
            amount: w.amount.to_string(),
            root: hex32(&tree.root()),
            proof: tree.proof(position).unwrap_or_default().iter().map(|p| hex32(p)).collect(),
            attempts: 0,
            first_failed_at,
            next_retry_in_s: None,
        };
        entries.insert(key, Entry { view, next_retry: now + policy.wait(0), given_up: false });
        metrics::gauge!("watchman_eth_withdrawals_stuck").set(entries.len() as f64);
        true
    }

    /// The leaves whose retry is due at `now`, each with whether a transaction may be sent
    /// (false: the watchman has given up sending and only checks whether it was claimed).
    pub fn due(&self, now: Instant) -> Vec<((u64, u32), bool)> {
        self.0
            .read()
            .map(|e| e.iter().filter(|(_, v)| v.next_retry <= now).map(|(k, v)| (*k, !v.given_up)).collect())
            .unwrap_or_default()
    }

    /// The range holding a recorded leaf: (number, first batch, last batch).
    pub fn range_of(&self, key: (u64, u32)) -> Option<(u64, u64, u64)> {
        let entries = self.0.read().ok()?;
        let view = &entries.get(&key)?.view;
        Some((view.range, view.range_first, view.range_last))
    }

    /// The leaf is paid (by this watchman or by a claim): forget it.
    pub fn resolved(&self, key: (u64, u32)) {
        if let Ok(mut entries) = self.0.write() {
            entries.remove(&key);
            metrics::gauge!("watchman_eth_withdrawals_stuck").set(entries.len() as f64);
        }
    }

    /// A retry found the leaf still unpayable: wait longer, and give up sending after
    /// `max_attempts` (then check for a claim at the longest interval).
    pub fn still_stuck(&self, key: (u64, u32), policy: &RetryPolicy, now: Instant) {
        if let Ok(mut entries) = self.0.write()
            && let Some(entry) = entries.get_mut(&key)
        {
            if entry.given_up {
                entry.next_retry = now + policy.max;
                return;
            }
            entry.view.attempts += 1;
            entry.given_up = entry.view.attempts >= policy.max_attempts;
            entry.next_retry = now + if entry.given_up { policy.max } else { policy.wait(entry.view.attempts) };
        }
    }

    /// Every stuck leaf, in (batch, index) order.
    pub fn list(&self) -> Vec<StuckLeaf> {
        let now = Instant::now();
        self.0
            .read()
            .map(|e| {
                e.values()
                    .map(|entry| StuckLeaf {
                        next_retry_in_s: (!entry.given_up)
                            .then(|| entry.next_retry.saturating_duration_since(now).as_secs()),
                        ..entry.view.clone()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.read().map(|e| e.len()).unwrap_or(0)
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
        assert!(stuck.record((0, 1, 3), &tree, 0, &policy, t0));
        assert_eq!(stuck.range_of((3, 0)), Some((0, 1, 3)));
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
        stuck.resolved((3, 0));
        assert!(stuck.is_empty());
    }
}
