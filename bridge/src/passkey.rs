//! Passkey accounts: an account controlled by a P-256 key held by a WebAuthn authenticator (the
//! platform's passkey store), so a user signs in a browser without holding a raw private key.
//!
//! The account's address is derived from the public key under its own tag, so it can never be
//! read as an Ethereum key's address. Every passkey transaction carries its public key: the
//! signature is then checked without reading state (on every core, before the ledger, as the
//! EIP-712 path is), and the state commitment stays as it is. The 64 bytes are small next to the
//! `clientDataJSON` an assertion carries anyway.
//!
//! An assertion authorizes a transaction when (docs/PROTOCOL.md, "Passkey accounts"):
//! `clientDataJSON.type` is `webauthn.get`, its `challenge` is the transaction's digest in
//! base64url without padding, its `origin` is one the network allows and it is not cross-origin;
//! `authenticatorData` holds the SHA-256 of the network's RP ID and the user-presence flag (and
//! the user-verification flag when the network requires it); and the P-256 signature over
//! `authenticatorData ‖ SHA-256(clientDataJSON)` verifies with a low `s`. Low-S is *enforced*:
//! authenticators sign with either `s`, so clients replace a high `s` by `n − s` before they
//! submit; each assertion then has one accepted encoding, as EIP-2 gives the Ethereum path.

use borsh::{BorshDeserialize, BorshSerialize};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::hashing::{sha256, tagged_hash, tags};

#[cfg(feature = "software-passkey")]
pub mod software;

/// The largest `clientDataJSON` accepted. Browsers write about 150 bytes (type, challenge,
/// origin, crossOrigin and a padding key); 1 KiB leaves room for `topOrigin` and future keys
/// while bounding what one transaction makes every replayer parse.
pub const MAX_CLIENT_DATA_BYTES: usize = 1024;
/// The largest `authenticatorData` accepted: 37 bytes plus extension outputs, which passkey
/// assertions rarely carry.
pub const MAX_AUTHENTICATOR_DATA_BYTES: usize = 512;
/// At most this many allowed origins per network: each is compared on every verification.
pub const MAX_ALLOWED_ORIGINS: usize = 16;
const MAX_ORIGIN_BYTES: usize = 256;
/// The fixed part of `authenticatorData`: RP ID hash (32), flags (1), signature counter (4).
const AUTHENTICATOR_DATA_FIXED_BYTES: usize = 37;
const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_CREDENTIAL: u8 = 0x40;
const FLAG_EXTENSION_DATA: u8 = 0x80;

/// Half the P-256 group order, `⌊n/2⌋`: a signature's `s` must not exceed it.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];
/// The P-256 group order `n`, for normalising a high `s` to `n − s`.
pub const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A network's passkey rules: which web origins may ask for assertions, and for which RP ID.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebAuthnParams {
    /// The WebAuthn relying party id: a domain name (browsers refuse IP addresses), e.g.
    /// `localhost` on the devnet. Authenticators put its SHA-256 in `authenticatorData`.
    pub rp_id: String,
    /// The exact `origin` values (`scheme://host[:port]`) a `clientDataJSON` may carry, sorted
    /// and without duplicates. The devnet sets them from its ports.
    pub allowed_origins: Vec<String>,
    /// Require the user-verification flag (PIN or biometric), not only user presence.
    pub require_user_verification: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthnParamsError {
    #[error("the WebAuthn RP ID must be a domain name of 1 to 253 characters a-z, 0-9, `-` and `.`, got {0:?}")]
    RpId(String),
    #[error("a network with passkeys allows 1 to {MAX_ALLOWED_ORIGINS} origins, got {0}")]
    OriginCount(usize),
    #[error(
        "allowed origin {0:?} must be `http://` or `https://` and a host (no path, no trailing `/`), at most {MAX_ORIGIN_BYTES} bytes"
    )]
    Origin(String),
    #[error("the allowed origins must be sorted and free of duplicates (found {0:?} out of order)")]
    OriginOrder(String),
}

