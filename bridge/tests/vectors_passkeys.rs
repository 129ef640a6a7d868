//! Passkey vectors (docs/vectors/passkeys.json): a passkey account's key, address, the digest it
//! signs as the WebAuthn challenge, the assertion's exact bytes (the byte layout of a browser's
//! and an authenticator's, from the software passkey) and the signed transaction's borsh, then
//! one broken assertion per refusal code. `BRIDGE_WRITE_VECTORS=1` rewrites the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bridge::codec::{from_bytes, to_bytes};
use bridge::eip712::Domain;
use bridge::passkey::software::{Ceremony, SoftwarePasskey};
use bridge::passkey::{WebAuthnParams, base64url, p256_negate_s};
use bridge::signature::Authorization;
use bridge::tx::{SignedUserTx, Transfer, UserTx, Withdraw};
use bridge::{Amount, AssetId, NetworkParams};
use common::*;
use serde_json::{Value, json};

const ORIGIN: &str = "http://localhost:8081";

fn network() -> NetworkParams {
    let mut p = params();
    p.webauthn = Some(WebAuthnParams {
        rp_id: "localhost".into(),
        allowed_origins: vec![ORIGIN.into()],
        require_user_verification: false,
    });
    p
}

fn assertion_json(signed: &SignedUserTx) -> Value {
    match &signed.auth {
        Authorization::WebAuthnP256 { assertion } => json!({
            "public_key": hex0x(assertion.public_key),
            "authenticator_data": hex0x(&assertion.authenticator_data),
            "client_data_json": String::from_utf8_lossy(&assertion.client_data_json),
            "signature": hex0x(assertion.signature),
        }),
        Authorization::Eip712Secp256k1 { .. } => panic!("a passkey transaction"),
    }
}

fn compute() -> Value {
    let p = network();
    let domain = Domain::new(&p);
    let key = SoftwarePasskey::from_seed(5).unwrap();
    let thief = SoftwarePasskey::from_seed(6).unwrap();
    let honest = Ceremony::new("localhost", ORIGIN);
    let transfer = UserTx::Transfer(Transfer {
        from: key.address(),
        to: wallet(2).address(),
        asset: AssetId::Eth,
        amount: Amount(1_000),
        fee: Amount(0),
        nonce: 0,
    });
    let withdraw = UserTx::Withdraw(Withdraw {
        from: key.address(),
        asset: AssetId::Eth,
        amount: Amount(500),
        fee: Amount(0),
        recipient: "0x5151515151515151515151515151515151515151".into(),
        nonce: 1,
    });
    let accepted = [transfer.clone(), withdraw]
        .into_iter()
        .map(|tx| {
            let digest = tx.signing_hash(&domain);
            let signed = key.sign(tx.clone(), &domain, &honest);
            json!({
                "message": tx,
                "digest": hex0x(digest),
                "challenge": base64url(&digest),
                "assertion": assertion_json(&signed),
                "signed_borsh": hex0x(to_bytes(&signed)),
            })
        })
        .collect::<Vec<_>>();

    let with = |ceremony: Ceremony| key.sign(transfer.clone(), &domain, &ceremony);
    let mut high_s = with(honest.clone());
    if let Authorization::WebAuthnP256 { assertion } = &mut high_s.auth {
        let s: [u8; 32] = assertion.signature[32..].try_into().unwrap();
        assertion.signature[32..].copy_from_slice(&p256_negate_s(&s));
    }
    let mut other_key = thief.sign(transfer.clone(), &domain, &honest);
    if let Authorization::WebAuthnP256 { assertion } = &mut other_key.auth {
        assertion.public_key = key.public_key();
    }
    let wrong_challenge = base64url(&[0u8; 32]);
    let refused = [
        ("wrong type", with(Ceremony { kind: "webauthn.create".into(), ..honest.clone() })),
        ("wrong challenge", with(Ceremony { challenge: Some(wrong_challenge), ..honest.clone() })),
        ("wrong origin", with(Ceremony { origin: "http://localhost:9999".into(), ..honest.clone() })),
        ("wrong RP ID", with(Ceremony { rp_id: "evil.example".into(), ..honest.clone() })),
        ("user presence clear", with(Ceremony { flags: 0x04, ..honest.clone() })),
        ("high s", high_s),
        ("another passkey's key", thief.sign(transfer.clone(), &domain, &honest)),
        ("another passkey's signature", other_key),
    ]
    .into_iter()
    .map(|(case, signed)| {
        let code = signed.verify(&domain).map(|_| "accepted").unwrap_or_else(|e| e.code());
        json!({ "case": case, "code": code, "assertion": assertion_json(&signed), "signed_borsh": hex0x(to_bytes(&signed)) })
    })
    .collect::<Vec<_>>();

    json!({
        "about": "Passkey accounts (docs/PROTOCOL.md, Passkey accounts). Keys from the software passkey: private scalar = 32 bytes of the seed byte.",
        "params": p,
        "genesis_hash": hex0x(p.genesis_hash()),
        "rp_id_sha256": hex0x(bridge::hashing::sha256(b"localhost")),
        "passkey": { "seed_byte": 5, "public_key": hex0x(key.public_key()), "address": key.address() },
        "other_passkey": { "seed_byte": 6, "public_key": hex0x(thief.public_key()), "address": thief.address() },
        "accepted": accepted,
        "refused": refused,
    })
}

#[test]
fn passkey_vectors_match_the_file_and_verify() {
    let stored = stored_vectors("passkeys.json", &compute());
    let domain = Domain::new(&network());
    for vector in stored["accepted"].as_array().unwrap() {
        let signed: SignedUserTx = from_bytes(&unhex(&vector["signed_borsh"])).unwrap();
        let verified = signed.verify(&domain).unwrap();
        assert_eq!(hex0x(verified.hash()), vector["digest"].as_str().unwrap());
    }
    let refused = stored["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 8);
    for vector in refused {
        let signed: SignedUserTx = from_bytes(&unhex(&vector["signed_borsh"])).unwrap();
        let code = signed.verify(&domain).map(|_| "accepted").unwrap_or_else(|e| e.code());
        assert_eq!(code, vector["code"].as_str().unwrap(), "{}", vector["case"]);
        assert_ne!(code, "accepted");
    }
}
