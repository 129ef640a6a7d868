//! `cargo bench -p bridge --bench payout`: Bitcoin payout size and build time.
//!
//! Size: virtual bytes per withdrawal at batch 1, 10 and 100, against the 43 vB a bare P2TR
//! output costs (the floor: no payout can pay a withdrawal in less). The sizes are exact: a
//! key-path witness is always one 64-byte signature, and `chains/tests/bitcoin_payout.rs`
//! checks the same figure against signed transactions the kernel accepted.
//!
//! Time: the deterministic build of 100 withdrawals (skeleton, size, fee, sighashes, change)
//! against the ceiling of computing the same sighashes on the finished transaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::{Amount as Sat, TapSighashType, TxOut};
use bridge::btc_payout::PayoutPlan;
use bridge::stf::Effect;
use bridge::tx::{Deposit, L1Ref, SystemTx, UserTx, Withdraw};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BtcNetwork, BtcVaultParams, Chain, CoordinatorKey, NetworkParams, State, Tx,
    Wallet, apply,
};

const P2TR_OUTPUT_VB: f64 = 43.0;
const NETWORK: BtcNetwork = BtcNetwork::Regtest;

fn main() {
    let secp = secp256k1::SECP256K1;
    let group_key = secp256k1::Keypair::from_seckey_slice(secp, &[7; 32]).unwrap().x_only_public_key().0;
    let vault = BtcVaultParams { group_key: group_key.serialize(), min_fee_rate: 1, max_fee_rate: 100 };

    println!("| payout | vsize | vB per withdrawal | ÷ 43 vB (bare P2TR output) |");
    println!("| --- | --- | --- | --- |");
    let mut plan_100 = None;
    for count in [1usize, 10, 100] {
        let plan = plan_of(count, vault);
        let vsize = plan.vsize(&vault, NETWORK);
        let per = vsize as f64 / count as f64;
        println!(
            "| {count} withdrawals, {} input(s) | {vsize} vB | {per:.1} | {:.2} |",
            plan.inputs.len(),
            per / P2TR_OUTPUT_VB
        );
        plan_100 = Some(plan);
    }
    let plan = plan_100.unwrap();

    let build = median(|| {
        std::hint::black_box(plan.build(&bridge::VaultKeys::genesis(vault), NETWORK, 0).unwrap());
    });
    let built = plan.build(&bridge::VaultKeys::genesis(vault), NETWORK, 0).unwrap();
    let prevouts: Vec<TxOut> = plan
        .inputs
        .iter()
        .map(|u| TxOut { value: Sat::from_sat(u.amount_sat), script_pubkey: vault.script_of(NETWORK, &u.owner) })
        .collect();
    let ceiling = median(|| {
        let mut cache = SighashCache::new(&built.tx);
        for index in 0..built.tx.input.len() {
            let hash =
                cache.taproot_key_spend_signature_hash(index, &Prevouts::All(&prevouts), TapSighashType::Default);
            std::hint::black_box(hash.unwrap());
        }
    });
    println!();
    println!("| build of 100 withdrawals | time | ratio to ceiling |");
    println!("| --- | --- | --- |");
    println!("| ceiling: the sighashes alone on the built transaction | {:.1} µs | 1.00 |", micros(ceiling));
    println!(
        "| deterministic build (skeleton, vsize, fee, sighashes, change outpoint) | {:.1} µs | {:.1} |",
        micros(build),
        build.as_secs_f64() / ceiling.as_secs_f64()
    );
}

/// A ledger with two deposits (a large and a small account output) and `count` withdrawals of
/// 50,000 sat, planned at 2 sat/vB.
fn plan_of(count: usize, vault: BtcVaultParams) -> PayoutPlan {
    let key = CoordinatorKey::from_secret(&[0xc0; 32]).unwrap();
    let params = NetworkParams {
        name: "bench".into(),
        chain_id: 1,
        eth_vault: Address([1; 20]),
        btc_network: NETWORK,
        btc_vault: Some(vault),
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Btc, min_fee: Amount(0) }],
        forced: None,
        webauthn: None,
        rotation: None,
    };
    let mut state = State::genesis(params);
    let wallet = Wallet::from_secret(&[1; 32]).unwrap();
    for (n, sat) in [(1u8, 1_000_000_000u128), (2, 10_000)] {
        let deposit = Deposit {
            chain: Chain::Bitcoin,
            l1_ref: L1Ref::Bitcoin { txid: [n; 32], vout: 0 },
            account: wallet.address(),
            asset: AssetId::Btc,
            amount: Amount(sat),
            l1_height: 0,
        };
        apply(&mut state, &Tx::System(SystemTx::Deposit(deposit))).unwrap();
    }
    let domain = state.domain().clone();
    for nonce in 0..count as u64 {
        let mut program = [0u8; 32];
        program[..8].copy_from_slice(&nonce.to_be_bytes());
        let recipient = bitcoin::Address::from_witness_program(
            bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V1, &program).unwrap(),
            bitcoin::Network::Regtest,
        );
        let tx = UserTx::Withdraw(Withdraw {
            from: wallet.address(),
            asset: AssetId::Btc,
            amount: Amount(50_000),
            fee: Amount(500),
            recipient: recipient.to_string(),
            nonce,
        });
        apply(&mut state, &Tx::User(wallet.sign(tx, &domain).verify(&domain).unwrap())).unwrap();
    }
    match apply(&mut state, &Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })).unwrap().effect {
        Effect::BtcPayoutPlanned(plan) => plan,
        other => panic!("no plan: {other:?}"),
    }
}

fn median(mut run: impl FnMut()) -> Duration {
    for _ in 0..20 {
        run();
    }
    let mut times: Vec<Duration> = (0..201)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
