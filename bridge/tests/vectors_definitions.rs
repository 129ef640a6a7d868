//! The definitions docs/PROTOCOL.md gives for what a replayer must not guess (item 5 of issue
//! 25): recipients accepted and refused (Bitcoin address types, the dust rule, Ethereum case and
//! checksum), the byte order of "outpoint ascending", `BtcWithdrawals.total_sat`, vsize rounding
//! and the fee-bump rule, with a bumped attempt. `docs/vectors/definitions.json` must be what the
//! code computes, and the rules as the document states them are recomputed here from the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod common;

use bitcoin::hashes::Hash;
use bitcoin::{Network, ScriptBuf, WitnessProgram, WitnessVersion};
use bridge::batch::BatchBuilder;
use bridge::btc_payout::select_inputs;
use bridge::codec::to_bytes;
use bridge::recipient::Recipient;
use bridge::{Amount, AssetId, OutPoint, SystemTx, Tx, VaultOwner, VaultUtxo};
use common::*;
use serde_json::{Value, json};

fn regtest_address(script: &ScriptBuf) -> String {
    bitcoin::Address::from_script(script, Network::Regtest).unwrap().to_string()
}

fn recipients() -> Vec<Value> {
    let p = params();
    let p2pkh = regtest_address(&ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([1; 20])));
    let p2sh = regtest_address(&ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([2; 20])));
    let p2wpkh = regtest_address(&ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([3; 20])));
    let p2wsh = regtest_address(&ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([4; 32])));
    let v2 =
        regtest_address(&ScriptBuf::new_witness_program(&WitnessProgram::new(WitnessVersion::V2, &[5; 32]).unwrap()));
    let testnet_p2pkh = bitcoin::Address::from_script(
        &ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([1; 20])),
        Network::Testnet,
    )
    .unwrap()
    .to_string();
    let mixed_case = {
        let mut text = REGTEST_P2TR.to_owned();
        text.replace_range(5..6, &text[5..6].to_uppercase());
        text
    };
    let btc: Vec<(&str, String, u128)> = vec![
        ("P2TR at its dust limit", REGTEST_P2TR.into(), 330),
        ("P2TR below its dust limit", REGTEST_P2TR.into(), 329),
        ("P2TR in upper case", REGTEST_P2TR.to_uppercase(), 10_000),
        ("P2TR in mixed case", mixed_case, 10_000),
        ("P2WPKH at its dust limit", p2wpkh.clone(), 294),
        ("P2WPKH below its dust limit", p2wpkh, 293),
        ("P2WSH", p2wsh, 330),
        ("P2PKH at its dust limit", p2pkh.clone(), 546),
        ("P2PKH below its dust limit", p2pkh, 545),
        ("P2SH at its dust limit", p2sh, 540),
        ("a segwit v2 program (no soft fork gives it meaning yet)", v2, 330),
        ("a testnet base58 address (same version bytes as regtest)", testnet_p2pkh, 10_000),
        ("a mainnet address", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into(), 10_000),
        ("more than 21 million BTC", REGTEST_P2TR.into(), 2_100_000_000_000_001),
    ];
    let eth: Vec<(&str, String)> = vec![
        ("EIP-55 checksummed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into()),
        ("all lower case", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into()),
        ("all upper case after 0x", "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED".into()),
        ("mixed case, wrong checksum", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD".into()),
        ("prefix 0X", "0X5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into()),
        ("no prefix", "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into()),
        ("the zero address", "0x0000000000000000000000000000000000000000".into()),
        ("the top reserved address", "0x000000000000000000000000000000000000ffff".into()),
        ("the first address above the reserved range", "0x0000000000000000000000000000000000010000".into()),
        ("the network's eth_vault", p.eth_vault.to_string().to_lowercase()),
    ];
    let outcome = |asset: AssetId, text: &str, amount: u128| match Recipient::parse(
        text,
        &asset,
        Amount(amount),
        p.btc_network,
        &p.eth_vault,
    ) {
        Ok(Recipient::Bitcoin(script)) => json!({ "accepted": true, "script_pubkey": hex0x(script.as_bytes()) }),
        Ok(Recipient::Ethereum(address)) => json!({ "accepted": true, "address": hex0x(address.0) }),
        Err(e) => {
            json!({ "accepted": false, "code": bridge::TxError::InvalidRecipient(e.clone()).code(), "why": e.to_string() })
        }
    };
    let mut out: Vec<Value> = btc
        .into_iter()
        .map(|(case, text, amount)| {
            json!({ "case": case, "asset": "btc:BTC", "recipient": text, "amount": amount.to_string(),
                    "outcome": outcome(AssetId::Btc, &text, amount) })
        })
        .collect();
    out.extend(eth.into_iter().map(|(case, text)| {
        json!({ "case": case, "asset": "eth:ETH", "recipient": text, "amount": "1", "outcome": outcome(AssetId::Eth, &text, 1) })
    }));
    out
}

/// Equal amounts, so the outpoint decides: txids whose internal byte order and displayed (reversed)
/// hex sort differently, and vouts whose little-endian bytes sort differently from their values.
fn outpoint_order() -> Value {
    let mut a = [0u8; 32];
    a[0] = 0x01;
    a[31] = 0xff;
    let mut b = [0u8; 32];
    b[0] = 0x02;
    let utxo = |txid: [u8; 32], vout: u32| VaultUtxo {
        outpoint: OutPoint { txid, vout },
        amount_sat: 5_000,
        owner: VaultOwner::Vault,
        height: 7,
    };
    let available = [utxo(b, 0), utxo(a, 256), utxo(a, 1)];
    let chosen = select_inputs(available.iter(), 15_000).unwrap();
    let show = |u: &VaultUtxo| {
        json!({
            "txid_internal": hex0x(u.outpoint.txid),
            "txid_displayed": bitcoin::Txid::from_byte_array(u.outpoint.txid).to_string(),
            "vout": u.outpoint.vout,
            "amount_sat": u.amount_sat,
        })
    };
    json!({
        "available": available.iter().map(show).collect::<Vec<_>>(),
        "needed_sat": 15_000,
        "chosen_in_order": chosen.iter().map(show).collect::<Vec<_>>(),
    })
}

/// A payout plan whose fee budget allows attempts 0, 1 and 2 (the last capped by the budget),
/// and not 3; with the batch's `btc_withdrawals`.
fn bumped_payout() -> Value {
    let p = params();
    let vault = p.btc_vault.unwrap();
    let plan_with_fee = |fee: u128| {
        let mut state = genesis();
        let bob = wallet(2);
        let mut builder = BatchBuilder::new(&state);
        builder.apply(&mut state, deposit(bob.address(), AssetId::Btc, 100_000, 2)).unwrap();
        builder.apply(&mut state, withdraw(&bob, AssetId::Btc, 50_000, fee, REGTEST_P2TR, 0)).unwrap();
        builder.apply(&mut state, Tx::System(SystemTx::BtcPayoutPlan { fee_rate: 2 })).unwrap();
        let sealed = builder.seal(&mut state, 1_764_000_000_000, &coordinator_key()).unwrap();
        (state.btc_plan(1).unwrap().clone(), sealed)
    };
    let vsize = plan_with_fee(10_000).0.vsize(&vault, p.btc_network);
    let (plan, sealed) = plan_with_fee(u128::from(5 * vsize));
    let attempts: Vec<Value> = (0..=3)
        .map(|k| match plan.build(&bridge::VaultKeys::genesis(vault), p.btc_network, k) {
            Ok(unsigned) => json!({
                "attempt": k,
                "exists": true,
                "fee_sat": unsigned.fee_sat,
                "change_sat": unsigned.change.amount_sat,
                "txid": unsigned.tx.compute_txid().to_string(),
                "unsigned_tx": hex0x(bitcoin::consensus::serialize(&unsigned.tx)),
                "sighashes": unsigned.sighashes.iter().map(hex0x).collect::<Vec<_>>(),
            }),
            Err(e) => json!({ "attempt": k, "exists": false, "why": e.to_string() }),
        })
        .collect();
    json!({
        "params": p,
        "signed_batch_borsh": hex0x(to_bytes(&sealed.batch)),
        "btc_withdrawals": sealed.batch.header.btc_withdrawals,
        "withdrawal": { "amount_sat": 50_000, "fee_sat": 5 * vsize },
        "plan": plan,
        "plan_borsh": hex0x(to_bytes(&plan)),
        "vsize": vsize,
        "attempts": attempts,
    })
}

fn definitions() -> Value {
    json!({
        "about": "Definitions a replayer must not guess (docs/PROTOCOL.md, Definitions). Checked by bridge/tests/vectors_definitions.rs.",
        "recipients": recipients(),
        "outpoint_order": outpoint_order(),
        "bumped_payout": bumped_payout(),
    })
}

/// The dust limit as the document states it: 3 sat/vB × (spend + 8 + script length + 1), the
/// spend 67 vB for a witness program and 148 for anything else.
fn dust_limit(script: &[u8]) -> u64 {
    let witness_program = script.len() >= 4
        && script.len() <= 42
        && (script[0] == 0 || (0x51..=0x60).contains(&script[0]))
        && usize::from(script[1]) + 2 == script.len();
    let spend = if witness_program { 67 } else { 148 };
    3 * (spend + 8 + script.len() as u64 + 1)
}

#[test]
fn the_definitions_are_what_the_document_says() {
    let stored = stored_vectors("definitions.json", &definitions());

    for case in stored["recipients"].as_array().unwrap() {
        let outcome = &case["outcome"];
        let amount: u64 = case["amount"].as_str().unwrap().parse().unwrap_or(u64::MAX);
        if let Some(script) = outcome.get("script_pubkey") {
            assert!(amount >= dust_limit(&unhex(script)), "{}", case["case"]);
        }
        if case["asset"] == "eth:ETH" {
            // Case rule: all lower, all upper, or exactly EIP-55 (alloy's implementation).
            let text = case["recipient"].as_str().unwrap();
            let digits = text.strip_prefix("0x").unwrap_or("");
            let well_formed = digits.len() == 40
                && (digits == digits.to_lowercase()
                    || digits == digits.to_uppercase()
                    || alloy_primitives::Address::parse_checksummed(text, None).is_ok());
            if outcome["accepted"] == true {
                assert!(well_formed, "{}", case["case"]);
            } else if well_formed {
                assert_eq!(outcome["code"], "unpayable_recipient", "{}", case["case"]);
            }
        }
    }
    let codes: Vec<(&str, &Value)> = stored["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["case"].as_str().unwrap(), &c["outcome"]["accepted"]))
        .collect();
    for (case, accepted) in codes {
        let expected = !(case.contains("below its dust")
            || case.contains("mixed case")
            || case.contains("mainnet")
            || case.contains("21 million")
            || case.contains("0X")
            || case.contains("no prefix")
            || case.contains("zero address")
            || case.contains("top reserved")
            || case.contains("eth_vault"));
        assert_eq!(accepted, &json!(expected), "{case}");
    }

    // Outpoint ascending: internal byte order lexicographically, then vout as a number.
    let order = &stored["outpoint_order"];
    let mut sorted: Vec<Value> = order["available"].as_array().unwrap().clone();
    sorted.sort_by(|a, b| {
        unhex(&a["txid_internal"]).cmp(&unhex(&b["txid_internal"])).then(a["vout"].as_u64().cmp(&b["vout"].as_u64()))
    });
    assert_eq!(&Value::Array(sorted), &order["chosen_in_order"]);

    // total_sat: the payouts' amounts, without fees.
    let payout = &stored["bumped_payout"];
    assert_eq!(payout["btc_withdrawals"]["total_sat"], payout["withdrawal"]["amount_sat"]);
    assert_eq!(payout["btc_withdrawals"]["count"], 1);

    // vsize: ceil((4 × unsigned size + 66 per input + 2) / 4); fee(k) = min(budget,
    // vsize × rate × (k+1)); attempt k ≥ 1 exists iff fee(k) ≥ fee(k−1) + vsize and k ≤ 15.
    let rate = payout["plan"]["fee_rate"].as_u64().unwrap();
    let budget = payout["plan"]["budget_sat"].as_u64().unwrap();
    let vsize = payout["vsize"].as_u64().unwrap();
    let fee = |k: u64| (vsize * rate * (k + 1)).min(budget);
    for attempt in payout["attempts"].as_array().unwrap() {
        let k = attempt["attempt"].as_u64().unwrap();
        let exists = k == 0 || (k <= 15 && fee(k) >= fee(k - 1) + vsize);
        assert_eq!(attempt["exists"], json!(exists), "attempt {k}");
        if !exists {
            continue;
        }
        assert_eq!(attempt["fee_sat"], json!(fee(k)), "attempt {k}");
        let raw = unhex(&attempt["unsigned_tx"]);
        let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&raw).unwrap();
        assert!(tx.input.iter().all(|i| i.witness.is_empty()), "the vector is unsigned");
        let weight = 4 * raw.len() as u64 + 66 * tx.input.len() as u64 + 2;
        assert_eq!(weight.div_ceil(4), vsize, "attempt {k}: vsize");
        let inputs: u64 =
            payout["plan"]["inputs"].as_array().unwrap().iter().map(|u| u["amount_sat"].as_u64().unwrap()).sum();
        let change = inputs - 50_000 - fee(k);
        assert_eq!(tx.output.last().unwrap().value.to_sat(), change, "attempt {k}: change last");
        assert_eq!(attempt["change_sat"], json!(change));
        assert_eq!(tx.version.0, 2);
        assert!(tx.input.iter().all(|i| i.sequence.0 == 0xFFFF_FFFD && i.script_sig.is_empty()));
    }
    assert_eq!(payout["attempts"][2]["fee_sat"], json!(budget), "attempt 2 is capped by the budget");
}
