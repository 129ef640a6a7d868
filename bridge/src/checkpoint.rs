//! A checkpoint signed by the watchmen, for a confirmer that joins late (fast sync): "batch
//! `number` of this network has header hash `header_hash`", signed with BIP-340 by the group's
//! output key `Q` (FROST, t of n). Each watchman signs only when its own replay has made that
//! batch hard-final with that very header, so a valid signature means t watchmen replayed the
//! history up to it and agree; the coordinator alone cannot make one. Format: docs/PROTOCOL.md,
//! "Signed checkpoints".

use secp256k1::{Message, SECP256K1, XOnlyPublicKey, schnorr};
use serde::{Deserialize, Serialize};

use crate::hashing::{tagged_hash, tags};
use crate::network::NetworkParams;

/// The format's version, in the file and (through the tag) in the signed message.
pub const CHECKPOINT_VERSION: u8 = 1;

/// The 32 bytes the watchmen sign:
/// `tagged("bridge/checkpoint/v1", genesis_hash ‖ u64le(number) ‖ header_hash)`. The genesis hash
/// names the network (its parameters, the coordinator's key among them), so a checkpoint of one
/// network is no checkpoint of another; the tag keeps it apart from every other message the
/// group signs (withdrawal roots, payouts, admin messages, key rotations).
pub fn checkpoint_message(genesis_hash: &[u8; 32], number: u64, header_hash: &[u8; 32]) -> [u8; 32] {
    tagged_hash(tags::CHECKPOINT, &[genesis_hash, &number.to_le_bytes(), header_hash])
}

/// A signed checkpoint as a file (JSON) that operators pass around and a confirmer is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// [`CHECKPOINT_VERSION`].
    pub version: u8,
    /// The network's name, for people (the genesis hash in the message is what binds).
    pub network: String,
    /// The batch.
    pub number: u64,
    /// That batch's header hash.
    #[serde(with = "crate::serde_hex::fixed")]
    pub header_hash: [u8; 32],
    /// `x(Q)`: the group output key that signed, which the reader compares with the key it trusts.
    #[serde(with = "crate::serde_hex::fixed")]
    pub group_key: [u8; 32],
    /// BIP-340 signature over [`checkpoint_message`].
    #[serde(with = "crate::serde_hex::fixed")]
    pub signature: [u8; 64],
}

/// Why a signed checkpoint is refused. Nothing is taken from a refused checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint file is version {0}; this confirmer reads version {CHECKPOINT_VERSION}")]
    Version(u8),
    #[error(
        "the checkpoint is signed by key {found}, not the watchmen's group key {trusted} this confirmer trusts: get a checkpoint from these watchmen, or check --checkpoint-key"
    )]
    OtherKey { found: String, trusted: String },
    #[error(
        "the checkpoint's signature does not verify for network {network:?}, batch {number}: the file was altered, or it is for another network"
    )]
    BadSignature { network: String, number: u64 },
    #[error("batch numbers start at 1; a checkpoint at batch 0 names nothing")]
    ZeroBatch,
}

