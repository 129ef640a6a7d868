//! Signed checkpoints with real watchmen: three watchmen (2-of-3, a real DKG over libp2p on
//! 127.0.0.1), each replaying the DA with its own follower, sign "batch 4 has header H" only
//! as their own replay has it; a checkpoint with another header, or of a batch they have not
//! replayed, is refused by their policies. A confirmer joins from the signed file: a forged
//! file (another key, or an edited batch) is refused before anything is taken, and a genuine
//! one for another history than the DA's is refused by the fast sync.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use bridge::batch::BatchBuilder;
use bridge::checkpoint::{CHECKPOINT_VERSION, SignedCheckpoint, checkpoint_message};
use bridge::{SignedBatch, Snapshot, State};
use chains::da::{DataAvailability, DirDa};
use common::*;
use confirmer::deposits::DepositVerifiers;
use confirmer::fast_sync::{CheckpointFileError, FastSyncError, FastSynced, fast_sync, signed_checkpoint};
use confirmer::follower::Follower;
use confirmer::store::ConfirmerStore;
use confirmer::watchman::{CheckpointWriter, ReplayPolicy, SIGN_CHECKPOINT, SettlementBook, Watchman, sign_checkpoint};
use tss::{GroupKey, KeyPath, SigningContext, SigningRequest, TssNode};

/// Six empty batches stamped from `first_ms`: honest batches that need no L1 to be hard-final.
fn empty_history(first_ms: u64) -> (Vec<SignedBatch>, Vec<Snapshot>) {
    let mut state = State::genesis(params());
    let (mut batches, mut states) = (Vec::new(), Vec::new());
    for n in 1..=6 {
        batches.push(BatchBuilder::new(&state).seal(&mut state, first_ms + n, &key()).unwrap().batch);
        states.push(state.snapshot().unwrap());
    }
    (batches, states)
}

