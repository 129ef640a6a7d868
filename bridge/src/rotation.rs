//! Key rotation in the ledger: the `KeyRotation` system transaction that moves the watchmen's
//! group key to a new one, and the key history every replayer derives from it.
//!
//! The key change is part of the replayed history so that every replayer agrees from which batch
//! the new key applies (to deposit addresses and to payouts). The coordinator can only carry a
//! rotation, never make one: the state-transition function takes it only with a BIP-340
//! signature by the *current* group's output key `Q` over a tagged message naming the network,
//! the new epoch and the new key, which the old watchmen (FROST) give only after t of their
//! operators approved it. A batch carrying a rotation without that signature is an invalid
//! transaction to every replayer (the confirmer's `invalid_tx` alarm). Formats: docs/PROTOCOL.md,
//! "Key rotation".
//!
//! Epoch 0 is the key the network is born with (`NetworkParams::btc_vault.group_key`); each
//! accepted rotation records one more epoch under [`crate::StateKey::GroupKey`].

use borsh::{BorshDeserialize, BorshSerialize};
use secp256k1::{Message, SECP256K1, XOnlyPublicKey, schnorr};
use serde::{Deserialize, Serialize};

use crate::btc_vault::{VaultKeys, VaultOwner};
use crate::hashing::{tagged_hash, tags};
use crate::state::{Changes, State};
use crate::tx::TxPlace;

/// `SystemTx::KeyRotation`: the group key from `epoch` on, signed by the key of `epoch - 1`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The new key epoch: one more than the ledger's latest (the genesis key is epoch 0). The
    /// Ethereum vault's `keyEpoch` after `acceptKey` is the same number.
    pub epoch: u64,
    /// `x(P)`: the new group's untweaked FROST key, the Taproot internal key of the new vault
    /// address and of every deposit address derived from it.
    #[serde(with = "crate::serde_hex::fixed")]
    pub internal_key: [u8; 32],
    /// `x(Q)`: `P` tweaked by BIP-341 with no script tree; the key the new group signs under on
    /// both chains. Carried so that a reader need not tweak, and checked against `P`.
    #[serde(with = "crate::serde_hex::fixed")]
    pub output_key: [u8; 32],
    /// The hash of the new watchmen roster (docs/OPERATIONS.md, "Rotating the watchmen"): who
    /// holds the new shares, so operators can check the key is the one their ceremony made.
    #[serde(with = "crate::serde_hex::fixed")]
    pub roster_hash: [u8; 32],
    /// BIP-340 signature by the current group's output key over [`KeyRotation::signing_message`].
    #[serde(with = "crate::serde_hex::fixed")]
    pub signature: [u8; 64],
}

/// One entry of the key history: the value of `StateKey::GroupKey(epoch)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct KeyEpoch {
    #[serde(with = "crate::serde_hex::fixed")]
    pub internal_key: [u8; 32],
    #[serde(with = "crate::serde_hex::fixed")]
    pub output_key: [u8; 32],
    #[serde(with = "crate::serde_hex::fixed")]
    pub roster_hash: [u8; 32],
    /// The first batch whose deposit addresses and payouts use this key: the batch after the one
    /// that carried the rotation, so a batch is under one key throughout.
    pub from_batch: u64,
}

/// The group key in force at some batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ActiveKey {
    pub epoch: u64,
    pub key: KeyEpoch,
}

