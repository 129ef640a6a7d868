//! The Bitcoin vault as the ledger sees it: the group key and fee bounds the network is born
//! with, the outputs the vault holds (each credited deposit, each confirmed payout's change),
//! and the withdrawals waiting for a payout transaction.
//!
//! Every replayer derives the same outputs from the same batches, so the payout transactions
//! built from them (see [`crate::btc_payout`]) are byte-identical at every watchman.

use borsh::{BorshDeserialize, BorshSerialize};
use secp256k1::{SECP256K1, XOnlyPublicKey};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::hashing::{tagged_hash, tags};
use crate::network::BtcNetwork;
use crate::withdrawals::BtcPayout;

/// What a network needs to hold and pay bitcoin.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BtcVaultParams {
    /// The watchmen's FROST group key `x(P)`: the Taproot internal key of the vault and of every
    /// deposit address.
    #[serde(with = "crate::serde_hex::fixed")]
    pub group_key: [u8; 32],
    /// The fee rates (sat/vB) a payout plan may carry; a batch outside them is invalid.
    pub min_fee_rate: u64,
    pub max_fee_rate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BtcVaultParamsError {
    #[error("the Bitcoin vault's group key is not a valid BIP-340 x-only public key")]
    GroupKey,
    #[error("the Bitcoin fee-rate bounds must satisfy 1 <= min <= max <= 10000 sat/vB, got {min}..={max}")]
    FeeRates { min: u64, max: u64 },
}

/// The most sat/vB a network may ever allow: far above any fee market, low enough that no
/// fee computation can overflow.
pub const MAX_FEE_RATE_BOUND: u64 = 10_000;

impl BtcVaultParams {
    pub fn validate(&self) -> Result<(), BtcVaultParamsError> {
        XOnlyPublicKey::from_slice(&self.group_key).map_err(|_| BtcVaultParamsError::GroupKey)?;
        let (min, max) = (self.min_fee_rate, self.max_fee_rate);
        if min == 0 || min > max || max > MAX_FEE_RATE_BOUND {
            return Err(BtcVaultParamsError::FeeRates { min, max });
        }
        Ok(())
    }

    /// The group key as a curve point.
    ///
    /// # Panics
    /// If these parameters were never [validated](Self::validate): `NetworkParams::validate` does
    /// it before a node starts, and the state-transition function before it plans or confirms.
    #[allow(clippy::panic)]
    pub fn internal_key(&self) -> XOnlyPublicKey {
        XOnlyPublicKey::from_slice(&self.group_key).unwrap_or_else(|_| panic!("an unvalidated vault group key"))
    }

    /// `x(Q)`: the vault's Taproot output key, `P` tweaked by BIP-341 with no script tree (the
    /// key the vault's change is paid to, and the Ethereum vault's key).
    pub fn output_key(&self) -> [u8; 32] {
        use bitcoin::key::TapTweak;
        let (tweaked, _) = self.internal_key().tap_tweak(SECP256K1, None);
        tweaked.to_x_only_public_key().serialize()
    }

    /// The output script of a vault output owned by `owner`: the vault's own key for change,
    /// the account's deposit key for a deposit; under the genesis key or, for an output made
    /// after a key rotation, under the key the owner names.
    pub fn script_of(&self, network: BtcNetwork, owner: &VaultOwner) -> bitcoin::ScriptBuf {
        let root = owner.merkle_root(network).map(bitcoin::TapNodeHash::assume_hidden);
        let internal = match owner.rotated_key() {
            None => self.internal_key(),
            #[allow(clippy::panic)]
            Some(key) => XOnlyPublicKey::from_slice(&key)
                .unwrap_or_else(|_| panic!("a rotated key the ledger took without checking it")),
        };
        bitcoin::ScriptBuf::new_p2tr(SECP256K1, internal, root)
    }
}

/// The vault's keys as the ledger knows them at some point: the genesis key and every key a
/// `KeyRotation` recorded, each with the first batch it applies to. What building a payout
/// needs besides the plan: its inputs name their keys, and its change goes to the key in force
/// at the plan's batch (a sweep's change to the key in force, whatever its inputs' key).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VaultKeys {
    pub params: BtcVaultParams,
    /// `(from_batch, x(P))` of each rotated key (epoch 1 and up), oldest first.
    pub rotated: Vec<(u64, [u8; 32])>,
}

