//! Batches: the unit the coordinator signs and publishes, and that every replayer checks.
//! [`BatchBuilder`] makes them, [`replay`] checks them; both close a batch with the same code.

use borsh::{BorshDeserialize, BorshSerialize};
use secp256k1::schnorr::Signature;
use secp256k1::{Keypair, Message, SECP256K1, SecretKey, XOnlyPublicKey};
use serde::{Deserialize, Serialize};

use crate::btc_payout::PayoutPlan;
use crate::codec::to_bytes;
use crate::commitment::CommitmentError;
use crate::forced::{ForcedCommit, ForcedCursor, ForcedEntry, ForcedError, ForcedRecord};
use crate::hashing::{tagged_hash, tags};
use crate::recipient::Recipient;
use crate::state::{ChainHead, State};
use crate::stf::{Effect, Receipt, TxError, apply_at};
use crate::tx::{BatchTx, Tx, TxPlace, verify_all};
use crate::withdrawals::{BtcPayout, BtcWithdrawals, EthWithdrawal, EthWithdrawalTree, MerkleTree};

/// The header version of a network without forced inclusion, checked on replay: version 1's
/// layout, its `post_state_root` under state commitment 2 (a leaf per account, see
/// [`crate::state::AccountEntry`]). Versions 1 and 2 committed the state under commitment 1 (a
/// leaf per nonce and per balance); this build decodes them but replays neither.
pub const BATCH_VERSION: u16 = 3;
/// The header version of a network with forced inclusion: version 1's fields, then
/// `borsh(Option<ForcedCommit>)`, and the batch's forced records after its body; the state under
/// commitment 2 (version 2 is this layout under commitment 1).
pub const BATCH_VERSION_FORCED: u16 = 4;

/// Whether a header of `version` carries the forced commit and its batch the forced records.
fn carries_forced(version: u16) -> bool {
    version == 2 || version == BATCH_VERSION_FORCED
}
/// The most transactions one batch may carry.
pub const MAX_BATCH_TXS: usize = 100_000;

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BatchHeader {
    pub version: u16,
    /// The genesis hash of the network (see [`crate::NetworkParams::genesis_hash`]).
    #[serde(with = "crate::serde_hex::fixed")]
    pub network: [u8; 32],
    pub number: u64,
    #[serde(with = "crate::serde_hex::fixed")]
    pub prev_hash: [u8; 32],
    /// Milliseconds since the Unix epoch, chosen by the coordinator, never decreasing.
    pub timestamp: u64,
    pub tx_count: u32,
    #[serde(with = "crate::serde_hex::fixed")]
    pub txs_root: [u8; 32],
    #[serde(with = "crate::serde_hex::fixed")]
    pub post_state_root: [u8; 32],
    #[serde(with = "crate::serde_hex::fixed")]
    pub eth_withdrawals_root: [u8; 32],
    pub btc_withdrawals: BtcWithdrawals,
    /// Versions 2 and 4 only: the forced cursor range and the records' root (crate::forced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<ForcedCommit>,
}

/// Versions 1 and 3 are one layout, 2 and 4 another: `forced` is written by 2 and 4 (see
/// `crate::forced`).
impl BorshSerialize for BatchHeader {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.version, w)?;
        BorshSerialize::serialize(&self.network, w)?;
        BorshSerialize::serialize(&self.number, w)?;
        BorshSerialize::serialize(&self.prev_hash, w)?;
        BorshSerialize::serialize(&self.timestamp, w)?;
        BorshSerialize::serialize(&self.tx_count, w)?;
        BorshSerialize::serialize(&self.txs_root, w)?;
        BorshSerialize::serialize(&self.post_state_root, w)?;
        BorshSerialize::serialize(&self.eth_withdrawals_root, w)?;
        BorshSerialize::serialize(&self.btc_withdrawals, w)?;
        if carries_forced(self.version) {
            BorshSerialize::serialize(&self.forced, w)?;
        }
        Ok(())
    }
}

