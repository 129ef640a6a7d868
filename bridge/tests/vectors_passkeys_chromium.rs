//! A passkey vector captured from a real browser (docs/vectors/passkeys-chromium.json): one
//! assertion made by Chromium's DevTools virtual authenticator in ops/tests/web_app.rs, with the
//! network parameters it was checked under. Unlike docs/vectors/passkeys.json (the software
//! passkey's byte layout), these bytes are Chromium's own: its clientDataJSON (with its extra
//! keys), its authenticator data, its DER signature. The stored assertion verifies with the
//! protocol core; DER decoding plus low-S normalisation gives exactly the signature the page
//! sent; and flipping each field is refused with that field's own code. The file is written by
//! `BRIDGE_WRITE_VECTORS=1 cargo nextest run -p ops --test web_app`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bridge::codec::{from_bytes, to_bytes};
use bridge::eip712::Domain;
use bridge::passkey::{PasskeyAssertion, base64url, normalize_s, passkey_address};
use bridge::signature::Authorization;
use bridge::tx::{SignedUserTx, UserTx};
use bridge::{Address, NetworkParams};
use common::{hex0x, unhex};
use serde_json::Value;

fn stored() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/passkeys-chromium.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("docs/vectors/passkeys-chromium.json: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The vector's transaction, network domain and assertion.
fn vector() -> (Value, Domain, SignedUserTx) {
    let v = stored();
    let params: NetworkParams = serde_json::from_value(v["params"].clone()).unwrap();
    params.validate().unwrap();
    let tx: UserTx = serde_json::from_value(v["message"].clone()).unwrap();
    let assertion = PasskeyAssertion {
        public_key: unhex(&v["public_key"]).try_into().unwrap(),
        authenticator_data: unhex(&v["authenticator_data"]),
        client_data_json: v["client_data_json"].as_str().unwrap().as_bytes().to_vec(),
        signature: unhex(&v["signature"]).try_into().unwrap(),
    };
    let signed = SignedUserTx { tx, auth: Authorization::WebAuthnP256 { assertion: Box::new(assertion) } };
    (v, Domain::new(&params), signed)
}

fn assertion_of(signed: &mut SignedUserTx) -> &mut PasskeyAssertion {
    match &mut signed.auth {
        Authorization::WebAuthnP256 { assertion } => assertion,
        Authorization::Eip712Secp256k1 { .. } => panic!("a passkey transaction"),
    }
}

fn code(signed: &SignedUserTx, domain: &Domain) -> &'static str {
    signed.verify(domain).map(|_| "accepted").unwrap_or_else(|e| e.code())
}

/// A strict DER `SEQUENCE { INTEGER r, INTEGER s }` (X9.62) as `r ‖ s`, 32 bytes each; `None`
/// for anything else (long forms, padding that is not needed, a value wider than 32 bytes).
fn der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (&tag, rest) = der.split_first()?;
    let (&length, mut body) = rest.split_first()?;
    if tag != 0x30 || usize::from(length) != body.len() {
        return None;
    }
    let mut raw = [0u8; 64];
    for half in raw.chunks_mut(32) {
        let (&tag, rest) = body.split_first()?;
        let (&length, rest) = rest.split_first()?;
        let length = usize::from(length);
        if tag != 0x02 || length == 0 || length > rest.len() {
            return None;
        }
        let (integer, after) = rest.split_at(length);
        // Minimal: a leading zero only to keep a high bit from reading as a sign.
        if integer[0] & 0x80 != 0 || (integer.len() > 1 && integer[0] == 0 && integer[1] & 0x80 == 0) {
            return None;
        }
        let integer = if integer[0] == 0 { &integer[1..] } else { integer };
        if integer.len() > 32 {
            return None;
        }
        half[32 - integer.len()..].copy_from_slice(integer);
        body = after;
    }
    body.is_empty().then_some(raw)
}

