//! The coordinator's Arweave wallet: every batch it publishes is paid from it, and an empty
//! wallet stops publication, so stops every withdrawal. Its balance is read from the gateway
//! and exported (`bridge_coordinator_arweave_balance_winston`) with an estimate of the days it lasts at
//! the recent spend rate (`bridge_coordinator_arweave_days_left`), which an alert watches.

use std::collections::VecDeque;
use std::time::Duration;

use chains::arweave::Gateway;
use chains::task::{Task, TaskError};

/// One reading of the balance: seconds on the coordinator's clock, winston.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceSample {
    pub at_secs: u64,
    pub winston: u128,
}

/// Readings within the last `window` seconds, at most `max_samples` of them: the spend rate is
/// recent (a day's postings, not a month ago's), and memory stays bounded whatever the polling.
#[derive(Debug, Clone)]
pub struct SpendWindow {
    samples: VecDeque<BalanceSample>,
    window_secs: u64,
    max_samples: usize,
}

impl SpendWindow {
    pub fn new(window: Duration, max_samples: usize) -> Self {
        SpendWindow { samples: VecDeque::new(), window_secs: window.as_secs(), max_samples: max_samples.max(2) }
    }

    /// Adds a reading and forgets what fell out of the window. A reading older than the last is
    /// a clock gone back: the window starts again from it rather than compute a negative rate.
    pub fn record(&mut self, sample: BalanceSample) {
        if self.samples.back().is_some_and(|last| last.at_secs > sample.at_secs) {
            self.samples.clear();
        }
        self.samples.push_back(sample);
        let oldest = sample.at_secs.saturating_sub(self.window_secs);
        while self.samples.len() > self.max_samples || self.samples.front().is_some_and(|s| s.at_secs < oldest) {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &BalanceSample> {
        self.samples.iter()
    }

    pub fn days_left(&self) -> Option<f64> {
        days_left(self.samples.iter().copied())
    }
}

/// Days the last balance lasts at the spend rate over `samples` (oldest first): what the
/// balance fell by, summed over consecutive readings, per second between the first and last.
/// A top-up is not negative spending (it is skipped, not subtracted). `None` with fewer than
/// two readings or none apart in time; infinity when nothing was spent.
pub fn days_left(samples: impl IntoIterator<Item = BalanceSample>) -> Option<f64> {
    let mut samples = samples.into_iter();
    let first = samples.next()?;
    let (mut last, mut spent) = (first, 0u128);
    for sample in samples {
        spent = spent.saturating_add(last.winston.saturating_sub(sample.winston));
        last = sample;
    }
    let elapsed = last.at_secs.checked_sub(first.at_secs).filter(|e| *e > 0)?;
    if spent == 0 {
        return Some(f64::INFINITY);
    }
    // Winston amounts fit f64's range; the estimate needs no more precision than f64 gives.
    let (balance, spent, elapsed) = (last.winston as f64, spent as f64, elapsed as f64);
    Some(balance / (spent / elapsed) / 86_400.0)
}

/// Readings kept at most: a day at one reading every five minutes, and then some.
pub const MAX_SAMPLES: usize = 512;

/// The supervised task that reads the balance and sets the gauges.
#[derive(Debug)]
pub struct WalletWatch {
    gateway: Gateway,
    address: String,
    window: SpendWindow,
}

impl WalletWatch {
    pub fn new(gateway: Gateway, address: String, window: Duration) -> Self {
        WalletWatch { gateway, address, window: SpendWindow::new(window, MAX_SAMPLES) }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Task for WalletWatch {
    async fn turn(&mut self) -> Result<(), TaskError> {
        let winston = self.gateway.wallet_balance_winston(&self.address).await.map_err(TaskError::transient)?;
        self.window.record(BalanceSample { at_secs: unix_secs(), winston });
        // Display and alerting only: f64 is plenty.
        metrics::gauge!("bridge_coordinator_arweave_balance_winston").set(winston as f64);
        match self.window.days_left() {
            Some(days) => {
                metrics::gauge!("bridge_coordinator_arweave_days_left").set(days);
                if days < 7.0 {
                    tracing::warn!(address = %self.address, winston, days, "the Arweave wallet runs dry soon: top it up");
                } else {
                    tracing::debug!(address = %self.address, winston, days, "Arweave wallet balance");
                }
            }
            None => tracing::debug!(address = %self.address, winston, "Arweave wallet balance (no spend rate yet)"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_secs: u64, winston: u128) -> BalanceSample {
        BalanceSample { at_secs, winston }
    }

    #[test]
    fn days_left_at_the_recent_rate() {
        // 1,000 winston a day spent, 10,000 left: ten days.
        let days = days_left([at(0, 11_000), at(43_200, 10_500), at(86_400, 10_000)]).unwrap();
        assert!((days - 10.0).abs() < 1e-9, "{days}");
    }

    #[test]
    fn a_top_up_is_not_negative_spending() {
        // 500 spent, 100,000 added, 500 spent over a day: 1,000 a day, 109,000 left.
        let days = days_left([at(0, 10_000), at(30_000, 9_500), at(30_001, 109_500), at(86_400, 109_000)]).unwrap();
        assert!((days - 109.0).abs() < 1e-9, "{days}");
    }

    #[test]
    fn no_estimate_without_two_readings_apart_and_infinity_without_spending() {
        assert_eq!(days_left([]), None);
        assert_eq!(days_left([at(5, 10)]), None);
        assert_eq!(days_left([at(5, 10), at(5, 9)]), None);
        assert_eq!(days_left([at(0, 10), at(60, 10)]), Some(f64::INFINITY));
        // An empty wallet that was spending has nothing left.
        assert_eq!(days_left([at(0, 10), at(60, 0)]), Some(0.0));
    }

    #[test]
    fn the_window_is_bounded_in_time_and_count() {
        let mut window = SpendWindow::new(Duration::from_secs(3_600), 4);
        for i in 0..10u64 {
            window.record(at(i * 600, 1_000_000 - u128::from(i) * 100));
        }
        let kept: Vec<u64> = window.samples().map(|s| s.at_secs).collect();
        assert_eq!(kept, vec![3_600, 4_200, 4_800, 5_400]);
        // Only the recent rate counts: a burst long ago is forgotten.
        let mut window = SpendWindow::new(Duration::from_secs(3_600), MAX_SAMPLES);
        window.record(at(0, 1_000_000));
        window.record(at(60, 100_000));
        window.record(at(10_000, 100_000));
        window.record(at(13_600, 99_000));
        let days = window.days_left().unwrap();
        assert!((days - 99_000.0 / 1_000.0 / 24.0).abs() < 1e-9, "{days}");
        // A clock gone back restarts the window.
        window.record(at(5, 98_000));
        assert_eq!(window.samples().count(), 1);
    }
}
