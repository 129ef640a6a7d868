//! Batched Bitcoin payouts on the regtest node (Bitcoin Core's kernel), signed by real FROST
//! watchmen on loopback: built from two independent replays of the same ledger (byte-identical),
//! scripts verified by the kernel's interpreter on their own, accepted into the mempool, mined,
//! and a fee bump that replaces its first attempt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use bitcoin::consensus::serialize;
use bitcoin::hashes::Hash;
use bitcoin::{Amount as Sat, TxOut, Txid};
use bridge::btc_payout::PayoutPlan;
use bridge::stf::Effect;
use bridge::tx::{Deposit, L1Ref, SystemTx, UserTx, Withdraw};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, BtcVaultParams, Chain, NetworkParams, State, Tx, Wallet, apply,
};
use chains::bitcoin::{
    CoreRpc, DepositChecker, DepositStatus, Holdings, PayoutBroadcaster, PayoutStatus, deposit_address, holdings,
};
use regtest::{RegtestConfig, RegtestNode};

mod common;
use common::btc::{Miner, Watchmen, recipient};

const NETWORK: BtcNetwork = BtcNetwork::Regtest;
const FEE_PER_WITHDRAWAL: u64 = 1_000;

fn wallet(n: u8) -> Wallet {
    Wallet::from_secret(&[n; 32]).unwrap()
}

fn params(vault: BtcVaultParams) -> NetworkParams {
    let params = NetworkParams {
        name: "payout-test".into(),
        chain_id: 9,
        eth_vault: Address([9; 20]),
        btc_network: NETWORK,
        btc_vault: Some(vault),
        coordinator_key: common::key().public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    };
    params.validate().unwrap();
    params
}

/// Two ledgers replaying the same transactions, as two watchmen would.
struct Replicas {
    states: [State; 2],
    nonces: BTreeMap<u8, u64>,
}

impl Replicas {
    fn apply(&mut self, tx: &Tx) -> Vec<Effect> {
        self.states.iter_mut().map(|state| apply(state, tx).unwrap().effect).collect()
    }

    fn withdraw(&mut self, from: u8, amount_sat: u64, to: &bitcoin::Address) {
        let nonce = self.nonces.entry(from).or_default();
        let domain = self.states[0].domain().clone();
        let tx = UserTx::Withdraw(Withdraw {
            from: wallet(from).address(),
            asset: AssetId::Btc,
            amount: Amount(amount_sat.into()),
            fee: Amount(FEE_PER_WITHDRAWAL.into()),
            recipient: to.to_string(),
            nonce: *nonce,
        });
        *nonce += 1;
        let verified = wallet(from).sign(tx, &domain).verify(&domain).unwrap();
        self.apply(&Tx::User(verified));
    }

