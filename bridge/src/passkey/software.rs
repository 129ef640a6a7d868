//! A software passkey for tests, vectors and benchmarks (feature `software-passkey`): it writes
//! assertions with exactly the byte layout a WebAuthn authenticator and a browser produce
//! (authenticator data: RP ID hash ‖ flags ‖ counter; clientDataJSON as Chromium serialises it)
//! and signs them with ring's P-256. Its keys and nonces come from a fixed byte, so what it
//! signs is reproducible: never hold funds with it. The fixed bytes come from ring's
//! `test::rand::FixedByteRandom`, deprecated as an internal API: pinned by Cargo.lock, and only
//! this test feature uses it.
#![allow(deprecated)]

use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use ring::test::rand::FixedByteRandom;

use super::{P256PublicKey, PasskeyAssertion, base64url, normalize_s, passkey_address};
use crate::address::Address;
use crate::eip712::Domain;
use crate::hashing::sha256;
use crate::signature::Authorization;
use crate::tx::{SignedUserTx, UserTx};

/// Where and how the assertion is made: what a browser and an authenticator put in it.
#[derive(Clone, Debug)]
pub struct Ceremony {
    pub kind: String,
    pub rp_id: String,
    pub origin: String,
    /// Authenticator flags: 0x01 user present, 0x04 user verified.
    pub flags: u8,
    /// Replace the challenge (a test of the wrong one); `None` signs the transaction's digest.
    pub challenge: Option<String>,
}

impl Ceremony {
    /// An honest assertion on `origin` for `rp_id`, user present and verified.
    pub fn new(rp_id: &str, origin: &str) -> Self {
        Ceremony {
            kind: "webauthn.get".into(),
            rp_id: rp_id.into(),
            origin: origin.into(),
            flags: 0x05,
            challenge: None,
        }
    }
}

/// `{"type":…,"challenge":…,"origin":…,"crossOrigin":false}`: Chromium's key order and form.
pub fn client_data_json(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"type\":{},\"challenge\":{},\"origin\":{},\"crossOrigin\":false}}",
        text(kind),
        text(challenge),
        text(origin)
    )
    .into_bytes()
}

/// SHA-256(RP ID) ‖ flags ‖ the signature counter (big-endian; passkeys that sync keep it 0).
pub fn authenticator_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut data = sha256(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data
}

#[derive(Debug)]
pub struct SoftwarePasskey {
    key: EcdsaKeyPair,
    public_key: P256PublicKey,
    seed: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("ring refused to make a P-256 key from seed byte {0}")]
pub struct KeyError(u8);

impl SoftwarePasskey {
    /// The passkey whose private scalar is 32 bytes of `seed` (non-zero).
    pub fn from_seed(seed: u8) -> Result<Self, KeyError> {
        let rng = FixedByteRandom { byte: seed };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| KeyError(seed))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| KeyError(seed))?;
        let mut public_key = [0u8; 64];
        public_key.copy_from_slice(&key.public_key().as_ref()[1..]);
        Ok(SoftwarePasskey { key, public_key, seed })
    }

    pub fn public_key(&self) -> P256PublicKey {
        self.public_key
    }

    pub fn address(&self) -> Address {
        passkey_address(&self.public_key)
    }

    /// A P-256 signature over `authenticator_data ‖ SHA-256(client_data_json)` as `r ‖ s`, as
    /// the authenticator made it (its `s` may be high).
    pub fn sign_raw(&self, authenticator_data: &[u8], client_data_json: &[u8]) -> [u8; 64] {
        let mut message = authenticator_data.to_vec();
        message.extend_from_slice(&sha256(client_data_json));
        let rng = FixedByteRandom { byte: self.seed };
        let mut out = [0u8; 64];
        // Signing in memory with a valid key fails only if the rng does, and this one cannot.
        if let Ok(signature) = self.key.sign(&rng, &message) {
            out.copy_from_slice(signature.as_ref());
        }
        out
    }

    /// The assertion a browser would return for `digest` in `ceremony`, its `s` normalised.
    pub fn assert(&self, digest: &[u8; 32], ceremony: &Ceremony) -> PasskeyAssertion {
        let challenge = ceremony.challenge.clone().unwrap_or_else(|| base64url(digest));
        let client_data_json = client_data_json(&ceremony.kind, &challenge, &ceremony.origin);
        let authenticator_data = authenticator_data(&ceremony.rp_id, ceremony.flags, 0);
        let mut signature = self.sign_raw(&authenticator_data, &client_data_json);
        normalize_s(&mut signature);
        PasskeyAssertion { public_key: self.public_key, authenticator_data, client_data_json, signature }
    }

    /// Signs `tx` (whose `from` should be [`Self::address`]) for the network of `domain`.
    pub fn sign(&self, tx: UserTx, domain: &Domain, ceremony: &Ceremony) -> SignedUserTx {
        let assertion = self.assert(&tx.signing_hash(domain), ceremony);
        SignedUserTx { tx, auth: Authorization::WebAuthnP256 { assertion: Box::new(assertion) } }
    }
}
