//! Bitcoin in a key rotation (docs/PROTOCOL.md, "Bitcoin in a key rotation"): from the batch a
//! rotation names, deposits are outputs of the new key; a deposit that names an old key is
//! credited only during the grace; payouts spend only the key in force; a sweep moves every
//! old-key output to the new key's vault, fixed by the ledger so each replayer rebuilds the same
//! transaction; nothing is lost or counted twice. `docs/vectors/btc-sweep.json` holds the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::hashes::Hash;
use bitcoin::key::TapTweak;
use bridge::batch::BatchBuilder;
use bridge::btc_payout::PayoutPlan;
use bridge::codec::to_bytes;
use bridge::rotation::{KeyRotation, KeyedDepositError, RotationParams, latest_key, output_key_of, vault_keys};
use bridge::stf::{Effect, TxError, btc_vault_surplus_sat};
use bridge::tx::{Deposit, L1Ref};
use bridge::{Address, Amount, AssetId, BtcNetwork, Chain, State, SystemTx, Tx, VaultOwner, apply};
use common::*;
use secp256k1::{Keypair, Message, SECP256K1};
use serde_json::{Value, json};

const GRACE_BATCHES: u64 = 3;

fn rotating_params() -> bridge::NetworkParams {
    let mut p = params();
    p.rotation = Some(RotationParams { old_key_grace_batches: GRACE_BATCHES });
    p.validate().unwrap();
    p
}

fn new_group() -> Keypair {
    Keypair::from_seckey_slice(SECP256K1, &[0x08; 32]).unwrap()
}

fn new_key() -> [u8; 32] {
    new_group().x_only_public_key().0.serialize()
}

/// The rotation to the new group, signed by the genesis group (a plain key standing for FROST).
fn rotation_tx(state: &State) -> Tx {
    let old_q = latest_key(state).unwrap().key.output_key;
    let internal_key = new_key();
    let mut r = KeyRotation {
        epoch: 1,
        internal_key,
        output_key: output_key_of(&internal_key).unwrap(),
        roster_hash: [0x5e; 32],
        signature: [0; 64],
    };
    let message = Message::from_digest(r.signing_message(&state.genesis_hash(), &old_q));
    let signer = vault_keypair().tap_tweak(SECP256K1, None).to_keypair();
    r.signature = SECP256K1.sign_schnorr_no_aux_rand(&message, &signer).serialize();
    Tx::System(SystemTx::KeyRotation(r))
}

fn btc_deposit(account: Address, amount: u128, n: u8) -> Deposit {
    Deposit {
        chain: Chain::Bitcoin,
        l1_ref: L1Ref::Bitcoin { txid: [n; 32], vout: u32::from(n) },
        account,
        asset: AssetId::Btc,
        amount: Amount(amount),
        l1_height: u64::from(n),
    }
}

fn keyed(deposit: Deposit, key_epoch: u64) -> Tx {
    Tx::System(SystemTx::BtcKeyedDeposit { deposit, key_epoch })
}

fn sweep(fee_rate: u64) -> Tx {
    Tx::System(SystemTx::BtcSweepPlan { fee_rate })
}

fn seal(state: &mut State, txs: Vec<Tx>) -> bridge::SignedBatch {
    let mut builder = BatchBuilder::new(state);
    for tx in txs {
        builder.apply(state, tx).unwrap();
    }
    let timestamp = 1_764_000_000_000 + state.head().next_number;
    builder.seal(state, timestamp, &coordinator_key()).unwrap().batch
}

fn refused(state: &mut State, tx: Tx, expected: TxError) {
    let before = state.fingerprint();
    assert_eq!(apply(state, &tx), Err(expected));
    assert_eq!(state.fingerprint(), before, "a refused transaction changed the state");
}

