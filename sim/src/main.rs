//! `sim --seed S` replays one run (its trace, its final hash); `sim --seeds N [--from F]` runs
//! many and prints each failing seed with its first violated invariant and the trace before it.

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "A deterministic simulator of the bridge: seeded runs of the roles' own code")]
struct Args {
    /// Replay this one seed and print its whole trace.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds, from `--from`.
    #[arg(long)]
    seeds: Option<u64>,
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Give every run this byzantine coordinator (default: about one run in three, of a kind
    /// the seed picks).
    #[arg(long, value_enum)]
    attack: Option<sim::byzantine::AttackKind>,
    /// Give every run a byzantine watchman of this kind (default: about one run in three, of a
    /// kind the seed picks).
    #[arg(long, value_enum)]
    watchman_attack: Option<sim::signing::WatchmanAttack>,
    /// No forced transactions from users (the network still takes them).
    #[arg(long)]
    no_forced_traffic: bool,
    /// No crashes of the coordinator or the confirmers (every other fault as the seed draws it).
    #[arg(long)]
    no_crashes: bool,
    /// No share refresh mid-run (the run as it was before refreshes joined the simulator).
    #[arg(long)]
    no_refresh: bool,
    /// The shorter run the tests use (`SimConfig::quick`): 30 minutes of faults, 30 of healing.
    #[arg(long)]
    quick: bool,
    /// Switch this planted bug on for every run (`PlantedBug`'s variant name; a build with
    /// `--features planted-bugs` only): which seeds catch it.
    #[cfg(feature = "planted-bugs")]
    #[arg(long)]
    plant: Option<String>,
    /// Trace lines printed before a failing seed's violation.
    #[arg(long, default_value_t = 40)]
    context: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    #[cfg(feature = "planted-bugs")]
    if let Some(name) = &args.plant {
        let bug = bridge::planted::PlantedBug::ALL.iter().find(|bug| format!("{bug:?}") == *name);
        let bug = bug.with_context(|| {
            format!("no planted bug is called {name:?}; they are {:?}", bridge::planted::PlantedBug::ALL)
        })?;
        bridge::planted::plant(Some(*bug));
    }
    if let Some(seed) = args.seed {
        let outcome = sim::run(config(seed, &args)).with_context(|| format!("seed {seed}"))?;
        for line in &outcome.trace {
            println!("{line}");
        }
        summary(&outcome);
        if outcome.violation.is_some() {
            std::process::exit(1);
        }
        return Ok(());
    }
    let count = args.seeds.unwrap_or(100);
    let started = std::time::Instant::now();
    let (mut failed, mut simulated_ms, mut faults) = (0u64, 0u64, 0u64);
    let (mut sessions, mut signed) = (0u64, 0u64);
    for seed in args.from..args.from + count {
        let outcome = sim::run(config(seed, &args)).with_context(|| format!("seed {seed}"))?;
        simulated_ms += outcome.simulated_ms;
        faults += u64::from(outcome.faults);
        sessions += outcome.sessions;
        signed += outcome.signed;
        if let Some(violation) = &outcome.violation {
            failed += 1;
            println!("seed {seed} FAILS {}: {}", violation.invariant, violation.detail);
            let from = outcome.trace.len().saturating_sub(args.context);
            for line in &outcome.trace[from..] {
                println!("    {line}");
            }
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "{count} seeds, {failed} failing; {:.1} seeds per minute, {:.1} simulated hours per minute, {:.1} faults per run, {:.1} signing sessions per run ({:.1} signed)",
        count as f64 / minutes,
        simulated_ms as f64 / 3_600_000.0 / minutes,
        faults as f64 / count as f64,
        sessions as f64 / count as f64,
        signed as f64 / count as f64
    );
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn config(seed: u64, args: &Args) -> sim::SimConfig {
    let base = if args.quick { sim::SimConfig::quick(seed) } else { sim::SimConfig::new(seed) };
    sim::SimConfig {
        attack: args.attack,
        watchman_attack: args.watchman_attack,
        forced_traffic: !args.no_forced_traffic,
        crashes: !args.no_crashes,
        refresh: !args.no_refresh,
        ..base
    }
}

fn summary(outcome: &sim::Outcome) {
    println!(
        "seed {}: {} faults, attack {}, byzantine {}, {} acknowledged, {} batches, {} signing sessions ({} signed), {} leaves paid by the vault, {} of {} Bitcoin payout plans paid, mesh dropped {} and duplicated {} messages, {} requests refused over a limit, {} of {} forced entries recorded, {} Bitcoin deposits credited by their payer's claim, final hash {}",
        outcome.seed,
        outcome.faults,
        outcome.attack.as_deref().unwrap_or("none"),
        outcome.watchman_attack.as_deref().unwrap_or("none"),
        outcome.acked,
        outcome.batches,
        outcome.sessions,
        outcome.signed,
        outcome.paid_leaves,
        outcome.btc_plans_paid,
        outcome.btc_plans,
        outcome.mesh_dropped,
        outcome.mesh_duplicated,
        outcome.overloaded,
        outcome.forced_recorded,
        outcome.forced_posted,
        outcome.btc_claims_credited,
        hex::encode(outcome.final_hash)
    );
    match &outcome.violation {
        Some(v) => println!("VIOLATION {} at {} s: {}", v.invariant, v.at_ms / 1000, v.detail),
        None => println!("every invariant held"),
    }
}
