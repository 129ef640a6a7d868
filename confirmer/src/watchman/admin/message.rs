//! The vault's admin messages as the watchmen sign them: what an operator approves, what a
//! signing request carries, and the exact digest the vault recomputes
//! ([`bridge::eth_settlement`]; bytes in docs/PROTOCOL.md, "Admin messages").

use bridge::Address;
use bridge::eth_settlement::{VaultDomain, accept_key_message, rotate_key_message, set_cap_message, unpause_message};
use serde::{Deserialize, Serialize};
use tss::{KeyPath, SigningContext, SigningRequest};

/// `SigningContext::purpose` of every vault admin message; the request's `detail` is the
/// [`AdminMessage`] as JSON, which each watchman rebuilds the digest from.
pub const SIGN_ETH_ADMIN: &str = "eth-admin";

/// Largest `detail` an admin request may carry: an [`AdminMessage`] as JSON is a few hundred
/// bytes; anything far larger is not one and is refused before it is parsed.
pub const MAX_ADMIN_DETAIL_BYTES: usize = 4_096;

/// What the group is asked to do to the vault. The kinds for a key rotation exist so that a
/// rotation's approvals are recorded and checked the same way as the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// No `deny_unknown_fields` here or below: serde cannot combine it with `flatten`.
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AdminAction {
    /// `unpause(nonce, sig)`.
    Unpause,
    /// `setCap(token, limit, window, nonce, sig)`; `token` zero for ether, `limit` 0 removes it.
    SetCap {
        token: Address,
        /// Base units per window, as a decimal string in JSON (a u128 does not fit a JSON number).
        #[serde(with = "decimal_u128")]
        limit: u128,
        window_secs: u64,
    },
    /// `proposeKey(newKey, nonce, sig)`, signed by the current key.
    ProposeKey {
        #[serde(with = "hex_32")]
        new_key: [u8; 32],
    },
    /// `acceptKey(sig)`, signed by the *new* key; `domain.epoch` is then the new epoch.
    AcceptKey {
        #[serde(with = "hex_32")]
        new_key: [u8; 32],
    },
    /// The ledger's `KeyRotation` (docs/PROTOCOL.md, "Key rotation"), signed by the current key:
    /// `epoch` is the new ledger epoch, `network` the bridge network's genesis hash, `old_key`
    /// `x(Q)` of the group that signs, `new_key` the new group's `x(P)` (its internal key; the
    /// output key is derived). Not a vault call: the signed rotation goes to the coordinator,
    /// which can only carry it.
    KeyRotation {
        #[serde(with = "hex_32")]
        network: [u8; 32],
        #[serde(with = "hex_32")]
        old_key: [u8; 32],
        #[serde(with = "hex_32")]
        new_key: [u8; 32],
        #[serde(with = "hex_32")]
        roster_hash: [u8; 32],
    },
}

impl AdminAction {
    /// The action's kind, as operators type it and logs show it.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminAction::Unpause => "unpause",
            AdminAction::SetCap { .. } => "set-cap",
            AdminAction::ProposeKey { .. } => "propose-key",
            AdminAction::AcceptKey { .. } => "accept-key",
            AdminAction::KeyRotation { .. } => "key-rotation",
        }
    }
}

/// One admin message exactly: the action, the vault it is for, and the vault's admin nonce it
/// consumes. Two messages with equal digests are the same message to the vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminMessage {
    #[serde(flatten)]
    pub action: AdminAction,
    pub chain_id: u64,
    pub vault: Address,
    /// The vault's `keyEpoch` the signature is for (for `accept-key`, the new epoch).
    pub epoch: u64,
    /// The vault's `adminNonce` this call consumes. `acceptKey` takes none: its message does not
    /// name it and it is kept here only so every approval reads the same.
    pub nonce: u64,
}

impl AdminMessage {
    pub fn new(action: AdminAction, domain: VaultDomain, nonce: u64) -> Self {
        AdminMessage { action, chain_id: domain.chain_id, vault: domain.vault, epoch: domain.epoch, nonce }
    }

    pub fn domain(&self) -> VaultDomain {
        VaultDomain { chain_id: self.chain_id, vault: self.vault, epoch: self.epoch }
    }

    /// The 32 bytes the group signs and the vault recomputes.
    pub fn digest(&self) -> [u8; 32] {
        let domain = self.domain();
        match &self.action {
            AdminAction::Unpause => unpause_message(&domain, self.nonce),
            AdminAction::SetCap { token, limit, window_secs } => {
                set_cap_message(&domain, self.nonce, *token, *limit, *window_secs)
            }
            AdminAction::ProposeKey { new_key } => rotate_key_message(&domain, self.nonce, *new_key),
            AdminAction::AcceptKey { new_key } => accept_key_message(&domain, *new_key),
            // An internal key that is not a curve point has no rotation: its digest is all zero,
            // which the policy refuses as malformed before anything is signed.
            AdminAction::KeyRotation { network, old_key, .. } => {
                self.key_rotation([0; 64]).map_or([0; 32], |r| r.signing_message(network, old_key))
            }
        }
    }

    /// The ledger's rotation this message names, with `signature`; `None` if it names none (or
    /// its new key is not a curve point).
    pub fn key_rotation(&self, signature: [u8; 64]) -> Option<bridge::KeyRotation> {
        let AdminAction::KeyRotation { new_key, roster_hash, .. } = &self.action else { return None };
        Some(bridge::KeyRotation {
            epoch: self.epoch,
            internal_key: *new_key,
            output_key: bridge::rotation::output_key_of(new_key)?,
            roster_hash: *roster_hash,
            signature,
        })
    }

