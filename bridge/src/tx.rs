//! Transactions: what users sign, what L1 facts the system records, and the verified forms the
//! state-transition function accepts.

use alloy_primitives::U256;
use borsh::{BorshDeserialize, BorshSerialize};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::amount::Amount;
use crate::asset::{AssetId, Chain};
use crate::codec::to_bytes;
use crate::eip712::{self, Domain};
use crate::hashing::{tagged_hash, tags};
use crate::passkey::PasskeyError;
use crate::signature::Authorization;
use crate::stf::TxError;

/// Move funds to another bridge account.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: Address,
    pub to: Address,
    pub asset: AssetId,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: u64,
}

/// Take funds out of the bridge to an address on the asset's chain. `recipient` is kept as the
/// exact text the user signed; it is parsed and checked by the state-transition function.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    pub from: Address,
    pub asset: AssetId,
    pub amount: Amount,
    pub fee: Amount,
    pub recipient: String,
    pub nonce: u64,
}

/// The message of a user transaction, exactly as signed.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserTx {
    Transfer(Transfer) = 0,
    Withdraw(Withdraw) = 1,
}

impl UserTx {
    pub fn from(&self) -> Address {
        match self {
            UserTx::Transfer(t) => t.from,
            UserTx::Withdraw(w) => w.from,
        }
    }

    pub fn nonce(&self) -> u64 {
        match self {
            UserTx::Transfer(t) => t.nonce,
            UserTx::Withdraw(w) => w.nonce,
        }
    }

    /// The EIP-712 digest the user signs. It is also the transaction's hash: `from` and `nonce`
    /// are in the message, so no two accepted transactions share it.
    pub fn signing_hash(&self, domain: &Domain) -> [u8; 32] {
        match self {
            UserTx::Transfer(t) => domain.signing_hash(&t.to_eip712()),
            UserTx::Withdraw(w) => domain.signing_hash(&w.to_eip712()),
        }
    }
}

impl Transfer {
    pub fn to_eip712(&self) -> eip712::Transfer {
        eip712::Transfer {
            from: self.from.into(),
            to: self.to.into(),
            asset: self.asset.to_string(),
            amount: U256::from(self.amount.units()),
            fee: U256::from(self.fee.units()),
            nonce: self.nonce,
        }
    }
}

impl Withdraw {
    pub fn to_eip712(&self) -> eip712::Withdraw {
        eip712::Withdraw {
            from: self.from.into(),
            asset: self.asset.to_string(),
            amount: U256::from(self.amount.units()),
            fee: U256::from(self.fee.units()),
            recipient: self.recipient.clone(),
            nonce: self.nonce,
        }
    }
}

/// A user transaction with its authorization, as it travels in a batch body.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedUserTx {
    pub tx: UserTx,
    pub auth: Authorization,
}

impl SignedUserTx {
    /// Checks the authorization and returns the form the state-transition function accepts.
    pub fn verify(&self, domain: &Domain) -> Result<VerifiedUserTx, TxError> {
        let hash = self.tx.signing_hash(domain);
        match &self.auth {
            Authorization::Eip712Secp256k1 { signature } => {
                let signer = signature.recover(&hash).map_err(TxError::Signature)?;
                if signer != self.tx.from() {
                    return Err(TxError::SignerMismatch { signer, from: self.tx.from() });
                }
            }
            Authorization::WebAuthnP256 { assertion } => {
                let rules = domain.passkey_rules().ok_or(TxError::Passkey(PasskeyError::Disabled))?;
                assertion.verify(&hash, self.tx.from(), rules).map_err(TxError::Passkey)?;
            }
        }
        Ok(VerifiedUserTx { hash, signed: self.clone() })
    }
}

/// A user transaction whose authorization has been checked. Only [`SignedUserTx::verify`]
/// makes one, so the state-transition function never sees an unchecked signature.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedUserTx {
    hash: [u8; 32],
    signed: SignedUserTx,
}

impl VerifiedUserTx {
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    pub fn tx(&self) -> &UserTx {
        &self.signed.tx
    }

    pub fn signed(&self) -> &SignedUserTx {
        &self.signed
    }

    pub fn into_signed(self) -> SignedUserTx {
        self.signed
    }
}

/// Where on L1 a deposit happened; each is credited at most once, ever.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "chain", rename_all = "lowercase")]
pub enum L1Ref {
    /// A vault event: the transaction hash and the log's position among that transaction's
    /// logs (0 = its first log). Not the block-level `logIndex`: a reorg that re-includes the
    /// transaction elsewhere in a block changes that, and the same deposit would read as new.
    Ethereum {
        #[serde(with = "crate::serde_hex::fixed")]
        tx_hash: [u8; 32],
        log_in_tx: u32,
    } = 0,
    /// A transaction output paying a deposit address; `txid` in internal byte order.
    Bitcoin {
        #[serde(with = "crate::serde_hex::fixed")]
        txid: [u8; 32],
        vout: u32,
    } = 1,
}

impl L1Ref {
    pub fn chain(&self) -> Chain {
        match self {
            L1Ref::Ethereum { .. } => Chain::Ethereum,
            L1Ref::Bitcoin { .. } => Chain::Bitcoin,
        }
    }
}

