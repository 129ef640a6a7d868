//! Forced transactions (docs/PROTOCOL.md, Forced transactions): the cursor arithmetic, every
//! outcome a record can have, replay agreeing with the builder and refusing a batch that lies
//! about an outcome, version-1 batches unchanged, and `docs/vectors/forced.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::{BATCH_VERSION, BATCH_VERSION_FORCED, BatchBuilder, ReplayError};
use bridge::codec::{decode_batch, encode_batch, to_bytes};
use bridge::forced::{
    ForcedCursor, ForcedEntry, ForcedError, ForcedListing, ForcedOutcome, ForcedParams, ForcedRecord, Malformed,
    check_deadline, check_records, encode_payload, expected, plan, records_root, sort_listings,
};
use bridge::hashing::tagged_hash;
use bridge::tx::{UserTx, Withdraw};
use bridge::{Amount, AssetId, NetworkParams, SignedBatch, SignedUserTx, State};
use common::*;
use serde_json::{Value, json};

const FORCED: ForcedParams = ForcedParams { cap: 8, deadline_blocks: 5, confirmations: 2, start_height: 10 };

fn forced_params() -> NetworkParams {
    let mut p = params();
    p.forced = Some(FORCED);
    p.validate().unwrap();
    p
}

fn listing(height: u64, id: u8) -> ForcedListing {
    ForcedListing { arweave_id: [id; 32], height, size: 200 }
}

fn entry(height: u64, id: u8, data: Vec<u8>) -> ForcedEntry {
    ForcedEntry { listing: ForcedListing { size: data.len() as u64, ..listing(height, id) }, data: Some(data) }
}

fn signed_withdraw(from: &bridge::Wallet, signer: &bridge::Wallet, amount: u128, nonce: u64) -> SignedUserTx {
    let tx = UserTx::Withdraw(Withdraw {
        from: from.address(),
        asset: AssetId::Eth,
        amount: Amount(amount),
        fee: Amount(1),
        recipient: wallet(9).address().to_string(),
        nonce,
    });
    signer.sign(tx, &domain())
}

/// A network with forced inclusion; alice is funded in batch 1 and spends nonce 0 through
/// the API; batch 2 carries one forced entry of each kind.
fn two_batches() -> (Vec<SignedBatch>, Vec<ForcedEntry>) {
    let (alice, bob) = (wallet(1), wallet(2));
    let mut state = State::genesis(forced_params());
    let start = FORCED.start();
    let mut builder = BatchBuilder::new(&state);
    builder.process_forced(&mut state, start, ForcedCursor { height: 12, taken: 0 }, &[], &|_| false).unwrap();
    builder.apply(&mut state, deposit(alice.address(), AssetId::Eth, 1_000, 1)).unwrap();
    let api_spend = signed_withdraw(&alice, &alice, 10, 0);
    builder.apply(&mut state, bridge::Tx::User(api_spend.verify(&domain()).unwrap())).unwrap();
    let first = builder.seal(&mut state, 1_764_000_000_000, &coordinator_key()).unwrap().batch;

    let api_hash = api_spend.tx.signing_hash(&domain());
    let entries = vec![
        entry(12, 0x01, encode_payload(&signed_withdraw(&alice, &alice, 100, 1))), // applied
        entry(12, 0x02, encode_payload(&signed_withdraw(&alice, &alice, 5_000, 2))), // overdraft
        entry(12, 0x03, encode_payload(&signed_withdraw(&alice, &bob, 1, 2))),     // signed by another key
        entry(13, 0x11, encode_payload(&signed_withdraw(&alice, &alice, 7, 1))),   // nonce 1 again
        entry(13, 0x12, encode_payload(&api_spend)),                               // the API's, again
        entry(13, 0x14, b"not a transaction".to_vec()),                            // garbage
        ForcedEntry { listing: ForcedListing { size: 1 << 20, ..listing(14, 0x05) }, data: None }, // too large
    ];
    let mut builder = BatchBuilder::new(&state);
    let receipts = builder
        .process_forced(
            &mut state,
            ForcedCursor { height: 12, taken: 0 },
            ForcedCursor { height: 15, taken: 0 },
            &entries,
            &|h| *h == api_hash,
        )
        .unwrap();
    assert_eq!(receipts.len(), 1, "one forced entry applies");
    let second = builder.seal(&mut state, 1_764_000_000_001, &coordinator_key()).unwrap();
    assert_eq!(second.settlement.eth.withdrawals().len(), 1, "the forced withdrawal is owed on Ethereum");
    (vec![first, second.batch], entries)
}

