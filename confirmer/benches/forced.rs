//! `cargo bench -p confirmer --bench forced`: what checking a batch's forced transactions costs
//! a confirmer against replaying the batch, measured in the same run (DESIGN.md §6). A batch of
//! `TXS` transfers with a full forced section of `CAP` entries (withdrawals posted to arlocal,
//! half of them refused) is built; then, timed apart:
//! - the check: listing the batch's forced range on the gateway, fetching every entry, and
//!   comparing them with the records (`ForcedChecker::listed`, `fetch_forced`, `check_records`);
//! - the replay: `bridge::replay` of the whole batch (signatures, forced section, body, roots).
//!
//! Reported as the check's time over the replay's, and the check alone per forced entry. The
//! check is gateway round trips, so on arlocal over loopback it is a floor: a public gateway
//! adds its latency to each of the `CAP + 1` requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use bridge::forced::{ForcedCursor, ForcedEntry, ForcedParams, expected, plan};
use bridge::tx::{L1Ref, SystemTx, Transfer, UserTx, Withdraw};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BatchBuilder, BtcNetwork, Chain, CoordinatorKey, Deposit, NetworkParams,
    State, Tx, Wallet,
};
use chains::arweave::ArweaveWallet;
use chains::arweave::arlocal::Arlocal;
use confirmer::forced::ForcedChecker;

const CAP: u32 = 64;
const TXS: usize = 2_000;
const ROUNDS: usize = 5;
const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/tools/arweave-check.js");

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}

fn wallet(n: u64) -> Wallet {
    let mut secret = [0x33; 32];
    secret[24..].copy_from_slice(&n.to_be_bytes());
    Wallet::from_secret(&secret).unwrap()
}

async fn bench() {
    let key = CoordinatorKey::from_secret(&[0xc0; 32]).unwrap();
    let rules = ForcedParams { cap: CAP, deadline_blocks: 10, confirmations: 1, start_height: 0 };
    let params = NetworkParams {
        name: "bench-forced".into(),
        chain_id: 424_242,
        eth_vault: Address([0x7a; 20]),
        btc_network: BtcNetwork::Regtest,
        btc_vault: None,
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
        forced: Some(rules),
        webauthn: None,
        rotation: None,
    };
    let domain = bridge::eip712::Domain::new(&params);
    let arlocal = Arlocal::start_in_ram().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generated = std::process::Command::new("node").arg(CHECK_SCRIPT).arg("generate").output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let jwk = dir.path().join("user.json");
    std::fs::write(&jwk, &generated.stdout).unwrap();
    let user = ArweaveWallet::load(&jwk).unwrap();
    arlocal.mint(user.address(), 1_000_000_000_000_000).await.unwrap();
    let gateway = arlocal.gateway().unwrap();

    // CAP forced withdrawals by 64 accounts; the odd ones overdraw and are refused.
    eprintln!("posting {CAP} forced transactions to arlocal…");
    for n in 0..u64::from(CAP) {
        let amount = if n % 2 == 0 { 10 } else { 1_000_000_000 };
        let tx = UserTx::Withdraw(Withdraw {
            from: wallet(n).address(),
            asset: AssetId::Eth,
            amount: Amount(amount),
            fee: Amount(0),
            recipient: wallet(999).address().to_string(),
            nonce: 0,
        });
        let signed = wallet(n).sign(tx, &domain);
        gateway
            .post_forced(&user, "settlement-bridge", &params.name, bridge::forced::encode_payload(&signed))
            .await
            .unwrap();
    }
    arlocal.mine(1).await.unwrap();
    let tip = gateway.height().await.unwrap();
    let checker = ForcedChecker::new(arlocal.gateway().unwrap(), &params.name, rules);

    // Batch 1 funds every account; batch 2 carries the forced section and TXS transfers.
    let mut state = State::genesis(params.clone());
    let mut builder = BatchBuilder::new(&state);
    builder.process_forced(&mut state, rules.start(), rules.start(), &[], &|_| false).unwrap();
    for n in 0..u64::from(CAP) {
        let deposit = Deposit {
            chain: Chain::Ethereum,
            l1_ref: L1Ref::Ethereum { tx_hash: bridge::hashing::sha256(n.to_be_bytes()), log_in_tx: 0 },
            account: wallet(n).address(),
            asset: AssetId::Eth,
            amount: Amount(1_000_000),
            l1_height: 0,
        };
        builder.apply(&mut state, Tx::System(SystemTx::Deposit(deposit))).unwrap();
    }
    let first = builder.seal(&mut state, 1, &key).unwrap().batch;
    let listed = checker.listed(rules.start(), ForcedCursor { height: tip + 1, taken: 0 }).await.unwrap().unwrap();
    let planned = plan(rules.start(), &listed, rules.safe_height(tip), CAP);
    assert_eq!(planned.take.len(), CAP as usize);
    let mut entries: Vec<ForcedEntry> = Vec::new();
    for listing in &planned.take {
        entries.push(gateway.fetch_forced(*listing).await.unwrap());
    }
    let mut builder = BatchBuilder::new(&state);
    builder.process_forced(&mut state, rules.start(), planned.to, &entries, &|_| false).unwrap();
    // The refused (odd) accounts did not use their nonce 0.
    let mut nonces: Vec<u64> = (0..u64::from(CAP)).map(|n| u64::from(n % 2 == 0)).collect();
    for i in 0..TXS {
        let from = i % CAP as usize;
        let tx = UserTx::Transfer(Transfer {
            from: wallet(from as u64).address(),
            to: wallet(((from + 1) % CAP as usize) as u64).address(),
            asset: AssetId::Eth,
            amount: Amount(1),
            fee: Amount(0),
            nonce: nonces[from],
        });
        nonces[from] += 1;
        let signed = wallet(from as u64).sign(tx, &domain);
        builder.apply(&mut state, Tx::User(signed.verify(&domain).unwrap())).unwrap();
    }
    let second = builder.seal(&mut state, 2, &key).unwrap().batch;
    let commit = second.header.forced.clone().unwrap();

    let (mut check_s, mut replay_s) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let listed = checker.listed(commit.from, commit.to).await.unwrap().unwrap();
        let due = expected(commit.from, commit.to, &listed);
        let fetched = gateway.fetch_forced_all(&due).await.unwrap();
        bridge::forced::check_records(&second.forced, &fetched).unwrap();
        check_s.push(started.elapsed().as_secs_f64());

        let mut replay_state = State::genesis(params.clone());
        bridge::replay(&mut replay_state, &first).unwrap();
        let started = Instant::now();
        bridge::replay(&mut replay_state, &second).unwrap();
        replay_s.push(started.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (check, replay) = (median(&mut check_s), median(&mut replay_s));
    println!("| measure ({ROUNDS} rounds, median) | value |");
    println!("| --- | --- |");
    println!("| batch: forced entries / body transfers | {CAP} / {TXS} |");
    println!("| forced check (list + {CAP} fetches + compare, arlocal on loopback) | {:.1} ms |", check * 1e3);
    println!("| forced check per entry | {:.2} ms |", check * 1e3 / f64::from(CAP));
    println!("| replay of the batch (signatures, forced section, body, roots) | {:.1} ms |", replay * 1e3);
    println!("| **check / replay** | **{:.2}** |", check / replay);
}
