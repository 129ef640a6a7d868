//! The follower's patience: when a doubt has lasted long enough to be an alarm. Two doubts wait
//! before they accuse the coordinator: a batch missing while a later one is published (on Arweave
//! a later transaction can be seen before an earlier one), and an L1 fact named beyond the tip of
//! a node that says it is in sync (the node may only believe it is).
//!
//! Pure decisions: time comes in as milliseconds read from the follower's [`Clock`], so the
//! binaries drive them with the monotonic clock and the simulator (crate `sim`) with simulated
//! time. No wall clock is read here.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds on a clock that never goes backwards.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The process's monotonic clock: milliseconds since it was first read.
pub fn monotonic_clock() -> Clock {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    Arc::new(move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// How many consecutive steps a gap (batch n missing, a later one published) must last before
/// it is an alarm, on top of the configured wait.
pub const GAP_PATIENCE: u32 = 3;

/// What the gap watch concludes at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapVerdict {
    /// First seen now: log it, wait.
    Opened,
    /// Seen before, not for long enough yet.
    Waiting,
    /// Missing for the whole wait and [`GAP_PATIENCE`] steps: the coordinator withheld it.
    Withheld,
}

/// The current gap: which batch is missing, since when, and for how many steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapWatch {
    since: Option<(u64, u64)>,
    seen: u32,
}

impl GapWatch {
    /// No later batch is published: there is no gap.
    pub fn clear(&mut self) {
        self.seen = 0;
        self.since = None;
    }

    /// The follower made progress: the step count starts again (the time does not, as long as
    /// the same batch stays missing).
    pub fn progressed(&mut self) {
        self.seen = 0;
    }

    /// Batch `missing` is missing while a later one is published, seen at `now_ms`.
    pub fn observe(&mut self, missing: u64, now_ms: u64, wait: Duration) -> GapVerdict {
        let (since_ms, opened) = match self.since {
            Some((number, since_ms)) if number == missing => (since_ms, false),
            _ => {
                self.since = Some((missing, now_ms));
                (now_ms, true)
            }
        };
        self.seen = self.seen.saturating_add(1);
        #[cfg(feature = "planted-bugs")]
        if bridge::planted::active(bridge::planted::PlantedBug::GapNeverAlarmed) {
            return GapVerdict::Waiting;
        }
        let waited = Duration::from_millis(now_ms.saturating_sub(since_ms));
        if self.seen >= GAP_PATIENCE && waited >= wait {
            GapVerdict::Withheld
        } else if opened {
            GapVerdict::Opened
        } else {
            GapVerdict::Waiting
        }
    }
}

/// A doubt about one thing (`K` names it) that becomes an alarm once it has lasted `wait`
/// without a break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doubt<K> {
    since: Option<(K, u64)>,
}

impl<K> Default for Doubt<K> {
    fn default() -> Self {
        Doubt { since: None }
    }
}

impl<K: PartialEq> Doubt<K> {
    /// The doubt is gone.
    pub fn clear(&mut self) {
        self.since = None;
    }

    /// `about` is doubted at `now_ms`: (whether this is the first time, whether it has lasted
    /// `wait`).
    pub fn observe(&mut self, about: K, now_ms: u64, wait: Duration) -> (bool, bool) {
        let (since_ms, first) = match &self.since {
            Some((seen, since_ms)) if *seen == about => (*since_ms, false),
            _ => {
                self.since = Some((about, now_ms));
                (now_ms, true)
            }
        };
        (first, Duration::from_millis(now_ms.saturating_sub(since_ms)) >= wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(600);

    #[test]
    fn a_gap_is_withheld_only_after_both_the_wait_and_the_steps() {
        let mut gap = GapWatch::default();
        assert_eq!(gap.observe(5, 0, WAIT), GapVerdict::Opened);
        assert_eq!(gap.observe(5, 1, WAIT), GapVerdict::Waiting);
        // Steps enough, time not.
        assert_eq!(gap.observe(5, 599_999, WAIT), GapVerdict::Waiting);
        assert_eq!(gap.observe(5, 600_000, WAIT), GapVerdict::Withheld);
    }

    #[test]
    fn a_new_missing_batch_starts_the_wait_again() {
        let mut gap = GapWatch::default();
        gap.observe(5, 0, WAIT);
        assert_eq!(gap.observe(6, 700_000, WAIT), GapVerdict::Opened);
        gap.observe(6, 700_001, WAIT);
        assert_eq!(gap.observe(6, 1_299_999, WAIT), GapVerdict::Waiting);
        assert_eq!(gap.observe(6, 1_300_000, WAIT), GapVerdict::Withheld);
    }

    #[test]
    fn progress_restarts_the_step_count_but_not_the_time() {
        let mut gap = GapWatch::default();
        for now in 0..3 {
            gap.observe(5, now, Duration::ZERO);
        }
        gap.progressed();
        assert_eq!(gap.observe(5, 10, Duration::ZERO), GapVerdict::Waiting);
        gap.clear();
        assert_eq!(gap.observe(5, 11, Duration::ZERO), GapVerdict::Opened);
    }

    #[test]
    fn a_doubt_lasts_only_while_it_is_about_the_same_thing() {
        let mut doubt = Doubt::default();
        assert_eq!(doubt.observe((1, 0), 0, WAIT), (true, false));
        assert_eq!(doubt.observe((1, 0), 600_000, WAIT), (false, true));
        assert_eq!(doubt.observe((1, 1), 600_001, WAIT), (true, false));
        doubt.clear();
        assert_eq!(doubt.observe((1, 1), 700_000, WAIT), (true, false));
    }
}
