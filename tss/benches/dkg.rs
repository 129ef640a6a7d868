#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A DKG among real libp2p nodes on loopback (all in this process), against its compute.
//!
//! For each case (default 67-of-100): the wall time of the whole ceremony once every node is
//! connected; the bytes of messages each participant sent and received (mean and max), by stage;
//! and what the same FROST rounds cost with no network ("compute": every participant's part 1,
//! part 2 and part 3 on one thread, part 3 timed for a few participants and scaled, since every
//! participant does the same work), divided by the cores for the floor.
//!
//! `cargo bench -p tss --bench dkg`. `TSS_BENCH_DKG` changes the cases, e.g. `7/10,67/100`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tss::dkg::DkgProgress;
use tss::frost;
use tss::mesh::PeerEntry;
use tss::traffic::Traffic;
use tss::{ApproveAll, MeshConfig, SessionId, TssNode, TssNodeConfig};

mod common;

async fn start(n: usize, t: u16) -> Vec<TssNode> {
    let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let (entries, _ports): (Vec<PeerEntry>, _) = common::entries(&identities);
    let mut nodes = Vec::new();
    for (i, identity) in identities.into_iter().enumerate() {
        let config = TssNodeConfig {
            identity,
            mesh: MeshConfig {
                listen: entries[i].address.clone(),
                peers: entries.clone(),
                request_timeout: Duration::from_secs(60),
            },
            threshold: t,
            share: None,
            policy: Arc::new(ApproveAll),
            session_timeout: Duration::from_secs(120),
            retry: Duration::from_millis(500),
        };
        nodes.push(TssNode::start(config).await.unwrap());
    }
    // Every pair connected first, so the ceremony's time is the ceremony's.
    for (i, node) in nodes.iter().enumerate() {
        let others = entries.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, e)| e.peer_id).collect();
        node.mesh().wait_for(&others, Duration::from_secs(300), |_, _| {}).await.unwrap();
    }
    nodes
}

/// Every participant's rounds on one thread, with no network. Part 3 is timed for `sampled`
/// participants and scaled to all `n` (each does the same work).
fn compute_only(n: u16, t: u16, sampled: usize) -> Duration {
    let identifiers: Vec<frost::Identifier> = (1..=n).map(|i| frost::Identifier::try_from(i).unwrap()).collect();
    let started = Instant::now();
    let mut secrets1 = BTreeMap::new();
    let mut packages1 = BTreeMap::new();
    for id in &identifiers {
        let (secret, package) = frost::keys::dkg::part1(*id, n, t, rand_core::OsRng).unwrap();
        secrets1.insert(*id, secret);
        packages1.insert(*id, package);
    }
    let mut secrets2 = BTreeMap::new();
    let mut packages2: BTreeMap<frost::Identifier, BTreeMap<frost::Identifier, _>> = BTreeMap::new();
    for id in &identifiers {
        let received: BTreeMap<_, _> =
            packages1.iter().filter(|(k, _)| *k != id).map(|(k, v)| (*k, v.clone())).collect();
        let (secret, out) = frost::keys::dkg::part2(secrets1.remove(id).unwrap(), &received).unwrap();
        secrets2.insert(*id, (secret, received));
        for (to, package) in out {
            packages2.entry(to).or_default().insert(*id, package);
        }
    }
    let parts_1_and_2 = started.elapsed();
    let started = Instant::now();
    for id in identifiers.iter().take(sampled) {
        let (secret, received1) = &secrets2[id];
        frost::keys::dkg::part3(secret, received1, &packages2[id]).unwrap();
    }
    let part3 = started.elapsed() / sampled as u32 * u32::from(n);
    parts_1_and_2 + part3
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

fn cases() -> Vec<(u16, usize)> {
    let spec = std::env::var("TSS_BENCH_DKG").unwrap_or_else(|_| "67/100".into());
    spec.split(',')
        .map(|case| {
            let (t, n) = case.trim().split_once('/').expect("TSS_BENCH_DKG: t/n,t/n,...");
            (t.parse().expect("t"), n.parse().expect("n"))
        })
        .collect()
}

const STAGES: [&str; 3] = ["round 1", "echo", "round 2"];

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let mut rows = Vec::new();
    for (t, n) in cases() {
        let nodes = start(n, t).await;
        let before: Vec<Traffic> = nodes.iter().map(|node| node.mesh().traffic()).collect();
        // Each node's sent bytes at the end of each of its stages.
        let marks: Arc<Mutex<Vec<[u64; 3]>>> = Arc::new(Mutex::new(vec![[0; 3]; n]));
        let session = SessionId::random();
        let started = Instant::now();
        let runs = nodes.iter().enumerate().map(|(i, node)| {
            let marks = marks.clone();
            let mesh = node.mesh().clone();
            let base = before[i].sent;
            node.dkg(session, Duration::from_secs(600), move |progress| {
                let stage = match progress {
                    DkgProgress::Round1 { .. } => 0,
                    DkgProgress::Echo => 1,
                    DkgProgress::Round2 => 2,
                    DkgProgress::Done => return,
                };
                marks.lock().unwrap()[i][stage] = mesh.traffic().sent - base;
            })
        });
        let shares: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).collect();
        let elapsed = started.elapsed();
        let key = *shares[0].public.verifying_key();
        assert!(shares.iter().all(|s| *s.public.verifying_key() == key), "one group key");
        let traffic: Vec<Traffic> = nodes
            .iter()
            .zip(&before)
            .map(|(node, b)| {
                let now = node.mesh().traffic();
                Traffic { sent: now.sent - b.sent, received: now.received - b.received }
            })
            .collect();
        let mean = |f: fn(&Traffic) -> u64| traffic.iter().map(f).sum::<u64>() / n as u64;
        let max = |f: fn(&Traffic) -> u64| traffic.iter().map(f).max().unwrap_or(0);
        let marks = marks.lock().unwrap().clone();
        let mut by_stage = [0u64; 3];
        for mark in &marks {
            let mut previous = 0;
            for (stage, sent) in mark.iter().enumerate() {
                by_stage[stage] += sent.saturating_sub(previous);
                previous = *sent;
            }
        }
        drop(nodes);
        let compute = compute_only(n as u16, t, 3);
        rows.push((
            t,
            n,
            elapsed,
            compute,
            mean(|x| x.sent),
            max(|x| x.sent),
            mean(|x| x.received),
            by_stage.map(|b| b / n as u64),
        ));
    }
    println!(
        "| DKG | wall ms | compute ms (1 thread) | floor ms (compute / {cores} cores) | wall / floor | sent KiB per participant (mean, max) | received KiB (mean) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (t, n, elapsed, compute, sent, sent_max, received, _) in &rows {
        let floor = *compute / cores as u32;
        println!(
            "| {t}-of-{n} | {} | {} | {} | {:.2} | {}, {} | {} |",
            ms(*elapsed),
            ms(*compute),
            ms(floor),
            elapsed.as_secs_f64() / floor.as_secs_f64(),
            kib(*sent),
            kib(*sent_max),
            kib(*received)
        );
    }
    println!();
    println!("| DKG | sent KiB per participant: {} | {} | {} |", STAGES[0], STAGES[1], STAGES[2]);
    println!("| --- | --- | --- | --- |");
    for (t, n, .., by_stage) in &rows {
        println!("| {t}-of-{n} | {} | {} | {} |", kib(by_stage[0]), kib(by_stage[1]), kib(by_stage[2]));
    }
}