/// What the vault holds by the ledger's account against what it owes (balances, queued
/// withdrawals with their fees, pending plans' payouts and budgets): never short.
fn assert_solvent(state: &State) {
    let owed = state.supply(&AssetId::Btc).liabilities.units()
        + state.btc_queue().map(|(_, q)| u128::from(q.payout.amount_sat + q.fee_sat)).sum::<u128>()
        + state.btc_plans().map(|p| u128::from(p.total_out_sat() + p.budget_sat)).sum::<u128>();
    assert!(
        u128::from(state.btc_vault_holdings_sat()) >= owed,
        "vault {} < owed {owed}",
        state.btc_vault_holdings_sat()
    );
}

/// Batch 1: alice deposits 500k and bob 300k under the genesis key; batch 2: alice queues a
/// 100k withdrawal (5k fee), bob pays carol 1k with a 3k fee (the fee account's bitcoin), and
/// the rotation, so the new key is in force from batch 3.
fn rotated() -> (State, Vec<bridge::SignedBatch>) {
    let mut state = State::genesis(rotating_params());
    let (alice, bob) = (wallet(1), wallet(2));
    let first = seal(
        &mut state,
        vec![
            Tx::System(SystemTx::Deposit(btc_deposit(alice.address(), 500_000, 1))),
            Tx::System(SystemTx::Deposit(btc_deposit(bob.address(), 300_000, 2))),
        ],
    );
    let rotation = rotation_tx(&state);
    let second = seal(
        &mut state,
        vec![
            withdraw(&alice, AssetId::Btc, 100_000, 5_000, REGTEST_P2TR, 0),
            transfer(&bob, wallet(3).address(), AssetId::Btc, 1_000, 3_000, 0),
            rotation,
        ],
    );
    (state, vec![first, second])
}

#[test]
fn deposits_follow_the_key_in_force_and_an_old_key_only_during_the_grace() {
    let (mut state, _) = rotated();
    let carol = wallet(3).address();
    // The rotation's own batch is still under the genesis key; batch 3 is not open yet... but
    // the next transaction goes into batch 3, where the new key is in force.
    assert_eq!(state.head().next_number, 3);
    apply(&mut state, &Tx::System(SystemTx::Deposit(btc_deposit(carol, 40_000, 3)))).unwrap();
    let owners: Vec<VaultOwner> = state.vault_utxos().map(|u| u.owner).collect();
    assert!(owners.contains(&VaultOwner::RotatedAccount { internal_key: new_key(), account: carol }));

    // A deposit that names the old key is an old-key output, during the grace.
    apply(&mut state, &keyed(btc_deposit(carol, 25_000, 4), 0)).unwrap();
    assert!(state.vault_utxos().any(|u| u.owner == VaultOwner::Account { account: carol } && u.amount_sat == 25_000));
    // A key the ledger does not have is refused.
    refused(&mut state, keyed(btc_deposit(carol, 1, 5), 7), TxError::DepositKey(KeyedDepositError::UnknownEpoch(7)));

    // After the grace (from batch 3 + 3 on) the old addresses are dead to the ledger.
    seal(&mut state, Vec::new());
    seal(&mut state, Vec::new());
    seal(&mut state, Vec::new());
    assert_eq!(state.head().next_number, 6);
    refused(
        &mut state,
        keyed(btc_deposit(carol, 25_000, 6), 0),
        TxError::DepositKey(KeyedDepositError::GraceOver { epoch: 0, ended: 6 }),
    );
    // The key in force is always accepted by name.
    apply(&mut state, &keyed(btc_deposit(carol, 10_000, 7), 1)).unwrap();
}

