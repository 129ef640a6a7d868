//! Passkey accounts (docs/PROTOCOL.md, "Passkey accounts"): each rule of an assertion refused
//! with its own code, the address kept apart from Ethereum's, and a passkey account's
//! transactions carried through a batch, its codec and a replay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bridge::batch::BatchBuilder;
use bridge::eip712::Domain;
use bridge::passkey::software::{Ceremony, SoftwarePasskey, authenticator_data, client_data_json};
use bridge::passkey::{P256_ORDER, PasskeyAssertion, WebAuthnParams, base64url, p256_negate_s, passkey_address};
use bridge::signature::Authorization;
use bridge::tx::{SignedUserTx, Transfer, UserTx, Withdraw};
use bridge::{Amount, AssetId, NetworkParams, State, TxError};
use common::*;

const ORIGIN: &str = "http://localhost:8081";

fn passkey_params() -> NetworkParams {
    let mut p = params();
    p.webauthn = Some(WebAuthnParams {
        rp_id: "localhost".into(),
        allowed_origins: vec![ORIGIN.into()],
        require_user_verification: false,
    });
    p.validate().unwrap();
    p
}

fn passkey(seed: u8) -> SoftwarePasskey {
    SoftwarePasskey::from_seed(seed).unwrap()
}

fn transfer_from(from: &SoftwarePasskey, nonce: u64) -> UserTx {
    UserTx::Transfer(Transfer {
        from: from.address(),
        to: wallet(2).address(),
        asset: AssetId::Eth,
        amount: Amount(1_000),
        fee: Amount(0),
        nonce,
    })
}

fn honest() -> Ceremony {
    Ceremony::new("localhost", ORIGIN)
}

/// The refusal code of `signed` on the passkey network.
fn code(signed: &SignedUserTx) -> &'static str {
    let domain = Domain::new(&passkey_params());
    match signed.verify(&domain) {
        Ok(_) => "accepted",
        Err(e) => e.code(),
    }
}

fn assertion_of(signed: &mut SignedUserTx) -> &mut PasskeyAssertion {
    match &mut signed.auth {
        Authorization::WebAuthnP256 { assertion } => assertion,
        Authorization::Eip712Secp256k1 { .. } => panic!("a passkey transaction"),
    }
}

#[test]
fn an_honest_assertion_authorizes_its_transaction() {
    let key = passkey(5);
    let domain = Domain::new(&passkey_params());
    let signed = key.sign(transfer_from(&key, 0), &domain, &honest());
    let verified = signed.verify(&domain).unwrap();
    assert_eq!(verified.hash(), signed.tx.signing_hash(&domain));
    // The challenge the authenticator signed is the transaction's digest, in base64url.
    let assertion = match &signed.auth {
        Authorization::WebAuthnP256 { assertion } => assertion,
        _ => unreachable!(),
    };
    let client: serde_json::Value = serde_json::from_slice(&assertion.client_data_json).unwrap();
    assert_eq!(client["challenge"], base64url(&verified.hash()));
}

#[test]
fn each_broken_rule_is_refused_with_its_own_code() {
    let key = passkey(5);
    let domain = Domain::new(&passkey_params());
    let tx = transfer_from(&key, 0);
    let sign = |ceremony: Ceremony| key.sign(tx.clone(), &domain, &ceremony);

    let other_digest = transfer_from(&key, 1).signing_hash(&domain);
    let cases: Vec<(&str, SignedUserTx)> = vec![
        ("accepted", sign(honest())),
        ("passkey_wrong_type", sign(Ceremony { kind: "webauthn.create".into(), ..honest() })),
        ("passkey_wrong_challenge", sign(Ceremony { challenge: Some(base64url(&other_digest)), ..honest() })),
        ("passkey_wrong_origin", sign(Ceremony { origin: "http://localhost:9999".into(), ..honest() })),
        ("passkey_wrong_origin", sign(Ceremony { origin: "http://evil.example".into(), ..honest() })),
        ("passkey_wrong_rp_id", sign(Ceremony { rp_id: "evil.example".into(), ..honest() })),
        ("passkey_user_not_present", sign(Ceremony { flags: 0x04, ..honest() })),
        // User verification is not required on this network: presence alone is enough.
        ("accepted", sign(Ceremony { flags: 0x01, ..honest() })),
    ];
    for (expected, signed) in &cases {
        assert_eq!(code(signed), *expected, "{signed:?}");
    }
}

#[test]
fn user_verification_is_required_when_the_network_says_so() {
    let key = passkey(5);
    let mut p = passkey_params();
    p.webauthn.as_mut().unwrap().require_user_verification = true;
    let domain = Domain::new(&p);
    let present_only = key.sign(transfer_from(&key, 0), &domain, &Ceremony { flags: 0x01, ..honest() });
    assert_eq!(present_only.verify(&domain).unwrap_err().code(), "passkey_user_not_verified");
    let verified = key.sign(transfer_from(&key, 0), &domain, &honest());
    assert!(verified.verify(&domain).is_ok());
}