impl VaultKeys {
    /// The keys of a network that has never rotated.
    pub fn genesis(params: BtcVaultParams) -> Self {
        VaultKeys { params, rotated: Vec::new() }
    }

    /// The owner of vault change made at `batch`: the vault key in force there.
    pub fn change_owner_at(&self, batch: u64) -> VaultOwner {
        match self.rotated.iter().rev().find(|(from, _)| *from <= batch) {
            Some((_, key)) => VaultOwner::RotatedVault { internal_key: *key },
            None => VaultOwner::Vault,
        }
    }

    /// The internal key `x(P)` spending an output of `owner`.
    pub fn internal_key_of(&self, owner: &VaultOwner) -> [u8; 32] {
        owner.rotated_key().unwrap_or(self.params.group_key)
    }
}

/// The Merkle root that makes `account`'s deposit address:
/// `tagged("bridge/btc-deposit", network ‖ account)`, the network as its one-byte code.
pub fn account_merkle_root(network: BtcNetwork, account: &Address) -> [u8; 32] {
    tagged_hash(tags::BTC_DEPOSIT, &[&[network as u8], &account.0])
}

/// Which key spends a vault output.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VaultOwner {
    /// The vault key (BIP-86-style tweak, no script tree): payout change.
    Vault = 0,
    /// An account's deposit address: the group key tweaked with the account's Merkle root.
    Account { account: Address } = 1,
    /// The vault key of a group key recorded by a `KeyRotation` (internal key `x(P)`): change
    /// made, and sweeps paid, after that key came into force. Outputs under the genesis key keep
    /// variants 0 and 1, so a network that never rotates keeps its encodings.
    RotatedVault {
        #[serde(with = "crate::serde_hex::fixed")]
        internal_key: [u8; 32],
    } = 2,
    /// An account's deposit address under a rotated group key.
    RotatedAccount {
        #[serde(with = "crate::serde_hex::fixed")]
        internal_key: [u8; 32],
        account: Address,
    } = 3,
}

impl VaultOwner {
    /// The Taproot Merkle root the spending key is tweaked with, if any.
    pub fn merkle_root(&self, network: BtcNetwork) -> Option<[u8; 32]> {
        match self {
            VaultOwner::Vault | VaultOwner::RotatedVault { .. } => None,
            VaultOwner::Account { account } | VaultOwner::RotatedAccount { account, .. } => {
                Some(account_merkle_root(network, account))
            }
        }
    }

    /// The rotated group key this output is under; `None`: the genesis key.
    pub fn rotated_key(&self) -> Option<[u8; 32]> {
        match self {
            VaultOwner::Vault | VaultOwner::Account { .. } => None,
            VaultOwner::RotatedVault { internal_key } | VaultOwner::RotatedAccount { internal_key, .. } => {
                Some(*internal_key)
            }
        }
    }

    /// The owner of `account`'s deposit output under the key `rotated` (`None`: genesis).
    pub fn account_under(rotated: Option<[u8; 32]>, account: Address) -> VaultOwner {
        match rotated {
            None => VaultOwner::Account { account },
            Some(internal_key) => VaultOwner::RotatedAccount { internal_key, account },
        }
    }
}

/// A transaction output, `txid` in internal byte order (as `L1Ref::Bitcoin`).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct OutPoint {
    #[serde(with = "crate::serde_hex::fixed")]
    pub txid: [u8; 32],
    pub vout: u32,
}

impl From<OutPoint> for bitcoin::OutPoint {
    fn from(o: OutPoint) -> Self {
        use bitcoin::hashes::Hash;
        bitcoin::OutPoint { txid: bitcoin::Txid::from_byte_array(o.txid), vout: o.vout }
    }
}

/// An output the vault holds and may spend in a payout.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VaultUtxo {
    pub outpoint: OutPoint,
    pub amount_sat: u64,
    pub owner: VaultOwner,
    /// The Bitcoin block the ledger took this output from: a deposit's `l1_height`, or the
    /// `height` of the `BtcPayoutConfirmed` that made it (0 for a payout's change before it
    /// confirms). A node whose tip is below it (plus the depth) may simply not have it yet, so
    /// the solvency watch does not count it missing there ("not seen yet" is not "absent").
    pub height: u64,
}

/// A debited Bitcoin withdrawal waiting for a payout plan, with the fee its user paid towards
/// the payout's miner fee.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct QueuedWithdrawal {
    pub payout: BtcPayout,
    pub fee_sat: u64,
}
