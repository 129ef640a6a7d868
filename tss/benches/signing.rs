#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signing latency on loopback against the compute floor of the same rounds.
//!
//! For 3-of-5, 7-of-10 and 67-of-100 watchmen (real libp2p nodes in this process, shares from a
//! dealer so that the benchmark measures signing, not the DKG): p50 and p99 of a one-message
//! session; the time the same FROST rounds take with no network on one thread ("compute"),
//! measured in the same run; and the critical-path floor, that compute divided by the cores
//! (every watchman shares this machine's cores, so no schedule can beat it). Then where the
//! median session's time went (waiting for `t` commitments, the attempt's shares, the
//! aggregation), and, for 7-of-10, one session of 100 messages against a session of one.
//!
//! `cargo bench -p tss --bench signing`. `TSS_BENCH_ROUNDS` changes the sample count (default
//! 30); `TSS_BENCH_CASES` the cases, e.g. `20/30` or `3/5,7/10,67/100` (the default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tss::frost;
use tss::mesh::PeerEntry;
use tss::roast::SessionPhases;
use tss::{ApproveAll, KeyPath, KeyShare, MeshConfig, SigningContext, SigningRequest, TssNode, TssNodeConfig};

mod common;

fn request(i: u32) -> SigningRequest {
    let mut message = [0u8; 32];
    message[..4].copy_from_slice(&i.to_be_bytes());
    SigningRequest {
        message: message.to_vec(),
        key_path: KeyPath::Vault,
        context: SigningContext { chain: "bench".into(), batch: None, purpose: "benchmark".into(), detail: vec![] },
    }
}

/// Dealer shares for the watchmen's identifiers (derived from their PeerIds, as the DKG does).
fn dealer_shares(peers: &[libp2p::PeerId], t: u16) -> Vec<KeyShare> {
    let identifiers: Vec<_> = peers.iter().map(|p| tss::dkg::identifier_of(p).unwrap()).collect();
    let (secrets, public) = frost::keys::generate_with_dealer(
        peers.len() as u16,
        t,
        frost::keys::IdentifierList::Custom(&identifiers),
        rand_core::OsRng,
    )
    .unwrap();
    identifiers
        .iter()
        .map(|id| KeyShare {
            key_package: frost::keys::KeyPackage::try_from(secrets[id].clone()).unwrap(),
            public: public.clone(),
        })
        .collect()
}

async fn start(n: usize, t: u16) -> (Vec<TssNode>, Vec<KeyShare>) {
    let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let (entries, _ports): (Vec<PeerEntry>, _) = common::entries(&identities);
    let peers: Vec<_> = entries.iter().map(|e| e.peer_id).collect();
    let shares = dealer_shares(&peers, t);
    let mut nodes = Vec::new();
    for (i, identity) in identities.into_iter().enumerate() {
        let config = TssNodeConfig {
            identity,
            mesh: MeshConfig {
                listen: entries[i].address.clone(),
                peers: entries.clone(),
                request_timeout: Duration::from_secs(30),
            },
            threshold: t,
            share: Some(shares[i].clone()),
            policy: Arc::new(ApproveAll),
            session_timeout: Duration::from_secs(120),
            retry: Duration::from_millis(500),
        };
        nodes.push(TssNode::start(config).await.unwrap());
    }
    // Wait for the whole mesh (n(n-1)/2 Noise handshakes: 4,950 at n = 100, seconds of CPU on
    // two cores) so that no sample pays for dialling: a running group connected long before
    // it signs.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    for (i, node) in nodes.iter().enumerate() {
        let others = peers.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
        // One deadline for the whole mesh, so a peer that never comes costs 300 s, not 300 s
        // per watchman waiting for it.
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(missing) = node.mesh().wait_for(&others, left, |_, _| {}).await {
            // Measured anyway: the first samples then include dialling, which the line says.
            eprintln!("warning: watchman {i} did not connect to {} peers within 300 s", missing.len());
        }
    }
    eprintln!("{t}-of-{n}: the mesh connected in {} ms", started.elapsed().as_millis());
    (nodes, shares)
}

