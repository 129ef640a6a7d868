//! `cargo bench -p bridge --bench state_tree`: the state tree alone, without the STF around it:
//! the bulk build a snapshot's restore does, and a batch's root update per write, at each tree
//! size; beside them, bare SHA-256 calls of a tree node's size timed in the same run, so a
//! figure from a loaded machine can be read as "hashes' worth" per write.
//! STATE_TREE_ENTRIES=10000,1000000,10000000 (the default) picks the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use bridge::commitment::{Commitment, KeyHash, key_hash};
use sha2::{Digest, Sha256};

/// Distinct keys one bench batch writes: about what 20,000 transfers touch.
const BATCH_WRITES: u64 = 40_000;

fn main() {
    let sizes: Vec<u64> = std::env::var("STATE_TREE_ENTRIES")
        .map(|list| list.split(',').map(|n| n.trim().parse().expect("numbers, comma-separated")).collect())
        .unwrap_or_else(|_| vec![10_000, 1_000_000, 10_000_000]);
    let hash_us = bare_hash_us();
    println!(
        "\n| state tree ({} cores) | bulk build | root update per write, one core | in bare node hashes | root update per write, every core | RSS after build |",
        rayon::current_num_threads()
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for entries in sizes {
        let started = Instant::now();
        let tree =
            Commitment::from_entries((0..entries).map(|n| (key(n), 1_000_000u128.to_le_bytes().to_vec())).collect())
                .unwrap();
        let build_s = started.elapsed().as_secs_f64();
        let rss = rss_mb();
        let mut tree = tree;
        // Three batches on one thread, then three on every core (the update splits between
        // threads near the root): updates spread over the whole tree, a tenth of them new keys.
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let one_core_us = one_thread.install(|| update_per_write_us(&mut tree, entries, 0));
        let all_cores_us = update_per_write_us(&mut tree, entries, 3);
        println!(
            "| {entries} entries | {build_s:.2} s ({:.2} µs/entry) | {one_core_us:.2} µs | {:.1} | {all_cores_us:.2} µs ({:.2}× faster) | {rss:.0} MB |",
            build_s * 1e6 / entries as f64,
            one_core_us / hash_us,
            one_core_us / all_cores_us,
        );
    }
    println!("\nbare SHA-256 of 80 bytes (an internal node): {:.3} µs", hash_us);
}

/// Applies three batches of [`BATCH_WRITES`] writes, rounds `first..first + 3`, and returns the
/// mean root update time per write.
fn update_per_write_us(tree: &mut Commitment, entries: u64, first: u64) -> f64 {
    let mut total_s = 0.0;
    for round in first..first + 3 {
        let writes: BTreeMap<KeyHash, Option<Vec<u8>>> = (0..BATCH_WRITES)
            .map(|i| {
                let n = if i % 10 == 0 { entries + round * BATCH_WRITES + i } else { (i * 7_919 + round) % entries };
                (key(n), Some((u128::from(round) + 7).to_le_bytes().to_vec()))
            })
            .collect();
        let count = writes.len() as f64;
        let started = Instant::now();
        let pending = tree.prepare(writes).unwrap();
        tree.apply(pending);
        total_s += started.elapsed().as_secs_f64() / count;
    }
    total_s / 3.0 * 1e6
}

fn key(n: u64) -> KeyHash {
    key_hash(&n.to_le_bytes())
}

/// One internal node's hash, timed alone: the unit the per-write figures are read in.
fn bare_hash_us() -> f64 {
    let mut node = [7u8; 80];
    let rounds = 2_000_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let digest: [u8; 32] = Sha256::digest(node).into();
        node[..32].copy_from_slice(&digest);
    }
    std::hint::black_box(node);
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

/// The process's resident set, from /proc (Linux); 0 elsewhere.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
