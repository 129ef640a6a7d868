//! Bitcoin payouts as the ledger plans them: which withdrawals, which vault outputs, which fee,
//! and that every builder produces the same bytes. Kernel-level script checks and mining are in
//! `chains/tests/bitcoin_payout.rs`, on the regtest node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bitcoin::hashes::Hash;
use bitcoin::key::TapTweak;
use bridge::batch::{BatchBuilder, replay};
use bridge::btc_payout::{MAX_BUMPS, PayoutError};
use bridge::stf::{Effect, TxError};
use bridge::tx::SystemTx;
use bridge::{AssetId, BtcNetwork, OutPoint, State, Tx, VaultOwner, apply};
use common::*;

fn plan_payout(fee_rate: u64) -> Tx {
    Tx::System(SystemTx::BtcPayoutPlan { fee_rate })
}

fn confirmed(plan: u64, attempt: u32) -> Tx {
    Tx::System(SystemTx::BtcPayoutConfirmed { plan, attempt, height: 0 })
}

/// Three accounts deposit 80k, 200k and 30k sat; the first withdraws 20k three times, paying
/// 2k sat of fee each.
fn queued_state() -> State {
    let mut state = genesis();
    for (n, amount) in [(1u64, 80_000u128), (2, 200_000), (3, 30_000)] {
        apply(&mut state, &deposit(wallet(n).address(), AssetId::Btc, amount, n)).unwrap();
    }
    let alice = wallet(1);
    for nonce in 0..3 {
        apply(&mut state, &withdraw(&alice, AssetId::Btc, 20_000, 2_000, REGTEST_P2TR, nonce)).unwrap();
    }
    state
}

fn refused(state: &mut State, tx: Tx, expected: TxError) {
    let before = state.fingerprint();
    assert_eq!(apply(state, &tx), Err(expected));
    assert_eq!(state.fingerprint(), before, "a refused transaction changed the state");
}

#[test]
fn a_plan_pays_the_queue_from_the_largest_outputs_and_every_builder_agrees() {
    let mut state = queued_state();
    assert_eq!(state.btc_queue().count(), 3);
    let receipt = apply(&mut state, &plan_payout(5)).unwrap();
    let Effect::BtcPayoutPlanned(plan) = receipt.effect else { panic!("no plan: {receipt:?}") };

    assert_eq!((plan.id, plan.fee_rate, plan.budget_sat), (1, 5, 6_000));
    assert_eq!(plan.inputs.len(), 1, "the 200k output alone covers 60k + 6k + change");
    assert_eq!(plan.inputs[0].amount_sat, 200_000);
    assert_eq!(plan.inputs[0].owner, VaultOwner::Account { account: wallet(2).address() });
    assert_eq!(plan.payouts.len(), 3);
    assert_eq!(state.btc_queue().count(), 0);
    assert_eq!(state.vault_utxos().count(), 2, "the planned output is no longer available");
    assert_eq!(state.btc_vault_holdings_sat(), 310_000, "planned outputs are still the vault's until spent");

    let vault = btc_vault();
    let first = plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, 0).unwrap();
    assert_eq!(
        first,
        plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, 0).unwrap(),
        "two builds differ"
    );
    let vsize = plan.vsize(&vault, BtcNetwork::Regtest);
    assert_eq!(first.fee_sat, vsize * 5);
    assert_eq!(first.tx.output.len(), 4, "three payouts and the change");
    assert_eq!(first.change.amount_sat, 200_000 - 60_000 - first.fee_sat);
    assert_eq!(first.change.outpoint.vout, 3);
    assert!(first.tx.input.iter().all(|i| i.sequence.is_rbf()), "every attempt signals replaceability");

    // Bumps raise the fee by at least the relay increment, spend the same inputs, and stop at
    // the budget.
    let mut previous = first.fee_sat;
    let mut attempt = 1;
    while let Ok(bump) = plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, attempt) {
        assert!(bump.fee_sat >= previous + vsize, "attempt {attempt} does not outbid the one before");
        assert!(bump.fee_sat <= plan.budget_sat);
        assert_eq!(bump.tx.input, first.tx.input);
        assert_eq!(bump.tx.output[..3], first.tx.output[..3], "a bump changes only the change");
        assert_ne!(bump.change.outpoint, first.change.outpoint);
        previous = bump.fee_sat;
        attempt += 1;
    }
    assert_eq!(previous, plan.budget_sat, "the last bump pays the whole budget");
    assert!(attempt <= MAX_BUMPS + 1);
    assert_eq!(
        plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, attempt),
        Err(PayoutError::NoSuchAttempt { id: 1, attempt })
    );
}