impl BorshDeserialize for BatchHeader {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let version = u16::deserialize_reader(r)?;
        let mut header = BatchHeader {
            version,
            network: BorshDeserialize::deserialize_reader(r)?,
            number: BorshDeserialize::deserialize_reader(r)?,
            prev_hash: BorshDeserialize::deserialize_reader(r)?,
            timestamp: BorshDeserialize::deserialize_reader(r)?,
            tx_count: BorshDeserialize::deserialize_reader(r)?,
            txs_root: BorshDeserialize::deserialize_reader(r)?,
            post_state_root: BorshDeserialize::deserialize_reader(r)?,
            eth_withdrawals_root: BorshDeserialize::deserialize_reader(r)?,
            btc_withdrawals: BorshDeserialize::deserialize_reader(r)?,
            forced: None,
        };
        if carries_forced(version) {
            header.forced = BorshDeserialize::deserialize_reader(r)?;
        }
        Ok(header)
    }
}

impl BatchHeader {
    /// `tagged_hash("bridge/batch-header", borsh(header))`: what the coordinator signs and the
    /// next batch's `prev_hash`.
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(tags::BATCH_HEADER, &[&to_bytes(self)])
    }
}

/// A header with the coordinator's BIP-340 signature over its hash.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedHeader {
    pub header: BatchHeader,
    #[serde(with = "crate::serde_hex::fixed")]
    pub signature: [u8; 64],
}

impl SignedHeader {
    pub fn verify(&self, coordinator_key: &[u8; 32]) -> Result<(), SignatureMismatch> {
        verify_bip340(coordinator_key, &self.header.hash(), &self.signature)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the header's BIP-340 signature does not verify with the coordinator key")]
pub struct SignatureMismatch;

pub fn verify_bip340(key: &[u8; 32], digest: &[u8; 32], signature: &[u8; 64]) -> Result<(), SignatureMismatch> {
    let key = XOnlyPublicKey::from_slice(key).map_err(|_| SignatureMismatch)?;
    let signature = Signature::from_slice(signature).map_err(|_| SignatureMismatch)?;
    SECP256K1.verify_schnorr(&signature, &Message::from_digest(*digest), &key).map_err(|_| SignatureMismatch)
}

/// A batch as published: the signed header and the transactions.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedBatch {
    pub header: BatchHeader,
    #[serde(with = "crate::serde_hex::fixed")]
    pub signature: [u8; 64],
    pub body: Vec<BatchTx>,
    /// Versions 2 and 4 only: what became of each forced transaction the batch consumed, in stream
    /// order. They are processed before the body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<ForcedRecord>,
}

/// Like the header: versions 2 and 4 append `borsh(Vec<ForcedRecord>)`.
impl BorshSerialize for SignedBatch {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.header, w)?;
        BorshSerialize::serialize(&self.signature, w)?;
        BorshSerialize::serialize(&self.body, w)?;
        if carries_forced(self.header.version) {
            BorshSerialize::serialize(&self.forced, w)?;
        }
        Ok(())
    }
}

impl BorshDeserialize for SignedBatch {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let header = BatchHeader::deserialize_reader(r)?;
        let signature = BorshDeserialize::deserialize_reader(r)?;
        let body = BorshDeserialize::deserialize_reader(r)?;
        let forced = if carries_forced(header.version) { BorshDeserialize::deserialize_reader(r)? } else { Vec::new() };
        Ok(SignedBatch { header, signature, body, forced })
    }
}

impl SignedBatch {
    pub fn hash(&self) -> [u8; 32] {
        self.header.hash()
    }

    pub fn signed_header(&self) -> SignedHeader {
        SignedHeader { header: self.header.clone(), signature: self.signature }
    }
}

/// The coordinator's identity key. Its `Debug` shows only the public key.
pub struct CoordinatorKey(Keypair);

impl std::fmt::Debug for CoordinatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoordinatorKey({})", hex::encode(self.public_key()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a coordinator secret key is 32 bytes, non-zero and below the secp256k1 order")]
pub struct BadSecretKey;

impl CoordinatorKey {
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, BadSecretKey> {
        let secret = SecretKey::from_slice(secret).map_err(|_| BadSecretKey)?;
        Ok(CoordinatorKey(Keypair::from_secret_key(SECP256K1, &secret)))
    }

    /// The x-only public key that `NetworkParams::coordinator_key` must name.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.x_only_public_key().0.serialize()
    }

    /// A BIP-340 signature with no auxiliary randomness: deterministic, as BIP-340 allows.
    pub fn sign(&self, digest: &[u8; 32]) -> [u8; 64] {
        SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(*digest), &self.0).serialize()
    }
}

