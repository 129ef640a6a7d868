//! Batches: sealing, the codec, replay from genesis, and every way a batch can be wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::{BatchBuilder, Equivocation, EquivocationError, ReplayError, RootKind, replay};
use bridge::codec::{CodecError, decode_batch, encode_batch};
use bridge::commitment::empty_root;
use bridge::state::AccountEntry;
use bridge::withdrawals::verify_eth_proof;
use bridge::{AssetId, SignedBatch, State, StateKey, Tx};
use common::*;

/// Three batches: deposits, transfers, withdrawals on both chains.
fn history() -> (State, Vec<SignedBatch>) {
    let mut state = genesis();
    let key = coordinator_key();
    let (alice, bob) = (wallet(1), wallet(2));
    let rounds: Vec<Vec<Tx>> = vec![
        vec![
            deposit(alice.address(), AssetId::Eth, 10_000, 1),
            deposit(alice.address(), AssetId::Btc, 500_000, 2),
            deposit(bob.address(), AssetId::Erc20(TOKEN), 77, 3),
        ],
        vec![
            transfer(&alice, bob.address(), AssetId::Eth, 4_000, 3, 0),
            transfer(&bob, alice.address(), AssetId::Erc20(TOKEN), 7, 0, 0),
        ],
        vec![
            withdraw(&bob, AssetId::Eth, 1_000, 1, &alice.address().to_string(), 1),
            withdraw(&alice, AssetId::Btc, 200_000, 0, REGTEST_P2TR, 1),
            withdraw(&alice, AssetId::Erc20(TOKEN), 7, 0, &bob.address().to_string(), 2),
        ],
    ];
    let mut batches = Vec::new();
    for (i, txs) in rounds.into_iter().enumerate() {
        let mut builder = BatchBuilder::new(&state);
        for tx in txs {
            builder.apply(&mut state, tx).unwrap();
        }
        batches.push(builder.seal(&mut state, 1_000 * (i as u64 + 1), &key).unwrap().batch);
    }
    (state, batches)
}

#[test]
fn replay_from_genesis_reaches_the_same_state() {
    let (coordinator, batches) = history();
    let mut follower = genesis();
    for batch in &batches {
        let decoded = decode_batch(&encode_batch(batch)).unwrap();
        assert_eq!(&decoded, batch);
        replay(&mut follower, &decoded).unwrap();
    }
    assert_eq!(follower.state_root(), coordinator.state_root());
    assert_eq!(follower.fingerprint(), coordinator.fingerprint());
    assert_ne!(follower.state_root(), empty_root());
}

#[test]
fn withdrawals_are_committed_with_proofs() {
    let (_, batches) = history();
    let mut follower = genesis();
    let mut last = None;
    for batch in &batches {
        last = Some(replay(&mut follower, batch).unwrap());
    }
    let replayed = last.unwrap();
    let header = &batches[2].header;
    let eth = &replayed.settlement.eth;
    assert_eq!(eth.withdrawals().len(), 2);
    assert_eq!(eth.root(), header.eth_withdrawals_root);
    for w in eth.withdrawals() {
        assert!(verify_eth_proof(&eth.proof(w.index).unwrap(), eth.root(), w.leaf()));
    }
    assert_eq!(eth.withdrawals()[1].token, TOKEN);
    assert_eq!(replayed.settlement.btc.len(), 1);
    assert_eq!(header.btc_withdrawals.count, 1);
    assert_eq!(header.btc_withdrawals.total_sat, 200_000);
}

#[test]
fn state_proofs_check_against_the_header_root() {
    let (state, batches) = history();
    let root = batches[2].header.post_state_root;
    let alice = wallet(1).address();
    let proof = state.prove(&StateKey::Account(alice)).unwrap();
    proof.verify(root).unwrap();
    // One proof holds the account's nonce and every balance.
    let entry = AccountEntry::decode(proof.value.as_deref().unwrap()).unwrap();
    assert_eq!(entry.balance(&AssetId::Eth), state.balance(&alice, &AssetId::Eth));
    assert_eq!(entry.nonce, state.nonce(&alice));
    assert_eq!(Some(entry.clone()), state.account_entry(&alice));
    // Exclusion: an account that never existed.
    let absent = state.prove(&StateKey::Account(wallet(42).address())).unwrap();
    assert!(absent.value.is_none());
    absent.verify(root).unwrap();
    // A lie about the value, and a proof against another root, are refused.
    let mut lie = proof.clone();
    let mut richer = entry;
    richer.balances[0].1 = richer.balances[0].1.checked_add(bridge::Amount::new(1)).unwrap();
    lie.value = Some(bridge::codec::to_bytes(&richer));
    assert!(lie.verify(root).is_err());
    assert!(proof.verify(batches[1].header.post_state_root).is_err());
    // It survives JSON, as an API serves it.
    let json = serde_json::to_string(&proof).unwrap();
    serde_json::from_str::<bridge::commitment::StateProof>(&json).unwrap().verify(root).unwrap();
}