#[test]
fn chromiums_assertion_verifies_with_the_protocol_core() {
    let (v, domain, signed) = vector();
    assert!(v["chromium"].as_str().unwrap().starts_with("Chromium "), "{}", v["chromium"]);
    let digest = signed.tx.signing_hash(&domain);
    assert_eq!(hex0x(digest), v["digest"].as_str().unwrap());
    assert_eq!(base64url(&digest), v["challenge"].as_str().unwrap());
    let verified = signed.verify(&domain).unwrap();
    assert_eq!(verified.hash(), digest);
    // The address is the key's, and the account the transaction is from.
    let mut signed = signed;
    let key = assertion_of(&mut signed).public_key;
    let address: Address = serde_json::from_value(v["address"].clone()).unwrap();
    assert_eq!(passkey_address(&key), address);
    // The borsh the batch codec carries is these bytes, and decodes to the same transaction.
    assert_eq!(hex0x(to_bytes(&signed)), v["signed_borsh"].as_str().unwrap());
    let decoded: SignedUserTx = from_bytes(&unhex(&v["signed_borsh"])).unwrap();
    assert_eq!(decoded, signed);
    // Chromium's clientDataJSON is parsed as JSON, extra keys and all, never matched to a template.
    let client_data: Value = serde_json::from_str(v["client_data_json"].as_str().unwrap()).unwrap();
    assert_eq!(client_data["type"], "webauthn.get");
    assert_eq!(client_data["challenge"], v["challenge"]);
}

#[test]
fn der_decoding_and_low_s_give_exactly_the_vectors_signature() {
    let v = stored();
    let der = unhex(&v["signature_der"]);
    let mut raw = der_to_raw(&der).unwrap_or_else(|| panic!("not a strict DER signature: {}", v["signature_der"]));
    normalize_s(&mut raw);
    assert_eq!(hex0x(raw), v["signature"].as_str().unwrap());
    // The decoder is strict: a truncated or re-padded encoding is no signature.
    assert_eq!(der_to_raw(&der[..der.len() - 1]), None);
    let mut padded = der.clone();
    padded.insert(4, 0);
    padded[1] += 1;
    padded[3] += 1;
    assert_eq!(der_to_raw(&padded), None);
}

/// A field's name, how to flip it, and the code its refusal must carry.
type Flip<'a> = (&'a str, &'a dyn Fn(&mut PasskeyAssertion), &'a str);

#[test]
fn each_flipped_field_is_refused_with_its_own_code() {
    let (v, domain, signed) = vector();
    let flip = |change: &dyn Fn(&mut PasskeyAssertion)| {
        let mut flipped = signed.clone();
        change(assertion_of(&mut flipped));
        code(&flipped, &domain)
    };
    let client_data = v["client_data_json"].as_str().unwrap().to_owned();
    let challenge = v["challenge"].as_str().unwrap().to_owned();
    let params: NetworkParams = serde_json::from_value(v["params"].clone()).unwrap();
    let origin = serde_json::from_str::<Value>(&client_data).unwrap()["origin"].as_str().unwrap().to_owned();
    assert!(params.webauthn.as_ref().unwrap().allowed_origins.contains(&origin), "{origin}");

    let mut other_challenge = unhex(&v["digest"]);
    other_challenge[0] ^= 1;
    let cases: [Flip<'_>; 6] = [
        (
            "challenge",
            &|a| {
                a.client_data_json = client_data.replace(&challenge, &base64url(&other_challenge)).into_bytes();
            },
            "passkey_wrong_challenge",
        ),
        (
            "origin",
            &|a| a.client_data_json = client_data.replace(&origin, "http://localhost:1").into_bytes(),
            "passkey_wrong_origin",
        ),
        ("RP ID hash", &|a| a.authenticator_data[0] ^= 1, "passkey_wrong_rp_id"),
        ("UP flag", &|a| a.authenticator_data[32] &= !0x01, "passkey_user_not_present"),
        ("signature", &|a| a.signature[7] ^= 1, "passkey_bad_signature"),
        ("key", &|a| a.public_key[63] ^= 1, "passkey_signer_mismatch"),
    ];
    let mut codes = Vec::new();
    for (field, change, expected) in cases {
        assert_eq!(flip(change), expected, "flipping the {field}");
        codes.push(expected);
    }
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 6, "each field has its own code");
    assert_eq!(code(&signed, &domain), "accepted", "and the vector itself still verifies");
}