#[test]
fn every_outcome_is_recorded_and_replay_agrees() {
    let (batches, entries) = two_batches();
    let labels: Vec<_> = batches[1].forced.iter().map(|r| r.outcome.label().to_owned()).collect();
    assert_eq!(
        labels,
        ["applied", "overdraft", "signer_mismatch", "nonce_replayed", "duplicate", "undecodable", "too_large"]
    );
    assert_eq!(batches[1].header.version, BATCH_VERSION_FORCED);
    let mut state = State::genesis(forced_params());
    for batch in &batches {
        let decoded = decode_batch(&encode_batch(batch)).unwrap();
        assert_eq!(&decoded, batch, "the published form round-trips");
        bridge::replay(&mut state, &decoded).unwrap();
    }
    assert_eq!(state.nonce(&wallet(1).address()), 2, "only the applied forced withdrawal moved the nonce");
    assert_eq!(state.balance(&wallet(1).address(), &AssetId::Eth), Amount(1_000 - 11 - 101));
    // The records are what the entries' data says, entry for entry.
    check_records(&batches[1].forced, &entries).unwrap();
}

#[test]
fn a_batch_that_lies_about_an_outcome_does_not_replay() {
    let (mut batches, _) = two_batches();
    // Record the overdraft as applied, re-root and re-sign: the coordinator's own doing.
    let ForcedOutcome::Refused { tx, .. } = batches[1].forced[1].outcome.clone() else { panic!("refused") };
    batches[1].forced[1].outcome = ForcedOutcome::Applied { tx };
    let root = records_root(&batches[1].forced);
    batches[1].header.forced.as_mut().unwrap().records_root = root;
    batches[1].signature = coordinator_key().sign(&batches[1].header.hash());
    let mut state = State::genesis(forced_params());
    bridge::replay(&mut state, &batches[0]).unwrap();
    let before = state.fingerprint();
    match bridge::replay(&mut state, &batches[1]) {
        Err(ReplayError::Forced { error: ForcedError::WrongOutcome { index: 1, .. }, .. }) => {}
        other => panic!("expected a wrong outcome, got {other:?}"),
    }
    assert_eq!(state.fingerprint(), before, "nothing changed");
}

#[test]
fn skipped_misread_and_invented_entries_are_found() {
    let (batches, entries) = two_batches();
    let records = &batches[1].forced;
    let mut skipping = records.clone();
    skipping.remove(2);
    let finding = check_records(&skipping, &entries).unwrap_err();
    assert_eq!(finding.entry(), Some(([0x03; 32], 12)));
    assert!(matches!(finding, bridge::forced::Finding::Skipped { .. }));
    // A valid transaction called garbage is a misreading.
    let mut misread = records.clone();
    misread[0].outcome = ForcedOutcome::Malformed { malformed: Malformed::Undecodable };
    assert!(matches!(check_records(&misread, &entries), Err(bridge::forced::Finding::Misread { .. })));
    let mut invented = records.clone();
    invented.push(ForcedRecord { arweave_id: [0x09; 32], height: 14, outcome: records[5].outcome.clone() });
    assert!(matches!(check_records(&invented, &entries), Err(bridge::forced::Finding::Phantom { .. })));
}

