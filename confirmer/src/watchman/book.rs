//! What this watchman's own replay says each hard-final batch owes, as the signing policy needs
//! it. The follower loop writes after each step; signers read from any thread.
//!
//! A panic while the book is written poisons its lock and may leave it half-updated: a poisoned
//! book reads as halted and owing nothing, so it can only stop signing, never allow it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bridge::VaultKeys;
use bridge::batch::Settlement;
use bridge::withdrawals::EthWithdrawalTree;
use chains::ethereum::VaultProgress;

use crate::follower::{Follower, RECENT_HEADERS};

#[derive(Debug, Default)]
struct Entries {
    hard_final: u64,
    /// Only batches that owe something on L1.
    settlements: BTreeMap<u64, Arc<Settlement>>,
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
    pub fn update_from(&self, follower: &Follower) {
        let status = follower.status();
        let Ok(mut entries) = self.0.write() else {
            tracing::error!("{POISONED}");
            return;
        };
        for number in entries.hard_final + 1..=status.hard_final {
            if let Some(settlement) = follower.final_settlement(number)
                && !settlement.is_empty()
            {
                entries.settlements.insert(number, settlement);
            }
            if let Some(hash) = follower.recent_header(number) {
                entries.headers.insert(number, hash);
            }
        }
        while entries.headers.len() > RECENT_HEADERS {
            entries.headers.pop_first();
        }
        entries.hard_final = entries.hard_final.max(status.hard_final);
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

    /// What hard-final batch `number` owes; `None` if it is not hard-final here. A hard-final
    /// batch that owes nothing has an empty settlement.
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

    /// Notes what this watchman's own Ethereum node shows of the vault's ranges.
    pub fn note_vault(&self, progress: VaultProgress) {
        if let Ok(mut entries) = self.0.write() {
            let known = entries.vault.get_or_insert(progress);
            if progress.range_count >= known.range_count {
                *known = progress;
            }
        }
    }

    /// The vault's ranges as last read from this watchman's node; `None` before the first read.
    pub fn vault(&self) -> Option<VaultProgress> {
        self.0.read().ok()?.vault
    }

    /// The Ethereum withdrawals tree of batches `first..=last` as this watchman replayed them;
    /// `None` unless every one of them is hard-final here.
    pub fn range_tree(&self, first: u64, last: u64) -> Option<EthWithdrawalTree> {
        let entries = self.0.read().ok()?;
        if first == 0 || last < first || last > entries.hard_final {
            return None;
        }
        Some(EthWithdrawalTree::concat(entries.settlements.range(first..=last).map(|(_, s)| &s.eth)))
    }

    /// Hard-final batches after `after` that owe Ethereum withdrawals, each with how many.
    pub fn eth_owing_after(&self, after: u64) -> Vec<(u64, usize)> {
        self.0
            .read()
            .map(|e| {
                e.settlements
                    .range(after.saturating_add(1)..)
                    .filter(|(_, s)| !s.eth.withdrawals().is_empty())
                    .map(|(n, s)| (*n, s.eth.withdrawals().len()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Hard-final batches that owe something on L1, from `from` on.
    pub fn owing_from(&self, from: u64) -> Vec<(u64, Arc<Settlement>)> {
        self.0.read().map(|e| e.settlements.range(from..).map(|(n, s)| (*n, s.clone())).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic
mod tests {
    use super::*;

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
        // Halting it again is harmless and it stays halted.
        book.halt("operator".into());
        assert!(book.halted().is_some());
    }
}
