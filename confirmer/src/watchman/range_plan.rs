//! The decisions of Ethereum settlement by ranges, apart from any I/O: which range of batches
//! the next withdrawals root covers, when it is due, and whose turn it is to submit and pay it.
//!
//! A range starts right after the last batch the vault's ranges cover and ends at the last
//! owing batch it takes: every owing batch up to the proposer's horizon, unless that would take
//! more than `max_leaves` leaves (a range holds at least one batch, however many leaves that
//! batch has). The horizon leaves the proposer's [`FRESH_BATCHES`] newest hard-final batches to
//! the next range: every signer checks the range against its own replay, and under steady
//! traffic the others are a batch or two behind the proposer, so a range reaching its newest
//! batch was refused on every retry until traffic paused (about 70 s in a devnet drill). The
//! first owing batch is always taken: it has waited the window. A range is due once it holds
//! `max_leaves` leaves, or once its oldest withdrawal has waited `window` since this watchman
//! saw it hard-final, so a lone withdrawal waits at most the window and a busy network gets a
//! root every `max_leaves` leaves.
//!
//! Turns: the watchmen that pay gas take turns by range number (range `r` is submitter
//! `r mod n`'s), so one root is submitted once. If the turn-holder has not done it within
//! `timeout_blocks` Ethereum blocks of the work coming due (as this watchman's node counts
//! them), the next submitter takes over, then the next, and so on round the ring.

use std::time::Duration;

/// How big and how late a range may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLimits {
    /// At most this many leaves per range (unless one batch alone has more). Bounds the work of
    /// building, signing-checking and paying one range; at one withdrawal per batch and a batch
    /// a second, 30 s of batches is far below it.
    pub max_leaves: usize,
    /// A withdrawal waits at most this long for its range (from when this watchman saw its
    /// batch hard-final). Longer: fewer roots (each about 60,000 gas shared by its leaves);
    /// shorter: earlier payouts.
    pub window: Duration,
}

impl Default for RangeLimits {
    fn default() -> Self {
        RangeLimits { max_leaves: 1024, window: Duration::from_secs(30) }
    }
}

/// How many of the proposer's newest hard-final batches a range leaves to the next one (unless
/// its first owing batch is among them), so that signers a batch or two behind in their replay
/// can check it. A batch interval or two of delay, against a refused signing session per retry.
pub const FRESH_BATCHES: u64 = 2;

/// What to do about the batches after the vault's last range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// No hard-final batch after the vault's ranges owes an Ethereum withdrawal.
    Nothing,
    /// Withdrawals wait; the range is due in this long.
    Wait { due_in: Duration },
    /// Propose the root of batches `first..=last`, holding `leaves` leaves.
    Propose { first: u64, last: u64, leaves: usize },
}

/// The next range. `owing`: the hard-final batches after `settled_through` that owe Ethereum
/// withdrawals, in increasing order, each with its number of leaves; `hard_final`: the last
/// hard-final batch; `waited`: how long the first of `owing` has waited.
pub fn next_range(
    settled_through: u64,
    hard_final: u64,
    owing: &[(u64, usize)],
    waited: Duration,
    limits: &RangeLimits,
) -> RangeDecision {
    let owing: Vec<(u64, usize)> =
        owing.iter().copied().filter(|(batch, _)| *batch > settled_through && *batch <= hard_final).collect();
    let Some(&(first_owing, _)) = owing.first() else {
        return RangeDecision::Nothing;
    };
    let horizon = hard_final.saturating_sub(FRESH_BATCHES).max(first_owing);
    let max_leaves = limits.max_leaves.max(1);
    let mut leaves = 0usize;
    let mut last = first_owing;
    for (i, (batch, count)) in owing.iter().enumerate() {
        if i > 0 && (*batch > horizon || leaves.saturating_add(*count) > max_leaves) {
            break;
        }
        leaves = leaves.saturating_add(*count);
        last = *batch;
    }
    debug_assert!(first_owing <= last && last <= hard_final);
    if leaves >= max_leaves || waited >= limits.window {
        RangeDecision::Propose { first: settled_through + 1, last, leaves }
    } else {
        RangeDecision::Wait { due_in: limits.window - waited }
    }
}