/// What a batch owes on L1, derived from its receipts.
#[derive(Debug)]
pub struct Settlement {
    pub eth: EthWithdrawalTree,
    pub btc: Vec<BtcPayout>,
    /// Bitcoin payout plans the batch made: what the watchmen sign once it is hard-final.
    pub btc_plans: Vec<PayoutPlan>,
}

impl Settlement {
    /// A batch that owes nothing on L1.
    pub fn empty() -> Self {
        Settlement { eth: EthWithdrawalTree::new(Vec::new()), btc: Vec::new(), btc_plans: Vec::new() }
    }

    /// Whether the batch asks nothing of L1: no Ethereum withdrawals, no Bitcoin withdrawals
    /// queued, no Bitcoin payout planned.
    pub fn is_empty(&self) -> bool {
        self.eth.withdrawals().is_empty() && self.btc.is_empty() && self.btc_plans.is_empty()
    }
}

/// A batch the coordinator made, with what it owes on L1.
#[derive(Debug)]
pub struct SealedBatch {
    pub batch: SignedBatch,
    pub settlement: Settlement,
}

/// A batch that replayed cleanly, with what it owes on L1.
#[derive(Debug)]
pub struct Replayed {
    pub hash: [u8; 32],
    /// One per body transaction, in body order.
    pub receipts: Vec<Receipt>,
    /// One per forced transaction the batch applied, in stream order (they ran first).
    pub forced_receipts: Vec<Receipt>,
    pub settlement: Settlement,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is full ({MAX_BATCH_TXS} transactions); seal it and start another")]
    Full,
    #[error("the timestamp {got} is before the previous batch's {previous}")]
    TimestampRegressed { previous: u64, got: u64 },
    #[error("the coordinator key is not the one the network names")]
    WrongKey,
    #[error("the network takes forced transactions: call `process_forced` (with none, if none) before sealing")]
    ForcedMissing,
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
}

/// The open batch of a coordinator: transactions applied to the state, in order, with what
/// they owe on L1.
#[derive(Debug)]
pub struct BatchBuilder {
    number: u64,
    txs: Vec<BatchTx>,
    closing: Closing,
    /// The forced section, once `process_forced` ran: the cursor range and the records.
    forced: Option<(ForcedCursor, ForcedCursor, Vec<ForcedRecord>)>,
}

impl BatchBuilder {
    pub fn new(state: &State) -> Self {
        let number = state.head().next_number;
        BatchBuilder { number, txs: Vec::new(), closing: Closing::new(number), forced: None }
    }

    /// Processes the forced entries `crate::forced::plan` chose for the cursor range
    /// `(from, to]`, in stream order, before anything else in the batch: each is applied or
    /// recorded as refused, duplicate or malformed. `already_applied` answers whether a
    /// signing hash was applied before. Returns the receipts of the applied ones.
    pub fn process_forced(
        &mut self,
        state: &mut State,
        from: ForcedCursor,
        to: ForcedCursor,
        entries: &[ForcedEntry],
        already_applied: &dyn Fn(&[u8; 32]) -> bool,
    ) -> Result<Vec<Receipt>, ApplyError> {
        let cap = state.params().forced.map(|f| f.cap).ok_or(ApplyError::ForcedUnavailable)?;
        // An empty section only moves the cursor, so it may close a batch that holds API
        // transactions; entries go first.
        if (!entries.is_empty() && !self.txs.is_empty()) || self.forced.is_some() {
            return Err(ApplyError::ForcedNotFirst);
        }
        if entries.len() > cap as usize || to < from {
            return Err(ApplyError::ForcedOverCap { count: entries.len(), cap });
        }
        let mut records = Vec::with_capacity(entries.len());
        let mut receipts = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let place = forced_place(state.genesis_hash(), self.number, index);
            let (record, receipt) = crate::forced::judge(state, entry, place, already_applied);
            if let Some(receipt) = receipt {
                self.closing.record_effect(&receipt);
                receipts.push(receipt);
            }
            records.push(record);
        }
        self.forced = Some((from, to, records));
        Ok(receipts)
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Whether `process_forced` has run for this batch.
    pub fn has_forced(&self) -> bool {
        self.forced.is_some()
    }