#[test]
fn the_plan_takes_the_cap_oldest_first_and_carries_the_rest() {
    let mut listings =
        vec![listing(11, 3), listing(11, 1), listing(12, 4), listing(14, 5), listing(11, 2), listing(11, 1)];
    sort_listings(&mut listings);
    assert_eq!(listings.len(), 5, "a repeated id is listed once");
    let from = ForcedCursor { height: 10, taken: 0 };
    // Cap 2: the two oldest of height 11; the cursor stops inside height 11.
    let first = plan(from, &listings, Some(13), 2);
    assert_eq!(first.take, vec![listing(11, 1), listing(11, 2)]);
    assert_eq!(first.to, ForcedCursor { height: 11, taken: 2 });
    assert_eq!(expected(from, first.to, &listings), first.take);
    // The rest up to the safe height; height 14 is not safe yet.
    let second = plan(first.to, &listings, Some(13), 2);
    assert_eq!(second.take, vec![listing(11, 3), listing(12, 4)]);
    // The cap is reached with nothing else safe: the cursor passes the safe heights whole.
    assert_eq!(second.to, ForcedCursor { height: 14, taken: 0 });
    let third = plan(second.to, &listings, Some(13), 2);
    assert_eq!((third.take.len(), third.to), (0, ForcedCursor { height: 14, taken: 0 }));
    // Once height 14 is safe, its entry comes.
    assert_eq!(plan(third.to, &listings, Some(14), 2).take, vec![listing(14, 5)]);
    // Nothing is safe yet: the cursor stays.
    assert_eq!(plan(from, &listings, None, 2).to, from);
}

#[test]
fn junk_counts_against_the_cap_and_the_deadline_yields_to_full_batches() {
    // 1,000 malformed entries ahead of one honest one at height 20: each batch takes the cap.
    let mut listings: Vec<_> = (0..1_000u32)
        .map(|i| ForcedListing {
            arweave_id: tagged_hash("junk", &[&i.to_le_bytes()]),
            height: 11 + u64::from(i % 5),
            size: 50,
        })
        .collect();
    listings.push(listing(20, 0xaa));
    sort_listings(&mut listings);
    let params = ForcedParams { cap: 64, deadline_blocks: 5, confirmations: 1, start_height: 10 };
    let mut cursor = params.start();
    let mut batches = 0;
    loop {
        let p = plan(cursor, &listings, Some(30), params.cap);
        batches += 1;
        let commit =
            bridge::forced::ForcedCommit { from: cursor, to: p.to, count: p.take.len() as u32, records_root: [0; 32] };
        // Confirmed far past the deadline: only a full batch may be that late.
        let late = check_deadline(&params, &commit, p.to.height + 50);
        assert_eq!(late.is_ok(), p.take.len() == 64, "batch {batches}");
        cursor = p.to;
        if p.take.iter().any(|l| l.arweave_id == [0xaa; 32]) {
            break;
        }
    }
    // ceil(1001 / 64) batches: the cap says exactly how long the honest one waits.
    assert_eq!(batches, 1_001usize.div_ceil(64));
}

#[test]
fn unforced_batches_have_no_forced_bytes_and_a_forced_network_refuses_them() {
    let mut state = genesis();
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, deposit(wallet(1).address(), AssetId::Eth, 5, 1)).unwrap();
    let v1 = builder.seal(&mut state, 1, &coordinator_key()).unwrap().batch;
    assert_eq!(v1.header.version, BATCH_VERSION);
    assert!(v1.header.forced.is_none() && v1.forced.is_empty());
    // The layout without forced inclusion (versions 1 and 3) has no forced bytes at all.
    assert_eq!(to_bytes(&v1.header).len(), 2 + 32 + 8 + 32 + 8 + 4 + 32 + 32 + 32 + (4 + 8 + 32));
    let mut forced_state = State::genesis(forced_params());
    assert!(matches!(bridge::replay(&mut forced_state, &v1), Err(ReplayError::UnsupportedVersion(BATCH_VERSION))));
    // A forced network's builder will not seal without its forced section.
    let mut forced_state = State::genesis(forced_params());
    let builder = BatchBuilder::new(&forced_state);
    assert!(builder.seal(&mut forced_state, 1, &coordinator_key()).is_err());
    assert_ne!(forced_params().genesis_hash(), params().genesis_hash(), "the forced rules are part of the network");
}