#[test]
fn each_sighash_is_signed_by_the_key_its_output_pays_to() {
    let mut state = queued_state();
    apply(&mut state, &deposit(wallet(4).address(), AssetId::Btc, 20_000, 4)).unwrap();
    let alice = wallet(1);
    // Enough withdrawals that the plan needs several inputs of different accounts.
    apply(&mut state, &withdraw(&alice, AssetId::Btc, 9_000, 500, REGTEST_P2TR, 3)).unwrap();
    apply(&mut state, &withdraw(&wallet(2), AssetId::Btc, 150_000, 3_000, REGTEST_P2TR, 0)).unwrap();
    let Effect::BtcPayoutPlanned(plan) = apply(&mut state, &plan_payout(3)).unwrap().effect else { panic!() };
    assert!(plan.inputs.len() >= 2, "{plan:?}");

    let vault = btc_vault();
    let unsigned = plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, 0).unwrap();
    let secp = secp256k1::SECP256K1;
    let mut signatures = Vec::new();
    for (index, input) in plan.inputs.iter().enumerate() {
        let root = unsigned.merkle_roots[index].map(bitcoin::TapNodeHash::from_byte_array);
        assert_eq!(root.map(|r| r.to_byte_array()), input.owner.merkle_root(BtcNetwork::Regtest));
        let tweaked = vault_keypair().tap_tweak(secp, root).to_keypair();
        let message = secp256k1::Message::from_digest(unsigned.sighashes[index]);
        signatures.push(secp.sign_schnorr_no_aux_rand(&message, &tweaked).serialize());
        // The key that verifies is the one in the output being spent.
        let script = vault.script_of(BtcNetwork::Regtest, &input.owner);
        let output_key = secp256k1::XOnlyPublicKey::from_slice(&script.as_bytes()[2..]).unwrap();
        let signature = secp256k1::schnorr::Signature::from_slice(signatures.last().unwrap()).unwrap();
        secp.verify_schnorr(&signature, &message, &output_key).unwrap();
    }
    let signed = unsigned.with_signatures(&signatures);
    assert_eq!(signed.compute_txid(), unsigned.tx.compute_txid(), "witnesses do not change the txid");
    assert_eq!(signed.vsize() as u64, plan.vsize(&vault, BtcNetwork::Regtest), "the fee was sized for this");
}

#[test]
fn a_confirmed_attempt_returns_its_change_to_the_vault() {
    let mut state = queued_state();
    apply(&mut state, &plan_payout(5)).unwrap();
    let plan = state.btc_plan(1).unwrap().clone();
    let bump = plan.build(&bridge::VaultKeys::genesis(btc_vault()), BtcNetwork::Regtest, 2).unwrap();

    let receipt = apply(&mut state, &confirmed(1, 2)).unwrap();
    assert_eq!(receipt.effect, Effect::BtcPayoutConfirmed { plan: 1, attempt: 2, change: bump.change });
    assert!(state.btc_plan(1).is_none());
    assert!(state.vault_utxos().any(|u| *u == bump.change));
    assert_eq!(state.btc_vault_holdings_sat(), 110_000 + bump.change.amount_sat);
    refused(&mut state, confirmed(1, 0), TxError::UnknownPayoutPlan(1));

    // The change funds the next payout like any other vault output.
    apply(&mut state, &withdraw(&wallet(2), AssetId::Btc, 100_000, 5_000, REGTEST_P2TR, 0)).unwrap();
    let Effect::BtcPayoutPlanned(next) = apply(&mut state, &plan_payout(1)).unwrap().effect else { panic!() };
    assert_eq!(next.id, 2);
    assert_eq!(next.inputs[0], bump.change);
    let supply = state.supply(&AssetId::Btc);
    assert_eq!(supply.liabilities.checked_add(supply.withdrawn), Some(supply.deposited));
}