impl WebAuthnParams {
    pub fn validate(&self) -> Result<(), WebAuthnParamsError> {
        let id = &self.rp_id;
        let id_ok = !id.is_empty()
            && id.len() <= 253
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && id.bytes().any(|b| b.is_ascii_lowercase());
        if !id_ok {
            return Err(WebAuthnParamsError::RpId(id.clone()));
        }
        let count = self.allowed_origins.len();
        if count == 0 || count > MAX_ALLOWED_ORIGINS {
            return Err(WebAuthnParamsError::OriginCount(count));
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let ok = origin.len() <= MAX_ORIGIN_BYTES
                && host.is_some_and(|h| !h.is_empty() && !h.contains('/') && h.is_ascii());
            if !ok {
                return Err(WebAuthnParamsError::Origin(origin.clone()));
            }
            if i > 0 && self.allowed_origins[i - 1] >= *origin {
                return Err(WebAuthnParamsError::OriginOrder(origin.clone()));
            }
        }
        Ok(())
    }
}

/// The rules ready for the hot path: the RP ID hashed once.
#[derive(Clone, Debug)]
pub struct PasskeyRules {
    rp_id_hash: [u8; 32],
    allowed_origins: Vec<String>,
    require_user_verification: bool,
}

impl PasskeyRules {
    pub fn new(params: &WebAuthnParams) -> Self {
        PasskeyRules {
            rp_id_hash: sha256(params.rp_id.as_bytes()),
            allowed_origins: params.allowed_origins.clone(),
            require_user_verification: params.require_user_verification,
        }
    }
}

/// An uncompressed P-256 public key without its `0x04` prefix: `x ‖ y`, 32 bytes each, as the
/// credential's COSE key gives them.
pub type P256PublicKey = [u8; 64];

/// The address of the passkey account with public key `x ‖ y`:
/// the last 20 bytes of `tagged_hash("bridge/passkey-address/v1", x ‖ y)`. An Ethereum address
/// is the last 20 bytes of Keccak-256 of a secp256k1 key: another hash under no tag, so no key of
/// one kind names the other kind's account except by a 160-bit hash collision.
pub fn passkey_address(public_key: &P256PublicKey) -> Address {
    let hash = tagged_hash(tags::PASSKEY_ADDRESS, &[public_key]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    Address(address)
}

/// What a browser's `navigator.credentials.get` returns, and the key that made it.
#[derive(Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    #[serde(with = "crate::serde_hex::fixed")]
    pub public_key: P256PublicKey,
    #[serde(with = "crate::serde_hex::bytes")]
    pub authenticator_data: Vec<u8>,
    #[serde(with = "crate::serde_hex::bytes")]
    pub client_data_json: Vec<u8>,
    /// `r ‖ s`, 32 bytes each, big-endian, with `s ≤ n/2` (the DER signature authenticators
    /// return, decoded and normalised by the client).
    #[serde(with = "crate::serde_hex::fixed")]
    pub signature: [u8; 64],
}

impl std::fmt::Debug for PasskeyAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyAssertion")
            .field("account", &passkey_address(&self.public_key))
            .field("authenticator_data", &hex::encode(&self.authenticator_data))
            .field("client_data_json", &String::from_utf8_lossy(&self.client_data_json))
            .field("signature", &hex::encode(self.signature))
            .finish()
    }
}

/// Why an assertion does not authorize a transaction. Each has its own `code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    #[error("this network takes no passkey transactions (its parameters have no `webauthn` rules)")]
    Disabled,
    #[error("clientDataJSON is {0} bytes; the most accepted is {MAX_CLIENT_DATA_BYTES}")]
    ClientDataTooLarge(usize),
    #[error("clientDataJSON is not a JSON object with string `type`, `challenge` and `origin`: {0}")]
    ClientDataMalformed(String),
    #[error("clientDataJSON.type is {0:?}; an assertion that signs a transaction has type \"webauthn.get\"")]
    WrongType(String),
    #[error(
        "clientDataJSON.challenge is {got:?}, not this transaction's digest {expected:?} (base64url): sign this exact transaction, with this network's EIP-712 domain"
    )]
    WrongChallenge { got: String, expected: String },
    #[error("the assertion was made in a cross-origin frame; sign on the bridge's own page")]
    CrossOrigin,
    #[error("origin {0:?} is not one this network allows for passkeys (GET /info lists them)")]
    WrongOrigin(String),
    #[error(
        "authenticatorData must be 37 to {MAX_AUTHENTICATOR_DATA_BYTES} bytes (37 exactly unless the extension flag is set), with no attested credential: {0}"
    )]
    AuthenticatorDataMalformed(String),
    #[error("authenticatorData is for another relying party: its RP ID hash is not SHA-256 of this network's RP ID")]
    WrongRpId,
    #[error("the authenticator did not set the user-presence flag: the user must touch or confirm the passkey")]
    UserNotPresent,
    #[error("this network requires user verification (PIN or biometric) and the authenticator did not set that flag")]
    UserNotVerified,
    #[error("the signature's s is above n/2: replace s by n - s (the same signature, in the one accepted form)")]
    HighS,
    #[error("the passkey {signer} is not the `from` account {from}: sign with the account's own passkey")]
    SignerMismatch { signer: Address, from: Address },
    #[error("the P-256 signature does not verify with the transaction's public key")]
    BadSignature,
}