/// Why a `KeyRotation` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error(
        "this network's parameters carry no group key (btc_vault), so the ledger cannot check a key rotation's signature"
    )]
    NoGroupKey,
    #[error("the rotation is to epoch {got}, but the ledger's next key epoch is {expected}")]
    WrongEpoch { expected: u64, got: u64 },
    #[error(
        "the rotation to epoch {pending} applies from batch {from_batch}: a further rotation must wait for that batch"
    )]
    Pending { pending: u64, from_batch: u64 },
    #[error("the new internal key is not a valid BIP-340 x-only public key")]
    BadInternalKey,
    #[error("the new output key is not the internal key tweaked by BIP-341 with no script tree")]
    OutputKeyMismatch,
    #[error("the new key is a key the ledger already had (the one in force or an earlier one): make a new key")]
    SameKey,
    #[error(
        "the rotation is not signed by the current group key (epoch {epoch}, x(Q) {current}): only the old watchmen, each with its operator's approval, can sign it"
    )]
    NotSignedByGroup { epoch: u64, current: String },
}

impl RotationError {
    /// A stable machine-readable name, used as the API's error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            RotationError::NoGroupKey => "rotation_no_group_key",
            RotationError::WrongEpoch { .. } => "rotation_wrong_epoch",
            RotationError::Pending { .. } => "rotation_pending",
            RotationError::BadInternalKey => "rotation_bad_key",
            RotationError::OutputKeyMismatch => "rotation_output_key_mismatch",
            RotationError::SameKey => "rotation_same_key",
            RotationError::NotSignedByGroup { .. } => "rotation_not_signed_by_group",
        }
    }
}

/// `x(Q)` for `x(P)`: the BIP-341 tweak with no script tree. `None` if `P` is not a curve point.
pub fn output_key_of(internal_key: &[u8; 32]) -> Option<[u8; 32]> {
    use bitcoin::key::TapTweak;
    let internal = XOnlyPublicKey::from_slice(internal_key).ok()?;
    let (tweaked, _) = internal.tap_tweak(SECP256K1, None);
    Some(tweaked.to_x_only_public_key().serialize())
}

impl KeyRotation {
    /// The 32 bytes the old group signs:
    /// `tagged("bridge/key-rotation/v1", network ‖ u64le(epoch) ‖ x(Q_old) ‖ x(P) ‖ x(Q) ‖ roster_hash)`,
    /// `network` being the genesis hash. The old key is named so a signature is for one step of
    /// one network's history only.
    pub fn signing_message(&self, network: &[u8; 32], old_output_key: &[u8; 32]) -> [u8; 32] {
        tagged_hash(
            tags::KEY_ROTATION,
            &[
                network,
                &self.epoch.to_le_bytes(),
                old_output_key,
                &self.internal_key,
                &self.output_key,
                &self.roster_hash,
            ],
        )
    }
}

/// The genesis key (epoch 0), if the network has one.
fn genesis_key(state: &State) -> Option<KeyEpoch> {
    let vault = state.params().btc_vault.as_ref()?;
    let output_key = output_key_of(&vault.group_key)?;
    Some(KeyEpoch { internal_key: vault.group_key, output_key, roster_hash: [0; 32], from_batch: 0 })
}

/// The latest key the ledger knows, whether or not its first batch has come: the key that must
/// sign the next rotation.
pub fn latest_key(state: &State) -> Option<ActiveKey> {
    match state.key_epochs().next_back() {
        Some((epoch, key)) => Some(ActiveKey { epoch, key: *key }),
        None => genesis_key(state).map(|key| ActiveKey { epoch: 0, key }),
    }
}

/// The key in force at `batch`: deposit addresses made for it and payouts planned in it use
/// this key.
pub fn key_at(state: &State, batch: u64) -> Option<ActiveKey> {
    state
        .key_epochs()
        .rev()
        .find(|(_, key)| key.from_batch <= batch)
        .map(|(epoch, key)| ActiveKey { epoch, key: *key })
        .or_else(|| genesis_key(state).map(|key| ActiveKey { epoch: 0, key }))
}