/// Taking turns among `submitters` watchmen that pay gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turns {
    /// This watchman's place among the submitters, from 0.
    pub me: u64,
    /// How many watchmen submit; 1: this one alone, always its turn.
    pub submitters: u64,
    /// Blocks the turn-holder has before the next submitter takes over.
    pub timeout_blocks: u64,
}

impl Default for Turns {
    fn default() -> Self {
        Turns { me: 0, submitters: 1, timeout_blocks: 10 }
    }
}

impl Turns {
    /// Whose turn range `range` is, `blocks_waited` blocks after it came due.
    pub fn holder(&self, range: u64, blocks_waited: u64) -> u64 {
        let submitters = self.submitters.max(1);
        let passes = blocks_waited / self.timeout_blocks.max(1);
        range.wrapping_add(passes) % submitters
    }

    /// Whether range `range` is this watchman's to do, `blocks_waited` blocks after it came due.
    pub fn mine(&self, range: u64, blocks_waited: u64) -> bool {
        self.holder(range, blocks_waited) == self.me % self.submitters.max(1)
    }
}

/// Takeovers as `watchman_eth_turn_takeovers_total` counts them: once per piece of work (a
/// range to propose, or one to pay) that this watchman does in another's turn, however many
/// turns it then retries it (a signing session refused while the others' replays catch up is
/// retried every turn, and counting each retry made one slow range look like hundreds).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Takeovers {
    counted: Option<(u64, bool)>,
}

impl Takeovers {
    /// Whether acting on `work` (a range number, and whether it is the proposal) now is a
    /// takeover not counted yet: it is this watchman's only because the holder's time ran out.
    pub fn is_new(&mut self, turns: &Turns, work: (u64, bool), blocks_waited: u64) -> bool {
        let taken = turns.submitters > 1
            && blocks_waited >= turns.timeout_blocks.max(1)
            && turns.mine(work.0, blocks_waited)
            && !turns.mine(work.0, 0);
        if !taken || self.counted == Some(work) {
            return false;
        }
        self.counted = Some(work);
        true
    }
}

/// `[ethereum.settlement]` in a watchman's config: the range bounds and this watchman's turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettlementConfig {
    /// A withdrawal waits at most this long for its range's root (seconds).
    pub window_s: u64,
    /// At most this many leaves per range.
    pub max_leaves: usize,
    /// How many watchmen submit roots and payouts (those with a `sender_key_file`).
    pub submitters: u64,
    /// This watchman's place among them, from 0 (each submitter has its own).
    pub submitter_index: u64,
    /// Blocks the turn-holder has before the next submitter takes over.
    pub turn_timeout_blocks: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        let limits = RangeLimits::default();
        let turns = Turns::default();
        SettlementConfig {
            window_s: limits.window.as_secs(),
            max_leaves: limits.max_leaves,
            submitters: turns.submitters,
            submitter_index: turns.me,
            turn_timeout_blocks: turns.timeout_blocks,
        }
    }
}

impl SettlementConfig {
    pub fn limits(&self) -> RangeLimits {
        RangeLimits { max_leaves: self.max_leaves.max(1), window: Duration::from_secs(self.window_s) }
    }