impl PasskeyError {
    pub fn code(&self) -> &'static str {
        match self {
            PasskeyError::Disabled => "passkeys_disabled",
            PasskeyError::ClientDataTooLarge(_) => "passkey_client_data_too_large",
            PasskeyError::ClientDataMalformed(_) => "passkey_client_data_malformed",
            PasskeyError::WrongType(_) => "passkey_wrong_type",
            PasskeyError::WrongChallenge { .. } => "passkey_wrong_challenge",
            PasskeyError::CrossOrigin => "passkey_cross_origin",
            PasskeyError::WrongOrigin(_) => "passkey_wrong_origin",
            PasskeyError::AuthenticatorDataMalformed(_) => "passkey_authenticator_data_malformed",
            PasskeyError::WrongRpId => "passkey_wrong_rp_id",
            PasskeyError::UserNotPresent => "passkey_user_not_present",
            PasskeyError::UserNotVerified => "passkey_user_not_verified",
            PasskeyError::HighS => "passkey_high_s",
            PasskeyError::SignerMismatch { .. } => "passkey_signer_mismatch",
            PasskeyError::BadSignature => "passkey_bad_signature",
        }
    }
}

/// The fields of `clientDataJSON` the bridge reads. Other keys (browsers add
/// `other_keys_can_be_added_here` and may add `topOrigin`) are ignored; a repeated key is an
/// error (serde refuses duplicate fields), so no two readers can see different values.
#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

impl PasskeyAssertion {
    /// Checks that this assertion authorizes the transaction with digest `digest` from `from`
    /// under `rules`. Cheap checks first: the signature last, so junk costs little.
    pub fn verify(&self, digest: &[u8; 32], from: Address, rules: &PasskeyRules) -> Result<(), PasskeyError> {
        let client_data = parse_client_data(&self.client_data_json)?;
        if client_data.kind != "webauthn.get" {
            return Err(PasskeyError::WrongType(client_data.kind));
        }
        let expected = base64url(digest);
        if client_data.challenge != expected {
            return Err(PasskeyError::WrongChallenge { got: client_data.challenge, expected });
        }
        if client_data.cross_origin == Some(true) {
            return Err(PasskeyError::CrossOrigin);
        }
        if !rules.allowed_origins.contains(&client_data.origin) {
            return Err(PasskeyError::WrongOrigin(client_data.origin));
        }
        self.check_authenticator_data(rules)?;
        if self.signature[32..] > P256_HALF_ORDER[..] {
            return Err(PasskeyError::HighS);
        }
        let signer = passkey_address(&self.public_key);
        if signer != from {
            return Err(PasskeyError::SignerMismatch { signer, from });
        }
        let mut message = Vec::with_capacity(self.authenticator_data.len() + 32);
        message.extend_from_slice(&self.authenticator_data);
        message.extend_from_slice(&sha256(&self.client_data_json));
        let mut key = [0u8; 65];
        key[0] = 0x04;
        key[1..].copy_from_slice(&self.public_key);
        // ring refuses a key off the curve and r or s outside 1..n as it refuses a wrong signature.
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
            .verify(&message, &self.signature)
            .map_err(|_| PasskeyError::BadSignature)
    }

