//! EIP-1559 fees for what the watchmen send: read from `eth_feeHistory`, bounded by the
//! operator's ceiling. [`decide`] is pure (a fee history in, a decision out): the network's
//! state is read once, and the rule that turns it into a fee can be tested on its own.
//!
//! The fee a transaction pays per gas is the pending block's base fee plus its tip. A watchman
//! offers `base × margin + tip` as its maximum, so a few blocks of rising base fees (each at most
//! 12.5%) do not strand it, but never more than the ceiling. When even the base fee plus the
//! tip is above the ceiling, a payout or root submission is deferred: nothing is sent, and the
//! next turn asks again. Who could abuse that? Anyone who can fill blocks long enough to keep
//! the base fee high delays payouts (they wait, they are not lost); a pause is never deferred.

use alloy::rpc::types::FeeHistory;
use serde::Deserialize;

/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;

/// Blocks of history read at most: the most `eth_feeHistory` serves (1024) is more than the
/// rule needs, and each block is a row of the answer.
pub const MAX_HISTORY_BLOCKS: u64 = 64;

/// How a watchman prices its transactions (wei). Configured in gwei, see [`FeeConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// Above this (base fee plus tip, per gas) nothing but a pause is sent.
    pub max_fee_per_gas: u128,
    /// The maximum offered is the pending base fee times this (percent), plus the tip.
    pub base_fee_margin_percent: u32,
    /// Which percentile of each block's tips to take (the median over the blocks is used).
    pub priority_fee_percentile: u8,
    pub min_priority_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// Blocks of history read, 1..=[`MAX_HISTORY_BLOCKS`].
    pub history_blocks: u64,
}

/// [`FeeConfig::default`] in wei (a test holds them equal).
impl Default for FeePolicy {
    fn default() -> Self {
        FeePolicy {
            max_fee_per_gas: 200 * GWEI,
            base_fee_margin_percent: 200,
            priority_fee_percentile: 25,
            min_priority_fee_per_gas: GWEI / 100,
            max_priority_fee_per_gas: 5 * GWEI,
            history_blocks: 10,
        }
    }
}

/// The `[ethereum.fees]` section of a watchman's configuration, in gwei.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeeConfig {
    /// The ceiling: a payout or root submission that would pay more per gas waits.
    pub max_fee_per_gas_gwei: f64,
    pub base_fee_margin_percent: u32,
    pub priority_fee_percentile: u8,
    pub min_priority_fee_gwei: f64,
    pub max_priority_fee_gwei: f64,
    pub history_blocks: u64,
}