fn vectors() -> Value {
    let (batches, entries) = two_batches();
    let p = forced_params();
    let batch = &batches[1];
    json!({
        "about": "Forced transactions (docs/PROTOCOL.md, Forced transactions). Checked by bridge/tests/forced.rs.",
        "params": p,
        "genesis_hash": hex0x(p.genesis_hash()),
        "params_borsh": hex0x(to_bytes(&p)),
        "forced_borsh": hex0x(to_bytes(&FORCED)),
        "entries": entries.iter().map(|e| json!({
            "arweave_id": hex0x(e.listing.arweave_id),
            "height": e.listing.height,
            "size": e.listing.size,
            "data": e.data.as_ref().map(hex0x),
        })).collect::<Vec<_>>(),
        "records": batch.forced.iter().map(|r| json!({
            "record": r,
            "borsh": hex0x(to_bytes(r)),
            "leaf": hex0x(bridge::forced::record_leaf(r)),
        })).collect::<Vec<_>>(),
        "header": batch.header,
        "header_borsh": hex0x(to_bytes(&batch.header)),
        "header_hash": hex0x(batch.header.hash()),
        "batch_borsh": hex0x(to_bytes(batch)),
    })
}

#[test]
fn forced_vectors_are_what_the_document_says() {
    let stored = stored_vectors("forced.json", &vectors());
    // The genesis hash appends the forced rules to the version-1 parameters' bytes.
    assert_eq!(
        tagged_hash("bridge/genesis", &[&unhex(&stored["params_borsh"]), &unhex(&stored["forced_borsh"])]).to_vec(),
        unhex(&stored["genesis_hash"])
    );
    // Leaves and root from the record bytes alone.
    let leaves: Vec<Vec<u8>> = stored["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let leaf = tagged_hash("bridge/forced-record", &[&unhex(&r["borsh"])]).to_vec();
            assert_eq!(leaf, unhex(&r["leaf"]));
            leaf
        })
        .collect();
    let mut level = leaves;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => tagged_hash("bridge/forced-node", &[a, b]).to_vec(),
                [single] => single.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    let header_borsh = unhex(&stored["header_borsh"]);
    // Version 2 = version 1's 226 bytes, then borsh(Option<ForcedCommit>): 1 + 12 + 12 + 4 + 32.
    assert_eq!(header_borsh.len(), 226 + 1 + 12 + 12 + 4 + 32);
    assert_eq!(&header_borsh[..2], &BATCH_VERSION_FORCED.to_le_bytes());
    assert_eq!(&header_borsh[header_borsh.len() - 32..], level[0].as_slice(), "the header ends with the records' root");
    assert_eq!(tagged_hash("bridge/batch-header", &[&header_borsh]).to_vec(), unhex(&stored["header_hash"]));
    let batch: SignedBatch = bridge::codec::from_bytes(&unhex(&stored["batch_borsh"])).unwrap();
    let mut state = State::genesis(forced_params());
    let (first, _) = two_batches();
    bridge::replay(&mut state, &first[0]).unwrap();
    bridge::replay(&mut state, &batch).unwrap();
}

#[test]
fn a_resumed_role_takes_the_cursor_from_the_restored_batch_header_only() {
    use bridge::forced::{MissingCursor, cursor_after};
    let (batches, _) = two_batches();
    let second = &batches[1].header;
    let commit = second.forced.clone().unwrap();
    // No forced inclusion: no cursor, whatever the header.
    assert_eq!(cursor_after(None, 2, Some(second)), Ok(None));
    // Before any batch: the network's start.
    assert_eq!(cursor_after(Some(&FORCED), 0, None), Ok(Some(FORCED.start())));
    // After a batch: its header's `to`.
    assert_eq!(cursor_after(Some(&FORCED), 2, Some(second)), Ok(Some(commit.to)));
    // A header that is missing, of another batch, or without a commit is a damaged record.
    assert_eq!(cursor_after(Some(&FORCED), 2, None), Err(MissingCursor { number: 2 }));
    assert_eq!(cursor_after(Some(&FORCED), 3, Some(second)), Err(MissingCursor { number: 3 }));
    let mut stripped = second.clone();
    stripped.forced = None;
    assert_eq!(cursor_after(Some(&FORCED), 2, Some(&stripped)), Err(MissingCursor { number: 2 }));
}
