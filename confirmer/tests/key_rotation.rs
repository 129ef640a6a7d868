//! A key rotation in the replayed history (docs/PROTOCOL.md, Key rotation), with real FROST
//! groups: two DKGs over libp2p on 127.0.0.1 (the old set and the new one). The old group's
//! signature over the `KeyRotation` makes it part of every replayer's history; a rotation the
//! old group did not sign (one the coordinator signed itself), or a later one signed by the
//! departed key instead of the new one, is an invalid transaction: the confirmer raises the
//! `invalid_tx` alarm at that batch, replays nothing past it, and keeps evidence that checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::rotation::{KeyRotation, key_at, output_key_of};
use bridge::{BatchBuilder, BatchTx, BtcVaultParams, NetworkParams, SignedBatch, State, SystemTx, Tx};
use chains::da::{DataAvailability, DirDa};
use common::*;
use confirmer::alarm::AlarmKind;
use confirmer::deposits::DepositVerifiers;
use confirmer::evidence::Evidence;
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use tss::{ApproveAll, GroupKey, KeyPath, SigningContext, SigningRequest, TssNode};

/// One group: its key and its running signing nodes (which sign what they are asked: the
/// operators' approvals are not what this test is about).
struct Group {
    key: GroupKey,
    nodes: Vec<TssNode>,
}

impl Group {
    async fn keygen(n: usize, t: u16) -> Self {
        let identities: Vec<_> = (0..n).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
        let shares = dkg_with_threshold(&identities, t).await;
        let key = GroupKey::of(&shares[0].public).unwrap();
        let running = entries(&identities);
        let mut nodes = Vec::new();
        for (identity, share) in identities.iter().zip(shares) {
            let policy = Arc::new(ApproveAll);
            nodes.push(TssNode::start(tss_config(identity, &running, Some(share), policy)).await.unwrap());
        }
        Group { key, nodes }
    }

    /// A threshold signature under the group's output key `Q`.
    async fn sign(&self, message: [u8; 32]) -> [u8; 64] {
        let request = SigningRequest {
            message: message.to_vec(),
            key_path: KeyPath::Vault,
            context: SigningContext {
                chain: "test".into(),
                batch: None,
                purpose: "key-rotation".into(),
                detail: Vec::new(),
            },
        };
        let outcome = self.nodes[0].sign(vec![request]).await.unwrap();
        assert_eq!(outcome.signatures[0].key, self.key.output_key, "FROST signs under Q");
        outcome.signatures[0].signature
    }
}

fn network(old: &GroupKey) -> NetworkParams {
    let mut p = params();
    p.btc_vault = Some(BtcVaultParams { group_key: old.internal_key, min_fee_rate: 1, max_fee_rate: 100 });
    p
}

/// The rotation to `new`, signed over the message for `signer_q` by `signer`.
async fn rotation(state: &State, epoch: u64, new: &GroupKey, signer_q: [u8; 32], signer: &Group) -> KeyRotation {
    let mut r = KeyRotation {
        epoch,
        internal_key: new.internal_key,
        output_key: new.output_key,
        roster_hash: [epoch as u8; 32],
        signature: [0; 64],
    };
    r.signature = signer.sign(r.signing_message(&state.genesis_hash(), &signer_q)).await;
    r
}

fn seal(state: &mut State, txs: Vec<Tx>) -> SignedBatch {
    let mut builder = BatchBuilder::new(state);
    for tx in txs {
        builder.apply(state, tx).unwrap();
    }
    let timestamp = 1_764_000_000_000 + state.head().next_number;
    builder.seal(state, timestamp, &key()).unwrap().batch
}