impl Default for FeeConfig {
    fn default() -> Self {
        FeeConfig {
            max_fee_per_gas_gwei: 200.0,
            // Twice the base fee survives six full blocks in a row (1.125^6 ≈ 2).
            base_fee_margin_percent: 200,
            priority_fee_percentile: 25,
            min_priority_fee_gwei: 0.01,
            max_priority_fee_gwei: 5.0,
            history_blocks: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeeError {
    #[error("[ethereum.fees] {field} = {value}: {why}")]
    BadConfig { field: &'static str, value: String, why: &'static str },
    #[error("the node's eth_feeHistory has no base fee for the pending block (is it a pre-London chain?)")]
    NoBaseFee,
}

/// Gwei as configured to wei; refuses what no sane fee is (negative, not a number, more than
/// a million gwei).
fn gwei_to_wei(field: &'static str, gwei: f64) -> Result<u128, FeeError> {
    if !gwei.is_finite() || !(0.0..=1_000_000.0).contains(&gwei) {
        return Err(FeeError::BadConfig { field, value: gwei.to_string(), why: "must be between 0 and 1000000 gwei" });
    }
    // Bounded above, so the product fits; sub-wei fractions are dropped.
    Ok((gwei * GWEI as f64).round() as u128)
}

impl FeeConfig {
    pub fn policy(&self) -> Result<FeePolicy, FeeError> {
        let bad = |field, value: String, why| Err(FeeError::BadConfig { field, value, why });
        let policy = FeePolicy {
            max_fee_per_gas: gwei_to_wei("max_fee_per_gas_gwei", self.max_fee_per_gas_gwei)?,
            base_fee_margin_percent: self.base_fee_margin_percent,
            priority_fee_percentile: self.priority_fee_percentile,
            min_priority_fee_per_gas: gwei_to_wei("min_priority_fee_gwei", self.min_priority_fee_gwei)?,
            max_priority_fee_per_gas: gwei_to_wei("max_priority_fee_gwei", self.max_priority_fee_gwei)?,
            history_blocks: self.history_blocks,
        };
        if policy.max_fee_per_gas == 0 {
            return bad("max_fee_per_gas_gwei", self.max_fee_per_gas_gwei.to_string(), "nothing could ever be sent");
        }
        if !(100..=1000).contains(&policy.base_fee_margin_percent) {
            return bad(
                "base_fee_margin_percent",
                policy.base_fee_margin_percent.to_string(),
                "must be 100 (no margin) to 1000",
            );
        }
        if policy.priority_fee_percentile > 100 {
            return bad("priority_fee_percentile", policy.priority_fee_percentile.to_string(), "must be 0 to 100");
        }
        if policy.min_priority_fee_per_gas > policy.max_priority_fee_per_gas {
            return bad(
                "min_priority_fee_gwei",
                self.min_priority_fee_gwei.to_string(),
                "must not exceed max_priority_fee_gwei",
            );
        }
        if !(1..=MAX_HISTORY_BLOCKS).contains(&policy.history_blocks) {
            return bad("history_blocks", policy.history_blocks.to_string(), "must be 1 to 64");
        }
        Ok(policy)
    }
}

/// What to offer for a transaction, or why not to send one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeDecision {
    Send(Fees),
    /// The pending base fee plus the tip (`fee_per_gas`) is above the ceiling.
    Defer {
        fee_per_gas: u128,
        ceiling: u128,
    },
}

/// An EIP-1559 fee offer, and what it would cost per gas in the pending block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    /// The pending block's base fee plus the tip: what is paid per gas if mined next.
    pub fee_per_gas: u128,
}

/// The fee rule. `history` is `eth_feeHistory(policy.history_blocks, latest,
/// [policy.priority_fee_percentile])`: its last base fee is the pending block's.
pub fn decide(history: &FeeHistory, policy: &FeePolicy) -> Result<FeeDecision, FeeError> {
    let fees = offer(history, policy)?;
    if fees.fee_per_gas > policy.max_fee_per_gas {
        return Ok(FeeDecision::Defer { fee_per_gas: fees.fee_per_gas, ceiling: policy.max_fee_per_gas });
    }
    Ok(FeeDecision::Send(fees))
}

/// The offer without the ceiling: what a pause pays, since a pause must never wait for fees.
/// Its maximum is still bounded: by the base fee's margin and the tip's cap.
pub fn offer(history: &FeeHistory, policy: &FeePolicy) -> Result<Fees, FeeError> {
    let base = history.base_fee_per_gas.last().copied().ok_or(FeeError::NoBaseFee)?;
    let tip = priority_fee(history, policy);
    let fee_per_gas = base.saturating_add(tip);
    let with_margin = base.saturating_mul(u128::from(policy.base_fee_margin_percent)) / 100;
    let max_fee_per_gas = with_margin.saturating_add(tip);
    // Under the ceiling the offer is capped by it; above it (a pause) by the margin alone.
    let max_fee_per_gas = if fee_per_gas <= policy.max_fee_per_gas {
        max_fee_per_gas.min(policy.max_fee_per_gas)
    } else {
        max_fee_per_gas
    };
    Ok(Fees { max_fee_per_gas, max_priority_fee_per_gas: tip, fee_per_gas })
}

/// The median over the blocks of each block's tip at the percentile, within the policy's
/// bounds: one block of lavish tips (or of none) does not set it. Empty blocks report 0 and
/// count as such, which the minimum then lifts.
fn priority_fee(history: &FeeHistory, policy: &FeePolicy) -> u128 {
    let mut tips: Vec<u128> =
        history.reward.as_deref().unwrap_or_default().iter().filter_map(|block| block.first().copied()).collect();
    tips.sort_unstable();
    let median = tips.get(tips.len() / 2).copied().unwrap_or(0);
    median.clamp(policy.min_priority_fee_per_gas, policy.max_priority_fee_per_gas)
}

/// The next version of a fee offer not mined in time: 25% more on both (a node takes a
/// replacement at 10% more), but never above the ceiling. `None` when the ceiling leaves no
/// room for a replacement the node would take: the transaction waits as it is.
pub fn bumped(fees: Fees, ceiling: u128) -> Option<Fees> {
    let max_fee_per_gas = (fees.max_fee_per_gas + fees.max_fee_per_gas / 4 + 1).min(ceiling.max(fees.max_fee_per_gas));
    let tip = fees.max_priority_fee_per_gas + fees.max_priority_fee_per_gas / 4 + 1;
    let max_priority_fee_per_gas = tip.min(max_fee_per_gas);
    let enough = |new: u128, old: u128| new > old + old / 10;
    if !(enough(max_fee_per_gas, fees.max_fee_per_gas)
        && enough(max_priority_fee_per_gas, fees.max_priority_fee_per_gas))
    {
        return None;
    }
    Some(Fees { max_fee_per_gas, max_priority_fee_per_gas, fee_per_gas: fees.fee_per_gas })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(base_fees: &[u128], tips: &[u128]) -> FeeHistory {
        FeeHistory {
            base_fee_per_gas: base_fees.to_vec(),
            reward: Some(tips.iter().map(|t| vec![*t]).collect()),
            ..FeeHistory::default()
        }
    }

    fn policy() -> FeePolicy {
        FeeConfig { max_fee_per_gas_gwei: 50.0, ..FeeConfig::default() }.policy().unwrap()
    }

    #[test]
    fn offers_twice_the_pending_base_fee_plus_the_median_tip() {
        let h = history(&[8 * GWEI, 9 * GWEI, 10 * GWEI], &[GWEI, 3 * GWEI / 2]);
        let FeeDecision::Send(fees) = decide(&h, &policy()).unwrap() else { panic!("deferred") };
        // Median of two is the upper one; the pending block's base fee is the last entry.
        assert_eq!(fees.max_priority_fee_per_gas, 3 * GWEI / 2);
        assert_eq!(fees.fee_per_gas, 10 * GWEI + 3 * GWEI / 2);
        assert_eq!(fees.max_fee_per_gas, 20 * GWEI + 3 * GWEI / 2);
    }

    #[test]
    fn one_lavish_block_does_not_set_the_tip_and_the_tip_is_bounded() {
        let h = history(&[GWEI, GWEI], &[GWEI, GWEI, 900 * GWEI]);
        let FeeDecision::Send(fees) = decide(&h, &policy()).unwrap() else { panic!("deferred") };
        assert_eq!(fees.max_priority_fee_per_gas, GWEI);
        let all_lavish = history(&[GWEI, GWEI], &[900 * GWEI; 3]);
        let FeeDecision::Send(fees) = decide(&all_lavish, &policy()).unwrap() else { panic!("deferred") };
        assert_eq!(fees.max_priority_fee_per_gas, policy().max_priority_fee_per_gas);
        // Empty blocks (tips of 0, or no rewards at all) pay the minimum.
        for empty in [history(&[GWEI, GWEI], &[0, 0]), FeeHistory { reward: None, ..history(&[GWEI], &[]) }] {
            let FeeDecision::Send(fees) = decide(&empty, &policy()).unwrap() else { panic!("deferred") };
            assert_eq!(fees.max_priority_fee_per_gas, policy().min_priority_fee_per_gas);
        }
    }

    #[test]
    fn above_the_ceiling_defers_and_near_it_the_offer_is_capped() {
        let p = policy();
        let high = history(&[60 * GWEI, 70 * GWEI], &[GWEI]);
        assert_eq!(decide(&high, &p).unwrap(), FeeDecision::Defer { fee_per_gas: 71 * GWEI, ceiling: 50 * GWEI });
        // Just under: sent, with the margin cut to the ceiling.
        let near = history(&[40 * GWEI], &[GWEI]);
        let FeeDecision::Send(fees) = decide(&near, &p).unwrap() else { panic!("deferred") };
        assert_eq!(fees.max_fee_per_gas, 50 * GWEI);
        assert_eq!(fees.fee_per_gas, 41 * GWEI);
        // A pause is offered even above the ceiling, bounded by the margin.
        let pause = offer(&high, &p).unwrap();
        assert_eq!(pause.max_fee_per_gas, 141 * GWEI);
    }

    #[test]
    fn a_node_without_base_fees_is_an_error() {
        assert_eq!(decide(&history(&[], &[]), &policy()), Err(FeeError::NoBaseFee));
    }

    #[test]
    fn bumps_stop_at_the_ceiling() {
        let ceiling = 50 * GWEI;
        let fees = Fees { max_fee_per_gas: 20 * GWEI, max_priority_fee_per_gas: GWEI, fee_per_gas: 11 * GWEI };
        let once = bumped(fees, ceiling).unwrap();
        assert_eq!(once.max_fee_per_gas, 25 * GWEI + 1);
        let mut last = once;
        let mut bumps = 1;
        while let Some(next) = bumped(last, ceiling) {
            assert!(next.max_fee_per_gas <= ceiling);
            last = next;
            bumps += 1;
            assert!(bumps < 20, "bumps end");
        }
        // The last step a node would take as a replacement (10% more) still fits.
        assert!(last.max_fee_per_gas <= ceiling && last.max_fee_per_gas * 11 / 10 > ceiling, "{last:?}");
    }

    #[test]
    fn a_nonsensical_config_is_refused_by_name() {
        let cases = [
            FeeConfig { max_fee_per_gas_gwei: f64::NAN, ..FeeConfig::default() },
            FeeConfig { max_fee_per_gas_gwei: -1.0, ..FeeConfig::default() },
            FeeConfig { max_fee_per_gas_gwei: 0.0, ..FeeConfig::default() },
            FeeConfig { base_fee_margin_percent: 50, ..FeeConfig::default() },
            FeeConfig { priority_fee_percentile: 101, ..FeeConfig::default() },
            FeeConfig { min_priority_fee_gwei: 10.0, ..FeeConfig::default() },
            FeeConfig { history_blocks: 0, ..FeeConfig::default() },
            FeeConfig { history_blocks: 1025, ..FeeConfig::default() },
        ];
        let fields = [
            "max_fee_per_gas_gwei",
            "max_fee_per_gas_gwei",
            "max_fee_per_gas_gwei",
            "base_fee_margin_percent",
            "priority_fee_percentile",
            "min_priority_fee_gwei",
            "history_blocks",
            "history_blocks",
        ];
        for (config, field) in cases.iter().zip(fields) {
            match config.policy() {
                Err(FeeError::BadConfig { field: named, .. }) => assert_eq!(named, field, "{config:?}"),
                other => panic!("{config:?}: expected a refusal of {field}, got {other:?}"),
            }
        }
        assert_eq!(FeeConfig::default().policy().unwrap(), FeePolicy::default());
    }
}