/// Replays `batches[..n]`, then expects `bad` to fail with `check`, leaving the state as it was.
fn refuses(n: usize, bad: &SignedBatch, check: impl Fn(&ReplayError) -> bool) {
    let (_, batches) = history();
    let mut follower = genesis();
    for batch in &batches[..n] {
        replay(&mut follower, batch).unwrap();
    }
    let before = follower.fingerprint();
    let err = replay(&mut follower, bad).unwrap_err();
    assert!(check(&err), "unexpected error: {err}");
    assert_eq!(follower.fingerprint(), before, "a refused batch changed the state");
    // And the honest batch still replays afterwards.
    replay(&mut follower, &batches[n]).unwrap();
}

/// Re-signs a doctored batch with the real coordinator key, its `txs_root` matching the doctored
/// body: what a cheating coordinator does.
fn resign(mut batch: SignedBatch) -> SignedBatch {
    batch.header.txs_root = bridge::batch::txs_root(&batch.body);
    batch.signature = coordinator_key().sign(&batch.header.hash());
    batch
}

#[test]
fn a_body_edited_after_signing_is_refused_as_not_the_coordinators() {
    let (_, batches) = history();
    // A user signature swapped for another valid-looking one: the header's txs_root covers the
    // authorizations, so the edit shows before any transaction is looked at.
    let mut bad = batches[1].clone();
    let other = batches[1].body.iter().rev().find_map(|tx| match tx {
        bridge::BatchTx::User(user) => Some(user.auth.clone()),
        _ => None,
    });
    let bridge::BatchTx::User(user) = &mut bad.body[0] else { panic!("expected a user tx") };
    user.auth = other.unwrap();
    assert_ne!(bad.body, batches[1].body, "the test needs two different signatures");
    refuses(1, &bad, |e| matches!(e, ReplayError::RootMismatch { root: RootKind::Txs, .. }));
    assert_eq!(bridge::batch::txs_root(&batches[1].body), batches[1].header.txs_root);
}

#[test]
fn a_wrong_state_root_is_refused() {
    let (_, batches) = history();
    let mut bad = batches[1].clone();
    bad.header.post_state_root[0] ^= 1;
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::RootMismatch { root: RootKind::PostState, .. }));
}

#[test]
fn a_doctored_withdrawals_root_is_refused() {
    let (_, batches) = history();
    let mut bad = batches[2].clone();
    bad.header.eth_withdrawals_root[5] ^= 1;
    refuses(2, &resign(bad), |e| matches!(e, ReplayError::RootMismatch { root: RootKind::EthWithdrawals, .. }));
    let mut bad = batches[2].clone();
    bad.header.btc_withdrawals.total_sat += 1;
    refuses(2, &resign(bad), |e| matches!(e, ReplayError::RootMismatch { root: RootKind::BtcWithdrawals, .. }));
}

#[test]
fn a_forged_user_signature_is_refused() {
    let (_, batches) = history();
    let mut bad = batches[1].clone();
    let bridge::BatchTx::User(user) = &mut bad.body[0] else { panic!("expected a user tx") };
    let bridge::tx::UserTx::Transfer(t) = &mut user.tx else { panic!("expected a transfer") };
    t.amount = bridge::Amount(9_000);
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::InvalidTx { index: 0, .. }));
}

#[test]
fn an_invalid_tx_late_in_a_batch_rolls_back_the_earlier_ones() {
    let (_, batches) = history();
    let mut bad = batches[1].clone();
    // Duplicate the first transfer: its nonce is then replayed.
    let first = bad.body[0].clone();
    bad.body.push(first);
    bad.header.tx_count += 1;
    refuses(1, &resign(bad), |e| {
        matches!(e, ReplayError::InvalidTx { index: 2, error: bridge::TxError::NonceReplayed { .. }, .. })
    });
}

