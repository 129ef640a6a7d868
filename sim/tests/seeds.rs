//! The simulator in CI: a fixed set of seeds holds every invariant, and a seed replays exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use sim::{Outcome, SimConfig};

/// Seeds run on every test run (debug profile: about a minute on the CI machine).
const FIXED_SEEDS: std::ops::Range<u64> = 0..3;

/// Seeds that once found a real bug, kept so that it stays fixed (see README, Simulation).
const REGRESSION_SEEDS: &[u64] = &[];

fn run(seed: u64) -> Outcome {
    match sim::run(SimConfig::quick(seed)) {
        Ok(outcome) => outcome,
        Err(error) => panic!("seed {seed} could not run: {error}"),
    }
}

fn assert_holds(outcome: &Outcome) {
    if let Some(violation) = &outcome.violation {
        let from = outcome.trace.len().saturating_sub(60);
        panic!(
            "seed {} breaks {}: {}\n{}\nreplay: cargo run -p sim --release -- --seed {}",
            outcome.seed,
            violation.invariant,
            violation.detail,
            outcome.trace[from..].join("\n"),
            outcome.seed
        );
    }
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    let mut faults = 0;
    let mut attacks = 0;
    for seed in FIXED_SEEDS.chain(REGRESSION_SEEDS.iter().copied()) {
        let outcome = run(seed);
        assert_holds(&outcome);
        // A run that injected nothing would pass vacuously.
        assert!(outcome.faults > 0, "seed {seed} injected no fault");
        assert!(outcome.acked > 0 && outcome.batches > 0, "seed {seed} moved no value");
        faults += outcome.faults;
        attacks += usize::from(outcome.attack.is_some());
    }
    assert!(attacks > 0, "no fixed seed has a byzantine coordinator: choose others");
    assert!(faults > 0);
}

#[test]
fn a_seed_replays_exactly() {
    let first = run(7);
    let again = run(7);
    assert_eq!(first.trace, again.trace, "the same seed must give the same trace");
    assert_eq!(first.final_hash, again.final_hash);
    let other = run(8);
    assert_ne!(first.final_hash, other.final_hash, "different seeds should not give the same run");
}
