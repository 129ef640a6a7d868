//! `bridgectl devnet drill`: a crash-and-restart run on a running devnet. While a user keeps
//! withdrawing (and transferring) through `bridgectl`, the coordinator, the confirmer and the
//! watchmen are killed with SIGKILL and started again at seeded random moments, never more than
//! `n − t` watchmen down at once. Then every withdrawal the coordinator accepted must be paid,
//! and the vault's transactions are counted on chain from anvil's receipts: what reverted is
//! gas spent for nothing (issue 26 aims for none), whatever the watchmen's own counters say.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::sync::Mutex;

use super::process;
use super::restart;
use super::state::DevnetState;
use super::tally::{self, Scrapes, VaultTally};

#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// How long parts are killed and restarted while withdrawals flow.
    #[arg(long)]
    pub minutes: u64,
    /// The seed of the kills' moments, parts and downtimes (the same seed, the same schedule).
    #[arg(long, default_value_t = 26)]
    pub seed: u64,
    /// How long to wait, after the last restart, for every accepted withdrawal to be paid.
    #[arg(long, default_value_t = 600)]
    pub pay_timeout_secs: u64,
    /// Print the figures as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Each withdrawal's amount: small, so 10 ETH lasts thousands of them.
const WITHDRAWAL_WEI: u64 = 1_000_000_000_000_000;
/// A wallet command that has not answered in this long is abandoned (and counted unacknowledged).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds between kills: drawn in this range.
const KILL_GAP_S: (u64, u64) = (10, 40);
/// Seconds a killed part stays down: drawn in this range.
const DOWN_S: (u64, u64) = (2, 20);

/// A seeded generator (SplitMix64): the drill's schedule depends on its seed alone.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
}

/// What the user's side saw.
#[derive(Debug, Default, Serialize)]
pub struct Traffic {
    /// Withdrawals the coordinator accepted: (recipient, wei). Each recipient is fresh, so its
    /// balance on anvil says whether it was paid.
    #[serde(skip)]
    pub accepted: Vec<(EthAddress, U256)>,
    /// Withdrawals whose command failed (the coordinator down, or killed before answering):
    /// nothing was promised, but one may still have been taken and paid.
    #[serde(skip)]
    pub unacknowledged: Vec<(EthAddress, U256)>,
    pub transfers_accepted: u64,
    pub transfers_failed: u64,
    /// Why the failed commands failed (their last line of stderr, numbers masked), and how often.
    pub failures: BTreeMap<String, u64>,
}

impl Traffic {
    fn note_failure(&mut self, line: &str) {
        *self.failures.entry(failure_reason(line)).or_default() += 1;
    }
}

/// A failed command's last line with what differs from one failure to the next (numbers,
/// hashes, addresses, ports) masked, so that failures of one kind count together. A word is
/// masked if it is hex digits holding at least one decimal digit (`0x` and all), so words of
/// a–f letters ("failed", "bad") stay readable.
fn failure_reason(line: &str) -> String {
    let mut reason = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, reason: &mut String| {
        let hex = word.strip_prefix("0x").unwrap_or(word);
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) && hex.chars().any(|c| c.is_ascii_digit()) {
            reason.push('#');
        } else {
            reason.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut reason);
            reason.push(c);
        }
    }
    flush(&mut word, &mut reason);
    reason.chars().take(160).collect()
}

/// Kills per role.
#[derive(Debug, Default, Serialize)]
pub struct Kills {
    pub coordinator: u64,
    pub confirmer: u64,
    pub watchmen: u64,
    /// Of which a watchman that submits to the vault.
    pub submitting_watchmen: u64,
    /// The most watchmen down at once.
    pub most_watchmen_down: usize,
    /// Restarted parts that were running but not answering within `devnet restart`'s wait.
    pub slow_restarts: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    minutes: u64,
    seed: u64,
    withdrawals_accepted: usize,
    withdrawals_paid: usize,
    withdrawals_unacknowledged: usize,
    unacknowledged_paid: usize,
    transfers_accepted: u64,
    transfers_failed: u64,
    command_failures: BTreeMap<String, u64>,
    kills: Kills,
    vault: VaultTally,
    /// The watchmen's counters summed over every process (a killed watchman's last scrape kept).
    metrics: BTreeMap<String, f64>,
    /// Seconds from the end of the kills until the last accepted withdrawal was paid.
    drain_s: f64,
}

