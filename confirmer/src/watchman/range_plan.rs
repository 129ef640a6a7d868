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
//! Turns: the watchmen that pay gas take turns on the Ethereum chain's own clock, so one root
//! is submitted once. Range `r` at block `h` is submitter `(r + h / timeout_blocks) mod n`'s:
//! the holder of each piece of work passes round the ring every `timeout_blocks` blocks, so a
//! dead holder delays it one turn. Every watchman reads the same clock, so a restarted one
//! (whose memory of when work came due is gone) never thinks a turn that has passed is still
//! its own; and in the last [`Turns::margin`] blocks of its turn a holder sends nothing, so what
//! it sent is mined before the next holder looks. A signature that arrives after its turn
//! passed is kept for the watchman's next turn instead of sent: with the holder's session and a
//! taker's finishing together (both waiting on the same returning signers), sending both was
//! one reverted root (a devnet drill's, with a submitter restarted mid-turn).

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
    /// Ethereum blocks in each turn: how long a dead holder delays its work.
    pub timeout_blocks: u64,
}

impl Default for Turns {
    fn default() -> Self {
        Turns { me: 0, submitters: 1, timeout_blocks: 10 }
    }
}

impl Turns {
    /// Whose turn range `range` is at Ethereum block `head`.
    pub fn holder(&self, range: u64, head: u64) -> u64 {
        let submitters = self.submitters.max(1);
        range.wrapping_add(head / self.timeout_blocks.max(1)) % submitters
    }

    /// Whether range `range` is this watchman's turn at block `head` (in its last blocks too).
    pub fn mine(&self, range: u64, head: u64) -> bool {
        self.holder(range, head) == self.me % self.submitters.max(1)
    }

    /// The last blocks of a turn in which its holder starts and sends nothing: a third of the
    /// turn (at least one block, when a turn has two), so that a transaction it sent is mined
    /// before the next holder reads the vault. None for a lone submitter: nobody follows it.
    pub fn margin(&self) -> u64 {
        let blocks = self.timeout_blocks.max(1);
        if self.submitters <= 1 { 0 } else { (blocks / 3).max(1).min(blocks - 1) }
    }

    /// Whether this watchman may start or send work on range `range` at block `head`: its turn,
    /// and not in the turn's last [`Turns::margin`] blocks.
    pub fn may_act(&self, range: u64, head: u64) -> bool {
        self.submitters <= 1 || (self.mine(range, head) && self.acting(head))
    }

    /// Whether block `head` is before the margin of its turn (whoever holds it).
    fn acting(&self, head: u64) -> bool {
        let blocks = self.timeout_blocks.max(1);
        head % blocks < blocks - self.margin()
    }
}

/// Takeovers as `watchman_eth_turn_takeovers_total` counts them: once per piece of work (a
/// range to propose, or one to pay) that this watchman does in a later turn than the one it
/// came due in, which was another's and had blocks left to act in (work due in a turn's margin
/// passes to the next holder by design, not for a fault), however many turns it then retries
/// it (a signing session refused while the others' replays catch up is retried every turn, and
/// counting each retry made one slow range look like hundreds).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Takeovers {
    counted: Option<(u64, bool)>,
}