    /// Applies `tx` to `state` and adds it to the batch; on `Err` neither changed.
    pub fn apply(&mut self, state: &mut State, tx: Tx) -> Result<Receipt, ApplyError> {
        if self.txs.len() >= MAX_BATCH_TXS {
            return Err(ApplyError::BatchFull);
        }
        assert_eq!(state.head().next_number, self.number, "the state moved on under an open batch");
        // At most MAX_BATCH_TXS (checked above), far below u32::MAX.
        let index = u32::try_from(self.txs.len()).map_err(|_| ApplyError::BatchFull)?;
        let place = TxPlace { network: state.genesis_hash(), batch: self.number, index };
        let receipt = apply_at(state, &tx, place).map_err(ApplyError::Tx)?;
        let batch_tx = tx.to_batch_tx();
        self.closing.record(&receipt, tx_leaf(&batch_tx));
        self.txs.push(batch_tx);
        Ok(receipt)
    }

    /// Closes the batch: computes its roots, commits the state root, signs the header.
    pub fn seal(self, state: &mut State, timestamp: u64, key: &CoordinatorKey) -> Result<SealedBatch, BatchError> {
        if key.public_key() != state.params().coordinator_key {
            return Err(BatchError::WrongKey);
        }
        let head = state.head();
        if timestamp < head.last_timestamp {
            return Err(BatchError::TimestampRegressed { previous: head.last_timestamp, got: timestamp });
        }
        let (version, forced_commit, forced_records) = match (state.params().forced, self.forced) {
            (None, _) => (BATCH_VERSION, None, Vec::new()),
            (Some(_), None) => return Err(BatchError::ForcedMissing),
            (Some(_), Some((from, to, records))) => {
                let count = u32::try_from(records.len()).map_err(|_| BatchError::Full)?;
                let commit = ForcedCommit { from, to, count, records_root: crate::forced::records_root(&records) };
                (BATCH_VERSION_FORCED, Some(commit), records)
            }
        };
        let pending = state.prepare_root()?;
        let (roots, settlement) = self.closing.finish();
        let header = BatchHeader {
            version,
            network: state.genesis_hash(),
            number: self.number,
            prev_hash: head.last_hash,
            timestamp,
            tx_count: u32::try_from(self.txs.len()).map_err(|_| BatchError::Full)?,
            txs_root: roots.txs_root,
            post_state_root: pending.root(),
            eth_withdrawals_root: roots.eth_withdrawals_root,
            btc_withdrawals: roots.btc_withdrawals,
            forced: forced_commit,
        };
        let hash = header.hash();
        state.commit_root(
            pending,
            ChainHead { next_number: self.number + 1, last_hash: hash, last_timestamp: timestamp },
        );
        let signature = key.sign(&hash);
        Ok(SealedBatch { batch: SignedBatch { header, signature, body: self.txs, forced: forced_records }, settlement })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the open batch is full; seal it first")]
    BatchFull,
    #[error("this network takes no forced transactions")]
    ForcedUnavailable,
    #[error("forced transactions go first in a batch, once")]
    ForcedNotFirst,
    #[error("{count} forced transactions exceed the cap of {cap} (or the cursor moves backwards)")]
    ForcedOverCap { count: usize, cap: u32 },
    #[error(transparent)]
    Tx(TxError),
}

/// The roots a batch's receipts produce, accumulated in the same way by the builder and by
/// replay, so the two cannot drift apart.
#[derive(Debug)]
struct Closing {
    number: u64,
    tx_leaves: Vec<[u8; 32]>,
    eth: Vec<EthWithdrawal>,
    btc: Vec<BtcPayout>,
    btc_plans: Vec<PayoutPlan>,
}

struct Roots {
    txs_root: [u8; 32],
    eth_withdrawals_root: [u8; 32],
    btc_withdrawals: BtcWithdrawals,
}

impl Closing {
    fn new(number: u64) -> Self {
        Closing { number, tx_leaves: Vec::new(), eth: Vec::new(), btc: Vec::new(), btc_plans: Vec::new() }
    }

    /// `leaf` is the transaction's [`tx_leaf`]: the root commits to the authorizations too.
    fn record(&mut self, receipt: &Receipt, leaf: [u8; 32]) {
        self.tx_leaves.push(leaf);
        self.record_effect(receipt);
    }