/// A deposit seen on L1 by a chain watcher. Every replayer checks it against its own view of L1.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    pub chain: Chain,
    pub l1_ref: L1Ref,
    pub account: Address,
    pub asset: AssetId,
    pub amount: Amount,
    /// The height of the L1 block the watcher saw the deposit in. Not part of what is credited
    /// once (a reorg may move the deposit to another block): it tells a replayer whose node has
    /// not reached `l1_height` + its depth to wait, and one whose node is past it that an absent
    /// deposit is absent.
    pub l1_height: u64,
}

/// Transactions the coordinator adds: L1 facts, and the Bitcoin vault's bookkeeping.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemTx {
    Deposit(Deposit) = 0,
    /// Pay the queued Bitcoin withdrawals in one transaction at `fee_rate` sat/vB (within the
    /// network's bounds). The ledger fixes the plan: which withdrawals, which vault outputs.
    BtcPayoutPlan {
        fee_rate: u64,
    } = 1,
    /// Attempt `attempt` of payout plan `plan` confirmed on Bitcoin: its change joins the vault.
    /// Replayers check it against their own Bitcoin node; `height` is the block the
    /// coordinator's node holds it in (an upper bound), so a replayer's node below `height` +
    /// its depth waits rather than calling the payout absent.
    BtcPayoutConfirmed {
        plan: u64,
        attempt: u32,
        height: u64,
    } = 2,
    /// Merge the vault's small outputs into one at `fee_rate` sat/vB, which must be low (at most
    /// `CONSOLIDATION_FEE_RATE_FACTOR × min_fee_rate`). The ledger fixes the plan: which outputs,
    /// and a fee budget taken from the vault's surplus, never from what users are owed. It is a
    /// payout plan that pays nobody, signed, bumped and confirmed like any other.
    BtcConsolidationPlan {
        fee_rate: u64,
    } = 3,
    /// The watchmen's group key changes: taken only with the current group's signature over it,
    /// it fixes from which batch the new key applies (see [`crate::rotation`]).
    KeyRotation(crate::rotation::KeyRotation) = 4,
    /// A Bitcoin deposit to `deposit.account`'s address under the group key of `key_epoch`:
    /// the key in force, or an earlier key during the network's old-key grace (a late deposit,
    /// credited as an output of that old key, which a sweep then moves to the key in force).
    /// Naming the key makes the output's owner independent of the batch it lands in; replayers
    /// check the output pays that key's address. (A plain `Deposit` on Bitcoin pays the key in
    /// force at its batch.)
    BtcKeyedDeposit {
        deposit: Deposit,
        key_epoch: u64,
    } = 5,
    /// Move the vault's outputs under an earlier group key to the vault address of the key in
    /// force, at `fee_rate` sat/vB (within the network's bounds). The ledger fixes the plan: the
    /// outputs of the oldest key that still holds any (at most `MAX_PAYOUT_INPUTS`, by outpoint),
    /// all its value to one change output under the new key, and a fee budget from the vault's
    /// surplus or else the fee account. Signed by the old group, bumped and confirmed like any
    /// payout plan.
    BtcSweepPlan {
        fee_rate: u64,
    } = 6,
}

/// Where a transaction sits in the history: the network (its genesis hash), the batch and the
/// transaction's position in that batch's body (from 0). No two transactions share a place.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxPlace {
    pub network: [u8; 32],
    pub batch: u64,
    pub index: u32,
}

impl SystemTx {
    /// The transaction's id (version 2, docs/PROTOCOL.md):
    /// `tagged("bridge/system-tx-id/v2", network ‖ u64le(batch) ‖ u32le(index) ‖ borsh(self))`.
    /// Two identical system transactions (a `BtcPayoutPlan { fee_rate: 1 }` in two batches) are
    /// two facts and must have two ids, so the id binds the place; it binds the content too, so
    /// an id names one transaction and not just a slot.
    pub fn id(&self, place: TxPlace) -> [u8; 32] {
        tagged_hash(
            tags::SYSTEM_TX_ID,
            &[&place.network, &place.batch.to_le_bytes(), &place.index.to_le_bytes(), &to_bytes(self)],
        )
    }
}

/// One entry of a batch body.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum BatchTx {
    User(SignedUserTx) = 0,
    System(SystemTx) = 1,
}

impl BatchTx {
    /// Checks what can be checked without state: a user transaction's signature.
    pub fn verify(&self, domain: &Domain) -> Result<Tx, TxError> {
        match self {
            BatchTx::User(signed) => signed.verify(domain).map(Tx::User),
            BatchTx::System(system) => Ok(Tx::System(system.clone())),
        }
    }
}

/// A transaction ready for the state-transition function.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Tx {
    User(VerifiedUserTx),
    System(SystemTx),
}

impl Tx {
    /// The id by which both services answer for this transaction: a user transaction's EIP-712
    /// digest (unique: `from` and `nonce` are signed), a system transaction's [`SystemTx::id`]
    /// at `place`.
    pub fn id(&self, place: TxPlace) -> [u8; 32] {
        match self {
            Tx::User(user) => user.hash(),
            Tx::System(system) => system.id(place),
        }
    }

    pub fn to_batch_tx(&self) -> BatchTx {
        match self {
            Tx::User(user) => BatchTx::User(user.signed().clone()),
            Tx::System(system) => BatchTx::System(system.clone()),
        }
    }
}

/// Verifies many transactions on every core; results come back in input order, so what
/// follows is as deterministic as a sequential loop.
pub fn verify_all(txs: &[BatchTx], domain: &Domain) -> Vec<Result<Tx, TxError>> {
    txs.par_iter().map(|tx| tx.verify(domain)).collect()
}