/// The same rounds with no network: t commitments, t shares, one aggregation, one thread.
fn compute_only(shares: &[KeyShare], t: usize, messages: u32) -> Duration {
    let started = Instant::now();
    for m in 0..messages {
        let request = request(m);
        let signers = &shares[..t];
        let mut nonces = Vec::with_capacity(t);
        let mut commitments = BTreeMap::new();
        for share in signers {
            let (n, c) = frost::round1::commit(share.key_package.signing_share(), &mut rand_core::OsRng);
            nonces.push(n);
            commitments.insert(share.identifier(), c);
        }
        let package = frost::SigningPackage::new(commitments, &request.message);
        let mut signature_shares = BTreeMap::new();
        for (share, nonce) in signers.iter().zip(&nonces) {
            let s = frost::round2::sign_with_tweak(&package, nonce, &share.key_package, None).unwrap();
            signature_shares.insert(share.identifier(), s);
        }
        frost::aggregate_with_tweak(&package, &signature_shares, &shares[0].public, None).unwrap();
    }
    started.elapsed()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn cases() -> Vec<(u16, usize)> {
    let spec = std::env::var("TSS_BENCH_CASES").unwrap_or_else(|_| "3/5,7/10,67/100".into());
    spec.split(',')
        .map(|case| {
            let (t, n) = case.trim().split_once('/').expect("TSS_BENCH_CASES: t/n,t/n,...");
            (t.parse().expect("t"), n.parse().expect("n"))
        })
        .collect()
}

fn goal(t: u16, n: usize) -> &'static str {
    match (t, n) {
        (7, 10) => "≤ 20 ms",
        (67, 100) => "≤ 250 ms and ≤ 2× floor",
        _ => "",
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = std::env::var("TSS_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    println!(
        "| watchmen | p50 ms | p99 ms | compute ms (same rounds, no network, 1 thread) | floor ms (compute / {cores} cores) | p50 / floor | goal p50 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut batch_case = None;
    let mut breakdowns = Vec::new();
    for (t, n) in cases() {
        let (nodes, shares) = start(n, t).await;
        nodes[0].sign(vec![request(u32::MAX)]).await.unwrap(); // warm-up
        let mut samples = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let started = Instant::now();
            let outcome = nodes[0].sign(vec![request(i as u32)]).await.unwrap();
            samples.push((started.elapsed(), outcome.phases, outcome.attempts));
            assert_eq!(outcome.signatures.len(), 1);
        }
        let compute: Vec<Duration> = (0..5).map(|_| compute_only(&shares, t as usize, 1)).collect();
        let compute = *compute.iter().min().unwrap();
        let floor = compute / cores as u32;
        samples.sort_by_key(|(elapsed, _, _)| *elapsed);
        let mut latencies: Vec<Duration> = samples.iter().map(|(elapsed, _, _)| *elapsed).collect();
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        println!(
            "| {t}-of-{n} | {} | {} | {} | {} | {:.2} | {} |",
            ms(p50),
            ms(p99),
            ms(compute),
            ms(floor),
            p50.as_secs_f64() / floor.as_secs_f64(),
            goal(t, n)
        );
        let median = samples[samples.len() / 2];
        let attempts: usize = samples.iter().map(|(_, _, a)| a).sum();
        breakdowns.push((t, n, median, attempts as f64 / samples.len() as f64));
        if (t, n) == (7, 10) {
            batch_case = Some((nodes, shares));
        }
    }

    println!();
    println!(
        "| median session | total ms | until t commitments | the attempt's shares | aggregation | attempts per session (mean) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (t, n, (elapsed, phases, _), attempts) in breakdowns {
        let SessionPhases { commitments, shares, aggregation } = phases;
        println!(
            "| {t}-of-{n} | {} | {} | {} | {} | {attempts:.2} |",
            ms(elapsed),
            ms(commitments),
            ms(shares),
            ms(aggregation)
        );
    }

    let Some((nodes, shares)) = batch_case else { return };
    let mut one = Vec::new();
    let mut hundred = Vec::new();
    for i in 0..rounds.min(10) as u32 {
        let started = Instant::now();
        nodes[0].sign(vec![request(i)]).await.unwrap();
        one.push(started.elapsed());
        let started = Instant::now();
        let outcome = nodes[0].sign((0..100).map(|m| request(1000 * i + m)).collect()).await.unwrap();
        hundred.push(started.elapsed());
        assert_eq!(outcome.signatures.len(), 100);
    }
    let one = percentile(&mut one, 0.5);
    let hundred = percentile(&mut hundred, 0.5);
    let compute_hundred = compute_only(&shares, 7, 100);
    println!();
    println!("| 7-of-10 session | p50 ms | compute ms | floor ms | ratio to one message | goal |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let compute_one = compute_only(&shares, 7, 1);
    println!("| 1 message | {} | {} | {} | 1.0 | |", ms(one), ms(compute_one), ms(compute_one / cores as u32));
    println!(
        "| 100 messages | {} | {} | {} | {:.1} | ≤ 2× one |",
        ms(hundred),
        ms(compute_hundred),
        ms(compute_hundred / cores as u32),
        hundred.as_secs_f64() / one.as_secs_f64()
    );
}