    /// What a transaction owes on L1; a forced one's leaf is in the forced records' root.
    fn record_effect(&mut self, receipt: &Receipt) {
        let w = match &receipt.effect {
            Effect::Withdrawn(w) => w,
            Effect::BtcPayoutPlanned(plan) => {
                self.btc_plans.push(plan.clone());
                return;
            }
            _ => return,
        };
        match &w.recipient {
            Recipient::Ethereum(recipient) => {
                let token = w.asset.eth_token();
                assert!(token.is_some(), "an Ethereum recipient for a non-Ethereum asset passed the STF");
                self.eth.push(EthWithdrawal {
                    batch: self.number,
                    index: u32::try_from(self.eth.len()).unwrap_or(u32::MAX),
                    token: token.unwrap_or_default(),
                    recipient: *recipient,
                    amount: w.amount,
                });
            }
            Recipient::Bitcoin(script) => {
                let amount_sat = u64::try_from(w.amount.units());
                assert!(amount_sat.is_ok(), "a Bitcoin withdrawal above the coin supply passed the STF");
                self.btc.push(BtcPayout {
                    tx_hash: w.tx_hash,
                    script_pubkey: script.to_bytes(),
                    amount_sat: amount_sat.unwrap_or_default(),
                });
            }
        }
    }

    fn finish(self) -> (Roots, Settlement) {
        let txs_root = txs_root_of(self.tx_leaves);
        let eth = EthWithdrawalTree::new(self.eth);
        let roots =
            Roots { txs_root, eth_withdrawals_root: eth.root(), btc_withdrawals: BtcWithdrawals::commit(&self.btc) };
        (roots, Settlement { eth, btc: self.btc, btc_plans: self.btc_plans })
    }
}

/// A transaction's leaf in `txs_root`: `tagged_hash("bridge/txs-leaf", borsh(BatchTx))`. It
/// covers the authorization as well as the message, so the coordinator's signature on a header
/// binds the exact body, signatures included: a body with a forged user signature is then
/// provably the coordinator's, not someone's edit of it.
pub fn tx_leaf(tx: &BatchTx) -> [u8; 32] {
    tagged_hash(tags::TXS_LEAF, &[&to_bytes(tx)])
}

/// The `txs_root` of a body: checks, without any state, that a body is the one a header names.
pub fn txs_root(body: &[BatchTx]) -> [u8; 32] {
    txs_root_of(body.iter().map(tx_leaf).collect())
}

fn txs_root_of(leaves: Vec<[u8; 32]>) -> [u8; 32] {
    MerkleTree::new(leaves, |a, b| tagged_hash(tags::TXS_NODE, &[a, b])).root()
}

/// Which root of a header disagreed with the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    Txs,
    PostState,
    EthWithdrawals,
    BtcWithdrawals,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "batch header version {0} is not this network's: it replays version {BATCH_VERSION} (version \
         {BATCH_VERSION_FORCED} with forced inclusion); versions 1 and 2 are the state commitment this build no \
         longer computes"
    )]
    UnsupportedVersion(u16),
    #[error("the batch is for another network (genesis {got}, expected {expected})")]
    WrongNetwork { expected: String, got: String },
    #[error("the coordinator's signature on batch {number} does not verify")]
    BadSignature { number: u64 },
    #[error("expected batch {expected}, got batch {got}")]
    UnexpectedNumber { expected: u64, got: u64 },
    #[error("batch {number} does not link to the previous batch (prev_hash {got}, expected {expected})")]
    BrokenLink { number: u64, expected: String, got: String },
    #[error("batch {number}'s timestamp {got} is before the previous batch's {previous}")]
    TimestampRegressed { number: u64, previous: u64, got: u64 },
    #[error("batch {number} says it has {header} transactions but carries {body}")]
    TxCountMismatch { number: u64, header: u32, body: usize },
    #[error("batch {number} carries {count} transactions, more than {MAX_BATCH_TXS}")]
    TooManyTxs { number: u64, count: usize },
    #[error("transaction {index} of batch {number} is invalid: {error}")]
    InvalidTx { number: u64, index: usize, tx_hash: String, error: TxError },
    #[error("batch {number}'s {root:?} root is {header} but replay computes {computed}")]
    RootMismatch { number: u64, root: RootKind, header: String, computed: String },
    #[error("batch {number}'s forced section is invalid: {error}")]
    Forced { number: u64, error: ForcedError },
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
}