#[test]
fn plans_that_cannot_be_paid_are_refused_and_change_nothing() {
    let mut state = genesis();
    refused(&mut state, plan_payout(5), TxError::NothingToPay);

    let mut state = queued_state();
    refused(&mut state, plan_payout(0), TxError::FeeRateOutOfBounds { got: 0, min: 1, max: 100 });
    refused(&mut state, plan_payout(101), TxError::FeeRateOutOfBounds { got: 101, min: 1, max: 100 });
    // At 30 sat/vB the first attempt alone would cost more than the 6k sat the users paid.
    assert!(matches!(
        apply(&mut state, &plan_payout(30)),
        Err(TxError::PayoutFeeBudget { budget: 6_000, fee_rate: 30, .. })
    ));
    refused(&mut state, confirmed(7, 0), TxError::UnknownPayoutPlan(7));

    // The only big output is planned; the rest cannot fund another 60k withdrawal.
    apply(&mut state, &plan_payout(5)).unwrap();
    apply(&mut state, &withdraw(&wallet(2), AssetId::Btc, 100_000, 10_000, REGTEST_P2TR, 0)).unwrap();
    refused(
        &mut state,
        plan_payout(5),
        TxError::VaultLiquidity { needed: 110_330, available: 110_000, max_inputs: 200 },
    );
    let too_late = MAX_BUMPS + 1;
    refused(
        &mut state,
        confirmed(1, too_late),
        TxError::Payout(PayoutError::NoSuchAttempt { id: 1, attempt: too_late }),
    );
}

#[test]
fn a_withdrawal_on_a_network_without_a_bitcoin_vault_is_refused() {
    let mut params = params();
    params.btc_vault = None;
    let mut state = State::genesis(params);
    apply(&mut state, &deposit(wallet(1).address(), AssetId::Btc, 100_000, 1)).unwrap();
    let tx = withdraw(&wallet(1), AssetId::Btc, 10_000, 0, REGTEST_P2TR, 0);
    refused(&mut state, tx, TxError::NoBitcoinVault);
    refused(&mut state, plan_payout(5), TxError::NoBitcoinVault);
}

#[test]
fn replay_makes_the_plan_the_coordinator_made() {
    let mut coordinator = genesis();
    let mut builder = BatchBuilder::new(&coordinator);
    for (n, amount) in [(1u64, 50_000u128), (2, 200_000)] {
        builder.apply(&mut coordinator, deposit(wallet(n).address(), AssetId::Btc, amount, n)).unwrap();
    }
    builder.apply(&mut coordinator, withdraw(&wallet(1), AssetId::Btc, 30_000, 3_000, REGTEST_P2TR, 0)).unwrap();
    builder.apply(&mut coordinator, plan_payout(4)).unwrap();
    let sealed = builder.seal(&mut coordinator, 1, &coordinator_key()).unwrap();
    assert_eq!(sealed.settlement.btc_plans.len(), 1);
    assert_eq!(sealed.settlement.btc_plans[0].batch, 1);

    let mut replayer = genesis();
    let replayed = replay(&mut replayer, &sealed.batch).unwrap();
    assert_eq!(replayed.settlement.btc_plans, sealed.settlement.btc_plans);
    assert_eq!(replayer.fingerprint(), coordinator.fingerprint());
    let spent = OutPoint { txid: [2; 32], vout: 2 };
    assert_eq!(replayed.settlement.btc_plans[0].inputs[0].outpoint, spent);
}

