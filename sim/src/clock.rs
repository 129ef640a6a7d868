//! Clock skew. Every confirmer's machine reads its own clock: the follower's waits (a gap before
//! `missing_batch`, an L1 fact beyond a synced node's tip; confirmer::patience) and its
//! watchman's signer (per-peer limits) read it. The seed makes a clock run fast or slow (up to
//! 5 % either way, far beyond a real crystal's drift, so that a wait sized too tight shows) and
//! jump forward (1 s to 2 min: a VM paused and resumed, a clock slewed). A monotonic clock never
//! goes back, so none of these do. The coordinator's wall clock, which stamps its batches, also
//! steps back and forth by up to an hour, as NTP does to a clock that was wrong. At the healing
//! every clock runs true again; what it gained is kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::SimError;
use crate::world::World;

/// Parts per million of true time: 1 000 000 is a true clock.
const TRUE_RATE: i128 = 1_000_000;
/// The most a clock runs fast or slow: 5 %.
const MAX_SKEW_PPM: u64 = 50_000;

/// Where a node's clock stood at one moment of simulated time, and its rate since.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    sim_ms: u64,
    node_ms: u64,
    rate_ppm: i128,
}

/// One machine's clock, read against one of the simulation's time sources (the tick's or the
/// mesh's): shared by every reader on that machine, kept across the role's restarts.
#[derive(Debug, Clone)]
pub(crate) struct NodeClock {
    anchor: Arc<Mutex<Anchor>>,
}

impl Default for NodeClock {
    fn default() -> Self {
        NodeClock { anchor: Arc::new(Mutex::new(Anchor { sim_ms: 0, node_ms: 0, rate_ppm: TRUE_RATE })) }
    }
}

impl NodeClock {
    /// The node's reading when simulated time is `sim_ms`: continuous and never decreasing in
    /// it, since every rate is positive and every jump forward.
    pub(crate) fn at(&self, sim_ms: u64) -> u64 {
        let anchor = *self.anchor.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = i128::from(sim_ms) - i128::from(anchor.sim_ms);
        let node = i128::from(anchor.node_ms) + elapsed * anchor.rate_ppm / TRUE_RATE;
        u64::try_from(node.max(0)).unwrap_or(u64::MAX)
    }

    /// A reader of this clock against `source` (simulated milliseconds), for a role to own.
    pub(crate) fn reader(&self, source: Arc<AtomicU64>) -> impl Fn() -> u64 + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.at(source.load(Ordering::SeqCst))
    }

    /// From `sim_ms` on, the clock runs at `rate_ppm` parts per million of true time.
    fn set_rate(&self, sim_ms: u64, rate_ppm: i128) {
        let node_ms = self.at(sim_ms);
        *self.anchor.lock().unwrap_or_else(PoisonError::into_inner) = Anchor { sim_ms, node_ms, rate_ppm };
    }

    /// At `sim_ms` the clock jumps `ms` forward.
    fn jump(&self, sim_ms: u64, ms: u64) {
        let node_ms = self.at(sim_ms).saturating_add(ms);
        let mut anchor = self.anchor.lock().unwrap_or_else(PoisonError::into_inner);
        *anchor = Anchor { sim_ms, node_ms, rate_ppm: anchor.rate_ppm };
    }
}

impl World {
    /// Chosen by the seed during the fault phase, a few times a run per machine.
    pub(crate) fn skew_clocks(&mut self) -> Result<(), SimError> {
        let now = self.now();
        for index in 0..self.confirmers.len() {
            if self.rng.chance(1_000) {
                let skew = self.rng.between(1, MAX_SKEW_PPM) as i128;
                let rate = if self.rng.below(2) == 0 { TRUE_RATE + skew } else { TRUE_RATE - skew };
                self.confirmers[index].clock.set_rate(now, rate);
                self.faults += 1;
                let sign = if rate > TRUE_RATE { '+' } else { '-' };
                self.log(format!("FAULT confirmer {index}'s clock runs {sign}{:.1} %", skew as f64 / 10_000.0));
            }
            if self.rng.chance(1_000) {
                let jump = self.rng.between(1, 120) * 1000;
                self.confirmers[index].clock.jump(now, jump);
                self.faults += 1;
                self.log(format!("FAULT confirmer {index}'s clock jumps {} s forward", jump / 1000));
            }
        }
        if self.rng.chance(1_000) {
            let step =
                i64::try_from(self.rng.between(1, 3_600) * 1000).map_err(|_| SimError::Setup("a clock step".into()))?;
            let step = if self.rng.below(2) == 0 { step } else { -step };
            self.coordinator.wall_offset_ms = step;
            self.faults += 1;
            self.log(format!("FAULT the coordinator's wall clock is {} s off", step / 1000));
        }
        Ok(())
    }

    /// Clocks run true again (their gains kept); the coordinator's is set right.
    pub(crate) fn true_clocks(&mut self) {
        let now = self.now();
        for role in &self.confirmers {
            role.clock.set_rate(now, TRUE_RATE);
        }
        self.coordinator.wall_offset_ms = 0;
    }

    /// The coordinator's wall clock, which stamps the batches it seals.
    pub(crate) fn coordinator_wall_clock(&self) -> u64 {
        self.now().saturating_add_signed(self.coordinator.wall_offset_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failure should panic
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_is_continuous_and_never_goes_back() {
        let clock = NodeClock::default();
        assert_eq!(clock.at(10_000), 10_000);
        clock.set_rate(10_000, TRUE_RATE + 50_000);
        assert_eq!(clock.at(10_000), 10_000, "no step where the rate changes");
        assert_eq!(clock.at(20_000), 20_500);
        clock.jump(20_000, 60_000);
        assert_eq!(clock.at(20_000), 80_500);
        clock.set_rate(20_000, TRUE_RATE - 50_000);
        assert_eq!(clock.at(30_000), 90_000);
        let mut last = 0;
        for ms in (0..40_000).step_by(500) {
            let reading = clock.at(ms);
            assert!(reading >= last, "{reading} after {last}");
            last = reading;
        }
    }
}
