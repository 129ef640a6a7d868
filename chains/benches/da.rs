//! `cargo bench -p chains`: DirDa's publish rate (encode + write + fsync + link + directory
//! fsync) against a plain write + fsync of the same bytes to the same disk, in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Instant;

use bridge::tx::{Deposit, L1Ref, SystemTx};
use bridge::{
    Address, Amount, AssetConfig, AssetId, BatchBuilder, BtcNetwork, Chain, CoordinatorKey, NetworkParams, State, Tx,
};
use chains::da::{DataAvailability, DirDa};

const BATCHES: u64 = 20;
const TXS_PER_BATCH: u64 = 10_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let key = CoordinatorKey::from_secret(&[0xc0; 32]).unwrap();
    let params = NetworkParams {
        name: "bench".into(),
        chain_id: 1,
        eth_vault: Address([1; 20]),
        btc_network: BtcNetwork::Regtest,
        coordinator_key: key.public_key(),
        fee_account: Address([0xfe; 20]),
        assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(0) }],
    };
    eprintln!("building {BATCHES} batches of {TXS_PER_BATCH} deposits…");
    let mut state = State::genesis(params);
    let batches: Vec<_> = (1..=BATCHES)
        .map(|b| {
            let mut builder = BatchBuilder::new(&state);
            for i in 0..TXS_PER_BATCH {
                let deposit = Deposit {
                    chain: Chain::Ethereum,
                    l1_ref: L1Ref::Ethereum { tx_hash: [b as u8; 32], log_index: i },
                    account: Address([(i % 251) as u8; 20]),
                    asset: AssetId::Eth,
                    amount: Amount(1 + i as u128),
                };
                builder.apply(&mut state, Tx::System(SystemTx::Deposit(deposit))).unwrap();
            }
            builder.seal(&mut state, b, &key).unwrap().batch
        })
        .collect();
    let encoded: Vec<Vec<u8>> = batches.iter().map(bridge::codec::encode_batch).collect();
    let mb = encoded.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let raw_mb = batches.iter().map(|b| bridge::codec::to_bytes(b).len()).sum::<usize>() as f64 / 1e6;

    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let started = Instant::now();
    for (i, bytes) in encoded.iter().enumerate() {
        let mut file = std::fs::File::create(plain.join(i.to_string())).unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
    }
    let ceiling = mb / started.elapsed().as_secs_f64();

    let da = DirDa::open(dir.path().join("da"), key.public_key()).unwrap();
    let started = Instant::now();
    for batch in &batches {
        da.publish(batch).await.unwrap();
    }
    let publish = mb / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let fetched = da.batches_after(0, BATCHES as usize).await.unwrap();
    assert_eq!(fetched.len() as u64, BATCHES);
    let fetch = mb / started.elapsed().as_secs_f64();

    println!(
        "\n| DirDa benchmark ({BATCHES} batches of {TXS_PER_BATCH} deposits: {raw_mb:.1} MB borsh, {mb:.2} MB zstd) | figure | ratio |"
    );
    println!("| --- | --- | --- |");
    println!("| ceiling: plain write + fsync of the same bytes | {ceiling:.0} MB/s | 1.00 |");
    println!(
        "| DirDa publish (encode + write + fsync + link + dir fsync) | {publish:.0} MB/s zstd, {:.0} MB/s borsh, {:.1} ms/batch | {:.2} |",
        publish * raw_mb / mb,
        1e3 * mb / publish / BATCHES as f64,
        publish / ceiling
    );
    println!("| DirDa fetch (read + decode + signature check) | {fetch:.0} MB/s | {:.2}× ceiling |", fetch / ceiling);
}