#[test]
fn a_withdrawal_the_vault_cannot_cover_keeps_its_place_and_the_ones_behind_it_are_planned() {
    let mut state = genesis();
    for (n, amount) in [(1u64, 1_000_000u128), (2, 100_000), (3, 100_000)] {
        apply(&mut state, &deposit(wallet(n).address(), AssetId::Btc, amount, n)).unwrap();
    }
    apply(&mut state, &withdraw(&wallet(2), AssetId::Btc, 50_000, 2_000, REGTEST_P2TR, 0)).unwrap();
    apply(&mut state, &plan_payout(2)).unwrap(); // spends the 1M output
    apply(&mut state, &withdraw(&wallet(1), AssetId::Btc, 900_000, 5_000, REGTEST_P2TR, 0)).unwrap();
    apply(&mut state, &withdraw(&wallet(3), AssetId::Btc, 30_000, 2_000, REGTEST_P2TR, 0)).unwrap();
    let Effect::BtcPayoutPlanned(plan) = apply(&mut state, &plan_payout(2)).unwrap().effect else { panic!() };
    assert_eq!(plan.payouts.iter().map(|p| p.amount_sat).collect::<Vec<_>>(), vec![30_000]);
    assert_eq!(plan.budget_sat, 2_000, "only the planned withdrawals' fees");
    let waiting: Vec<u64> = state.btc_queue().map(|(_, q)| q.payout.amount_sat).collect();
    assert_eq!(waiting, vec![900_000]);
    // Nothing else fits: the head alone is reported.
    refused(
        &mut state,
        plan_payout(2),
        TxError::VaultLiquidity { needed: 905_330, available: 100_000, max_inputs: 200 },
    );
    apply(&mut state, &confirmed(1, 0)).unwrap();
    let Effect::BtcPayoutPlanned(plan) = apply(&mut state, &plan_payout(2)).unwrap().effect else { panic!() };
    assert_eq!(plan.payouts.iter().map(|p| p.amount_sat).collect::<Vec<_>>(), vec![900_000]);
}

/// A confirmed payout that used little of its users' 50k sat fee leaves surplus in the vault;
/// then twelve small deposits.
fn surplus_and_small_outputs() -> State {
    let mut state = genesis();
    apply(&mut state, &deposit(wallet(1).address(), AssetId::Btc, 1_000_000, 1)).unwrap();
    apply(&mut state, &withdraw(&wallet(1), AssetId::Btc, 100_000, 50_000, REGTEST_P2TR, 0)).unwrap();
    apply(&mut state, &plan_payout(1)).unwrap();
    apply(&mut state, &confirmed(1, 0)).unwrap();
    for n in 0..12u64 {
        apply(&mut state, &deposit(wallet(10 + n).address(), AssetId::Btc, 10_000 + u128::from(n), 10 + n)).unwrap();
    }
    state
}

fn consolidate(fee_rate: u64) -> Tx {
    Tx::System(SystemTx::BtcConsolidationPlan { fee_rate })
}

#[test]
fn a_consolidation_merges_the_smallest_outputs_at_a_low_rate_and_pays_only_from_the_surplus() {
    let mut state = surplus_and_small_outputs();
    let surplus = bridge::stf::btc_vault_surplus_sat(&state);
    assert!(surplus > 40_000, "{surplus}");
    refused(&mut state, consolidate(5), TxError::ConsolidationFeeRate { got: 5, max: 4 });
    let Effect::BtcPayoutPlanned(plan) = apply(&mut state, &consolidate(2)).unwrap().effect else { panic!() };
    assert!(plan.is_consolidation());
    assert_eq!(plan.inputs.len(), 12, "the twelve deposits; the payout's change is the larger half");
    assert!(plan.inputs.iter().all(|u| u.amount_sat < 20_000));
    assert!(plan.inputs.windows(2).all(|w| w[0].amount_sat <= w[1].amount_sat), "smallest first");
    let vault = btc_vault();
    let vsize = plan.vsize(&vault, BtcNetwork::Regtest);
    assert_eq!(plan.budget_sat, vsize * 2 * 3);
    assert_eq!(bridge::stf::btc_vault_surplus_sat(&state), surplus - plan.budget_sat);
    let first = plan.build(&bridge::VaultKeys::genesis(vault), BtcNetwork::Regtest, 0).unwrap();
    assert_eq!(first.tx.output.len(), 1, "one output: the vault's");
    refused(&mut state, consolidate(1), TxError::ConsolidationPending(plan.id));
    apply(&mut state, &confirmed(plan.id, 0)).unwrap();
    assert_eq!(state.vault_utxos().count(), 2, "the merged output and the change left out");
    let supply = state.supply(&AssetId::Btc);
    assert!(u128::from(state.btc_vault_holdings_sat()) >= supply.liabilities.units());
}

