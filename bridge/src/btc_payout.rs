//! Bitcoin payout transactions, built deterministically from the replayed ledger.
//!
//! A [`PayoutPlan`] is fixed by the state-transition function when a batch carries a
//! `BtcPayoutPlan` system transaction: the queued withdrawals, the vault outputs chosen by a
//! fixed rule, the fee rate and the fee budget the users paid. From the plan alone every
//! watchman builds the same unsigned transaction, byte for byte, for attempt 0 and for each
//! fee bump (RBF) after it. Every attempt spends the same inputs, so at most one can confirm:
//! a bump can never pay twice.
//!
//! Layout of attempt `k`: version 2, lock time 0; the plan's inputs in plan order, each with
//! sequence `0xFFFFFFFD` (replaceable); the payouts in withdrawal order; the change to the
//! vault key last. Its fee is `min(budget, vsize · rate · (k+1))`.

use bitcoin::hashes::Hash;
use bitcoin::sighash::{Prevouts, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{Amount as Sat, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Witness, absolute};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::btc_vault::{BtcVaultParams, OutPoint, VaultKeys, VaultOwner, VaultUtxo};
use crate::network::BtcNetwork;
use crate::withdrawals::BtcPayout;

/// The most vault outputs one payout spends: keeps every payout far below the 100 kvB
/// standardness limit and the watchmen's signing sessions short.
pub const MAX_PAYOUT_INPUTS: usize = 200;
/// The most withdrawals one payout pays; more wait for the next plan.
pub const MAX_PAYOUT_OUTPUTS: usize = 1_000;
/// The change output is never below this (the dust limit of a P2TR output), whatever attempt
/// confirms.
pub const MIN_CHANGE_SAT: u64 = 330;
/// How many fee bumps a plan allows after its first attempt.
pub const MAX_BUMPS: u32 = 15;
/// A key-path Taproot signature with the default sighash: what every input's witness holds.
const SCHNORR_SIG_LEN: usize = 64;
/// How many queued withdrawals one plan looks at, oldest first: withdrawals the vault cannot
/// cover now are skipped (they keep their place), and this bounds the work one plan does
/// however many large withdrawals wait at the head.
pub const MAX_QUEUE_SCAN: usize = 2 * MAX_PAYOUT_OUTPUTS;
/// A consolidation is only made when at least this many small outputs can be merged: fewer
/// are not worth a transaction.
pub const MIN_CONSOLIDATION_INPUTS: usize = 10;
/// Fees are "low" for a consolidation when the rate is at most this multiple of the network's
/// `min_fee_rate`: the vault merges outputs when it is cheap, never in a fee spike.
pub const CONSOLIDATION_FEE_RATE_FACTOR: u64 = 4;
/// A consolidation's fee budget is this many times its first attempt's fee (so it can be bumped
/// twice), and never more than the vault's surplus.
pub const CONSOLIDATION_BUDGET_FACTOR: u64 = 3;
/// The virtual size one key-path Taproot input adds (outpoint, empty script, sequence, and a
/// 64-byte signature as witness): 57.5 vB, rounded up.
pub const TAPROOT_INPUT_VSIZE: u64 = 58;

/// A payout the ledger has committed to: what it pays, what it spends, and its fee limits.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PayoutPlan {
    /// Plans are numbered from 1 in the order the ledger makes them.
    pub id: u64,
    /// The batch whose `BtcPayoutPlan` made it.
    pub batch: u64,
    pub fee_rate: u64,
    /// The most the payout may pay in fees: the sum of its withdrawals' fees.
    pub budget_sat: u64,
    pub inputs: Vec<VaultUtxo>,
    pub payouts: Vec<BtcPayout>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    #[error("attempt {attempt} of payout {id} does not exist: it would not raise the fee by the relay increment")]
    NoSuchAttempt { id: u64, attempt: u32 },
    #[error("the amounts of payout {0} overflow")]
    Overflow(u64),
}

/// One attempt of a plan, unsigned, with what its signers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedPayout {
    pub attempt: u32,
    pub tx: Transaction,
    pub fee_sat: u64,
    /// The change output (always the last output) as the vault will hold it once confirmed,
    /// but for its `height` (0 here: the block that confirms it is not known yet).
    pub change: VaultUtxo,
    /// One BIP-341 key-path sighash (`SIGHASH_DEFAULT`) per input, in input order.
    pub sighashes: Vec<[u8; 32]>,
    /// The Taproot Merkle root each input's key is tweaked with (`None`: the vault key).
    pub merkle_roots: Vec<Option<[u8; 32]>>,
    /// The group's internal key `x(P)` under which each input is held: only the group holding
    /// that key can sign the input (after a key rotation, a sweep's inputs are the old key's).
    pub input_keys: Vec<[u8; 32]>,
}