    /// Both replicas plan the queue; their plans must be equal.
    fn plan(&mut self, fee_rate: u64) -> PayoutPlan {
        let effects = self.apply(&Tx::System(SystemTx::BtcPayoutPlan { fee_rate }));
        let plans: Vec<PayoutPlan> = effects
            .into_iter()
            .map(|e| match e {
                Effect::BtcPayoutPlanned(plan) => plan,
                other => panic!("not a plan: {other:?}"),
            })
            .collect();
        assert_eq!(plans[0], plans[1], "two replicas planned different payouts");
        plans[0].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_payouts_of_1_10_and_100_are_mined_and_a_bump_replaces_its_first_attempt() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(110, &miner.address).await.unwrap();

    let watchmen = Watchmen::start(3, 2).await;
    let vault = BtcVaultParams { group_key: watchmen.internal_key, min_fee_rate: 1, max_fee_rate: 50 };
    let group_key = bitcoin::key::XOnlyPublicKey::from_slice(&vault.group_key).unwrap();
    let params = params(vault);
    let mut replicas =
        Replicas { states: [State::genesis(params.clone()), State::genesis(params)], nonces: BTreeMap::new() };

    // Three accounts deposit to their own addresses; each deposit is a vault output.
    for (n, sat) in [(1u8, 40_000_000u64), (2, 30_000_000), (3, 30_000_000)] {
        let account = wallet(n).address();
        let to = deposit_address(group_key, NETWORK, &account);
        let paid = miner.pay(&rpc, u64::from(n), &to, Sat::from_sat(sat)).await;
        let vout = paid.output.iter().position(|o| o.script_pubkey == to.script_pubkey()).unwrap() as u32;
        let l1_ref = L1Ref::Bitcoin { txid: paid.compute_txid().to_byte_array(), vout };
        let deposit = Deposit {
            chain: Chain::Bitcoin,
            l1_ref,
            account,
            asset: AssetId::Btc,
            amount: Amount(sat.into()),
            l1_height: 0,
        };
        replicas.apply(&Tx::System(SystemTx::Deposit(deposit)));
    }
    rpc.generate_to_address(1, &miner.address).await.unwrap();

    let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, NETWORK);
    let checker = DepositChecker::new(rpc.clone(), NETWORK, group_key, 1);
    let mut table = Vec::new();
    // Round 1 and 10 come from account 1; round 100 from accounts 2 and 3, large enough to need
    // a second input: the vault's change (vault key) and a deposit (an account's tweaked key).
    for count in [1usize, 10, 100] {
        let recipients: Vec<bitcoin::Address> = (0..count).map(|_| recipient()).collect();
        for (i, to) in recipients.iter().enumerate() {
            match count {
                100 => replicas.withdraw(2 + (i % 2) as u8, 500_000, to),
                _ => replicas.withdraw(1, 100_000, to),
            }
        }
        let plan = replicas.plan(2);
        assert_eq!(plan.payouts.len(), count);
        if count == 100 {
            assert_eq!(plan.inputs.len(), 2, "{plan:?}");
            assert!(plan.inputs.iter().any(|u| matches!(u.owner, bridge::VaultOwner::Vault)));
            assert!(plan.inputs.iter().any(|u| matches!(u.owner, bridge::VaultOwner::Account { .. })));
        }

        let first = plan.build(&bridge::VaultKeys::genesis(vault), NETWORK, 0).unwrap();
        let other_builder = replicas.states[1]
            .btc_plan(plan.id)
            .unwrap()
            .build(&bridge::VaultKeys::genesis(vault), NETWORK, 0)
            .unwrap();
        assert_eq!(serialize(&first.tx), serialize(&other_builder.tx), "two builders made different bytes");
        assert_eq!(first.sighashes, other_builder.sighashes);

        let signed = first.with_signatures(&watchmen.sign_payout(&first).await);
        let prevouts: Vec<TxOut> = plan
            .inputs
            .iter()
            .map(|u| TxOut { value: Sat::from_sat(u.amount_sat), script_pubkey: vault.script_of(NETWORK, &u.owner) })
            .collect();
        regtest::mempool::verify_scripts(&signed, &prevouts).unwrap();
        let accepted = rpc.test_mempool_accept(std::slice::from_ref(&signed)).await.unwrap();
        assert!(accepted[0].allowed, "{accepted:?}");
        assert_eq!(signed.vsize() as u64, plan.vsize(&vault, NETWORK), "the fee was sized for another size");

        broadcaster.broadcast(&signed).await.unwrap();
        broadcaster.broadcast(&signed).await.unwrap(); // a watchman restarting sends again: no error
        assert_eq!(broadcaster.status(&plan).await.unwrap(), PayoutStatus::Pending { attempt: 0 });
        let in_mempool = checker.check_payout(&bridge::VaultKeys::genesis(vault), &plan, 0, 0).await.unwrap();
        assert_eq!(in_mempool, DepositStatus::NotYetDeep { confirmations: 0 });

        let mut mined = signed.clone();
        if count == 10 {
            let bump = plan.build(&bridge::VaultKeys::genesis(vault), NETWORK, 1).unwrap();
            assert!(bump.fee_sat > first.fee_sat);
            let signed_bump = bump.with_signatures(&watchmen.sign_payout(&bump).await);
            broadcaster.broadcast(&signed_bump).await.unwrap();
            assert_eq!(rpc.raw_mempool().await.unwrap(), vec![signed_bump.compute_txid()], "the bump replaced it");
            mined = signed_bump;
        }
        let attempt = if count == 10 { 1 } else { 0 };
        rpc.generate_to_address(1, &miner.address).await.unwrap();
        assert_eq!(
            broadcaster.status(&plan).await.unwrap(),
            PayoutStatus::Confirmed { attempt, confirmations: 1 },
            "the kernel did not connect a block with the payout"
        );
        paid_exactly(&rpc, mined.compute_txid(), &plan).await;
        // What a confirmer asks before it replays a batch recording the confirmation.
        assert_eq!(
            checker.check_payout(&bridge::VaultKeys::genesis(vault), &plan, attempt, 0).await.unwrap(),
            DepositStatus::Confirmed
        );
        let other = 1 - attempt;
        assert!(matches!(
            checker.check_payout(&bridge::VaultKeys::genesis(vault), &plan, other, 0).await.unwrap(),
            DepositStatus::NotOnChain { .. }
        ));

        let effects = replicas.apply(&Tx::System(SystemTx::BtcPayoutConfirmed { plan: plan.id, attempt, height: 0 }));
        let Effect::BtcPayoutConfirmed { change, .. } = effects[0] else { panic!("{effects:?}") };
        assert_eq!(change.outpoint.txid, mined.compute_txid().to_byte_array());
        table.push((count, mined.vsize()));
    }

