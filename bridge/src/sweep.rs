//! The sweep after a Bitcoin key rotation: a payout plan that pays nobody and moves outputs
//! held under an earlier group key to the vault address of the key in force.
//!
//! Like every payout plan it is fixed by the ledger (`SystemTx::BtcSweepPlan`), so each old
//! watchman rebuilds it from its own replay and signs only that; a sweep anybody else proposes
//! (other inputs, another destination) differs from the replay and is refused by the policy.
//!
//! The rule: the outputs of the *oldest* key that still holds unplanned outputs, in outpoint
//! order, at most [`MAX_PAYOUT_INPUTS`]; all of them, however small (an output left behind would
//! be lost when the old shares are destroyed). One key per sweep, so one group signs it. Its
//! fee budget is [`CONSOLIDATION_BUDGET_FACTOR`] times the first attempt's fee, paid from the
//! vault's surplus and, for what the surplus lacks, from the fee account's bitcoin (a rotation
//! is the operators' cost, never the users'). Formats: docs/PROTOCOL.md, "Bitcoin in a key
//! rotation".

use crate::amount::Amount;
use crate::asset::AssetId;
use crate::btc_payout::{CONSOLIDATION_BUDGET_FACTOR, MAX_PAYOUT_INPUTS, MIN_CHANGE_SAT, PayoutPlan};
use crate::btc_vault::VaultUtxo;
use crate::rotation::is_current_at;
use crate::state::{Changes, State};
use crate::stf::{TxError, btc_vault, btc_vault_surplus_sat};

/// The outputs the next sweep at `batch` spends: those of the oldest key other than the key
/// in force, in outpoint order, at most [`MAX_PAYOUT_INPUTS`]. Empty: nothing to sweep.
pub fn select_sweep(state: &State, batch: u64) -> Vec<VaultUtxo> {
    let old: Vec<&VaultUtxo> = state.vault_utxos().filter(|u| !is_current_at(state, batch, &u.owner)).collect();
    // Genesis (no rotated key) is the oldest, then the rotated keys in epoch order.
    let order = |key: Option<[u8; 32]>| match key {
        None => 0,
        Some(k) => state.key_epochs().find(|(_, e)| e.internal_key == k).map_or(u64::MAX, |(epoch, _)| epoch),
    };
    let Some(oldest) = old.iter().map(|u| order(u.owner.rotated_key())).min() else { return Vec::new() };
    old.into_iter().filter(|u| order(u.owner.rotated_key()) == oldest).take(MAX_PAYOUT_INPUTS).copied().collect()
}

pub(crate) fn check_sweep_plan(state: &State, fee_rate: u64) -> Result<(Changes, PayoutPlan), TxError> {
    let vault = btc_vault(state)?;
    if fee_rate < vault.min_fee_rate || fee_rate > vault.max_fee_rate {
        return Err(TxError::FeeRateOutOfBounds { got: fee_rate, min: vault.min_fee_rate, max: vault.max_fee_rate });
    }
    let batch = state.head().next_number;
    let inputs = select_sweep(state, batch);
    if inputs.is_empty() {
        return Err(TxError::NothingToSweep);
    }
    let mut plan =
        PayoutPlan { id: state.btc_counters().next_plan, batch, fee_rate, budget_sat: 0, inputs, payouts: Vec::new() };
    let first_fee = plan.vsize(vault, state.params().btc_network).saturating_mul(fee_rate);
    let budget = first_fee.saturating_mul(CONSOLIDATION_BUDGET_FACTOR);
    let total_in = plan.total_in_sat();
    if total_in < budget.saturating_add(MIN_CHANGE_SAT) {
        return Err(TxError::SweepTooSmall { inputs: plan.inputs.len(), total_in, budget });
    }
    plan.budget_sat = budget;

    // What the surplus lacks comes out of the fee account, as if it withdrew it.
    let surplus = btc_vault_surplus_sat(state);
    let from_fees = budget.saturating_sub(surplus);
    let fee_account = state.params().fee_account;
    let mut changes = Changes {
        utxos_planned: plan.inputs.iter().map(|u| u.outpoint).collect(),
        plan_added: Some(plan.clone()),
        ..Changes::default()
    };
    if from_fees > 0 {
        let held = state.balance(&fee_account, &AssetId::Btc);
        let left = held.checked_sub(Amount(u128::from(from_fees))).ok_or(TxError::SweepFunding {
            surplus,
            fee_account: u64::try_from(held.units()).unwrap_or(u64::MAX),
            needed: budget,
        })?;
        changes.balances.push((fee_account, AssetId::Btc, left));
        changes.withdrawn = Some((AssetId::Btc, Amount(u128::from(from_fees))));
    }
    Ok((changes, plan))
}