/// Checks a rotation at `place` against the state; on success the one write it makes.
pub(crate) fn check_rotation(state: &State, r: &KeyRotation, place: TxPlace) -> Result<Changes, RotationError> {
    let current = latest_key(state).ok_or(RotationError::NoGroupKey)?;
    let expected =
        current.epoch.checked_add(1).ok_or(RotationError::WrongEpoch { expected: u64::MAX, got: r.epoch })?;
    if r.epoch != expected {
        return Err(RotationError::WrongEpoch { expected, got: r.epoch });
    }
    if current.key.from_batch > place.batch {
        return Err(RotationError::Pending { pending: current.epoch, from_batch: current.key.from_batch });
    }
    let tweaked = output_key_of(&r.internal_key).ok_or(RotationError::BadInternalKey)?;
    if tweaked != r.output_key {
        return Err(RotationError::OutputKeyMismatch);
    }
    // Never back to any key of the history: outputs name their key, and one key under two
    // epochs would make an old output look current (a fresh DKG never repeats a key anyway).
    let genesis = genesis_key(state).map(|k| k.internal_key);
    if genesis == Some(r.internal_key) || state.key_epochs().any(|(_, k)| k.internal_key == r.internal_key) {
        return Err(RotationError::SameKey);
    }
    let not_signed =
        || RotationError::NotSignedByGroup { epoch: current.epoch, current: hex::encode(current.key.output_key) };
    let signer = XOnlyPublicKey::from_slice(&current.key.output_key).map_err(|_| not_signed())?;
    let signature = schnorr::Signature::from_slice(&r.signature).map_err(|_| not_signed())?;
    let message = Message::from_digest(r.signing_message(&place.network, &current.key.output_key));
    SECP256K1.verify_schnorr(&signature, &message, &signer).map_err(|_| not_signed())?;
    let from_batch = place.batch.checked_add(1).ok_or(RotationError::WrongEpoch { expected, got: r.epoch })?;
    let entry =
        KeyEpoch { internal_key: r.internal_key, output_key: r.output_key, roster_hash: r.roster_hash, from_batch };
    Ok(Changes { key_epoch: Some((r.epoch, entry)), ..Changes::default() })
}

/// How a Bitcoin key rotation hands over, fixed at genesis (`NetworkParams::rotation`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationParams {
    /// For how many batches after a new key comes into force a deposit that still arrives at
    /// an address of the key before it is credited (`SystemTx::BtcKeyedDeposit`) and swept. After
    /// it the old addresses are dead to the ledger and the old shares may be destroyed once
    /// their outputs are swept (docs/OPERATIONS.md).
    pub old_key_grace_batches: u64,
}

/// The default grace: 100,000 batches, about 28 hours at the coordinator's default of one
/// batch a second. Long enough for a wallet that cached an old address to be noticed, short
/// enough that the old watchmen are not held for days.
pub const DEFAULT_OLD_KEY_GRACE_BATCHES: u64 = 100_000;
/// The longest grace a network may set: the old set must be released some day.
pub const MAX_OLD_KEY_GRACE_BATCHES: u64 = 100_000_000;

