//! The `KeyRotation` system transaction (docs/PROTOCOL.md, Key rotation): taken only with the
//! current group's BIP-340 signature, it records the new key in the state root and fixes the
//! batch from which the new key is in force; every refusal changes nothing, and a batch carrying
//! a forged rotation does not replay. `docs/vectors/key-rotation.json` holds the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::key::TapTweak;
use bridge::batch::{BatchBuilder, ReplayError};
use bridge::codec::to_bytes;
use bridge::rotation::{KeyEpoch, KeyRotation, RotationError, key_at, latest_key, output_key_of};
use bridge::stf::{Effect, TxError};
use bridge::{AssetId, State, StateKey, SystemTx, Tx, apply};
use common::*;
use secp256k1::{Keypair, Message, SECP256K1};
use serde_json::{Value, json};

/// The new group's key, as a plain key: the test signs what a FROST group would.
fn group_keypair(byte: u8) -> Keypair {
    Keypair::from_seckey_slice(SECP256K1, &[byte; 32]).unwrap()
}

/// The key a group signs under: its key tweaked by BIP-341 with no script tree (`Q`).
fn output_signer(keypair: &Keypair) -> Keypair {
    keypair.tap_tweak(SECP256K1, None).to_keypair()
}

const ROSTER: [u8; 32] = [0x5e; 32];

/// A rotation to `new`'s key at `epoch`, signed by `signer` (BIP-340, no auxiliary randomness,
/// so the vectors are fixed) as if for the network `network` and the old key `old_q`.
fn rotation_signed(new: &Keypair, epoch: u64, signer: &Keypair, network: [u8; 32], old_q: [u8; 32]) -> KeyRotation {
    let internal_key = new.x_only_public_key().0.serialize();
    let mut rotation = KeyRotation {
        epoch,
        internal_key,
        output_key: output_key_of(&internal_key).unwrap(),
        roster_hash: ROSTER,
        signature: [0; 64],
    };
    let message = Message::from_digest(rotation.signing_message(&network, &old_q));
    rotation.signature = SECP256K1.sign_schnorr_no_aux_rand(&message, signer).serialize();
    rotation
}

/// A rotation signed as it must be: by the key in force, for this network.
fn rotation(state: &State, new: &Keypair, epoch: u64, old: &Keypair) -> KeyRotation {
    let old_q = latest_key(state).unwrap().key.output_key;
    rotation_signed(new, epoch, &output_signer(old), state.genesis_hash(), old_q)
}

fn tx(rotation: KeyRotation) -> Tx {
    Tx::System(SystemTx::KeyRotation(rotation))
}

fn refused(state: &mut State, rotation: KeyRotation, expected: RotationError) {
    let before = state.fingerprint();
    assert_eq!(apply(state, &tx(rotation)), Err(TxError::KeyRotation(expected)));
    assert_eq!(state.fingerprint(), before, "a refused rotation changed the state");
}

fn seal(state: &mut State, txs: Vec<Tx>) -> bridge::SignedBatch {
    let mut builder = BatchBuilder::new(state);
    for tx in txs {
        builder.apply(state, tx).unwrap();
    }
    let timestamp = 1_764_000_000_000 + state.head().next_number;
    builder.seal(state, timestamp, &coordinator_key()).unwrap().batch
}