/// Publishes `batches`, follows them, and expects the `invalid_tx` alarm at the last one with
/// evidence that checks offline.
async fn expect_invalid_tx_alarm(p: &NetworkParams, batches: &[SignedBatch]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    for batch in batches {
        da.publish(batch).await.unwrap();
    }
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = ConfirmerStore::open(&url).await.unwrap();
    let mut confirmer = Follower::open(Arc::new(da.clone()), store, p.clone(), DepositVerifiers::none()).await.unwrap();
    catch_up(&mut confirmer).await;
    let status = confirmer.status();
    let last = batches.len() as u64;
    assert_eq!(status.replayed, last - 1, "nothing from the bad batch on is replayed");
    assert_eq!(status.alarms.len(), 1, "{:?}", status.alarms);
    assert_eq!((status.alarms[0].kind, status.alarms[0].number), (AlarmKind::InvalidTx, last));
    let detail = status.alarms[0].detail.clone();
    assert!(detail.contains("not signed by the current group key"), "{detail}");
    let store = ConfirmerStore::open(&url).await.unwrap();
    let (_, evidence) = store.alarms().await.unwrap().remove(0);
    let explanation = Evidence::from_json(&evidence).unwrap().check().unwrap();
    assert!(explanation.contains(&last.to_string()), "{explanation}");
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_old_groups_signature_moves_the_key_and_anything_else_raises_an_alarm() {
    // The old set (2-of-3) and the new one (3-of-4), each from its own DKG.
    let old = Group::keygen(3, 2).await;
    let new = Group::keygen(4, 3).await;
    assert_eq!(output_key_of(&old.key.internal_key), Some(old.key.output_key));
    let p = network(&old.key);

    // The honest history: a deposit, then the rotation signed by the old group.
    let mut coordinator = State::genesis(p.clone());
    let first = seal(&mut coordinator, vec![deposit(wallet(1).address(), 1_000, 1)]);
    let honest = rotation(&coordinator, 1, &new.key, old.key.output_key, &old).await;
    let second = seal(&mut coordinator, vec![Tx::System(SystemTx::KeyRotation(honest))]);
    assert_eq!(key_at(&coordinator, 3).unwrap().key.output_key, new.key.output_key);

    // A confirmer replays it without an alarm and agrees on the new key and from when.
    let dir = tempfile::tempdir().unwrap();
    let da = DirDa::open(dir.path().join("da"), p.coordinator_key).unwrap();
    da.publish(&first).await.unwrap();
    da.publish(&second).await.unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = ConfirmerStore::open(&url).await.unwrap();
    let mut confirmer = Follower::open(Arc::new(da.clone()), store, p.clone(), DepositVerifiers::none()).await.unwrap();
    catch_up(&mut confirmer).await;
    assert_eq!(confirmer.status().replayed, 2);
    assert!(confirmer.status().alarms.is_empty(), "{:?}", confirmer.status().alarms);
    let active = key_at(confirmer.state(), 3).unwrap();
    assert_eq!((active.epoch, active.key.from_batch), (1, 3));
    assert_eq!(active.key.internal_key, new.key.internal_key);
    assert_eq!(confirmer.state().state_root(), second.header.post_state_root);

    // After the rotation the departed key moves nothing: a rotation to epoch 2 signed by the old
    // group (over the message it would have to sign) is refused by every replayer.
    let third_key = Group::keygen(3, 2).await;
    let mut third = seal(&mut coordinator, vec![deposit(wallet(2).address(), 1_000, 2)]);
    let by_departed = rotation(&coordinator, 2, &third_key.key, old.key.output_key, &old).await;
    third.body = vec![BatchTx::System(SystemTx::KeyRotation(by_departed))];
    let third = resign(third);
    expect_invalid_tx_alarm(&p, &[first.clone(), second, third]).await;

    // Without the watchmen: the coordinator signs a rotation to a key of its own choosing.
    let mut coordinator = State::genesis(p.clone());
    let first = seal(&mut coordinator, vec![deposit(wallet(1).address(), 1_000, 1)]);
    let mut forged_batch = seal(&mut coordinator, vec![deposit(wallet(2).address(), 1_000, 2)]);
    let mut forged = KeyRotation {
        epoch: 1,
        internal_key: third_key.key.internal_key,
        output_key: third_key.key.output_key,
        roster_hash: [1; 32],
        signature: [0; 64],
    };
    forged.signature = key().sign(&forged.signing_message(&coordinator.genesis_hash(), &old.key.output_key));
    forged_batch.body = vec![BatchTx::System(SystemTx::KeyRotation(forged))];
    let detail = expect_invalid_tx_alarm(&p, &[first, resign(forged_batch)]).await;
    assert!(detail.contains("epoch 0"), "{detail}");
}