impl Takeovers {
    /// Whether acting on `work` (a range number, and whether it is the proposal) at block
    /// `head`, when this watchman saw it come due at block `due`, is a takeover not counted yet.
    pub fn is_new(&mut self, turns: &Turns, work: (u64, bool), due: u64, head: u64) -> bool {
        let taken =
            turns.submitters > 1 && turns.may_act(work.0, head) && !turns.mine(work.0, due) && turns.acting(due);
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
    /// Ethereum blocks in each submitter's turn (the turn passes round the ring every this
    /// many blocks): how long a dead submitter delays the work that was its.
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
    fn turns_go_by_range_and_block_and_pass_round_the_ring() {
        let turns = |me| Turns { me, submitters: 3, timeout_blocks: 5 };
        assert!(turns(0).mine(0, 0) && turns(1).mine(1, 0) && turns(2).mine(2, 0) && turns(0).mine(3, 0));
        assert!(turns(0).mine(0, 4) && !turns(1).mine(0, 4));
        assert!(turns(1).mine(0, 5), "the next submitter's turn after the timeout");
        assert!(turns(2).mine(0, 10));
        assert!(turns(0).mine(0, 15), "round the ring");
        // Exactly one holder at any block; at most one that may act.
        for range in 0..6 {
            for head in 0..40 {
                assert_eq!((0..3).filter(|me| turns(*me).mine(range, head)).count(), 1);
                assert!((0..3).filter(|me| turns(*me).may_act(range, head)).count() <= 1);
            }
        }
        let alone = Turns::default();
        assert!((0..5).all(|range| (0..30).all(|head| alone.may_act(range, head))));
        assert_eq!(alone.margin(), 0);
    }

    #[test]
    fn a_holder_sends_nothing_in_its_turns_last_blocks_so_the_next_holder_finds_it_mined() {
        let turns = |me| Turns { me, submitters: 2, timeout_blocks: 10 };
        assert_eq!(turns(0).margin(), 3);
        // Range 0 is submitter 0's in blocks 0..10: it acts in 0..7 only.
        assert!((0..7).all(|head| turns(0).may_act(0, head)));
        assert!((7..10).all(|head| turns(0).mine(0, head) && !turns(0).may_act(0, head)));
        // Then submitter 1's, from its first block.
        assert!((10..17).all(|head| turns(1).may_act(0, head)));
        // Between one holder's last send and the next one's first, `margin` blocks pass.
        for timeout_blocks in 1..40 {
            let turns = |me| Turns { me, submitters: 2, timeout_blocks };
            let acting: Vec<(u64, u64)> = (0..200)
                .flat_map(|head| (0..2).filter(move |me| turns(*me).may_act(5, head)).map(move |me| (head, me)))
                .collect();
            for pair in acting.windows(2) {
                let ((before, was), (after, now)) = (pair[0], pair[1]);
                if was != now {
                    assert!(after - before > turns(0).margin(), "{timeout_blocks}: {pair:?}");
                }
            }
            // Every holder acts in each of its turns (a turn of one block has no margin).
            assert!(acting.iter().any(|(_, me)| *me == 0) && acting.iter().any(|(_, me)| *me == 1));
        }
    }

    #[test]
    fn a_restarted_holder_finds_the_turn_where_the_chain_says_it_is() {
        // Submitter 0 held range 3 at block 0, was down, and restarts at block 12: the turn is
        // submitter 1's by the same clock both read, so only submitter 1 acts.
        let turns = |me| Turns { me, submitters: 2, timeout_blocks: 10 };
        assert!(turns(1).mine(3, 0));
        assert!(turns(0).may_act(3, 12) && !turns(1).may_act(3, 12));
    }

    #[test]
    fn a_takeover_is_counted_once_per_range_however_often_it_is_retried() {
        let turns = Turns { me: 1, submitters: 2, timeout_blocks: 10 };
        let mut takeovers = Takeovers::default();
        // Range 4 is submitter 0's in blocks 0..10: submitter 1 takes it over from block 10, once.
        assert!(!takeovers.is_new(&turns, (4, true), 0, 9));
        assert!(takeovers.is_new(&turns, (4, true), 0, 10));
        assert!(!takeovers.is_new(&turns, (4, true), 0, 11), "a retry of the same takeover");
        assert!(!takeovers.is_new(&turns, (4, true), 0, 31));
        // Range 5 came due in its own turn: acting on it round the ring is no takeover.
        assert!(!takeovers.is_new(&turns, (5, true), 0, 0));
        assert!(!takeovers.is_new(&turns, (5, true), 0, 20));
        // Paying range 4 in the holder's stead is work of its own.
        assert!(takeovers.is_new(&turns, (4, false), 2, 12));
        // Range 6 came due in the margin of submitter 0's turn (blocks 7..10): it passes to
        // submitter 1 by design, and doing it is no takeover.
        assert!(!takeovers.is_new(&turns, (6, true), 8, 10));
        assert!(takeovers.is_new(&turns, (6, false), 6, 10));
        let alone = Turns::default();
        assert!(!Takeovers::default().is_new(&alone, (4, true), 0, 50));
    }
}