#[test]
fn a_deposit_naming_a_key_not_yet_in_force_waits_for_its_first_batch() {
    let mut state = State::genesis(rotating_params());
    seal(&mut state, vec![Tx::System(SystemTx::Deposit(btc_deposit(wallet(1).address(), 50_000, 1)))]);
    let mut builder = BatchBuilder::new(&state);
    let rotation = rotation_tx(&state);
    builder.apply(&mut state, rotation).unwrap();
    // Same batch as the rotation (2): the new key is in force from batch 3 only.
    let early = keyed(btc_deposit(wallet(2).address(), 9_000, 2), 1);
    let before = state.fingerprint();
    assert!(matches!(
        builder.apply(&mut state, early.clone()),
        Err(bridge::batch::ApplyError::Tx(TxError::DepositKey(KeyedDepositError::NotYetInForce {
            epoch: 1,
            from_batch: 3
        })))
    ));
    assert_eq!(state.fingerprint(), before);
    builder.seal(&mut state, 1_764_000_000_002, &coordinator_key()).unwrap();
    apply(&mut state, &early).unwrap();
}

#[test]
fn payouts_wait_for_the_sweep_and_are_then_paid_by_the_new_key() {
    let (mut state, mut batches) = rotated();
    // The old key's outputs are the sweep's, never a payout's: one group signs each transaction.
    refused(
        &mut state,
        Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 }),
        TxError::VaultLiquidity { needed: 100_000 + 5_000 + 330, available: 0, max_inputs: 200 },
    );
    // A late deposit to alice's old address, during the grace.
    let late = keyed(btc_deposit(wallet(1).address(), 60_000, 9), 0);
    let surplus_before = btc_vault_surplus_sat(&state);
    let fees_before = state.balance(&fee_account(), &AssetId::Btc);
    batches.push(seal(&mut state, vec![late, sweep(2)]));
    let plan = state.btc_plans().find(|p| p.is_consolidation()).unwrap().clone();

    // The sweep: every old-key output (both deposits and the late one), in outpoint order, its
    // change to the new key's vault.
    assert_eq!(plan.inputs.len(), 3);
    assert!(plan.inputs.iter().all(|u| u.owner.rotated_key().is_none()));
    assert!(plan.inputs.windows(2).all(|w| w[0].outpoint < w[1].outpoint));
    assert_eq!(plan.total_in_sat(), 860_000);
    let keys = vault_keys(&state).unwrap();
    let unsigned = plan.build(&keys, BtcNetwork::Regtest, 0).unwrap();
    assert_eq!(unsigned.change.owner, VaultOwner::RotatedVault { internal_key: new_key() });
    let new_vault_script = bitcoin::ScriptBuf::new_p2tr(SECP256K1, new_group().x_only_public_key().0, None);
    assert_eq!(unsigned.tx.output.len(), 1);
    assert_eq!(unsigned.tx.output[0].script_pubkey, new_vault_script);
    assert!(unsigned.input_keys.iter().all(|k| *k == btc_vault().group_key), "the old group signs the sweep");
    // Its fee came from the surplus (the queued withdrawal's fee is not surplus: nothing else is),
    // and for the rest from the fee account, never from what users hold.
    let from_fees = plan.budget_sat.saturating_sub(surplus_before);
    assert_eq!(
        state.balance(&fee_account(), &AssetId::Btc).units(),
        fees_before.units().saturating_sub(u128::from(from_fees))
    );
    assert_solvent(&state);

    // Nothing more to sweep while it is pending; a replayer rebuilds the same plan.
    refused(&mut state, sweep(2), TxError::NothingToSweep);
    let mut replayer = State::genesis(rotating_params());
    for batch in &batches {
        bridge::replay(&mut replayer, batch).unwrap();
    }
    assert_eq!(replayer.fingerprint(), state.fingerprint());
    assert_eq!(replayer.btc_plan(plan.id), Some(&plan));

    // The sweep confirms: the vault's one output is under the new key, and the queued
    // withdrawal is paid from it, signed by the new group.
    batches.push(seal(
        &mut state,
        vec![Tx::System(SystemTx::BtcPayoutConfirmed { plan: plan.id, attempt: 0, height: 0 })],
    ));
    assert_eq!(state.vault_utxos().count(), 1);
    assert_eq!(state.vault_utxos().next().unwrap().owner, VaultOwner::RotatedVault { internal_key: new_key() });
    let Effect::BtcPayoutPlanned(payout) =
        apply(&mut state, &Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })).unwrap().effect
    else {
        panic!("no payout plan")
    };
    let paid = payout.build(&vault_keys(&state).unwrap(), BtcNetwork::Regtest, 0).unwrap();
    assert!(paid.input_keys.iter().all(|k| *k == new_key()), "the new group pays");
    assert_eq!(paid.change.owner, VaultOwner::RotatedVault { internal_key: new_key() });
    assert_eq!(paid.tx.output[0].value.to_sat(), 100_000);
    apply(&mut state, &Tx::System(SystemTx::BtcPayoutConfirmed { plan: payout.id, attempt: 0, height: 0 })).unwrap();
    assert_solvent(&state);
    // Exactly: the vault holds what came in, less the one payout and the two miner fees; the
    // ledger owes what came in, less the withdrawal with its fee and the sweep's share of fees.
    assert_eq!(state.btc_vault_holdings_sat(), 860_000 - 100_000 - unsigned.fee_sat - paid.fee_sat);
    let supply = state.supply(&AssetId::Btc);
    assert_eq!(supply.deposited.units(), 860_000);
    assert_eq!(supply.liabilities.units(), 860_000 - 105_000 - u128::from(from_fees));
    assert_eq!(state.vault_utxos().count(), 1, "one output: the payout's change, under the new key");
    assert_eq!(state.vault_utxos().next().unwrap().owner, VaultOwner::RotatedVault { internal_key: new_key() });
}