/// Checks a signed batch against `state` and, only if every check passes, applies it.
/// On `Err` the state is exactly as it was.
pub fn replay(state: &mut State, batch: &SignedBatch) -> Result<Replayed, ReplayError> {
    let verified = verify_all(&batch.body, state.domain());
    replay_verified(state, batch, verified)
}

/// [`replay`] with the body's signatures already checked: `verified` is
/// `verify_all(&batch.body, domain)`, computed ahead (a follower checks the next batch's
/// signatures on every core while it applies this one). On `Err` the state is exactly as it was.
pub fn replay_verified(
    state: &mut State,
    batch: &SignedBatch,
    verified: Vec<Result<Tx, TxError>>,
) -> Result<Replayed, ReplayError> {
    check_envelope(state, batch)?;
    assert_eq!(verified.len(), batch.body.len(), "one verification result per transaction of the body");
    let number = batch.header.number;

    state.begin();
    let result = replay_body(state, batch, verified);
    match result {
        Ok((replayed, pending)) => {
            state.keep();
            let head =
                ChainHead { next_number: number + 1, last_hash: replayed.hash, last_timestamp: batch.header.timestamp };
            state.commit_root(pending, head);
            Ok(replayed)
        }
        Err(e) => {
            state.rollback();
            Err(e)
        }
    }
}

fn check_envelope(state: &State, batch: &SignedBatch) -> Result<(), ReplayError> {
    let header = &batch.header;
    let head = state.head();
    let expected_version = if state.params().forced.is_some() { BATCH_VERSION_FORCED } else { BATCH_VERSION };
    if header.version != expected_version {
        return Err(ReplayError::UnsupportedVersion(header.version));
    }
    if header.network != state.genesis_hash() {
        return Err(ReplayError::WrongNetwork {
            expected: hex::encode(state.genesis_hash()),
            got: hex::encode(header.network),
        });
    }
    batch
        .signed_header()
        .verify(&state.params().coordinator_key)
        .map_err(|_| ReplayError::BadSignature { number: header.number })?;
    if header.number != head.next_number {
        return Err(ReplayError::UnexpectedNumber { expected: head.next_number, got: header.number });
    }
    if header.prev_hash != head.last_hash {
        return Err(ReplayError::BrokenLink {
            number: header.number,
            expected: hex::encode(head.last_hash),
            got: hex::encode(header.prev_hash),
        });
    }
    if header.timestamp < head.last_timestamp {
        return Err(ReplayError::TimestampRegressed {
            number: header.number,
            previous: head.last_timestamp,
            got: header.timestamp,
        });
    }
    if batch.body.len() > MAX_BATCH_TXS {
        return Err(ReplayError::TooManyTxs { number: header.number, count: batch.body.len() });
    }
    if header.tx_count as usize != batch.body.len() {
        return Err(ReplayError::TxCountMismatch {
            number: header.number,
            header: header.tx_count,
            body: batch.body.len(),
        });
    }
    Ok(())
}

fn replay_body(
    state: &mut State,
    batch: &SignedBatch,
    verified: Vec<Result<Tx, TxError>>,
) -> Result<(Replayed, crate::commitment::PendingRoot), ReplayError> {
    let header = &batch.header;
    let number = header.number;
    // The body must be the one the coordinator signed before any of it counts: a mismatch here
    // is someone's edit, an invalid transaction after it is the coordinator's own doing.
    let body_root = txs_root(&batch.body);
    if body_root != header.txs_root {
        return Err(ReplayError::RootMismatch {
            number,
            root: RootKind::Txs,
            header: hex::encode(header.txs_root),
            computed: hex::encode(body_root),
        });
    }
    let mut closing = Closing::new(number);
    let forced_receipts = replay_forced(state, batch, &mut closing)?;
    let mut receipts = Vec::with_capacity(verified.len());
    let domain = state.domain().clone();
    for (index, (tx, raw)) in verified.into_iter().zip(&batch.body).enumerate() {
        // At most MAX_BATCH_TXS (checked by `check_envelope`), far below u32::MAX.
        let place = TxPlace { network: header.network, batch: number, index: u32::try_from(index).unwrap_or(u32::MAX) };
        let invalid = |error: TxError| {
            let tx_hash = match raw {
                BatchTx::User(user) => user.tx.signing_hash(&domain),
                BatchTx::System(system) => system.id(place),
            };
            ReplayError::InvalidTx { number, index, tx_hash: hex::encode(tx_hash), error }
        };
        let receipt = match tx {
            Ok(tx) => apply_at(state, &tx, place).map_err(invalid)?,
            Err(error) => return Err(invalid(error)),
        };
        closing.record(&receipt, tx_leaf(raw));
        receipts.push(receipt);
    }
    let pending = state.prepare_root()?;
    let (roots, settlement) = closing.finish();
    let checks = [
        (RootKind::Txs, header.txs_root, roots.txs_root),
        (RootKind::PostState, header.post_state_root, pending.root()),
        (RootKind::EthWithdrawals, header.eth_withdrawals_root, roots.eth_withdrawals_root),
    ];
    for (root, expected, computed) in checks {
        if expected != computed {
            return Err(ReplayError::RootMismatch {
                number,
                root,
                header: hex::encode(expected),
                computed: hex::encode(computed),
            });
        }
    }
    if header.btc_withdrawals != roots.btc_withdrawals {
        return Err(ReplayError::RootMismatch {
            number,
            root: RootKind::BtcWithdrawals,
            header: hex::encode(header.btc_withdrawals.digest),
            computed: hex::encode(roots.btc_withdrawals.digest),
        });
    }
    Ok((Replayed { hash: header.hash(), receipts, forced_receipts, settlement }, pending))
}