/// Who could stop withdrawals: a consolidation is made at a low fee rate and holds its inputs
/// until it confirms, which a fee rise can put off for days. It used to merge the whole vault
/// (every output up to 200), and every withdrawal then waited for it. It now merges at most
/// half the vault's value, the smallest outputs, and withdrawals are paid from the rest meanwhile.
#[test]
fn a_pending_consolidation_leaves_the_larger_half_of_the_vault_to_pay_withdrawals() {
    let mut state = surplus_and_small_outputs();
    let total = state.btc_vault_holdings_sat();
    let Effect::BtcPayoutPlanned(merge) = apply(&mut state, &consolidate(1)).unwrap().effect else { panic!() };
    assert!(merge.is_consolidation());
    assert!(merge.total_in_sat() <= total / 2, "{} of {total}", merge.total_in_sat());
    let left = state.vault_utxos().map(|u| u.amount_sat).sum::<u64>();
    assert_eq!(left, total - merge.total_in_sat());

    // The consolidation waits in the mempool; a withdrawal of a third of the vault is planned
    // from what it left out, without waiting for it.
    apply(&mut state, &withdraw(&wallet(1), AssetId::Btc, 300_000, 5_000, REGTEST_P2TR, 1)).unwrap();
    let Effect::BtcPayoutPlanned(payout) = apply(&mut state, &plan_payout(2)).unwrap().effect else { panic!() };
    assert_eq!(payout.payouts.iter().map(|p| p.amount_sat).collect::<Vec<_>>(), vec![300_000]);
    assert!(payout.inputs.iter().all(|u| !merge.inputs.contains(u)), "no output spent twice");
    assert_eq!(state.btc_plans().count(), 2, "both pending at once");

    // However the vault is split, the merge stays within half its value.
    for outputs in [vec![5_000u64; 40], vec![1_000_000, 1], (1..=30).map(|n| n * 7_000).collect()] {
        let utxos: Vec<bridge::VaultUtxo> = outputs
            .iter()
            .enumerate()
            .map(|(vout, amount)| bridge::VaultUtxo {
                outpoint: bridge::OutPoint { txid: [9; 32], vout: vout as u32 },
                amount_sat: *amount,
                ..merge.inputs[0]
            })
            .collect();
        let chosen = bridge::btc_payout::select_consolidation(utxos.iter(), 1);
        let sum: u64 = chosen.iter().map(|u| u.amount_sat).sum();
        assert!(sum <= outputs.iter().sum::<u64>() / 2, "{outputs:?}: merged {sum}");
        assert!(!chosen.is_empty() || outputs.len() == 2, "{outputs:?}: small outputs are still merged");
    }
}

#[test]
fn no_consolidation_without_surplus_or_without_enough_outputs() {
    let mut state = genesis();
    for n in 0..12u64 {
        apply(&mut state, &deposit(wallet(10 + n).address(), AssetId::Btc, 10_000, 10 + n)).unwrap();
    }
    // Twelve outputs of 10,000 alone: six are half the vault, too few to merge.
    refused(&mut state, consolidate(1), TxError::NothingToConsolidate { found: 6, min: 10 });
    apply(&mut state, &deposit(wallet(30).address(), AssetId::Btc, 200_000, 30)).unwrap();
    assert!(matches!(apply(&mut state, &consolidate(1)), Err(TxError::ConsolidationSurplus { surplus: 0, .. })));
    let mut state = queued_state();
    refused(&mut state, consolidate(1), TxError::NothingToConsolidate { found: 2, min: 10 });
}

#[test]
fn replay_makes_the_consolidation_the_coordinator_made() {
    let mut coordinator = surplus_and_small_outputs();
    let mut replayer = surplus_and_small_outputs();
    let mut builder = BatchBuilder::new(&coordinator);
    builder.apply(&mut coordinator, consolidate(1)).unwrap();
    let sealed = builder.seal(&mut coordinator, 1, &coordinator_key()).unwrap();
    let replayed = replay(&mut replayer, &sealed.batch).unwrap();
    assert_eq!(replayed.settlement.btc_plans, sealed.settlement.btc_plans);
    assert!(sealed.settlement.btc_plans[0].is_consolidation());
    assert_eq!(replayer.fingerprint(), coordinator.fingerprint());
}
