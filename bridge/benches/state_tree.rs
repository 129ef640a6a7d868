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
        "\n| state tree (one core) | bulk build | root update per write | in bare node hashes | RSS after build |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for entries in sizes {
        let started = Instant::now();
        let tree =
            Commitment::from_entries((0..entries).map(|n| (key(n), 1_000_000u128.to_le_bytes().to_vec())).collect())
                .unwrap();
        let build_s = started.elapsed().as_secs_f64();
        let rss = rss_mb();
        let mut tree = tree;
        // Three batches: updates spread over the whole tree, a tenth of them new keys.
        let mut total_s = 0.0;
        for round in 0..3u64 {
            let writes: BTreeMap<KeyHash, Option<Vec<u8>>> = (0..BATCH_WRITES)
                .map(|i| {
                    let n =
                        if i % 10 == 0 { entries + round * BATCH_WRITES + i } else { (i * 7_919 + round) % entries };
                    (key(n), Some((u128::from(round) + 7).to_le_bytes().to_vec()))
                })
                .collect();
            let count = writes.len() as f64;
            let started = Instant::now();
            let pending = tree.prepare(writes).unwrap();
            tree.apply(pending);
            total_s += started.elapsed().as_secs_f64() / count;
        }
        let per_write_us = total_s / 3.0 * 1e6;
        println!(
            "| {entries} entries | {build_s:.2} s ({:.2} µs/entry) | {per_write_us:.2} µs | {:.1} | {rss:.0} MB |",
            build_s * 1e6 / entries as f64,
            per_write_us / hash_us,
        );
    }
    println!("\nbare SHA-256 of 80 bytes (an internal node): {:.3} µs", hash_us);
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