impl UnsignedPayout {
    /// The transaction with each input's 64-byte BIP-340 signature as its key-path witness.
    pub fn with_signatures(&self, signatures: &[[u8; 64]]) -> Transaction {
        assert_eq!(signatures.len(), self.tx.input.len(), "one signature per payout input");
        let mut tx = self.tx.clone();
        for (input, signature) in tx.input.iter_mut().zip(signatures) {
            input.witness = Witness::from_slice(&[signature.as_slice()]);
        }
        tx
    }
}

impl PayoutPlan {
    /// A consolidation pays nobody: it merges vault outputs into one change output.
    pub fn is_consolidation(&self) -> bool {
        self.payouts.is_empty()
    }

    pub fn total_out_sat(&self) -> u64 {
        self.payouts.iter().map(|p| p.amount_sat).sum()
    }

    pub fn total_in_sat(&self) -> u64 {
        self.inputs.iter().map(|u| u.amount_sat).sum()
    }

    /// The plan's size in virtual bytes, signatures included: the same for every attempt.
    pub fn vsize(&self, vault: &BtcVaultParams, network: BtcNetwork) -> u64 {
        signed_vsize(&self.skeleton(vault.script_of(network, &VaultOwner::Vault), 0))
    }

    /// The fee of attempt `attempt`, or `None` if that attempt would not outbid the one before
    /// it by BIP-125's relay increment (1 sat/vB of its own size) or is past [`MAX_BUMPS`].
    pub fn attempt_fee(&self, vsize: u64, attempt: u32) -> Option<u64> {
        if attempt > MAX_BUMPS {
            return None;
        }
        let fee = |k: u32| (vsize * self.fee_rate).saturating_mul(u64::from(k) + 1).min(self.budget_sat);
        let this = fee(attempt);
        match attempt.checked_sub(1) {
            None => Some(this),
            Some(previous) => (this >= fee(previous).saturating_add(vsize)).then_some(this),
        }
    }

    /// Attempt `attempt` of this plan, unsigned. `keys` is the ledger's key history: each input
    /// names its key, and the change goes to the vault key in force at the plan's batch.
    pub fn build(&self, keys: &VaultKeys, network: BtcNetwork, attempt: u32) -> Result<UnsignedPayout, PayoutError> {
        let vault = &keys.params;
        let change_owner = keys.change_owner_at(self.batch);
        // One skeleton serves for the size and, with its change filled in, as the transaction.
        let mut tx = self.skeleton(vault.script_of(network, &change_owner), 0);
        let vsize = signed_vsize(&tx);
        let fee_sat = self.attempt_fee(vsize, attempt).ok_or(PayoutError::NoSuchAttempt { id: self.id, attempt })?;
        let change_sat = self
            .total_in_sat()
            .checked_sub(self.total_out_sat())
            .and_then(|left| left.checked_sub(fee_sat))
            .ok_or(PayoutError::Overflow(self.id))?;
        assert!(change_sat >= MIN_CHANGE_SAT, "plan {} was made with too little change", self.id);
        if let Some(change) = tx.output.last_mut() {
            change.value = Sat::from_sat(change_sat);
        }

        let prevouts: Vec<TxOut> = self
            .inputs
            .iter()
            .map(|u| TxOut { value: Sat::from_sat(u.amount_sat), script_pubkey: vault.script_of(network, &u.owner) })
            .collect();
        let mut cache = SighashCache::new(&tx);
        let mut sighashes = Vec::with_capacity(tx.input.len());
        for index in 0..tx.input.len() {
            let hash = cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(&prevouts), TapSighashType::Default)
                .map_err(|_| PayoutError::Overflow(self.id))?;
            sighashes.push(hash.to_byte_array());
        }
        let change = VaultUtxo {
            outpoint: OutPoint {
                txid: tx.compute_txid().to_byte_array(),
                vout: u32::try_from(tx.output.len() - 1).map_err(|_| PayoutError::Overflow(self.id))?,
            },
            amount_sat: change_sat,
            owner: change_owner,
            // Known only once it confirms: `BtcPayoutConfirmed` sets it.
            height: 0,
        };
        let merkle_roots = self.inputs.iter().map(|u| u.owner.merkle_root(network)).collect();
        let input_keys = self.inputs.iter().map(|u| keys.internal_key_of(&u.owner)).collect();
        Ok(UnsignedPayout { attempt, tx, fee_sat, change, sighashes, merkle_roots, input_keys })
    }

    fn skeleton(&self, change_script: ScriptBuf, change_sat: u64) -> Transaction {
        let input = self
            .inputs
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint.into(),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect();
        let mut output: Vec<TxOut> = self
            .payouts
            .iter()
            .map(|p| TxOut {
                value: Sat::from_sat(p.amount_sat),
                script_pubkey: ScriptBuf::from_bytes(p.script_pubkey.clone()),
            })
            .collect();
        output.push(TxOut { value: Sat::from_sat(change_sat), script_pubkey: change_script });
        Transaction { version: Version::TWO, lock_time: absolute::LockTime::ZERO, input, output }
    }
}