pub async fn drill(dir: &Path, args: &DrillArgs) -> anyhow::Result<()> {
    ensure!(args.minutes > 0, "--minutes must be at least 1");
    let mut state = DevnetState::load(dir)?;
    let group = state.groups.last().cloned().context("the devnet has no watchmen group")?;
    // A signature needs t of n: more than n − t down at once would stop settlement outright.
    let most_down = group.members.len().saturating_sub(usize::from(group.threshold));
    let provider = ProviderBuilder::new().connect_http(state.endpoints.eth_rpc.parse()?).erased();
    let vault: EthAddress = state.endpoints.eth_vault.parse().context("devnet.json: the vault's address")?;
    let first_block = provider.get_block_number().await.context("anvil does not answer")?;
    let urls: Vec<String> = group.members.iter().map(|m| m.url.clone()).collect();
    let scrapes = Arc::new(Mutex::new(Scrapes::default()));
    tally::scrape_all(&scrapes, &urls).await;
    // The watchmen may have counted before the drill (an earlier drill on the same devnet):
    // only what they count during it is reported.
    let baseline = scrapes.lock().await.totals();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = tokio::spawn(traffic(state.clone(), args.seed, stop.clone()));
    let scraper = {
        let (scrapes, urls, stop) = (scrapes.clone(), urls.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tally::scrape_all(&scrapes, &urls).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let chaos = chaos(&mut state, args, most_down, &scrapes, &urls).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let traffic = traffic.await.context("the withdrawals' task failed")?;
    let _ = scraper.await;
    let kills = chaos?;

    let drain = Instant::now();
    eprintln!(
        "kills over; waiting for {} accepted withdrawals to be paid (at most {} s)…",
        traffic.accepted.len(),
        args.pay_timeout_secs
    );
    let unpaid = wait_paid(&provider, &traffic.accepted, Duration::from_secs(args.pay_timeout_secs)).await?;
    let drain_s = drain.elapsed().as_secs_f64();
    let unacknowledged_paid = count_paid(&provider, &traffic.unacknowledged).await?;
    // A few more blocks, so a payout or root still pending when the last leaf was paid is counted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    tally::scrape_all(&scrapes, &urls).await;
    let last_block = provider.get_block_number().await?;
    let vault_tally = tally::count_vault_transactions(&provider, vault, first_block, last_block).await?;
    let report = Report {
        minutes: args.minutes,
        seed: args.seed,
        withdrawals_accepted: traffic.accepted.len(),
        withdrawals_paid: traffic.accepted.len() - unpaid.len(),
        withdrawals_unacknowledged: traffic.unacknowledged.len(),
        unacknowledged_paid,
        transfers_accepted: traffic.transfers_accepted,
        transfers_failed: traffic.transfers_failed,
        command_failures: traffic.failures.clone(),
        kills,
        vault: vault_tally,
        metrics: scrapes
            .lock()
            .await
            .totals()
            .into_iter()
            .map(|(name, total)| {
                let before = baseline.get(&name).copied().unwrap_or(0.0);
                (name, total - before)
            })
            .collect(),
        drain_s,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !unpaid.is_empty() {
        let list: Vec<String> = unpaid.iter().take(10).map(|a| format!("{a:#x}")).collect();
        bail!(
            "{} accepted withdrawals were not paid within {} s (recipients, first ten: {})",
            unpaid.len(),
            args.pay_timeout_secs,
            list.join(", ")
        );
    }
    Ok(())
}

/// The kills and restarts, until `minutes` are over; every part is running again on return.
async fn chaos(
    state: &mut DevnetState,
    args: &DrillArgs,
    most_down: usize,
    scrapes: &Mutex<Scrapes>,
    urls: &[String],
) -> anyhow::Result<Kills> {
    let group = state.groups.last().cloned().context("the devnet has no watchmen group")?;
    let mut rng = Seeded(args.seed);
    let mut kills = Kills::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    // Parts down now, with when each comes back.
    let mut down: Vec<(String, Instant)> = Vec::new();
    let mut next_kill = started + Duration::from_secs(rng.between(KILL_GAP_S.0, KILL_GAP_S.1) / 2);
    loop {
        let now = Instant::now();
        let over = now >= end;
        let due: Vec<String> =
            down.iter().filter(|(_, back)| over || *back <= now).map(|(name, _)| name.clone()).collect();
        for name in due {
            eprintln!("[{:>4} s] restarting {name}", started.elapsed().as_secs());
            if let Err(error) = restart::restart(state, &name, false).await {
                // Running but slow to answer (a confirmer replaying from scratch, say): the
                // drill goes on; a part that died is a failure.
                let alive = state.parts.iter().any(|p| p.name == name && process::alive(p));
                ensure!(alive, "restarting {name}: {error:#}");
                eprintln!("  {name} runs but did not answer in time; going on");
                kills.slow_restarts += 1;
            }
            down.retain(|(n, _)| *n != name);
        }
        if over {
            return Ok(kills);
        }
        if now >= next_kill {
            next_kill = now + Duration::from_secs(rng.between(KILL_GAP_S.0, KILL_GAP_S.1));
            let downtime = Duration::from_secs(rng.between(DOWN_S.0, DOWN_S.1));
            // Watchmen are the drill's subject (they take turns submitting): half the kills.
            let role = rng.between(0, 3);
            let watchmen_down = down.iter().filter(|(n, _)| n.starts_with("watchman-")).count();
            let name = match role {
                0 => Some("coordinator".to_owned()),
                1 => Some("confirmer".to_owned()),
                _ if watchmen_down < most_down => {
                    let up: Vec<&super::state::GroupMember> =
                        group.members.iter().filter(|m| !down.iter().any(|(n, _)| *n == m.part)).collect();
                    let pick = rng.between(0, up.len().saturating_sub(1) as u64) as usize;
                    up.get(pick).map(|m| m.part.clone())
                }
                _ => None,
            };
            let Some(name) = name else { continue };
            if down.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if let Some(member) = group.members.iter().find(|m| m.part == name) {
                // Its counters die with it: keep their last values.
                let at = urls.iter().position(|u| *u == member.url);
                if let Some(url) = at.and_then(|i| urls.get(i)) {
                    tally::scrape_one(scrapes, url).await;
                }
                kills.watchmen += 1;
                kills.submitting_watchmen += u64::from(member.sends);
            } else if name == "coordinator" {
                kills.coordinator += 1;
            } else {
                kills.confirmer += 1;
            }
            eprintln!("[{:>4} s] SIGKILL {name}, down {} s", started.elapsed().as_secs(), downtime.as_secs());
            restart::kill(state, &name).with_context(|| format!("killing {name}"))?;
            down.push((name, now + downtime));
            let watchmen_down = down.iter().filter(|(n, _)| n.starts_with("watchman-")).count();
            kills.most_watchmen_down = kills.most_watchmen_down.max(watchmen_down);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Alice withdraws ETH to a fresh recipient each time, and now and then transfers to bob,
/// through `bridgectl` as a user would, until `stop`.
async fn traffic(state: DevnetState, seed: u64, stop: Arc<std::sync::atomic::AtomicBool>) -> Traffic {
    let mut out = Traffic::default();
    let Some(alice) = state.demo_wallets.first().cloned() else { return out };
    let bob = state.demo_wallets.get(1).map(|w| w.address.clone());
    let Ok(exe) = std::env::current_exe() else { return out };
    // Its own stream, so the kills' schedule does not depend on how fast commands return.
    let mut rng = Seeded(seed ^ 0x0074_7261_6666_6963);
    let mut sequence = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        sequence += 1;
        let transfer = sequence.is_multiple_of(4) && bob.is_some();
        let mut command = tokio::process::Command::new(&exe);
        let recipient = fresh_recipient(seed, sequence);
        if let (true, Some(bob)) = (transfer, &bob) {
            command.args(["transfer", "--no-wait", "--asset", "eth:ETH", "--amount", "1000", "--to", bob]);
        } else {
            command.args(["withdraw", "--no-wait", "--asset", "eth:ETH", "--fee", "0"]);
            command.args(["--amount", &WITHDRAWAL_WEI.to_string(), "--recipient", &format!("{recipient:#x}")]);
        }
        command
            .arg("--wallet")
            .arg(&alice.file)
            .arg("--devnet")
            .arg(&state.dir)
            .env("BRIDGE_PASSPHRASE", &state.wallet_passphrase)
            .kill_on_drop(true);
        let ok = match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
            Ok(Ok(output)) if output.status.success() => true,
            Ok(Ok(output)) => {
                let text = String::from_utf8_lossy(&output.stderr);
                out.note_failure(text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("(no message)"));
                false
            }
            Ok(Err(error)) => {
                out.note_failure(&format!("cannot run bridgectl: {error}"));
                false
            }
            Err(_) => {
                out.note_failure("no answer within the command timeout");
                false
            }
        };
        match (transfer, ok) {
            (true, true) => out.transfers_accepted += 1,
            (true, false) => out.transfers_failed += 1,
            (false, true) => out.accepted.push((recipient, U256::from(WITHDRAWAL_WEI))),
            (false, false) => out.unacknowledged.push((recipient, U256::from(WITHDRAWAL_WEI))),
        }
        let pause = if ok { rng.between(200, 1_500) } else { 1_000 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    out
}

/// An address nobody else uses: `d7111` (drill), the seed, the withdrawal's sequence number.
fn fresh_recipient(seed: u64, sequence: u64) -> EthAddress {
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&0x0d71_11d7u32.to_be_bytes());
    bytes[4..12].copy_from_slice(&seed.to_be_bytes());
    bytes[12..].copy_from_slice(&sequence.to_be_bytes());
    EthAddress::from(bytes)
}

/// Waits until every recipient holds its amount; returns those that do not by `timeout`.
async fn wait_paid(
    provider: &DynProvider,
    owed: &[(EthAddress, U256)],
    timeout: Duration,
) -> anyhow::Result<Vec<EthAddress>> {
    let deadline = Instant::now() + timeout;
    let mut unpaid: Vec<(EthAddress, U256)> = owed.to_vec();
    let mut said = Instant::now();
    loop {
        let mut still = Vec::new();
        for (to, amount) in unpaid {
            match provider.get_balance(to).await {
                Ok(balance) if balance >= amount => {}
                _ => still.push((to, amount)),
            }
        }
        unpaid = still;
        if unpaid.is_empty() || Instant::now() > deadline {
            return Ok(unpaid.into_iter().map(|(to, _)| to).collect());
        }
        if said.elapsed() > Duration::from_secs(15) {
            eprintln!("  {} withdrawals not paid yet", unpaid.len());
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn count_paid(provider: &DynProvider, owed: &[(EthAddress, U256)]) -> anyhow::Result<usize> {
    let mut paid = 0;
    for (to, amount) in owed {
        if provider.get_balance(*to).await? >= *amount {
            paid += 1;
        }
    }
    Ok(paid)
}

fn print_table(r: &Report) {
    let metric = |name: &str| r.metrics.get(name).copied().unwrap_or(0.0);
    println!();
    println!("| crash drill, {} min, seed {} | |", r.minutes, r.seed);
    println!("| --- | ---: |");
    println!("| withdrawals accepted | {} |", r.withdrawals_accepted);
    println!("| withdrawals accepted and paid | {} |", r.withdrawals_paid);
    println!(
        "| withdrawal commands that failed (coordinator down) / of them paid anyway | {} / {} |",
        r.withdrawals_unacknowledged, r.unacknowledged_paid
    );
    println!("| transfers accepted / failed | {} / {} |", r.transfers_accepted, r.transfers_failed);
    println!(
        "| kills: coordinator / confirmer / watchmen (of them submitting) | {} / {} / {} ({}) |",
        r.kills.coordinator, r.kills.confirmer, r.kills.watchmen, r.kills.submitting_watchmen
    );
    println!("| most watchmen down at once | {} |", r.kills.most_watchmen_down);
    println!("| restarts slower than `devnet restart`'s 120 s wait (still running) | {} |", r.kills.slow_restarts);
    for (call, count) in &r.vault.calls {
        println!(
            "| `{call}` transactions on chain: mined / reverted (gas wasted) | {} / {} ({}) |",
            count.mined, count.reverted, count.gas_wasted
        );
    }
    println!("| `watchman_eth_submission_reverted_total` (all calls, all watchmen) | {} |", metric(tally::REVERTED));
    println!("| `watchman_eth_turn_takeovers_total` | {} |", metric(tally::TAKEOVERS));
    println!("| `watchman_eth_ranges_submitted_total` | {} |", metric(tally::SUBMITTED));
    println!("| `watchman_eth_signatures_kept_total` (signed after the turn passed) | {} |", metric(tally::KEPT));
    println!("| last kill → every accepted withdrawal paid (s) | {:.0} |", r.drain_s);
    for (reason, count) in &r.command_failures {
        println!("\nfailed commands ({count}): {reason}");
    }
    println!(
        "\nOn-chain figures: every transaction to the vault in blocks {}..={} and its receipt.",
        r.vault.first_block, r.vault.last_block
    );
}

#[cfg(test)]
mod tests {
    use super::failure_reason;

    #[test]
    fn a_failure_reason_masks_numbers_and_hashes_and_keeps_words() {
        assert_eq!(
            failure_reason(
                "bridgectl: cannot reach the coordinator at http://127.0.0.1:43117: deadbeef 0xabc12 failed"
            ),
            "bridgectl: cannot reach the coordinator at http://#.#.#.#:#: deadbeef # failed"
        );
    }
}