#[test]
fn signature_link_number_and_count_are_checked() {
    let (_, batches) = history();
    let mut bad = batches[1].clone();
    bad.signature[10] ^= 1;
    refuses(1, &bad, |e| matches!(e, ReplayError::BadSignature { number: 2 }));

    let mut bad = batches[1].clone();
    bad.header.prev_hash = [9; 32];
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::BrokenLink { .. }));

    refuses(1, &batches[2], |e| matches!(e, ReplayError::UnexpectedNumber { expected: 2, got: 3 }));

    let mut bad = batches[1].clone();
    bad.header.tx_count = 5;
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::TxCountMismatch { .. }));

    let mut bad = batches[1].clone();
    bad.header.timestamp = 1;
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::TimestampRegressed { .. }));

    let mut bad = batches[1].clone();
    bad.header.network = [1; 32];
    refuses(1, &resign(bad), |e| matches!(e, ReplayError::WrongNetwork { .. }));

    // Versions 1 and 2 are state commitment 1's: decoded, never replayed.
    for version in [1, 2, 4] {
        let mut bad = batches[1].clone();
        bad.header.version = version;
        refuses(1, &resign(bad), |e| matches!(e, ReplayError::UnsupportedVersion(v) if *v == version));
    }
}

#[test]
fn equivocation_is_provable_offline() {
    let (_, batches) = history();
    let honest = batches[1].signed_header();
    let mut other = batches[1].clone();
    other.header.timestamp += 1;
    let other = resign(other).signed_header();
    let key = coordinator_key().public_key();
    let evidence = Equivocation::new(honest.clone(), other.clone(), &key).unwrap();
    evidence.verify(&key).unwrap();
    assert_eq!(Equivocation::new(honest.clone(), honest.clone(), &key), Err(EquivocationError::SameHeader));
    assert_eq!(
        Equivocation::new(honest.clone(), batches[2].signed_header(), &key),
        Err(EquivocationError::DifferentNumbers(2, 3))
    );
    let mut unsigned = other;
    unsigned.signature = [0; 64];
    assert_eq!(Equivocation::new(honest, unsigned, &key), Err(EquivocationError::BadSignature("second")));
}

#[test]
fn the_codec_is_strict() {
    let (_, batches) = history();
    let bytes = encode_batch(&batches[0]);
    assert_eq!(decode_batch(&bytes[..3]), Err(CodecError::TooShort));
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert_eq!(decode_batch(&magic), Err(CodecError::BadMagic));
    let mut version = bytes.clone();
    version[4] = 9;
    assert_eq!(decode_batch(&version), Err(CodecError::UnsupportedVersion(9)));
    assert!(matches!(decode_batch(&bytes[..bytes.len() - 4]), Err(CodecError::Decompress(_))));
    // Trailing bytes inside the compressed payload.
    let mut raw = bridge::codec::to_bytes(&batches[0]);
    raw.push(0);
    let mut padded = bytes[..6].to_vec();
    padded.extend(zstd::bulk::compress(&raw, 3).unwrap());
    assert!(matches!(decode_batch(&padded), Err(CodecError::Decode(_))));
    // A non-canonical boolean (y_parity = 2) in a user signature.
    let user_batch = bridge::codec::to_bytes(&batches[1]);
    let mut tampered = user_batch.clone();
    let position = find_y_parity(&batches[1], &user_batch);
    tampered[position] = 2;
    let mut envelope = bytes[..6].to_vec();
    envelope.extend(zstd::bulk::compress(&tampered, 3).unwrap());
    assert!(matches!(decode_batch(&envelope), Err(CodecError::Decode(_))));
}

/// The offset of the first user signature's `y_parity` byte in the borsh encoding.
fn find_y_parity(batch: &SignedBatch, encoded: &[u8]) -> usize {
    let bridge::BatchTx::User(user) = &batch.body[0] else { panic!("expected a user tx") };
    let bridge::signature::Authorization::Eip712Secp256k1 { signature } = user.auth.clone() else {
        panic!("an EIP-712 signature")
    };
    let s = signature.s;
    let at = encoded.windows(32).position(|w| w == s).unwrap();
    at + 32
}

#[test]
fn builder_refuses_a_timestamp_before_the_last_batch() {
    let (mut state, _) = history();
    let builder = BatchBuilder::new(&state);
    assert!(matches!(
        builder.seal(&mut state, 5, &coordinator_key()),
        Err(bridge::batch::BatchError::TimestampRegressed { previous: 3_000, got: 5 })
    ));
}