/// Replays the forced section ahead of the body: its shape against the header's commit, then
/// each record's verdict against the STF's.
fn replay_forced(state: &mut State, batch: &SignedBatch, closing: &mut Closing) -> Result<Vec<Receipt>, ReplayError> {
    let number = batch.header.number;
    let forced_error = |error| ReplayError::Forced { number, error };
    let (params, commit) = match (state.params().forced, &batch.header.forced) {
        (None, None) if batch.forced.is_empty() => return Ok(Vec::new()),
        (None, _) => return Err(forced_error(ForcedError::Unexpected)),
        (Some(_), None) => return Err(forced_error(ForcedError::MissingCommit)),
        (Some(params), Some(commit)) => (params, commit),
    };
    crate::forced::check_shape(commit, &batch.forced, params.cap).map_err(forced_error)?;
    let mut receipts = Vec::new();
    for (index, record) in batch.forced.iter().enumerate() {
        let place = forced_place(batch.header.network, number, index);
        if let Some(receipt) = crate::forced::replay_record(state, index, record, place).map_err(forced_error)? {
            closing.record_effect(&receipt);
            receipts.push(receipt);
        }
    }
    Ok(receipts)
}

/// The place a forced transaction runs at. A user transaction's id does not depend on its
/// place; the index is past any body position so that no place is shared.
fn forced_place(network: [u8; 32], batch: u64, index: usize) -> TxPlace {
    let index = u32::try_from(MAX_BATCH_TXS + index).unwrap_or(u32::MAX);
    TxPlace { network, batch, index }
}

/// Two validly signed headers with one number and different contents: proof, checkable by
/// anyone offline with the coordinator's public key, that the coordinator equivocated.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Equivocation {
    pub first: SignedHeader,
    pub second: SignedHeader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EquivocationError {
    #[error("the two headers have different numbers ({0} and {1}): that is no equivocation")]
    DifferentNumbers(u64, u64),
    #[error("the two headers are the same header")]
    SameHeader,
    #[error("the {0} header's signature does not verify with the coordinator key")]
    BadSignature(&'static str),
}

impl Equivocation {
    /// Builds the evidence if `first` and `second` really are an equivocation by `coordinator_key`.
    pub fn new(
        first: SignedHeader,
        second: SignedHeader,
        coordinator_key: &[u8; 32],
    ) -> Result<Self, EquivocationError> {
        let evidence = Equivocation { first, second };
        evidence.verify(coordinator_key)?;
        Ok(evidence)
    }

    pub fn verify(&self, coordinator_key: &[u8; 32]) -> Result<(), EquivocationError> {
        let (a, b) = (&self.first.header, &self.second.header);
        if a.number != b.number {
            return Err(EquivocationError::DifferentNumbers(a.number, b.number));
        }
        if a.hash() == b.hash() {
            return Err(EquivocationError::SameHeader);
        }
        self.first.verify(coordinator_key).map_err(|_| EquivocationError::BadSignature("first"))?;
        self.second.verify(coordinator_key).map_err(|_| EquivocationError::BadSignature("second"))?;
        Ok(())
    }
}