#[test]
fn a_high_s_is_refused_and_its_low_twin_accepted() {
    let key = passkey(5);
    let domain = Domain::new(&passkey_params());
    let mut signed = key.sign(transfer_from(&key, 0), &domain, &honest());
    assert_eq!(code(&signed), "accepted");
    let assertion = assertion_of(&mut signed);
    let s: [u8; 32] = assertion.signature[32..].try_into().unwrap();
    assertion.signature[32..].copy_from_slice(&p256_negate_s(&s));
    // The same signature with `n - s`: valid P-256, refused as the second encoding.
    assert_eq!(code(&signed), "passkey_high_s");
}

#[test]
fn a_signature_by_another_passkey_is_refused() {
    let (victim, thief) = (passkey(5), passkey(6));
    let domain = Domain::new(&passkey_params());
    let tx = transfer_from(&victim, 0);
    // The thief's own key in the transaction: it names the thief's account, not the victim's.
    let with_thief_key = thief.sign(tx.clone(), &domain, &honest());
    assert_eq!(code(&with_thief_key), "passkey_signer_mismatch");
    // The victim's key with the thief's signature: the signature does not verify.
    let mut with_victim_key = with_thief_key.clone();
    assertion_of(&mut with_victim_key).public_key = victim.public_key();
    assert_eq!(code(&with_victim_key), "passkey_bad_signature");
}

