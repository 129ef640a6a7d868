//! The simulator in CI: a fixed set of seeds holds every invariant, and a seed replays exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use sim::byzantine::AttackKind;
use sim::signing::WatchmanAttack;
use sim::{Outcome, SimConfig};

/// Seeds run on every test run, with the attacks below (debug profile: each run about 20 s).
const FIXED_SEEDS: &[u64] = &[0, 1, 11];

/// Seeds that reproduce a real bug in a quick run, kept so that it stays fixed (see README,
/// Simulation). Seeds are re-chosen whenever a new kind of fault changes what every seed does:
/// the reproduction is checked by planting the bug back (`tests/planted.rs`, or `sim --plant`
/// in a build with `--features planted-bugs`). Since the coordinator's gateway outages joined
/// the runs: 10 reproduces an Ethereum reorg dropping a range the vault had taken, which every
/// watchman's view of the vault refused to go back over (`SettlementBook::note_vault`; it was
/// 29, then 0); 0 (a fixed seed), a confirmer's disk refusing a batch's record, whose retry
/// replayed the batch again and alarmed an honest coordinator
/// (confirmer/src/follower/unrecorded.rs; it was 6); 1 (a fixed seed), a watchman's lagging
/// Ethereum node making its solvency guard call an honest vault short (`confirmer::solvency`;
/// it was 10); 33, the same with its lagging Bitcoin node ("not seen yet" taken for "absent";
/// it was 5, then 19, then 11 until the coordinator's Bitcoin node came to lag). A range seen
/// paid, then taken back by an
/// Ethereum reorg, ripening into every watchman's pruned horizon, and the guardian's dropped
/// pause are rare interleavings: the first is met by no quick seed below 30 with forced traffic
/// (below 250 before the gateway outages), so its planted test keeps the runs without it (seed
/// 10); the second, by no quick seed below 150 with forced traffic and crashes, is met by seed
/// 29 without crashes (a restart rebuilds the duties that forgot the pause), and has its own
/// test below.
///
/// Since the share refresh joined the runs (refresh.rs), they are run without it: a refresh
/// changes what follows it, and these seeds' runs refresh before their bugs' moments.
const REGRESSION_SEEDS: &[u64] = &[10, 33];

/// Standard runs (`SimConfig::new`, 90 + 60 minutes) in CI. 6 reproduced the reorg bug above
/// until Bitcoin joined the simulation and changed what every seed does; no standard seed is
/// known to reproduce a bug today. One long run stays, for the Bitcoin payouts it bumps while
/// miners leave the mempool out (a spell must meet a payout in flight, which few quick seeds
/// see): 6 did until the coordinator's gateway outages moved its draws, 0 until the
/// coordinator's Bitcoin node came to lag, 1 until a consolidation came to merge at most half
/// the vault (its payouts then confirmed before the spells), 2 does now (8 bumps).
const REGRESSION_STANDARD_SEEDS: &[u64] = &[2];

