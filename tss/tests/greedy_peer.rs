#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A watchman on the allow-list that asks for far more than its share cannot exhaust another's
//! memory, fill its queue for the others, or stop honest signing.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{Cluster, Member, identities, request, start_member, verify_bip340};
use futures::StreamExt;
use libp2p::PeerId;
use tss::mesh::MAX_INBOUND_PER_PEER;
use tss::messages::{Overload, Request, Response};
use tss::signer::{InboundHandler, Signer};
use tss::{GroupKey, RefuseAll, SessionId};

/// The process's resident memory, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Hands the test the honest signer it wraps, so the test can read its nonce store.
fn keep(slot: Arc<Mutex<Option<Arc<Signer>>>>) -> Member {
    Member {
        wrap: Some(Box::new(move |signer: Arc<Signer>| {
            *slot.lock().unwrap() = Some(signer.clone());
            signer as Arc<dyn InboundHandler>
        })),
        ..Member::honest()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_asking_for_a_million_nonces_keeps_the_victims_memory_bounded_and_honest_signing_goes_on() {
    // 0 is the victim, 1 and 2 are honest, 3 is greedy and refuses to sign: with t = 3 every
    // signature needs the victim, so honest signing going on proves the victim still serves.
    let slot = Arc::new(Mutex::new(None));
    let kept = slot.clone();
    let cluster = Cluster::start(4, 3, move |i| match i {
        0 => keep(kept.clone()),
        3 => Member { policy: Arc::new(RefuseAll("greedy".into())), ..Member::honest() },
        _ => Member::honest(),
    })
    .await;
    let shares = cluster.dkg().await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let victim: Arc<Signer> = slot.lock().unwrap().clone().unwrap();
    let victim_id = cluster.entries[0].peer_id;
    let greedy_id = cluster.entries[3].peer_id;
    let limits = victim.nonce_limits();
    let rss_before = rss_bytes();

    // The greedy peer asks for 10,000 nonce pairs per request, each in a new session, eight
    // requests at a time, until it has asked for a million and the honest side has signed five
    // times (bounded: at most 400 requests, 4·10^6 pairs).
    let honest_done = AtomicBool::new(false);
    let asked = AtomicUsize::new(0);
    let max_held = AtomicUsize::new(0);
    let max_held_by_greedy = AtomicUsize::new(0);
    let max_rss = std::sync::atomic::AtomicU64::new(rss_before);
    let granted = AtomicUsize::new(0);
    let timed_out = AtomicUsize::new(0);
    let refused = Mutex::new(BTreeSet::new());
    let greedy = cluster.node(3).mesh().clone();
    let spam = futures::stream::iter(0..400)
        .take_while(|_| {
            let more = asked.load(Ordering::SeqCst) < 1_000_000 || !honest_done.load(Ordering::SeqCst);
            async move { more }
        })
        .map(|_| {
            asked.fetch_add(10_000, Ordering::SeqCst);
            greedy.request(victim_id, Request::Commit { session: SessionId::random(), count: 10_000 })
        })
        .buffer_unordered(8)
        .for_each(|answer| {
            match answer {
                Ok(Response::Commitments(set)) => {
                    granted.fetch_add(set.commitments.len(), Ordering::SeqCst);
                }
                Ok(Response::Overloaded(overload)) => {
                    refused.lock().unwrap().insert(overload.reason());
                }
                // Its own queue made it wait past the request timeout: its loss, nobody else's.
                Err(tss::mesh::MeshError::Request { .. }) => {
                    timed_out.fetch_add(1, Ordering::SeqCst);
                }
                other => panic!("unexpected answer to the greedy peer: {other:?}"),
            }
            max_held.fetch_max(victim.nonces_held(), Ordering::SeqCst);
            max_held_by_greedy.fetch_max(victim.nonces_held_by(&greedy_id), Ordering::SeqCst);
            max_rss.fetch_max(rss_bytes(), Ordering::SeqCst);
            async {}
        });

    let honest = async {
        for i in 0..5u8 {
            let outcome = cluster.node(1).sign(vec![request([i; 32])]).await.unwrap();
            assert!(outcome.signers.contains(&victim_id), "the victim signed");
            assert!(verify_bip340(&outcome.signatures[0].signature, &[i; 32], &group.output_key));
        }
        honest_done.store(true, Ordering::SeqCst);
    };
    let started = std::time::Instant::now();
    tokio::join!(spam, honest);
    let asked = asked.load(Ordering::SeqCst);
    let held_by_greedy = max_held_by_greedy.load(Ordering::SeqCst);
    let rss_after = rss_bytes();
    eprintln!(
        "greedy peer asked for {asked} nonce pairs in {:.1} s; granted {}; refused: {:?}; timed out {}; the victim held at most \
         {} pairs ({} of them the greedy peer's; limit {} per peer); RSS {:.1} MiB before, {:.1} MiB at most, \
         {:.1} MiB after",
        started.elapsed().as_secs_f64(),
        granted.load(Ordering::SeqCst),
        refused.lock().unwrap(),
        timed_out.load(Ordering::SeqCst),
        max_held.load(Ordering::SeqCst),
        held_by_greedy,
        limits.per_peer,
        mib(rss_before),
        mib(max_rss.load(Ordering::SeqCst)),
        mib(rss_after),
    );
    assert!(asked >= 1_000_000);
    assert!(held_by_greedy <= limits.per_peer, "the greedy peer held {held_by_greedy} pairs");
    // Every peer's account is bounded, so the whole store is (four peers, this one included).
    assert!(max_held.load(Ordering::SeqCst) <= 4 * limits.per_peer);
    // Refused with a typed reason: its queue (it keeps asking while its own requests wait) or
    // its rate (when the victim has cores to spare).
    assert!(!refused.lock().unwrap().is_empty(), "the greedy peer was never refused");
    // A million pairs held would be hundreds of MiB; the bound is a few tens at most.
    let growth = max_rss.load(Ordering::SeqCst).saturating_sub(rss_before);
    assert!(growth < 128 * 1024 * 1024, "resident memory grew by {:.1} MiB", mib(growth));
}

/// Holds every `Commit` from one peer until the test opens the gate; answers the rest at once.
struct Gate {
    signer: Arc<Signer>,
    held: PeerId,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl InboundHandler for Gate {
    fn handle(&self, from: PeerId, request: Request) -> Response {
        if from == self.held && matches!(request, Request::Commit { .. }) {
            let (lock, opened) = &*self.open;
            let guard = lock.lock().unwrap();
            let _unused = opened.wait_timeout_while(guard, Duration::from_secs(30), |open| !*open).unwrap();
        }
        self.signer.handle(from, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_full_queue_is_refused_at_once_and_another_peer_is_answered_meanwhile() {
    let (keys, entries) = identities(3);
    let greedy_id = entries[2].peer_id;
    let open = Arc::new((Mutex::new(false), Condvar::new()));
    let gate = open.clone();
    let victim_member = Member {
        wrap: Some(Box::new(move |signer: Arc<Signer>| {
            Arc::new(Gate { signer, held: greedy_id, open: gate }) as Arc<dyn InboundHandler>
        })),
        ..Member::honest()
    };
    let victim = start_member(keys[0].clone(), &entries, 0, 2, victim_member).await;
    let honest = start_member(keys[1].clone(), &entries, 1, 2, Member::honest()).await;
    let greedy = start_member(keys[2].clone(), &entries, 2, 2, Member::honest()).await;
    let cluster_nodes = [&victim, &honest, &greedy];
    let session = SessionId::random();
    let runs = cluster_nodes.iter().map(|n| n.dkg(session, Duration::from_secs(60), |_| {}));
    for share in futures::future::join_all(runs).await {
        share.unwrap();
    }

    // The greedy peer sends 40 requests at once; the victim is stuck on the first of them.
    let sent = 40u32;
    let mut answers = futures::stream::FuturesUnordered::new();
    for _ in 0..sent {
        let mesh = greedy.mesh().clone();
        let to = victim.peer_id();
        answers.push(async move {
            mesh.request(to, Request::Commit { session: SessionId::random(), count: 1 }).await.unwrap()
        });
    }
    let over = sent - MAX_INBOUND_PER_PEER;
    let mut queue_full = 0;
    while queue_full < over {
        match answers.next().await.unwrap() {
            Response::Overloaded(Overload::QueueFull { max, .. }) => {
                assert_eq!(max, MAX_INBOUND_PER_PEER);
                queue_full += 1;
            }
            other => panic!("the greedy peer was answered before the gate opened: {other:?}"),
        }
    }

    // Its queue is full and its requests are stuck, yet another peer is answered at once.
    let answer = honest.mesh().request(victim.peer_id(), Request::Commit { session, count: 1 }).await.unwrap();
    assert!(matches!(answer, Response::Commitments(_)), "{answer:?}");

    // Once the victim moves on, the greedy peer's queued requests are answered in turn.
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    let rest: Vec<Response> = answers.collect().await;
    assert_eq!(rest.len() as u32, MAX_INBOUND_PER_PEER);
    assert!(rest.iter().all(|r| matches!(r, Response::Commitments(_))), "{rest:?}");
}