#[test]
fn tampered_bytes_and_malformed_client_data_are_refused() {
    let key = passkey(5);
    let domain = Domain::new(&passkey_params());
    let signed = key.sign(transfer_from(&key, 0), &domain, &honest());
    let edit = |f: &dyn Fn(&mut PasskeyAssertion)| {
        let mut copy = signed.clone();
        f(assertion_of(&mut copy));
        code(&copy)
    };
    // A counter the authenticator did not sign.
    assert_eq!(edit(&|a| a.authenticator_data[36] ^= 1), "passkey_bad_signature");
    // Extra bytes with no extension flag, and too few bytes.
    assert_eq!(edit(&|a| a.authenticator_data.push(0)), "passkey_authenticator_data_malformed");
    assert_eq!(edit(&|a| a.authenticator_data.truncate(36)), "passkey_authenticator_data_malformed");
    // An attested credential (registration data) in an assertion.
    assert_eq!(edit(&|a| a.authenticator_data[32] |= 0x40), "passkey_authenticator_data_malformed");
    // clientDataJSON: not JSON, a repeated key, a missing field, a number for a string, too large.
    assert_eq!(edit(&|a| a.client_data_json = b"not json".to_vec()), "passkey_client_data_malformed");
    let original = String::from_utf8(match &signed.auth {
        Authorization::WebAuthnP256 { assertion } => assertion.client_data_json.clone(),
        _ => unreachable!(),
    })
    .unwrap();
    let repeated = original.replacen('{', "{\"type\":\"webauthn.get\",", 1);
    assert_eq!(edit(&|a| a.client_data_json = repeated.clone().into_bytes()), "passkey_client_data_malformed");
    assert_eq!(
        edit(&|a| a.client_data_json = br#"{"type":"webauthn.get","origin":"http://localhost:8081"}"#.to_vec()),
        "passkey_client_data_malformed"
    );
    assert_eq!(edit(&|a| a.client_data_json = br#"{"type":1}"#.to_vec()), "passkey_client_data_malformed");
    let padded = original.replacen('}', &format!(",\"pad\":\"{}\"}}", "x".repeat(1100)), 1);
    assert_eq!(edit(&|a| a.client_data_json = padded.clone().into_bytes()), "passkey_client_data_too_large");
    // A cross-origin frame.
    let framed = original.replace("\"crossOrigin\":false", "\"crossOrigin\":true");
    assert_eq!(edit(&|a| a.client_data_json = framed.clone().into_bytes()), "passkey_cross_origin");
    // r or s out of range, and a key that is no curve point.
    assert_eq!(edit(&|a| a.signature[..32].copy_from_slice(&P256_ORDER)), "passkey_bad_signature");
    assert_eq!(edit(&|a| a.signature[32..].fill(0)), "passkey_bad_signature");
    assert_eq!(edit(&|a| a.public_key[63] ^= 1), "passkey_signer_mismatch");
}

#[test]
fn extra_client_data_keys_are_ignored_as_browsers_add_them() {
    let key = passkey(5);
    let domain = Domain::new(&passkey_params());
    let tx = transfer_from(&key, 0);
    let challenge = base64url(&tx.signing_hash(&domain));
    // Chromium's order, its padding key, and a key from a later WebAuthn level.
    let client = format!(
        r#"{{"type":"webauthn.get","challenge":"{challenge}","origin":"{ORIGIN}","crossOrigin":false,"other_keys_can_be_added_here":"do not compare clientDataJSON against a template. See https://goo.gl/yabPex","topOrigin":"{ORIGIN}"}}"#
    );
    let data = authenticator_data("localhost", 0x05, 7);
    let mut signature = key.sign_raw(&data, client.as_bytes());
    bridge::passkey::normalize_s(&mut signature);
    let assertion = PasskeyAssertion {
        public_key: key.public_key(),
        authenticator_data: data,
        client_data_json: client.into_bytes(),
        signature,
    };
    let signed = SignedUserTx { tx, auth: Authorization::WebAuthnP256 { assertion: Box::new(assertion) } };
    assert_eq!(code(&signed), "accepted");
}

#[test]
fn a_network_without_passkey_rules_refuses_passkey_transactions() {
    let key = passkey(5);
    let with = Domain::new(&passkey_params());
    let without = Domain::new(&params());
    let signed = key.sign(transfer_from(&key, 0), &with, &honest());
    let refused = signed.verify(&without).unwrap_err();
    assert_eq!(refused.code(), "passkeys_disabled");
    assert!(matches!(refused, TxError::Passkey(_)));
}

#[test]
fn passkey_rules_change_the_genesis_hash_and_nothing_else() {
    let plain = params();
    let with = passkey_params();
    assert_ne!(plain.genesis_hash(), with.genesis_hash());
    let mut other_origin = with.clone();
    other_origin.webauthn.as_mut().unwrap().allowed_origins = vec!["http://localhost:8082".into()];
    assert_ne!(with.genesis_hash(), other_origin.genesis_hash());
    // The EIP-712 domain, and so every Ethereum signature, is the same on both networks.
    assert_eq!(Domain::new(&plain).separator(), Domain::new(&with).separator());
}

#[test]
fn the_passkey_address_is_not_the_ethereum_derivation() {
    let key = passkey(5);
    let keccak = bridge::hashing::keccak256(key.public_key());
    assert_ne!(key.address().as_bytes()[..], keccak[12..]);
    assert_eq!(key.address(), passkey_address(&key.public_key()));
    assert_ne!(passkey(5).address(), passkey(6).address());
}

#[test]
fn a_passkey_account_deposits_transfers_withdraws_and_replays() {
    let p = passkey_params();
    let key = passkey(5);
    let domain = Domain::new(&p);
    let mut state = State::genesis(p.clone());
    let mut replica = State::genesis(p.clone());
    let mut builder = BatchBuilder::new(&state);
    builder.apply(&mut state, deposit(key.address(), AssetId::Eth, 10_000, 1)).unwrap();
    for (nonce, tx) in [
        transfer_from(&key, 0),
        UserTx::Withdraw(Withdraw {
            from: key.address(),
            asset: AssetId::Eth,
            amount: Amount(2_000),
            fee: Amount(0),
            recipient: "0x5151515151515151515151515151515151515151".into(),
            nonce: 1,
        }),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(tx.nonce(), nonce as u64);
        let verified = key.sign(tx, &domain, &honest()).verify(&domain).unwrap();
        builder.apply(&mut state, bridge::Tx::User(verified)).unwrap();
    }
    // A replayed assertion (the same nonce again) changes nothing.
    let again = key.sign(transfer_from(&key, 0), &domain, &honest()).verify(&domain).unwrap();
    assert!(builder.apply(&mut state, bridge::Tx::User(again)).is_err(), "nonce 0 was used");
    let sealed = builder.seal(&mut state, 1_764_000_000_000, &coordinator_key()).unwrap();
    assert_eq!(sealed.settlement.eth.withdrawals().len(), 1);
    assert_eq!(state.balance(&key.address(), &AssetId::Eth), Amount(7_000));

    // Through the codec and a replay, as a confirmer sees it.
    let bytes = bridge::codec::encode_batch(&sealed.batch);
    let decoded = bridge::codec::decode_batch(&bytes).unwrap();
    bridge::replay(&mut replica, &decoded).unwrap();
    assert_eq!(replica.state_root(), state.state_root());

    // Passkey rules are part of the network: with another origin it is another network (another
    // genesis hash), on which this batch does not replay.
    let mut foreign = passkey_params();
    foreign.webauthn.as_mut().unwrap().allowed_origins = vec!["http://localhost:1".into()];
    assert!(bridge::replay(&mut State::genesis(foreign), &decoded).is_err());
}

#[test]
fn assertions_from_the_software_passkey_use_the_browser_layout() {
    let key = passkey(5);
    let digest = [7u8; 32];
    let assertion = key.assert(&digest, &honest());
    assert_eq!(assertion.authenticator_data.len(), 37);
    assert_eq!(assertion.authenticator_data[..32], bridge::hashing::sha256(b"localhost"));
    assert_eq!(
        assertion.client_data_json,
        client_data_json("webauthn.get", &base64url(&digest), ORIGIN),
        "the same bytes as the helper's"
    );
    let text = String::from_utf8(assertion.client_data_json).unwrap();
    assert!(text.starts_with(r#"{"type":"webauthn.get","challenge":""#), "{text}");
}