    // The ledger's vault is the chain's: every output it holds is unspent with that amount.
    let state = &replicas.states[0];
    let outputs: Vec<bridge::VaultUtxo> = state.vault_utxos().copied().collect();
    const DEPTH: u32 = 6;
    let tip = rpc.block_count().await.unwrap();
    let held = holdings(&rpc, &outputs, DEPTH).await.unwrap();
    assert_eq!(held, Holdings { tip, held_sat: state.btc_vault_holdings_sat(), ..Holdings::default() });
    let supply = state.supply(&AssetId::Btc);
    assert!(u128::from(held.held_sat) >= supply.liabilities.units(), "solvency: the vault holds what the ledger owes");
    // An output the chain does not have, from a block the node is past, is reported, not counted.
    let mut made_up = outputs[0];
    made_up.outpoint.vout += 7;
    let held = holdings(&rpc, &[made_up], DEPTH).await.unwrap();
    assert_eq!(held, Holdings { tip, missing: vec![made_up.outpoint], ..Holdings::default() });
    // The same output from a block the node has not reached at depth is "not seen yet": neither
    // held nor missing (a lagging node must not make an honest vault look robbed).
    let mut ahead = made_up;
    ahead.height = tip + 1;
    let held = holdings(&rpc, &[ahead, outputs[0]], DEPTH).await.unwrap();
    let expected = Holdings {
        tip,
        held_sat: outputs[0].amount_sat,
        missing: vec![],
        unseen: vec![ahead.outpoint],
        needed: tip + u64::from(DEPTH),
    };
    assert_eq!(held, expected);
    // At depth: the first tip that must have it judges it missing.
    ahead.height = tip + 1 - u64::from(DEPTH);
    assert_eq!(holdings(&rpc, &[ahead], DEPTH).await.unwrap().missing, vec![ahead.outpoint]);
    for (count, vsize) in table {
        println!("batch {count:>3}: {vsize:>5} vB, {:.1} vB per withdrawal", vsize as f64 / count as f64);
    }
}

/// Every recipient got exactly its amount, in the order of the plan.
async fn paid_exactly(rpc: &CoreRpc, txid: Txid, plan: &PayoutPlan) {
    let tx = rpc.raw_transaction(&txid, None).await.unwrap();
    for (output, payout) in tx.output.iter().zip(&plan.payouts) {
        assert_eq!(output.value.to_sat(), payout.amount_sat);
        assert_eq!(output.script_pubkey.as_bytes(), payout.script_pubkey.as_slice());
    }
    assert_eq!(tx.output.len(), plan.payouts.len() + 1, "payouts and one change output");
}