impl SignedCheckpoint {
    /// Checks the signature by `trusted_key` (`x(Q)` of the watchmen's group) over this
    /// network's checkpoint message; the (number, header hash) it vouches for.
    pub fn verify(&self, params: &NetworkParams, trusted_key: &[u8; 32]) -> Result<(u64, [u8; 32]), CheckpointError> {
        if self.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(self.version));
        }
        if self.number == 0 {
            return Err(CheckpointError::ZeroBatch);
        }
        if &self.group_key != trusted_key {
            return Err(CheckpointError::OtherKey {
                found: hex::encode(self.group_key),
                trusted: hex::encode(trusted_key),
            });
        }
        let bad = || CheckpointError::BadSignature { network: params.name.clone(), number: self.number };
        let key = XOnlyPublicKey::from_slice(trusted_key).map_err(|_| bad())?;
        let signature = schnorr::Signature::from_slice(&self.signature).map_err(|_| bad())?;
        let message = checkpoint_message(&params.genesis_hash(), self.number, &self.header_hash);
        SECP256K1.verify_schnorr(&signature, &Message::from_digest(message), &key).map_err(|_| bad())?;
        Ok((self.number, self.header_hash))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use secp256k1::Keypair;

    use super::*;
    use crate::{Address, Amount, AssetConfig, AssetId, BtcNetwork};

    fn test_params() -> NetworkParams {
        NetworkParams {
            name: "checkpoint-vector".into(),
            chain_id: 1,
            eth_vault: Address([9; 20]),
            btc_network: BtcNetwork::Regtest,
            btc_vault: None,
            coordinator_key: Keypair::from_seckey_slice(SECP256K1, &[1; 32]).unwrap().x_only_public_key().0.serialize(),
            fee_account: Address([1; 20]),
            assets: vec![AssetConfig { asset: AssetId::Eth, min_fee: Amount(1) }],
            forced: None,
            webauthn: None,
            rotation: None,
        }
    }

    fn signed(params: &NetworkParams, key: &Keypair, number: u64, header_hash: [u8; 32]) -> SignedCheckpoint {
        let message = checkpoint_message(&params.genesis_hash(), number, &header_hash);
        let signature = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(message), key);
        SignedCheckpoint {
            version: CHECKPOINT_VERSION,
            network: params.name.clone(),
            number,
            header_hash,
            group_key: key.x_only_public_key().0.serialize(),
            signature: signature.serialize(),
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_unaltered_for_its_network_and_key() {
        let params = test_params();
        let key = Keypair::from_seckey_slice(SECP256K1, &[7; 32]).unwrap();
        let trusted = key.x_only_public_key().0.serialize();
        let good = signed(&params, &key, 40, [0xab; 32]);
        assert_eq!(good.verify(&params, &trusted), Ok((40, [0xab; 32])));

        let mut moved = good.clone();
        moved.number = 41;
        assert!(matches!(moved.verify(&params, &trusted), Err(CheckpointError::BadSignature { .. })));
        let mut other_header = good.clone();
        other_header.header_hash[0] ^= 1;
        assert!(matches!(other_header.verify(&params, &trusted), Err(CheckpointError::BadSignature { .. })));
        let mut other_network = params.clone();
        other_network.chain_id += 1;
        assert!(matches!(good.verify(&other_network, &trusted), Err(CheckpointError::BadSignature { .. })));

        // Signed by another key: refused by name before any signature check.
        let stranger = Keypair::from_seckey_slice(SECP256K1, &[8; 32]).unwrap();
        let forged = signed(&params, &stranger, 40, [0xab; 32]);
        assert!(matches!(forged.verify(&params, &trusted), Err(CheckpointError::OtherKey { .. })));
        // ... and claiming the trusted key does not help.
        let claimed = SignedCheckpoint { group_key: trusted, ..forged };
        assert!(matches!(claimed.verify(&params, &trusted), Err(CheckpointError::BadSignature { .. })));

        let future = SignedCheckpoint { version: 2, ..good.clone() };
        assert_eq!(future.verify(&params, &trusted), Err(CheckpointError::Version(2)));
    }

    /// The vector in docs/PROTOCOL.md, "Signed checkpoints".
    #[test]
    fn the_protocol_vector() {
        let params = test_params();
        let message = checkpoint_message(&params.genesis_hash(), 1_000, &[0x11; 32]);
        let key = Keypair::from_seckey_slice(SECP256K1, &[7; 32]).unwrap();
        let file = signed(&params, &key, 1_000, [0x11; 32]);
        let json = serde_json::to_string(&file).unwrap();
        let vector = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/checkpoint.json"))
            .unwrap_or_default();
        let expected = format!(
            "{{\"genesis_hash\":\"{}\",\"message\":\"{}\",\"file\":{json}}}",
            hex::encode(params.genesis_hash()),
            hex::encode(message)
        );
        assert_eq!(vector.trim(), expected, "docs/vectors/checkpoint.json is stale: write {expected}");
    }
}