    /// The signing request for this message: always the vault key, never a tweaked path.
    pub fn request(&self) -> SigningRequest {
        SigningRequest {
            message: self.digest().to_vec(),
            key_path: KeyPath::Vault,
            context: SigningContext {
                chain: "ethereum".into(),
                batch: None,
                purpose: SIGN_ETH_ADMIN.into(),
                // Serializing a plain struct of integers, strings and enums cannot fail.
                detail: serde_json::to_vec(self).unwrap_or_default(),
            },
        }
    }

    /// The message a request claims to sign, from its `detail`; `None` if it is not one.
    pub fn from_detail(detail: &[u8]) -> Option<Self> {
        if detail.len() > MAX_ADMIN_DETAIL_BYTES {
            return None;
        }
        serde_json::from_slice(detail).ok()
    }
}

impl std::fmt::Display for AdminMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.action.kind())?;
        match &self.action {
            AdminAction::Unpause => {}
            AdminAction::SetCap { token, limit, window_secs } => {
                write!(f, " token {token} limit {limit} window {window_secs}s")?
            }
            AdminAction::ProposeKey { new_key } | AdminAction::AcceptKey { new_key } => {
                write!(f, " key {}", hex::encode(new_key))?
            }
            AdminAction::KeyRotation { network, old_key, new_key, roster_hash } => write!(
                f,
                " of network {} from key {} to key {} roster {}",
                hex::encode(network),
                hex::encode(old_key),
                hex::encode(new_key),
                hex::encode(roster_hash)
            )?,
        }
        write!(f, " (vault {} on chain {}, epoch {}, nonce {})", self.vault, self.chain_id, self.epoch, self.nonce)
    }
}

mod decimal_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number of base units")))
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text.trim_start_matches("0x")).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("a key is 32 bytes of hex"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn domain() -> VaultDomain {
        VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 0 }
    }

    #[test]
    fn the_digest_is_the_vaults_message() {
        let cap = AdminAction::SetCap { token: Address::ZERO, limit: 5, window_secs: 60 };
        assert_eq!(AdminMessage::new(AdminAction::Unpause, domain(), 3).digest(), unpause_message(&domain(), 3));
        assert_eq!(AdminMessage::new(cap, domain(), 4).digest(), set_cap_message(&domain(), 4, Address::ZERO, 5, 60));
        let key = AdminAction::ProposeKey { new_key: [7; 32] };
        assert_eq!(AdminMessage::new(key, domain(), 5).digest(), rotate_key_message(&domain(), 5, [7; 32]));
    }

    #[test]
    fn the_digests_are_docs_protocol_vectors() {
        let domain = VaultDomain { chain_id: 31337, vault: Address([0x11; 20]), epoch: 0 };
        assert_eq!(
            hex::encode(AdminMessage::new(AdminAction::Unpause, domain, 0).digest()),
            "8f9aaa49f57c1b9fbd4a082d347e40781ea34fa0fbc2fce24df31e4b96bd2d32"
        );
        assert_eq!(
            hex::encode(AdminMessage::new(AdminAction::ProposeKey { new_key: [7; 32] }, domain, 1).digest()),
            "e1b03e84a1bc9a96933c3fa78daaa450d67b5a99c4a44b5da26b8ea91a5696f3"
        );
    }

    #[test]
    fn a_key_rotation_signs_the_ledgers_message_and_names_the_signed_rotation() {
        // x(G): a valid x-only key.
        let mut new_key = [0; 32];
        hex::decode_to_slice("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", &mut new_key).unwrap();
        let action = AdminAction::KeyRotation { network: [1; 32], old_key: [3; 32], new_key, roster_hash: [4; 32] };
        let message = AdminMessage::new(action, VaultDomain { epoch: 5, ..domain() }, 0);
        let rotation = message.key_rotation([9; 64]).unwrap();
        assert_eq!((rotation.epoch, rotation.internal_key, rotation.signature), (5, new_key, [9; 64]));
        assert_eq!(message.digest(), rotation.signing_message(&[1; 32], &[3; 32]));
        assert_eq!(AdminMessage::from_detail(&message.request().context.detail), Some(message.clone()));
        // A new key that is no curve point names no rotation.
        let bad =
            AdminAction::KeyRotation { network: [1; 32], old_key: [3; 32], new_key: [0xff; 32], roster_hash: [4; 32] };
        assert_eq!(AdminMessage::new(bad, domain(), 0).key_rotation([0; 64]), None);
    }

    #[test]
    fn a_message_survives_the_request_detail_and_a_junk_detail_is_none() {
        let message = AdminMessage::new(
            AdminAction::SetCap { token: Address([0x22; 20]), limit: u128::MAX, window_secs: 86_400 },
            domain(),
            9,
        );
        let request = message.request();
        assert_eq!(request.message, message.digest().to_vec());
        assert_eq!(AdminMessage::from_detail(&request.context.detail), Some(message));
        assert_eq!(AdminMessage::from_detail(b"{\"kind\":\"unpause\"}"), None);
        assert_eq!(AdminMessage::from_detail(&vec![b' '; MAX_ADMIN_DETAIL_BYTES + 1]), None);
    }
}