#[test]
fn a_rotation_signed_by_the_old_group_takes_effect_from_the_next_batch() {
    let mut state = genesis();
    let genesis_key = latest_key(&state).unwrap();
    assert_eq!(genesis_key.epoch, 0);
    assert_eq!(genesis_key.key.internal_key, btc_vault().group_key);
    let first = seal(&mut state, vec![deposit(wallet(1).address(), AssetId::Btc, 50_000, 1)]);

    let new = group_keypair(0x08);
    let r = rotation(&state, &new, 1, &vault_keypair());
    let mut builder = BatchBuilder::new(&state);
    let receipt = builder.apply(&mut state, tx(r.clone())).unwrap();
    assert_eq!(receipt.effect, Effect::KeyRotated { epoch: 1, from_batch: 3 });
    let second = builder.seal(&mut state, 1_764_000_000_002, &coordinator_key()).unwrap().batch;

    // Batch 2 (which carries it) is still under the old key; batch 3 on is under the new one.
    assert_eq!(key_at(&state, 2).unwrap().epoch, 0);
    let active = key_at(&state, 3).unwrap();
    assert_eq!(active.epoch, 1);
    assert_eq!(
        active.key,
        KeyEpoch { internal_key: r.internal_key, output_key: r.output_key, roster_hash: ROSTER, from_batch: 3 }
    );
    assert_eq!(latest_key(&state).unwrap(), active);

    // The new key is in the state root, with a proof a light client can check.
    let proof = state.prove(&StateKey::GroupKey(1)).unwrap();
    proof.verify(second.header.post_state_root).unwrap();
    assert_eq!(proof.value, Some(to_bytes(&active.key)));
    assert!(state.committed_entries().iter().any(|(key, _)| *key == StateKey::GroupKey(1)));

    // A replayer agrees, and the next rotation must be signed by the new key, not the old one.
    let mut replayer = genesis();
    bridge::replay(&mut replayer, &first).unwrap();
    bridge::replay(&mut replayer, &second).unwrap();
    assert_eq!(replayer.fingerprint(), state.fingerprint());
    let newer = group_keypair(0x09);
    let by_old = rotation_signed(&newer, 2, &output_signer(&vault_keypair()), state.genesis_hash(), r.output_key);
    refused(&mut state, by_old, RotationError::NotSignedByGroup { epoch: 1, current: hex::encode(r.output_key) });
    let by_new = rotation(&state, &newer, 2, &new);
    assert_eq!(apply(&mut state, &tx(by_new)).unwrap().effect, Effect::KeyRotated { epoch: 2, from_batch: 4 });
}

#[test]
fn a_rotation_without_the_old_groups_signature_is_refused_and_changes_nothing() {
    let mut state = genesis();
    let old = vault_keypair();
    let new = group_keypair(0x08);
    let network = state.genesis_hash();
    let old_q = latest_key(&state).unwrap().key.output_key;
    let not_signed = || RotationError::NotSignedByGroup { epoch: 0, current: hex::encode(old_q) };

    // Signed by the new group itself, by the old group's untweaked key P, for another network,
    // or over another old key: none is the old group's signature over this message.
    refused(&mut state, rotation_signed(&new, 1, &output_signer(&new), network, old_q), not_signed());
    refused(&mut state, rotation_signed(&new, 1, &old, network, old_q), not_signed());
    refused(&mut state, rotation_signed(&new, 1, &output_signer(&old), [0x42; 32], old_q), not_signed());
    refused(&mut state, rotation_signed(&new, 1, &output_signer(&old), network, [0x42; 32]), not_signed());
    // A signature over other contents.
    let mut edited = rotation(&state, &new, 1, &old);
    edited.roster_hash[0] ^= 1;
    refused(&mut state, edited, not_signed());
    let mut garbage = rotation(&state, &new, 1, &old);
    garbage.signature = [0xff; 64];
    refused(&mut state, garbage, not_signed());

    // Malformed rotations, even if signed.
    let r = rotation(&state, &new, 0, &old);
    refused(&mut state, r, RotationError::WrongEpoch { expected: 1, got: 0 });
    let r = rotation(&state, &new, 2, &old);
    refused(&mut state, r, RotationError::WrongEpoch { expected: 1, got: 2 });
    let mut mismatched = rotation(&state, &new, 1, &old);
    mismatched.output_key = mismatched.internal_key;
    refused(&mut state, mismatched, RotationError::OutputKeyMismatch);
    let mut off_curve = rotation(&state, &new, 1, &old);
    off_curve.internal_key = [0xff; 32];
    refused(&mut state, off_curve, RotationError::BadInternalKey);
    let r = rotation(&state, &old, 1, &old);
    refused(&mut state, r, RotationError::SameKey);

    // Two rotations in one batch: the second waits for the first to be in force.
    let r = rotation(&state, &new, 1, &old);
    apply(&mut state, &tx(r)).unwrap();
    let r = rotation(&state, &group_keypair(0x09), 2, &new);
    refused(&mut state, r, RotationError::Pending { pending: 1, from_batch: 2 });
}

#[test]
fn a_network_without_a_group_key_takes_no_rotation() {
    let mut params = params();
    params.btc_vault = None;
    let mut state = State::genesis(params);
    let r = rotation_signed(&group_keypair(8), 1, &output_signer(&vault_keypair()), state.genesis_hash(), [0; 32]);
    refused(&mut state, r, RotationError::NoGroupKey);
}

