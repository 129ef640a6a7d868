//! Transaction ids (version 2) and the network parameters a replayer takes from `GET /info`
//! (docs/PROTOCOL.md, Transaction ids and Parameters): `docs/vectors/tx-ids.json` and
//! `docs/vectors/params.json` must be what the code computes, and the rules are recomputed here
//! from the files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bridge::batch::BatchBuilder;
use bridge::codec::to_bytes;
use bridge::hashing::tagged_hash;
use bridge::{AssetId, NetworkParams, SystemTx, Tx};
use common::*;
use serde_json::{Value, json};

/// Two batches, each with a Bitcoin withdrawal and the same `BtcPayoutPlan { fee_rate: 1 }`.
fn two_identical_plans() -> (Vec<bridge::SignedBatch>, Vec<Vec<bridge::Receipt>>) {
    let mut state = genesis();
    let bob = wallet(2);
    let (mut batches, mut receipts) = (Vec::new(), Vec::new());
    for n in 0..2u64 {
        let mut builder = BatchBuilder::new(&state);
        let mut batch_receipts = Vec::new();
        for tx in [
            deposit(bob.address(), AssetId::Btc, 100_000, 10 + n),
            withdraw(&bob, AssetId::Btc, 50_000, 1_000, REGTEST_P2TR, n),
            Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 1 }),
        ] {
            batch_receipts.push(builder.apply(&mut state, tx).unwrap());
        }
        batches.push(builder.seal(&mut state, 1_764_000_000_000 + n, &coordinator_key()).unwrap().batch);
        receipts.push(batch_receipts);
    }
    (batches, receipts)
}

#[test]
fn identical_system_transactions_in_two_batches_have_two_ids() {
    let (batches, receipts) = two_identical_plans();
    assert_eq!(batches[0].body[2], batches[1].body[2], "the same system transaction twice");
    let (first, second) = (receipts[0][2].tx_hash, receipts[1][2].tx_hash);
    assert_ne!(first, second);
    // Replay gives the same ids as the builder did.
    let mut state = genesis();
    for (batch, built) in batches.iter().zip(&receipts) {
        let replayed = bridge::replay(&mut state, batch).unwrap();
        let ids: Vec<_> = replayed.receipts.iter().map(|r| r.tx_hash).collect();
        assert_eq!(ids, built.iter().map(|r| r.tx_hash).collect::<Vec<_>>());
    }
}

fn tx_ids() -> Value {
    let (batches, receipts) = two_identical_plans();
    let network = params().genesis_hash();
    let txs: Vec<Value> = batches
        .iter()
        .zip(&receipts)
        .flat_map(|(batch, receipts)| {
            batch.body.iter().zip(receipts).enumerate().map(move |(index, (tx, receipt))| {
                json!({
                    "batch": batch.header.number,
                    "index": index,
                    "batch_tx_borsh": hex0x(to_bytes(tx)),
                    "id": hex0x(receipt.tx_hash),
                })
            })
        })
        .collect();
    json!({
        "about": "Transaction ids, version 2 (docs/PROTOCOL.md, Transaction ids). Checked by bridge/tests/vectors_ids.rs.",
        "network": hex0x(network),
        "eip712_domain_separator": hex0x(domain().separator()),
        "txs": txs,
    })
}

#[test]
fn tx_ids_are_what_the_document_says() {
    let stored = stored_vectors("tx-ids.json", &tx_ids());
    let network = unhex(&stored["network"]);
    let domain_separator = unhex(&stored["eip712_domain_separator"]);
    let mut seen = std::collections::BTreeSet::new();
    for tx in stored["txs"].as_array().unwrap() {
        let raw = unhex(&tx["batch_tx_borsh"]);
        let id = unhex(&tx["id"]);
        let expected = match raw[0] {
            // A system transaction: tagged("bridge/system-tx-id/v2", network ‖ u64le(batch) ‖
            // u32le(index) ‖ borsh(SystemTx)), the SystemTx being the bytes after the BatchTx tag.
            1 => tagged_hash(
                "bridge/system-tx-id/v2",
                &[
                    &network,
                    &tx["batch"].as_u64().unwrap().to_le_bytes(),
                    &u32::try_from(tx["index"].as_u64().unwrap()).unwrap().to_le_bytes(),
                    &raw[1..],
                ],
            )
            .to_vec(),
            // A user transaction: its EIP-712 digest, 0x1901 ‖ domain separator ‖ hashStruct.
            _ => {
                let signed: bridge::SignedUserTx = bridge::codec::from_bytes(&raw[1..]).unwrap();
                let digest = signed.tx.signing_hash(&domain());
                assert_eq!(&domain_separator, &domain().separator());
                digest.to_vec()
            }
        };
        assert_eq!(id, expected, "batch {} index {}", tx["batch"], tx["index"]);
        assert!(seen.insert(id), "ids are unique in the history");
    }
}

fn params_vector() -> Value {
    let p = params();
    let vault = p.btc_vault.unwrap();
    json!({
        "about": "Network parameters as GET /info serves them under `params` (coordinator and confirmer), with the genesis hash they hash to and the vault's keys (docs/PROTOCOL.md, Parameters). Checked by bridge/tests/vectors_ids.rs.",
        "params": p,
        "params_borsh": hex0x(to_bytes(&p)),
        "genesis_hash": hex0x(p.genesis_hash()),
        "btc_vault": {
            "group_key": hex0x(vault.group_key),
            "output_key": hex0x(vault.output_key()),
            "address": bitcoin::Address::p2tr(secp256k1::SECP256K1, vault.internal_key(), None, bitcoin::Network::Regtest).to_string(),
        },
    })
}

#[test]
fn params_hash_to_the_genesis_hash() {
    let stored = stored_vectors("params.json", &params_vector());
    let params: NetworkParams = serde_json::from_value(stored["params"].clone()).unwrap();
    params.validate().unwrap();
    assert_eq!(hex0x(to_bytes(&params)), stored["params_borsh"]);
    assert_eq!(
        tagged_hash("bridge/genesis", &[&unhex(&stored["params_borsh"])]).to_vec(),
        unhex(&stored["genesis_hash"])
    );
    // The output key is P + tagged("TapTweak", P)·G with no script tree (BIP-341), here by
    // secp256k1's own tweak rather than the crate's.
    let internal = secp256k1::XOnlyPublicKey::from_slice(&unhex(&stored["btc_vault"]["group_key"])).unwrap();
    let tweak = secp256k1::Scalar::from_be_bytes(tagged_hash("TapTweak", &[&internal.serialize()])).unwrap();
    let (output, _) = internal.add_tweak(secp256k1::SECP256K1, &tweak).unwrap();
    assert_eq!(output.serialize().to_vec(), unhex(&stored["btc_vault"]["output_key"]));
}