#[test]
fn a_sweep_is_refused_without_old_outputs_without_funding_or_outside_the_fee_bounds() {
    let mut state = genesis();
    apply(&mut state, &deposit(wallet(1).address(), AssetId::Btc, 500_000, 1)).unwrap();
    refused(&mut state, sweep(2), TxError::NothingToSweep);
    let mut state = State::genesis(rotating_params());
    seal(&mut state, vec![Tx::System(SystemTx::Deposit(btc_deposit(wallet(1).address(), 500_000, 1)))]);
    let rotation = rotation_tx(&state);
    seal(&mut state, vec![rotation]);
    refused(&mut state, sweep(101), TxError::FeeRateOutOfBounds { got: 101, min: 1, max: 100 });
    // No surplus and a fee account without bitcoin: the sweep waits for fees to accrue.
    let Err(TxError::SweepFunding { surplus: 0, fee_account: 0, .. }) = apply(&mut state, &sweep(2)) else {
        panic!("a sweep without funding was not refused")
    };
    // Fees accrue: a transfer's fee pays the budget.
    apply(&mut state, &transfer(&wallet(1), wallet(2).address(), AssetId::Btc, 1_000, 2_000, 0)).unwrap();
    let Effect::BtcPayoutPlanned(plan) = apply(&mut state, &sweep(2)).unwrap().effect else { panic!() };
    assert_eq!(state.balance(&fee_account(), &AssetId::Btc).units(), 2_000 - u128::from(plan.budget_sat));
    assert_solvent(&state);
}

#[test]
fn a_network_that_never_rotates_keeps_its_genesis_hash_and_encodings() {
    let mut p = params();
    let plain = p.genesis_hash();
    p.rotation = Some(RotationParams::default());
    assert_ne!(p.genesis_hash(), plain, "rotation rules, when set, are part of the network's identity");
    p.rotation = Some(RotationParams { old_key_grace_batches: bridge::rotation::MAX_OLD_KEY_GRACE_BATCHES + 1 });
    assert!(p.validate().is_err());
    assert_eq!(to_bytes(&VaultOwner::Vault), vec![0]);
    assert_eq!(to_bytes(&VaultOwner::Account { account: Address([1; 20]) })[0], 1);
}