    fn check_authenticator_data(&self, rules: &PasskeyRules) -> Result<(), PasskeyError> {
        let data = &self.authenticator_data;
        let malformed = |why: &str| PasskeyError::AuthenticatorDataMalformed(why.to_owned());
        if data.len() < AUTHENTICATOR_DATA_FIXED_BYTES {
            return Err(malformed("too short"));
        }
        if data.len() > MAX_AUTHENTICATOR_DATA_BYTES {
            return Err(malformed("too long"));
        }
        let flags = data[32];
        if flags & FLAG_ATTESTED_CREDENTIAL != 0 {
            return Err(malformed("the attested-credential flag is set (that is a registration, not an assertion)"));
        }
        if flags & FLAG_EXTENSION_DATA == 0 && data.len() != AUTHENTICATOR_DATA_FIXED_BYTES {
            return Err(malformed("bytes after the signature counter without the extension flag"));
        }
        if data[..32] != rules.rp_id_hash {
            return Err(PasskeyError::WrongRpId);
        }
        if flags & FLAG_USER_PRESENT == 0 {
            return Err(PasskeyError::UserNotPresent);
        }
        if rules.require_user_verification && flags & FLAG_USER_VERIFIED == 0 {
            return Err(PasskeyError::UserNotVerified);
        }
        Ok(())
    }
}

fn parse_client_data(bytes: &[u8]) -> Result<ClientData, PasskeyError> {
    if bytes.len() > MAX_CLIENT_DATA_BYTES {
        return Err(PasskeyError::ClientDataTooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| PasskeyError::ClientDataMalformed(e.to_string()))
}

/// Base64url without padding (RFC 4648 §5), as WebAuthn writes the challenge.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

/// `n − s` for a P-256 `s` (big-endian): the other valid `s` of the same signature.
pub fn p256_negate_s(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// Brings `r ‖ s` to the accepted low-S form.
pub fn normalize_s(signature: &mut [u8; 64]) {
    if signature[32..] > P256_HALF_ORDER[..] {
        let mut s = [0u8; 32];
        s.copy_from_slice(&signature[32..]);
        signature[32..].copy_from_slice(&p256_negate_s(&s));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64url_matches_rfc4648() {
        // RFC 4648 §10's vectors, without padding and in the URL alphabet.
        let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")];
        for (input, expected) in cases {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn half_order_is_half_the_order() {
        // n = 2·⌊n/2⌋ + 1: doubling the half and adding one gives the order back.
        let mut doubled = [0u8; 32];
        let mut carry = 1u16;
        for i in (0..32).rev() {
            let v = u16::from(P256_HALF_ORDER[i]) * 2 + carry;
            doubled[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(doubled, P256_ORDER);
        assert_eq!(p256_negate_s(&P256_HALF_ORDER), {
            let mut high = P256_HALF_ORDER;
            high[31] += 1;
            high
        });
    }

    #[test]
    fn normalize_leaves_low_s_and_flips_high_s() {
        let mut low = [0u8; 64];
        low[63] = 5;
        let before = low;
        normalize_s(&mut low);
        assert_eq!(low, before);
        let mut high = [0u8; 64];
        high[32..].copy_from_slice(&p256_negate_s(&before[32..].try_into().unwrap()));
        normalize_s(&mut high);
        assert_eq!(high, before);
    }

    #[test]
    fn params_are_validated() {
        let good = WebAuthnParams {
            rp_id: "localhost".into(),
            allowed_origins: vec!["http://localhost:8081".into(), "https://bridge.example".into()],
            require_user_verification: false,
        };
        assert_eq!(good.validate(), Ok(()));
        let ip = WebAuthnParams { rp_id: "127.0.0.1".into(), ..good.clone() };
        assert!(matches!(ip.validate(), Err(WebAuthnParamsError::RpId(_))));
        let unsorted =
            WebAuthnParams { allowed_origins: good.allowed_origins.iter().rev().cloned().collect(), ..good.clone() };
        assert!(matches!(unsorted.validate(), Err(WebAuthnParamsError::OriginOrder(_))));
        let path = WebAuthnParams { allowed_origins: vec!["http://localhost/app".into()], ..good.clone() };
        assert!(matches!(path.validate(), Err(WebAuthnParamsError::Origin(_))));
        let none = WebAuthnParams { allowed_origins: vec![], ..good };
        assert_eq!(none.validate(), Err(WebAuthnParamsError::OriginCount(0)));
    }
}