async fn da_with(dir: &std::path::Path, batches: &[SignedBatch]) -> DirDa {
    let da = DirDa::open(dir, params().coordinator_key).unwrap();
    for batch in batches {
        da.publish(batch).await.unwrap();
    }
    da
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchmen_sign_only_the_checkpoint_their_replay_has_and_a_forged_one_is_refused() {
    let identities: Vec<_> = (0..3).map(|_| libp2p::identity::Keypair::generate_ed25519()).collect();
    let shares = dkg(&identities).await;
    let group = GroupKey::of(&shares[0].public).unwrap();
    let p = params();
    let genesis = p.genesis_hash();

    let dir = tempfile::tempdir().unwrap();
    let (batches, states) = empty_history(1_000);
    let da = da_with(&dir.path().join("da"), &batches).await;
    let entries = entries(&identities);
    let mut watchmen = Vec::new();
    for (i, (identity, share)) in identities.iter().zip(shares).enumerate() {
        let url = format!("sqlite://{}", dir.path().join(format!("watchman-{i}.db")).display());
        let store = ConfirmerStore::open(&url).await.unwrap();
        let follower = Follower::open(Arc::new(da.clone()), store, p.clone(), DepositVerifiers::none()).await.unwrap();
        let book = SettlementBook::default();
        let policy = ReplayPolicy::new(book.clone(), None).with_checkpoints(genesis);
        let node = TssNode::start(tss_config(identity, &entries, Some(share), Arc::new(policy))).await.unwrap();
        watchmen.push(Watchman::new(follower, book, node, None));
    }
    for watchman in &mut watchmen {
        while watchman.step(16).await.unwrap().replayed > 0 {}
        assert_eq!(watchman.book().hard_final(), 6);
    }

    // The genuine checkpoint: signed, and it verifies under the group's key for this network.
    let header_4 = batches[3].hash();
    let signed = sign_checkpoint(watchmen[0].tss(), watchmen[0].book(), &p.name, genesis, 4).await.unwrap();
    assert_eq!((signed.number, signed.header_hash, signed.group_key), (4, header_4, group.output_key));
    assert_eq!(signed.verify(&p, &group.output_key), Ok((4, header_4)));

    // A watchman asking the others to vouch for another header at batch 4, or for a batch none
    // has replayed: both refused by their policies, so no signature comes back.
    let ask = |number: u64, header: [u8; 32]| SigningRequest {
        message: checkpoint_message(&genesis, number, &header).to_vec(),
        key_path: KeyPath::Vault,
        context: SigningContext {
            chain: "bridge".into(),
            batch: Some(number),
            purpose: SIGN_CHECKPOINT.into(),
            detail: header.to_vec(),
        },
    };
    let other_header = batches[4].hash();
    assert!(watchmen[0].tss().sign(vec![ask(4, other_header)]).await.is_err(), "a mismatched header was signed");
    assert!(watchmen[0].tss().sign(vec![ask(9, [7; 32])]).await.is_err(), "an unreplayed batch was signed");
    // The right header under a message of another network: refused too.
    let mut other = ask(4, header_4);
    other.message = checkpoint_message(&[0xee; 32], 4, &header_4).to_vec();
    assert!(watchmen[0].tss().sign(vec![other]).await.is_err(), "another network's checkpoint was signed");

    // The file, as a watchman's [checkpoints] writes it.
    let files = dir.path().join("checkpoints");
    let mut writer = CheckpointWriter { dir: files.clone(), every_batches: 4, last: 0 };
    assert_eq!(writer.due(watchmen[0].book().hard_final()), Some(4));
    let path = writer.write(&signed).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(files.join("latest.json")).unwrap());
    let key = hex::encode(group.output_key);
    let checkpoint = signed_checkpoint(&path, &p, Some(&key)).unwrap();
    assert_eq!((checkpoint.number, checkpoint.header_hash), (4, header_4));

    // Forged files are refused before anything is read from the DA.
    let edited = dir.path().join("edited.json");
    let moved = SignedCheckpoint { number: 5, header_hash: other_header, ..signed.clone() };
    std::fs::write(&edited, serde_json::to_vec(&moved).unwrap()).unwrap();
    let refused = signed_checkpoint(&edited, &p, Some(&key)).unwrap_err();
    assert!(matches!(refused, CheckpointFileError::Refused { .. }), "{refused}");
    assert!(refused.to_string().contains("does not verify"), "{refused}");
    let stranger = bitcoin::secp256k1::Keypair::from_seckey_slice(bitcoin::secp256k1::SECP256K1, &[0x99; 32]).unwrap();
    let message = checkpoint_message(&genesis, 4, &header_4);
    let forged = SignedCheckpoint {
        version: CHECKPOINT_VERSION,
        network: p.name.clone(),
        number: 4,
        header_hash: header_4,
        group_key: group.output_key,
        signature: bitcoin::secp256k1::SECP256K1
            .sign_schnorr_no_aux_rand(&bitcoin::secp256k1::Message::from_digest(message), &stranger)
            .serialize(),
    };
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let refused = signed_checkpoint(&forged_path, &p, Some(&key)).unwrap_err();
    assert!(refused.to_string().contains("does not verify"), "{refused}");
    let refused = signed_checkpoint(&path, &p, Some(&hex::encode(stranger.x_only_public_key().0.serialize())));
    assert!(refused.unwrap_err().to_string().contains("not the watchmen's group key"));

    // The genuine checkpoint, and the DA's snapshot at batch 4: a new confirmer joins there.
    let snapshot = &states[3];
    da.publish_snapshot(4, snapshot.state_root, &snapshot.encode()).await.unwrap();
    let joining = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("joining.db").display())).await.unwrap();
    let synced = fast_sync(&da, &joining, &p, checkpoint).await.unwrap();
    assert!(matches!(synced, FastSynced::FromSnapshot { number: 4, .. }), "{synced:?}");
    let mut joined = Follower::open(Arc::new(da.clone()), joining, p.clone(), DepositVerifiers::none()).await.unwrap();
    assert_eq!(joined.restored_from(), 4);
    catch_up(&mut joined).await;
    assert_eq!(joined.state().state_root(), states[5].state_root, "it follows on to the same state");

    // The same genuine checkpoint against another history's DA (the coordinator published
    // another batch 4 there): refused, nothing taken.
    let (elsewhere, _) = empty_history(2_000);
    let other_da = da_with(&dir.path().join("other-da"), &elsewhere).await;
    let store = ConfirmerStore::open(&format!("sqlite://{}", dir.path().join("other.db").display())).await.unwrap();
    let refused = fast_sync(&other_da, &store, &p, checkpoint).await.unwrap_err();
    assert!(matches!(refused, FastSyncError::WrongBatch { number: 4, .. }), "{refused}");
    assert!(store.replayed_after(0, 1).await.unwrap().is_empty(), "nothing was taken");
}