/// The sweep of [`rotated`] plus a late deposit, as bytes: `docs/vectors/btc-sweep.json`.
fn vectors() -> Value {
    let (mut state, _) = rotated();
    let late = SystemTx::BtcKeyedDeposit { deposit: btc_deposit(wallet(1).address(), 60_000, 9), key_epoch: 0 };
    let sweep_tx = SystemTx::BtcSweepPlan { fee_rate: 2 };
    seal(&mut state, vec![Tx::System(late.clone()), Tx::System(sweep_tx.clone())]);
    let plan: PayoutPlan = state.btc_plans().next().unwrap().clone();
    let unsigned = plan.build(&vault_keys(&state).unwrap(), BtcNetwork::Regtest, 0).unwrap();
    json!({
        "description": "A sweep after a key rotation (docs/PROTOCOL.md, Bitcoin in a key rotation). The network is bridge/tests/common's with rotation.old_key_grace_batches = 3; batch 1 credits two deposits under the genesis key, batch 2 queues a withdrawal and rotates to the key of secret 0x08 repeated (in force from batch 3); batch 3 credits a late deposit to the genesis key (BtcKeyedDeposit, epoch 0) and plans the sweep at 2 sat/vB.",
        "genesis_hash": hex0x(state.genesis_hash()),
        "new_internal_key": hex0x(new_key()),
        "owner_rotated_vault_borsh": hex0x(to_bytes(&VaultOwner::RotatedVault { internal_key: new_key() })),
        "owner_rotated_account_borsh": hex0x(to_bytes(&VaultOwner::RotatedAccount { internal_key: new_key(), account: wallet(1).address() })),
        "keyed_deposit_borsh": hex0x(to_bytes(&late)),
        "sweep_plan_tx_borsh": hex0x(to_bytes(&sweep_tx)),
        "plan_borsh": hex0x(to_bytes(&plan)),
        "budget_sat": plan.budget_sat,
        "inputs": plan.inputs.iter().map(|u| json!({
            "outpoint": format!("{}:{}", bitcoin::Txid::from_byte_array(u.outpoint.txid), u.outpoint.vout),
            "amount_sat": u.amount_sat,
        })).collect::<Vec<_>>(),
        "attempt_0": {
            "unsigned_tx": hex0x(bitcoin::consensus::serialize(&unsigned.tx)),
            "txid": unsigned.tx.compute_txid().to_string(),
            "fee_sat": unsigned.fee_sat,
            "change_sat": unsigned.change.amount_sat,
            "change_script": hex0x(unsigned.tx.output[0].script_pubkey.as_bytes()),
            "sighashes": unsigned.sighashes.iter().map(hex0x).collect::<Vec<_>>(),
        },
        "state_root_after": hex0x(state.state_root()),
    })
}

#[test]
fn the_sweep_vectors_match_the_code() {
    let stored = stored_vectors("btc-sweep.json", &vectors());
    // The vectors stand alone too: the plan decodes and rebuilds the stored transaction.
    let plan: PayoutPlan = borsh::from_slice(&unhex(&stored["plan_borsh"])).unwrap();
    assert_eq!(plan.inputs.len(), 3);
    let keys = bridge::VaultKeys { params: btc_vault(), rotated: vec![(3, new_key())] };
    let unsigned = plan.build(&keys, BtcNetwork::Regtest, 0).unwrap();
    assert_eq!(hex0x(bitcoin::consensus::serialize(&unsigned.tx)), stored["attempt_0"]["unsigned_tx"]);
    let decoded: SystemTx = borsh::from_slice(&unhex(&stored["keyed_deposit_borsh"])).unwrap();
    assert!(matches!(decoded, SystemTx::BtcKeyedDeposit { key_epoch: 0, .. }));
    assert_eq!(unhex(&stored["sweep_plan_tx_borsh"]), vec![6, 2, 0, 0, 0, 0, 0, 0, 0]);
}