    /// The turns, or why they make no sense.
    pub fn turns(&self) -> Result<Turns, String> {
        if self.submitters == 0 || self.submitter_index >= self.submitters {
            return Err(format!(
                "[ethereum.settlement] submitter_index {} must be below submitters {} (and submitters at least 1)",
                self.submitter_index, self.submitters
            ));
        }
        Ok(Turns {
            me: self.submitter_index,
            submitters: self.submitters,
            timeout_blocks: self.turn_timeout_blocks.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RangeLimits = RangeLimits { max_leaves: 4, window: Duration::from_secs(30) };

    #[test]
    fn a_lone_withdrawal_waits_for_the_window_then_its_range_ends_at_its_batch() {
        let owing = [(7, 1)];
        assert_eq!(next_range(5, 9, &[], Duration::ZERO, &LIMITS), RangeDecision::Nothing);
        assert_eq!(
            next_range(5, 9, &owing, Duration::from_secs(10), &LIMITS),
            RangeDecision::Wait { due_in: Duration::from_secs(20) }
        );
        assert_eq!(
            next_range(5, 9, &owing, Duration::from_secs(30), &LIMITS),
            RangeDecision::Propose { first: 6, last: 7, leaves: 1 }
        );
        // What the vault covers already, or is not hard-final, is not owed here.
        assert_eq!(next_range(7, 9, &owing, Duration::from_secs(60), &LIMITS), RangeDecision::Nothing);
        assert_eq!(next_range(5, 6, &owing, Duration::from_secs(60), &LIMITS), RangeDecision::Nothing);
    }

    #[test]
    fn a_full_range_is_due_at_once_and_stops_before_the_batch_that_does_not_fit() {
        let owing = [(2, 1), (3, 2), (5, 1), (8, 3)];
        assert_eq!(
            next_range(0, 9, &owing, Duration::ZERO, &LIMITS),
            RangeDecision::Propose { first: 1, last: 5, leaves: 4 }
        );
        // One batch with more leaves than the bound is a range of its own.
        assert_eq!(
            next_range(0, 9, &[(4, 9), (6, 1)], Duration::ZERO, &LIMITS),
            RangeDecision::Propose { first: 1, last: 4, leaves: 9 }
        );
    }

    #[test]
    fn under_steady_traffic_a_range_leaves_the_proposers_newest_batches_to_the_next_one() {
        let limits = RangeLimits { max_leaves: 100, window: Duration::from_secs(30) };
        let every_batch: Vec<(u64, usize)> = (1..=40).map(|batch| (batch, 1)).collect();
        // The proposer has 40 hard-final; the others are a batch or two behind it.
        assert_eq!(
            next_range(0, 40, &every_batch, Duration::from_secs(30), &limits),
            RangeDecision::Propose { first: 1, last: 38, leaves: 38 }
        );
        // The next range follows on from it, with the same slack.
        assert_eq!(
            next_range(38, 43, &every_batch, Duration::from_secs(30), &limits),
            RangeDecision::Propose { first: 39, last: 40, leaves: 2 }
        );
        // A withdrawal in the newest batch alone, once it has waited the window, is taken.
        assert_eq!(
            next_range(8, 9, &[(9, 1)], Duration::from_secs(30), &limits),
            RangeDecision::Propose { first: 9, last: 9, leaves: 1 }
        );
    }

    #[test]
    fn turns_go_by_range_number_and_pass_on_after_the_timeout() {
        let turns = |me| Turns { me, submitters: 3, timeout_blocks: 5 };
        assert!(turns(0).mine(0, 0) && turns(1).mine(1, 0) && turns(2).mine(2, 0) && turns(0).mine(3, 0));
        assert!(!turns(1).mine(0, 4));
        assert!(turns(1).mine(0, 5), "the next submitter takes over after the timeout");
        assert!(turns(2).mine(0, 10));
        assert!(turns(0).mine(0, 15), "round the ring");
        // Exactly one holder at any time.
        for range in 0..6 {
            for waited in 0..20 {
                assert_eq!((0..3).filter(|me| turns(*me).mine(range, waited)).count(), 1);
            }
        }
        let alone = Turns::default();
        assert!((0..5).all(|range| alone.mine(range, 0)));
    }

    #[test]
    fn a_takeover_is_counted_once_per_range_however_often_it_is_retried() {
        let turns = Turns { me: 1, submitters: 2, timeout_blocks: 10 };
        let mut takeovers = Takeovers::default();
        // Range 4 is submitter 0's: submitter 1 takes it over after 10 blocks, once.
        assert!(!takeovers.is_new(&turns, (4, true), 9));
        assert!(takeovers.is_new(&turns, (4, true), 10));
        assert!(!takeovers.is_new(&turns, (4, true), 11), "a retry of the same takeover");
        assert!(!takeovers.is_new(&turns, (4, true), 31));
        // Range 5 is its own: acting on it round the ring is no takeover.
        assert!(!takeovers.is_new(&turns, (5, true), 0));
        assert!(!takeovers.is_new(&turns, (5, true), 20));
        // Paying range 4 in the holder's stead is work of its own.
        assert!(takeovers.is_new(&turns, (4, false), 12));
        let alone = Turns::default();
        assert!(!Takeovers::default().is_new(&alone, (4, true), 50));
    }
}