#[test]
fn a_batch_with_a_forged_rotation_does_not_replay() {
    let mut coordinator = genesis();
    let first = seal(&mut coordinator, vec![deposit(wallet(1).address(), AssetId::Eth, 1_000, 1)]);
    let old_q = latest_key(&coordinator).unwrap().key.output_key;
    let network = coordinator.genesis_hash();
    let honest = rotation(&coordinator, &group_keypair(8), 1, &vault_keypair());
    let mut batch = seal(&mut coordinator, vec![tx(honest)]);
    // What a coordinator would publish to move the key without the watchmen: the same rotation
    // signed by a key of its own, in a batch it signs.
    let forged = rotation_signed(&group_keypair(8), 1, &output_signer(&group_keypair(8)), network, old_q);
    batch.body = vec![bridge::BatchTx::System(SystemTx::KeyRotation(forged))];
    batch.header.txs_root = bridge::batch::txs_root(&batch.body);
    batch.signature = coordinator_key().sign(&batch.header.hash());

    let mut replayer = genesis();
    bridge::replay(&mut replayer, &first).unwrap();
    let before = replayer.fingerprint();
    match bridge::replay(&mut replayer, &batch).unwrap_err() {
        ReplayError::InvalidTx { number: 2, index: 0, error: TxError::KeyRotation(e), .. } => {
            assert_eq!(e.code(), "rotation_not_signed_by_group")
        }
        other => panic!("expected an invalid key rotation, got {other:?}"),
    }
    assert_eq!(replayer.fingerprint(), before, "a batch that does not replay changes nothing");
}

fn hex_of(bytes: impl AsRef<[u8]>) -> String {
    hex0x(bytes)
}

/// The vector: the genesis key's secret (the common vault key), the new key's, the message, the
/// signature, the transaction's bytes and id, and the state entry it writes.
fn vectors() -> Value {
    let mut state = genesis();
    seal(&mut state, vec![deposit(wallet(1).address(), AssetId::Btc, 50_000, 1)]);
    let old = vault_keypair();
    let new = group_keypair(0x08);
    let old_q = latest_key(&state).unwrap().key.output_key;
    let r = rotation(&state, &new, 1, &old);
    let place = state.next_place();
    let system = SystemTx::KeyRotation(r.clone());
    let id = system.id(place);
    let receipt = apply(&mut state, &tx(r.clone())).unwrap();
    assert_eq!(receipt.tx_hash, id);
    let entry = key_at(&state, 3).unwrap().key;
    json!({
        "about": "Key rotation, version 1 (docs/PROTOCOL.md, Key rotation). Checked by bridge/tests/rotation.rs.",
        "network": hex_of(state.genesis_hash()),
        "old_group_secret": hex_of(old.secret_bytes()),
        "old_internal_key": hex_of(btc_vault().group_key),
        "old_output_key": hex_of(old_q),
        "new_group_secret": hex_of(new.secret_bytes()),
        "rotation": r,
        "signing_message": hex_of(r.signing_message(&state.genesis_hash(), &old_q)),
        "system_tx_borsh": hex_of(to_bytes(&system)),
        "batch": place.batch,
        "index": place.index,
        "id": hex_of(id),
        "state_key_borsh": hex_of(to_bytes(&StateKey::GroupKey(1))),
        "state_value_borsh": hex_of(to_bytes(&entry)),
        "from_batch": entry.from_batch,
    })
}

#[test]
fn the_vectors_are_what_the_document_says() {
    let stored = stored_vectors("key-rotation.json", &vectors());
    // Recompute the rules from the file alone: the tagged message and the BIP-340 check.
    let network = unhex(&stored["network"]);
    let old_q = unhex(&stored["old_output_key"]);
    let r = &stored["rotation"];
    let message = bridge::hashing::tagged_hash(
        "bridge/key-rotation/v1",
        &[
            &network,
            &r["epoch"].as_u64().unwrap().to_le_bytes(),
            &old_q,
            &unhex(&r["internal_key"]),
            &unhex(&r["output_key"]),
            &unhex(&r["roster_hash"]),
        ],
    );
    assert_eq!(hex_of(message), stored["signing_message"].as_str().unwrap());
    let signature = secp256k1::schnorr::Signature::from_slice(&unhex(&r["signature"])).unwrap();
    let key = secp256k1::XOnlyPublicKey::from_slice(&old_q).unwrap();
    SECP256K1.verify_schnorr(&signature, &Message::from_digest(message), &key).unwrap();
    let decoded: SystemTx = bridge::codec::from_bytes(&unhex(&stored["system_tx_borsh"])).unwrap();
    assert!(matches!(decoded, SystemTx::KeyRotation(_)));
}