/// The size of `tx` once every input carries its key-path signature.
fn signed_vsize(tx: &Transaction) -> u64 {
    // Per input: the witness item count, the item's length byte and the signature, in weight
    // units (one each); plus the segwit marker and flag once.
    let witness_weight = tx.input.len() * (1 + 1 + SCHNORR_SIG_LEN) + 2;
    let weight = tx.base_size() * 4 + witness_weight;
    weight.div_ceil(4) as u64
}

/// The most a plan can spend now: the sum of the [`MAX_PAYOUT_INPUTS`] largest of `available`.
/// [`select_inputs`] funds any amount up to this and nothing above it.
pub fn funding_capacity<'a>(available: impl Iterator<Item = &'a VaultUtxo>) -> u64 {
    let mut amounts: Vec<u64> = available.map(|u| u.amount_sat).collect();
    amounts.sort_unstable_by(|a, b| b.cmp(a));
    amounts.iter().take(MAX_PAYOUT_INPUTS).fold(0u64, |total, a| total.saturating_add(*a))
}

/// The outputs a consolidation at `fee_rate` merges: the smallest first (ties by outpoint), at
/// most [`MAX_PAYOUT_INPUTS`], leaving out any output worth no more than
/// [`CONSOLIDATION_BUDGET_FACTOR`] times what spending it costs (it would cost more than it
/// adds), and together worth at most half of `available`.
///
/// Why the half: a consolidation is made at a low fee rate and holds its inputs until it
/// confirms, which a fee rise can put off for days; had it merged the whole vault, every
/// withdrawal would wait for it meanwhile. The larger half stays unplanned, and withdrawals go
/// on being paid from it.
pub fn select_consolidation<'a>(available: impl Iterator<Item = &'a VaultUtxo>, fee_rate: u64) -> Vec<VaultUtxo> {
    let worth_spending = TAPROOT_INPUT_VSIZE.saturating_mul(fee_rate).saturating_mul(CONSOLIDATION_BUDGET_FACTOR);
    let mut total = 0u64;
    let mut candidates = Vec::new();
    for utxo in available {
        total = total.saturating_add(utxo.amount_sat);
        if utxo.amount_sat > worth_spending {
            candidates.push(*utxo);
        }
    }
    candidates.sort_by(|a, b| a.amount_sat.cmp(&b.amount_sat).then(a.outpoint.cmp(&b.outpoint)));
    let half = total / 2;
    let mut merged = 0u64;
    let taken = candidates
        .iter()
        .take(MAX_PAYOUT_INPUTS)
        .take_while(|u| {
            merged = merged.saturating_add(u.amount_sat);
            merged <= half
        })
        .count();
    candidates.truncate(taken);
    debug_assert!(candidates.iter().map(|u| u.amount_sat).sum::<u64>() <= half);
    candidates
}

/// Chooses the vault outputs that fund `needed_sat` (payouts + fee budget + the smallest
/// change): largest first, ties broken by outpoint, so few inputs are spent and every replayer
/// chooses the same ones. `None` if the available outputs cannot fund it within
/// [`MAX_PAYOUT_INPUTS`].
pub fn select_inputs<'a>(available: impl Iterator<Item = &'a VaultUtxo>, needed_sat: u64) -> Option<Vec<VaultUtxo>> {
    let mut candidates: Vec<VaultUtxo> = available.copied().collect();
    candidates.sort_by(|a, b| b.amount_sat.cmp(&a.amount_sat).then(a.outpoint.cmp(&b.outpoint)));
    let mut chosen = Vec::new();
    let mut total = 0u64;
    for utxo in candidates.into_iter().take(MAX_PAYOUT_INPUTS) {
        if total >= needed_sat {
            break;
        }
        total = total.checked_add(utxo.amount_sat)?;
        chosen.push(utxo);
    }
    (total >= needed_sat).then_some(chosen)
}