/// Signs attempt 0 of `plan` with the watchmen and sends it to the node.
async fn send_first_attempt(rpc: &CoreRpc, watchmen: &Watchmen, vault: &BtcVaultParams, plan: &PayoutPlan) -> Txid {
    let unsigned = plan.build(&bridge::VaultKeys::genesis(*vault), NETWORK, 0).unwrap();
    let signed = unsigned.with_signatures(&watchmen.sign_payout(&unsigned).await);
    rpc.send_raw_transaction(&signed).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_larger_than_the_vault_can_cover_waits_and_the_smaller_ones_behind_it_are_paid() {
    let node = RegtestNode::start(RegtestConfig::default()).await.unwrap();
    let rpc = CoreRpc::new(node.url(), node.user(), node.password());
    let miner = Miner::new();
    rpc.generate_to_address(110, &miner.address).await.unwrap();
    let watchmen = Watchmen::start(3, 2).await;
    let vault = BtcVaultParams { group_key: watchmen.internal_key, min_fee_rate: 1, max_fee_rate: 50 };
    let group_key = bitcoin::key::XOnlyPublicKey::from_slice(&vault.group_key).unwrap();
    let params = params(vault);
    let mut replicas =
        Replicas { states: [State::genesis(params.clone()), State::genesis(params)], nonces: BTreeMap::new() };
    for (n, sat) in [(1u8, 10_000_000u64), (2, 300_000), (3, 300_000)] {
        let account = wallet(n).address();
        let to = deposit_address(group_key, NETWORK, &account);
        let paid = miner.pay(&rpc, u64::from(n), &to, Sat::from_sat(sat)).await;
        let vout = paid.output.iter().position(|o| o.script_pubkey == to.script_pubkey()).unwrap() as u32;
        let l1_ref = L1Ref::Bitcoin { txid: paid.compute_txid().to_byte_array(), vout };
        let deposit = Deposit {
            chain: Chain::Bitcoin,
            l1_ref,
            account,
            asset: AssetId::Btc,
            amount: Amount(sat.into()),
            l1_height: 0,
        };
        replicas.apply(&Tx::System(SystemTx::Deposit(deposit)));
    }
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    let broadcaster = PayoutBroadcaster::new(rpc.clone(), vault, NETWORK);

    // Plan 1 spends the 10M output; until it confirms, the vault can spend 600k.
    replicas.withdraw(2, 100_000, &recipient());
    let first = replicas.plan(2);
    assert_eq!(first.inputs[0].amount_sat, 10_000_000);
    send_first_attempt(&rpc, &watchmen, &vault, &first).await;

    // 5M waits at the head of the queue; 50k behind it is paid now (the old ledger refused the
    // whole plan with `vault_liquidity`).
    let big_to = recipient();
    replicas.withdraw(1, 5_000_000, &big_to);
    let small_to = recipient();
    replicas.withdraw(3, 50_000, &small_to);
    let second = replicas.plan(2);
    assert_eq!(second.payouts.len(), 1, "{second:?}");
    assert_eq!(second.payouts[0].script_pubkey, small_to.script_pubkey().to_bytes());
    assert_eq!(replicas.states[0].btc_queue().count(), 1, "the large withdrawal keeps its place");
    send_first_attempt(&rpc, &watchmen, &vault, &second).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    for plan in [&first, &second] {
        assert_eq!(broadcaster.status(plan).await.unwrap(), PayoutStatus::Confirmed { attempt: 0, confirmations: 1 });
        replicas.apply(&Tx::System(SystemTx::BtcPayoutConfirmed { plan: plan.id, attempt: 0, height: 0 }));
    }

    // Plan 1's change came back: the large withdrawal is paid next.
    let third = replicas.plan(2);
    assert_eq!(third.payouts.len(), 1);
    assert_eq!(third.payouts[0].script_pubkey, big_to.script_pubkey().to_bytes());
    let txid = send_first_attempt(&rpc, &watchmen, &vault, &third).await;
    rpc.generate_to_address(1, &miner.address).await.unwrap();
    paid_exactly(&rpc, txid, &third).await;
    assert_eq!(replicas.states[0].btc_queue().count(), 0);
}
