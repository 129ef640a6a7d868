//! The simulator can fail: with one planted bug switched on (bridge/src/planted.rs, compiled
//! into this test build only), some seed within the stated number breaks the invariant that
//! guards against it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use bridge::planted::{PlantedBug, plant};
use sim::byzantine::AttackKind;
use sim::{Outcome, SimConfig};

/// Runs seeds 0..`max_seeds` with `bug` planted; the first failing seed's outcome.
fn first_failure(bug: PlantedBug, attack: Option<AttackKind>, max_seeds: u64) -> Option<Outcome> {
    plant(Some(bug));
    let mut found = None;
    for seed in 0..max_seeds {
        let outcome = match sim::run(SimConfig { attack, ..SimConfig::quick(seed) }) {
            Ok(outcome) => outcome,
            Err(error) => panic!("seed {seed} could not run: {error}"),
        };
        if outcome.violation.is_some() {
            found = Some(outcome);
            break;
        }
    }
    plant(None);
    found
}

fn assert_found(bug: PlantedBug, attack: Option<AttackKind>, max_seeds: u64, invariants: &[&str]) {
    let Some(outcome) = first_failure(bug, attack, max_seeds) else {
        panic!("{bug:?} survived {max_seeds} seeds: the simulator no longer finds it");
    };
    let violation = outcome.violation.unwrap_or_else(|| unreachable!());
    eprintln!("{bug:?}: found by seed {}: {} ({})", outcome.seed, violation.invariant, violation.detail);
    assert!(
        invariants.contains(&violation.invariant),
        "{bug:?} was caught, but by {} rather than {invariants:?}: {}",
        violation.invariant,
        violation.detail
    );
}

#[test]
fn the_stf_skipping_nonce_consumption_is_found() {
    assert_found(PlantedBug::NonceNotConsumed, None, 2, &["acknowledged-kept", "at-most-once"]);
}

#[test]
fn a_follower_taking_not_seen_yet_for_absent_is_found() {
    assert_found(PlantedBug::NotSeenYetIsAbsent, None, 5, &["no-false-alarm"]);
}

#[test]
fn a_follower_ignoring_an_invalid_transaction_is_found() {
    assert_found(PlantedBug::InvalidTxIgnored, Some(AttackKind::ForgedWithdrawal), 3, &["bad-history-alarmed"]);
}

#[test]
fn a_follower_that_never_alarms_a_gap_is_found() {
    assert_found(PlantedBug::GapNeverAlarmed, Some(AttackKind::Withholding), 3, &["bad-history-alarmed"]);
}

#[test]
fn a_policy_signing_any_root_is_found() {
    assert_found(PlantedBug::PolicySkipsRootCheck, None, 2, &["signature-justified"]);
}

#[test]
fn without_a_planted_bug_the_same_seeds_pass() {
    // The failures above are the bugs', not the attacks': the same attacks pass unplanted.
    for attack in [AttackKind::ForgedWithdrawal, AttackKind::Withholding] {
        let outcome = sim::run(SimConfig { attack: Some(attack), ..SimConfig::quick(0) });
        let outcome = outcome.unwrap_or_else(|e| panic!("{attack:?}: {e}"));
        assert_eq!(outcome.violation, None, "{attack:?} fails without a planted bug");
    }
}