impl Default for RotationParams {
    fn default() -> Self {
        RotationParams { old_key_grace_batches: DEFAULT_OLD_KEY_GRACE_BATCHES }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationParamsError {
    #[error("the old-key grace must be 0 to {max} batches, got {got}")]
    Grace { got: u64, max: u64 },
}

impl RotationParams {
    pub fn validate(&self) -> Result<(), RotationParamsError> {
        if self.old_key_grace_batches > MAX_OLD_KEY_GRACE_BATCHES {
            return Err(RotationParamsError::Grace { got: self.old_key_grace_batches, max: MAX_OLD_KEY_GRACE_BATCHES });
        }
        Ok(())
    }
}

/// The key of `epoch` as an output owner names it: `None` for the genesis key (epoch 0).
fn rotated_key_of(state: &State, epoch: u64) -> Option<Option<[u8; 32]>> {
    if epoch == 0 {
        return Some(None);
    }
    state.key_epochs().find(|(e, _)| *e == epoch).map(|(_, key)| Some(key.internal_key))
}

/// The owner of `account`'s deposit output made at `batch`: its address under the key in force.
pub fn deposit_owner_at(state: &State, batch: u64, account: crate::Address) -> VaultOwner {
    let rotated = key_at(state, batch).filter(|k| k.epoch > 0).map(|k| k.key.internal_key);
    VaultOwner::account_under(rotated, account)
}

/// The vault's keys as the ledger knows them (for building payouts); `None` without a vault.
pub fn vault_keys(state: &State) -> Option<VaultKeys> {
    let params = state.params().btc_vault?;
    let rotated = state.key_epochs().map(|(_, key)| (key.from_batch, key.internal_key)).collect();
    Some(VaultKeys { params, rotated })
}

/// Whether an output of `owner` is under the key in force at `batch`.
pub fn is_current_at(state: &State, batch: u64, owner: &VaultOwner) -> bool {
    let current = key_at(state, batch).filter(|k| k.epoch > 0).map(|k| k.key.internal_key);
    owner.rotated_key() == current
}

/// Why a deposit to an address of a named key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyedDepositError {
    #[error("key epoch {0} is not in the ledger's key history")]
    UnknownEpoch(u64),
    #[error("key epoch {epoch} is in force only from batch {from_batch}: credit the deposit from then on")]
    NotYetInForce { epoch: u64, from_batch: u64 },
    #[error(
        "the grace for deposits to key epoch {epoch}'s addresses ended at batch {ended}: this deposit cannot be credited (its coins are not under a key the watchmen keep)"
    )]
    GraceOver { epoch: u64, ended: u64 },
}

impl KeyedDepositError {
    pub fn code(&self) -> &'static str {
        match self {
            KeyedDepositError::UnknownEpoch(_) => "deposit_key_unknown_epoch",
            KeyedDepositError::NotYetInForce { .. } => "deposit_key_not_in_force",
            KeyedDepositError::GraceOver { .. } => "deposit_key_grace_over",
        }
    }
}

/// The owner of a deposit, credited at `batch`, to `account`'s address under the key of
/// `epoch`: the key in force, or an earlier key until `old_key_grace_batches` after the next
/// key's first batch (a late deposit, swept afterwards). A key not yet in force is refused (the
/// coordinator credits it once it is), so naming the key makes a deposit's owner independent of
/// which batch it lands in.
pub fn keyed_deposit_owner(
    state: &State,
    batch: u64,
    epoch: u64,
    account: crate::Address,
) -> Result<VaultOwner, KeyedDepositError> {
    let rotated = rotated_key_of(state, epoch).ok_or(KeyedDepositError::UnknownEpoch(epoch))?;
    let current = key_at(state, batch).ok_or(KeyedDepositError::UnknownEpoch(epoch))?;
    if epoch > current.epoch {
        let from_batch = state.key_epochs().find(|(e, _)| *e == epoch).map_or(0, |(_, key)| key.from_batch);
        return Err(KeyedDepositError::NotYetInForce { epoch, from_batch });
    }
    if epoch < current.epoch {
        let next_from = state
            .key_epochs()
            .find(|(e, _)| *e == epoch + 1)
            .map(|(_, key)| key.from_batch)
            .ok_or(KeyedDepositError::UnknownEpoch(epoch + 1))?;
        let ended = next_from.saturating_add(state.params().rotation_rules().old_key_grace_batches);
        if batch >= ended {
            return Err(KeyedDepositError::GraceOver { epoch, ended });
        }
    }
    Ok(VaultOwner::account_under(rotated, account))
}

/// The epoch of the group key `internal_key` (`x(P)`) in the ledger's history, if it is there.
pub fn epoch_of_key(state: &State, internal_key: &[u8; 32]) -> Option<u64> {
    if state.params().btc_vault.is_some_and(|v| v.group_key == *internal_key) {
        return Some(0);
    }
    state.key_epochs().find(|(_, key)| key.internal_key == *internal_key).map(|(epoch, _)| epoch)
}
