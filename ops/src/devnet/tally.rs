//! What `devnet drill` counts besides the user's side: the vault's transactions on chain (each
//! receipt, so a revert is seen whoever sent it and whatever its sender's counters say), and the
//! watchmen's Prometheus counters, kept across their restarts (a killed watchman's counters start
//! again from zero; its last scrape is banked).

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionResponse as _;
use alloy::primitives::Address as EthAddress;
use alloy::providers::{DynProvider, Provider};
use anyhow::Context;
use serde::Serialize;
use tokio::sync::Mutex;

pub const REVERTED: &str = "watchman_eth_submission_reverted_total";
pub const TAKEOVERS: &str = "watchman_eth_turn_takeovers_total";
pub const SUBMITTED: &str = "watchman_eth_ranges_submitted_total";
pub const KEPT: &str = "watchman_eth_signatures_kept_total";
/// The counters kept, summed over their labels.
const COUNTERS: [&str; 4] = [REVERTED, TAKEOVERS, SUBMITTED, KEPT];

/// One vault call's transactions in the drill's blocks.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CallCount {
    pub mined: u64,
    pub reverted: u64,
    /// Gas used by the reverted ones.
    pub gas_wasted: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct VaultTally {
    pub first_block: u64,
    pub last_block: u64,
    /// By call (`chains::ethereum::call_name`): `submitAndWithdraw`, `submitWithdrawals`,
    /// `withdrawMany`, `withdraw`, `other` (deposits, admin).
    pub calls: BTreeMap<&'static str, CallCount>,
}

/// Every transaction to `vault` in blocks `first..=last`, by call, from its receipt.
pub async fn count_vault_transactions(
    provider: &DynProvider,
    vault: EthAddress,
    first: u64,
    last: u64,
) -> anyhow::Result<VaultTally> {
    let mut tally = VaultTally { first_block: first, last_block: last, calls: BTreeMap::new() };
    for call in ["submitAndWithdraw", "submitWithdrawals", "withdrawMany"] {
        tally.calls.insert(call, CallCount::default());
    }
    for number in first..=last {
        let block = provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await?
            .with_context(|| format!("anvil has no block {number}"))?;
        for tx in block.transactions.txns() {
            if tx.to() != Some(vault) {
                continue;
            }
            let call = chains::ethereum::call_name(tx.input());
            let receipt = provider
                .get_transaction_receipt(tx.tx_hash())
                .await?
                .with_context(|| format!("no receipt for {}", tx.tx_hash()))?;
            let count = tally.calls.entry(call).or_default();
            count.mined += 1;
            if !receipt.status() {
                count.reverted += 1;
                count.gas_wasted += receipt.gas_used;
            }
        }
    }
    Ok(tally)
}

/// The watchmen's counters: each one's last scrape, and what its earlier processes had reached.
#[derive(Debug, Default)]
pub struct Scrapes {
    last: BTreeMap<String, BTreeMap<String, f64>>,
    banked: BTreeMap<String, f64>,
}

impl Scrapes {
    /// Notes a scrape of `url`; a counter below its last value means a new process: the old
    /// one's last value is banked.
    fn note(&mut self, url: &str, now: BTreeMap<String, f64>) {
        let last = self.last.entry(url.to_owned()).or_default();
        let restarted = last.iter().any(|(name, value)| now.get(name).copied().unwrap_or(0.0) < *value);
        if restarted {
            for (name, value) in last.iter() {
                *self.banked.entry(name.clone()).or_default() += value;
            }
        }
        *last = now;
    }

    /// Each counter summed over every watchman and every process of it.
    pub fn totals(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = COUNTERS.iter().map(|c| ((*c).to_owned(), 0.0)).collect();
        for (name, value) in self.banked.iter().chain(self.last.values().flatten()) {
            *out.entry(name.clone()).or_default() += value;
        }
        out
    }
}

/// The counters in a Prometheus text page, summed over their labels.
fn parse(page: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or(series);
        if !COUNTERS.contains(&name) {
            continue;
        }
        if let Ok(value) = value.trim().parse::<f64>() {
            *out.entry(name.to_owned()).or_default() += value;
        }
    }
    out
}

/// Scrapes one watchman's `/metrics`; a watchman that does not answer (down) is skipped.
pub async fn scrape_one(scrapes: &Mutex<Scrapes>, url: &str) {
    let Ok(http) = reqwest::Client::builder().timeout(Duration::from_secs(1)).build() else { return };
    let Ok(response) = http.get(format!("{url}/metrics")).send().await else { return };
    let Ok(page) = response.text().await else { return };
    scrapes.lock().await.note(url, parse(&page));
}

pub async fn scrape_all(scrapes: &Mutex<Scrapes>, urls: &[String]) {
    for url in urls {
        scrape_one(scrapes, url).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_labels_and_kept_across_a_restart() {
        let page = |reverted_submit: u32, takeovers: u32| {
            format!(
                "# TYPE {REVERTED} counter\n{REVERTED}{{call=\"submitWithdrawals\"}} {reverted_submit}\n\
                 {REVERTED}{{call=\"withdrawMany\"}} 1\n{TAKEOVERS} {takeovers}\nother_total 9\n"
            )
        };
        let mut scrapes = Scrapes::default();
        scrapes.note("w0", parse(&page(2, 3)));
        scrapes.note("w1", parse(&page(0, 1)));
        // w0 restarted: its counters start again from zero.
        scrapes.note("w0", parse(&page(1, 0)));
        let totals = scrapes.totals();
        assert_eq!(totals[REVERTED], 3.0 + 1.0 + 2.0);
        assert_eq!(totals[TAKEOVERS], 3.0 + 1.0);
        assert_eq!(totals[SUBMITTED], 0.0);
        assert!(!totals.contains_key("other_total"));
    }
}