fn run(config: SimConfig) -> Outcome {
    let seed = config.seed;
    match sim::run(config) {
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
    let mut paid = 0;
    // Each kind of fault must have struck some fixed seed, or its absence would pass unseen.
    let mut unseen = vec![
        ("a disk refusing writes", "disk refuses writes"),
        ("a write refused mid-work", "attempt to write a readonly database"),
        ("a clock running fast or slow", "clock runs"),
        ("a clock jumping", "clock jumps"),
        ("a role crash", "crashes for"),
        ("an Arweave reorg", "FAULT Arweave reorg"),
        ("an Ethereum reorg", "FAULT Ethereum reorg"),
        ("a Bitcoin reorg", "FAULT Bitcoin reorg"),
        ("Bitcoin congestion", "FAULT Bitcoin miners leave the mempool out"),
        ("a Bitcoin payout bumped", "attempt: 1"),
        ("a forced transaction applied", "as applied"),
        ("a malformed forced entry recorded", "as malformed"),
        ("a copy of an applied transaction recorded", "as duplicate"),
        ("a forged snapshot on the DA", "forged copy of the snapshot"),
        ("the coordinator's gateway down", "gateway is down for"),
        ("the publisher backing off from a failing DA", "publisher task failed (try 2 "),
        ("the coordinator's gateway back", "gateway is back"),
        ("a share refresh", "done: every operator holds a new share of the same key"),
        ("a watchman restarted on its new share", "restarts it on its new share"),
        ("a signer of the other generation left out", "OtherGeneration {"),
        ("a claim of another user's deposit refused", "pays no deposit address of"),
        ("a claim after the scan credited the deposit", "AlreadyCredited"),
    ];
    let mut btc_paid = 0;
    let mut claimed = 0;
    // The regression seeds keep the runs that found their bugs: without a share refresh.
    let regression = REGRESSION_SEEDS.iter().map(|&seed| SimConfig { refresh: false, ..SimConfig::quick(seed) });
    let quick = FIXED_SEEDS.iter().map(|&seed| SimConfig::quick(seed)).chain(regression);
    for config in quick.chain(REGRESSION_STANDARD_SEEDS.iter().map(|&seed| SimConfig::new(seed))) {
        let seed = config.seed;
        let outcome = run(config);
        assert_holds(&outcome);
        // A run that injected nothing or moved nothing would pass vacuously.
        assert!(outcome.faults > 0, "seed {seed} injected no fault");
        assert!(outcome.acked > 0 && outcome.batches > 0, "seed {seed} moved no value");
        paid += outcome.paid_leaves;
        btc_paid += outcome.btc_plans_paid;
        claimed += outcome.btc_claims_credited;
        unseen.retain(|(_, mark)| !outcome.trace.iter().any(|line| line.contains(mark)));
    }
    assert!(paid > 0, "the vault paid no withdrawal in any fixed seed");
    assert!(btc_paid > 0, "no Bitcoin payout was paid in any fixed seed");
    // The deposits the scan passed by (paid before their account asked) are credited only by
    // their payer's claim: deposit-liveness holds through it.
    assert!(claimed > 0, "no fixed seed credited a Bitcoin deposit by its payer's claim");
    assert!(unseen.is_empty(), "no fixed seed had {:?}", unseen.iter().map(|(what, _)| *what).collect::<Vec<_>>());
}

/// Each byzantine coordinator once, on its own seed: alarmed by every confirmer, never final
/// (or, for a reorder, not alarmed at all).
fn attack_holds(kind: AttackKind, seed: u64) {
    let outcome = run(SimConfig { attack: Some(kind), ..SimConfig::quick(seed) });
    assert_holds(&outcome);
    assert!(outcome.attack.is_some());
}

#[test]
fn a_forged_withdrawal_is_alarmed_and_never_final() {
    attack_holds(AttackKind::ForgedWithdrawal, 101);
}

/// Regression: with a forged withdrawal, every watchman paused the vault after the alarm, an
/// Ethereum reorg dropped the pause, and every watchman's duties had taken the mined pause as
/// kept: the vault stayed open under a history they had alarmed (`pause-liveness`; found on
/// quick seed 6, which no longer meets such a reorg since forced transactions joined the runs).
/// Quick seed 9 has a reorg drop the pause today, and the vault is paused again; in runs
/// without a share refresh, which since refreshes joined takes seed 9 elsewhere before it.
#[test]
fn a_pause_a_reorg_drops_is_sent_again() {
    let config =
        SimConfig { attack: Some(AttackKind::ForgedWithdrawal), refresh: false, ..SimConfig::quick(PAUSE_SEED) };
    let outcome = run(config);
    assert_holds(&outcome);
    assert!(
        outcome.trace.iter().any(|line| line.contains("the reorg drops the guardian's pause")),
        "seed {PAUSE_SEED} no longer has a reorg drop the pause: choose another regression seed (`sim --attack forged-withdrawal` shows one)"
    );
}

const PAUSE_SEED: u64 = 9;

#[test]
fn a_forged_withdrawals_root_is_alarmed_and_never_final() {
    attack_holds(AttackKind::ForgedWithdrawalsRoot, 102);
}

#[test]
fn an_equivocation_is_alarmed_and_never_final() {
    attack_holds(AttackKind::Equivocation, 103);
}

#[test]
fn a_withheld_batch_is_alarmed_and_never_final() {
    attack_holds(AttackKind::Withholding, 104);
}

#[test]
fn a_forged_deposit_is_alarmed_and_never_final() {
    attack_holds(AttackKind::ForgedDeposit, 105);
}

#[test]
fn a_reorder_within_the_wait_is_not_alarmed() {
    attack_holds(AttackKind::Reorder, 106);
}

#[test]
fn a_late_equivocation_is_alarmed_and_hard_finality_falls_back() {
    let outcome = run(SimConfig { attack: Some(AttackKind::LateEquivocation), ..SimConfig::quick(107) });
    assert_holds(&outcome);
    // Not vacuous: the rival batch was posted after the confirmers had passed its number.
    assert!(outcome.trace.iter().any(|line| line.contains("BYZANTINE posts a second batch")), "the attack never ran");
}

#[test]
fn a_censored_forced_transaction_is_alarmed_and_never_final() {
    let outcome = run(SimConfig { attack: Some(AttackKind::CensorsForced), ..SimConfig::quick(CENSORED_SEED) });
    assert_holds(&outcome);
    assert!(
        outcome.trace.iter().any(|line| line.contains("leaves forced entry")),
        "the censoring coordinator never left an entry out"
    );
}

/// A quick seed whose censoring coordinator meets a forced entry before the end.
const CENSORED_SEED: u64 = 101;

#[test]
fn a_seed_replays_exactly() {
    let first = run(SimConfig::quick(7));
    let again = run(SimConfig::quick(7));
    assert_eq!(first.trace, again.trace, "the same seed must give the same trace");
    assert_eq!(first.final_hash, again.final_hash);
    let other = run(SimConfig::quick(8));
    assert_ne!(first.final_hash, other.final_hash, "different seeds should not give the same run");
}

/// Each byzantine watchman once, on its own seed: nothing unjustified is signed, no nonce signs
/// twice, and the two honest watchmen still settle every range after healing.
fn watchman_attack_holds(kind: WatchmanAttack, seed: u64) -> Outcome {
    let outcome = run(SimConfig { watchman_attack: Some(kind), ..SimConfig::quick(seed) });
    assert_holds(&outcome);
    assert!(outcome.watchman_attack.is_some());
    assert!(outcome.signed > 0, "seed {seed}: no session signed with a {kind:?} watchman");
    outcome
}

#[test]
fn a_watchman_sending_garbage_shares_is_excluded_and_ranges_settle() {
    watchman_attack_holds(WatchmanAttack::GarbageShares, 201);
}

#[test]
fn a_watchman_approving_anything_gets_nothing_unjustified_signed() {
    watchman_attack_holds(WatchmanAttack::ApprovesAnything, 202);
}

#[test]
fn a_watchman_refusing_everything_does_not_stop_settlement() {
    watchman_attack_holds(WatchmanAttack::RefusesEverything, 203);
}

#[test]
fn a_watchman_spamming_commitment_requests_is_refused_and_does_not_stop_settlement() {
    let outcome = watchman_attack_holds(WatchmanAttack::NonceSpam, 204);
    assert!(outcome.overloaded > 0, "the honest signers never refused the spammer over its limit");
}

#[test]
fn a_watchman_replaying_its_signing_requests_gets_one_share_per_nonce() {
    watchman_attack_holds(WatchmanAttack::ReplaysNonces, 205);
}

#[test]
fn a_watchman_splitting_its_round_1_is_named_by_every_honest_watchman_and_the_ceremony_is_run_again() {
    let outcome = watchman_attack_holds(WatchmanAttack::SplitsRound1, 207);
    let aborts = outcome.trace.iter().filter(|l| l.contains("ceremony aborted: inconsistent round-1 packages")).count();
    assert!(
        aborts >= 2,
        "the two honest watchmen should both abort naming the liar:\n{}",
        outcome.trace[..20.min(outcome.trace.len())].join("\n")
    );
    assert!(outcome.trace.iter().any(|l| l.contains("key ceremony 2 done")));
}
