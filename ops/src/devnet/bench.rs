//! `bridgectl devnet bench`: a withdrawal's way from acceptance to payment on each chain, split
//! into the protocol's stages, measured on a running devnet through the user's own command
//! (`bridgectl withdraw --json`, which stamps every stage on a monotonic clock). The batch
//! interval and the Bitcoin block interval stand beside the figures: they are the floors the
//! stages wait on by design.

use std::process::Command;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use super::state::DevnetState;

/// The stages in order, with the name of the span that ends at each.
const SPANS: [(&str, &str, &str); 5] = [
    ("accepted", "batched", "batching (accepted → batched)"),
    ("batched", "published", "publishing (batched → on Arweave)"),
    ("published", "hard-final", "replay (on Arweave → hard-final)"),
    ("hard-final", "signed", "signing (hard-final → signed)"),
    ("signed", "paid", "submission (signed → paid on L1)"),
];

#[derive(Deserialize)]
struct Report {
    stages: Vec<Stage>,
}

#[derive(Deserialize)]
struct Stage {
    stage: String,
    at_ms: u64,
}

/// Each withdrawal's stage times, per chain.
struct Runs {
    chain: &'static str,
    /// Per run: the milliseconds of each span, then the total.
    spans: Vec<[u64; 6]>,
}

pub async fn bench(state: &DevnetState, rounds: usize) -> anyhow::Result<()> {
    ensure!(rounds > 0, "--rounds must be at least 1");
    let alice = state.demo_wallets.first().context("the devnet has no demo wallet")?;
    let exe = std::env::current_exe().context("cannot find bridgectl's own path")?;
    let btc_to = {
        use bitcoin::key::{Keypair, Secp256k1};
        let secp = Secp256k1::new();
        let key = Keypair::new(&secp, &mut bitcoin::secp256k1::rand::thread_rng());
        bitcoin::Address::p2tr(&secp, key.x_only_public_key().0, None, bitcoin::Network::Regtest).to_string()
    };
    let plans: [(&'static str, &str, &str, String); 2] = [
        ("Ethereum (ETH)", "eth:ETH", "10000000000000000", "0x00000000000000000000000000000000000b3c41".into()),
        ("Bitcoin (BTC)", "btc:BTC", "100000", btc_to),
    ];
    let mut all = Vec::new();
    for (chain, asset, amount, recipient) in &plans {
        let mut runs = Runs { chain, spans: Vec::new() };
        for round in 1..=rounds {
            eprint!("\r{chain}: withdrawal {round}/{rounds}… ");
            let output = Command::new(&exe)
                .args(["withdraw", "--json", "--asset", asset, "--amount", amount, "--recipient", recipient])
                .args(["--fee", if asset.starts_with("btc") { "5000" } else { "0" }])
                .arg("--wallet")
                .arg(&alice.file)
                .arg("--devnet")
                .arg(&state.dir)
                .env("BRIDGE_PASSPHRASE", &state.wallet_passphrase)
                .output()
                .context("cannot run bridgectl withdraw")?;
            if !output.status.success() {
                bail!("a {chain} withdrawal failed:\n{}", String::from_utf8_lossy(&output.stderr));
            }
            let report: Report = serde_json::from_slice(&output.stdout).context("withdraw --json printed no report")?;
            runs.spans.push(spans(&report)?);
        }
        eprintln!("done");
        all.push(runs);
    }
    print_table(state, rounds, &all);
    Ok(())
}

fn spans(report: &Report) -> anyhow::Result<[u64; 6]> {
    let at = |name: &str| {
        report.stages.iter().find(|s| s.stage == name).map(|s| s.at_ms).with_context(|| format!("no {name} stage"))
    };
    let mut out = [0u64; 6];
    for (i, (from, to, _)) in SPANS.iter().enumerate() {
        out[i] = at(to)?.saturating_sub(at(from)?);
    }
    out[5] = at("paid")?;
    Ok(out)
}

/// A lone withdrawal's goal, accepted → paid: the settlement window plus 3 batch intervals.
fn goal_ms(window_ms: u64, batch_ms: u64) -> u64 {
    window_ms.saturating_add(batch_ms.saturating_mul(3))
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn print_table(state: &DevnetState, rounds: usize, all: &[Runs]) {
    let batch_ms = state.batch_ms;
    let block_ms = state.btc_block_secs * 1_000;
    println!();
    print!("| withdrawal, median of {rounds} (ms) |");
    for runs in all {
        print!(" {} |", runs.chain);
    }
    println!();
    println!("| --- |{}", " ---: |".repeat(all.len()));
    let mut totals = Vec::new();
    for (i, label) in SPANS.iter().map(|s| s.2).chain(["total: accepted → paid on L1"]).enumerate() {
        print!("| {label} |");
        for runs in all {
            let mut column: Vec<u64> = runs.spans.iter().map(|s| s[i]).collect();
            let value = median(&mut column);
            print!(" {value} |");
            if i == 5 {
                totals.push(value);
            }
        }
        println!();
    }
    println!("| batch interval (the devnet's `batch.max_age_ms`) |{}", format!(" {batch_ms} |").repeat(all.len()));
    print!("| total ÷ batch interval |");
    for total in &totals {
        print!(" {:.1} |", *total as f64 / batch_ms.max(1) as f64);
    }
    println!();
    // A lone withdrawal waits for its settlement window (one root, or one payout, per window),
    // so what the protocol adds is the total beyond it. Goal: at most 3 batch intervals.
    let window_ms = state.settlement_window_s * 1_000;
    println!(
        "| settlement window (`devnet up --settlement-window-s`) |{}",
        format!(" {window_ms} |").repeat(all.len())
    );
    print!("| (total − window) ÷ batch interval, goal ≤ 3 |");
    for total in &totals {
        print!(" {:.1} |", total.saturating_sub(window_ms) as f64 / batch_ms.max(1) as f64);
    }
    println!();
    // Issue 26's goal for a lone withdrawal, the same on both chains (one root, or one payout,
    // per window): accepted → paid within the window plus 3 batch intervals.
    let goal_ms = goal_ms(window_ms, batch_ms);
    println!("| goal: window + 3 batch intervals |{}", format!(" {goal_ms} |").repeat(all.len()));
    print!("| total ÷ goal (at most 1 meets it) |");
    for total in &totals {
        let ratio = *total as f64 / goal_ms.max(1) as f64;
        print!(" {ratio:.2} {} |", if *total <= goal_ms { "met" } else { "MISSED" });
    }
    println!();
    println!(
        "\nA Bitcoin block comes every {block_ms} ms on the devnet, anvil makes one a second, arlocal one a second."
    );
}
