//! Evidence files: everything needed to check an alarm offline, with nothing but this file.
//! The network's parameters name the coordinator's key; every claim rests on batches that key
//! signed, and on the protocol core's replay.
//!
//! - replay kinds (root mismatch, broken link, invalid tx, invalid batch), version 2: the bad
//!   batch n, batch n − 1's signed header and a snapshot of the state after it. Checking
//!   restores the snapshot against that header and replays the one batch, which must fail the
//!   way the file says: O(state + batch), whatever the length of the history. Version 1 files
//!   (batches 1..=n, all replayed from genesis) are still checked.
//! - equivocation: the two signed headers.
//! - a deposit L1 does not show: the signed batch that credits it and the deposit's place in
//!   it; that L1 lacks it is for the reader to see on L1, and the file says where to look.
//! - a missing batch: the signed header of the batch after it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bridge::batch::{Equivocation, SignedHeader};
use bridge::codec::{decode_batch, encode_batch};
use bridge::tx::SystemTx;
use bridge::{BatchTx, NetworkParams, SignedBatch};
use serde::{Deserialize, Serialize};

use crate::alarm::AlarmKind;

mod replay;

/// The version written: replay kinds carry the state before the bad batch, not the history.
pub const EVIDENCE_VERSION: u32 = 2;
/// The first version, still checked: replay kinds carry batches 1..=n.
pub const EVIDENCE_VERSION_HISTORY: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub version: u32,
    pub kind: AlarmKind,
    /// The batch the alarm is about.
    pub number: u64,
    pub network: NetworkParams,
    /// What the confirmer saw, for people.
    pub detail: String,
    /// Replay kinds: the bad batch alone (version 1: batches 1..=number); deposit, payout,
    /// censorship: the batch alone. Base64 of the published encoding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equivocation: Option<Equivocation>,
    /// Deposit: its index in the crediting batch's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_index: Option<usize>,
    /// Missing batch: the signed header of batch `number + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_header: Option<SignedHeader>,
    /// Censorship: the finding and the gateway's listing of the range (`batches` holds the
    /// batch); checked against Arweave by `confirmer check-evidence --arweave URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub censorship: Option<crate::forced::CensorshipEvidence>,
    /// Replay kinds, version 2, batch `number` > 1: the signed header of batch `number − 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_header: Option<SignedHeader>,
    /// With `prior_header`: base64 of the encoded state snapshot after batch `number − 1`
    /// (docs/PROTOCOL.md, "State snapshots"); it counts only if it rebuilds that header's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_state: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("this is not an evidence file: {0}")]
    Malformed(String),
    #[error(
        "evidence version {0} is not one this build checks (it checks versions {EVIDENCE_VERSION_HISTORY} and {EVIDENCE_VERSION})"
    )]
    Version(u32),
    #[error("the network parameters in the file are invalid: {0}")]
    Network(String),
    #[error("the evidence does not prove a {kind}: {reason}")]
    NotProven { kind: AlarmKind, reason: String },
}

impl Evidence {
    pub fn encode_batches(batches: &[&SignedBatch]) -> Vec<String> {
        batches.iter().map(|b| BASE64.encode(encode_batch(b))).collect()
    }

    /// A snapshot as `prior_state` carries it.
    pub fn encode_state(snapshot: &bridge::Snapshot) -> String {
        BASE64.encode(snapshot.encode())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, EvidenceError> {
        serde_json::from_str(text).map_err(|e| EvidenceError::Malformed(e.to_string()))
    }

    /// The file's batches, decoded.
    pub fn decoded_batches(&self) -> Result<Vec<SignedBatch>, EvidenceError> {
        self.decoded()
    }

    fn decoded(&self) -> Result<Vec<SignedBatch>, EvidenceError> {
        self.batches
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let bytes = BASE64.decode(text).map_err(|e| EvidenceError::Malformed(format!("batch {i}: {e}")))?;
                decode_batch(&bytes).map_err(|e| EvidenceError::Malformed(format!("batch {i}: {e}")))
            })
            .collect()
    }

    /// Checks the evidence and explains, in one paragraph, what it proves.
    pub fn check(&self) -> Result<String, EvidenceError> {
        if self.version != EVIDENCE_VERSION && self.version != EVIDENCE_VERSION_HISTORY {
            return Err(EvidenceError::Version(self.version));
        }
        self.network.validate().map_err(|e| EvidenceError::Network(e.to_string()))?;
        let key = self.network.coordinator_key;
        let fail = |reason: String| EvidenceError::NotProven { kind: self.kind, reason };
        let signer = format!("0x{}", hex::encode(key));
        match self.kind {
            AlarmKind::Equivocation => {
                let pair =
                    self.equivocation.as_ref().ok_or_else(|| fail("the two signed headers are missing".into()))?;
                pair.verify(&key).map_err(|e| fail(e.to_string()))?;
                Ok(format!(
                    "The coordinator (key {signer}) signed two different batches numbered {}: header hashes 0x{} and \
                     0x{}. A coordinator signs exactly one batch per number, so it equivocated; both signatures check \
                     with its public key alone.",
                    pair.first.header.number,
                    hex::encode(pair.first.header.hash()),
                    hex::encode(pair.second.header.hash())
                ))
            }
            AlarmKind::MissingBatch => {
                let next =
                    self.next_header.as_ref().ok_or_else(|| fail("the next batch's header is missing".into()))?;
                next.verify(&key).map_err(|_| fail("the next header's signature does not check".into()))?;
                if next.header.number != self.number + 1 {
                    return Err(fail(format!("the header is batch {}, not {}", next.header.number, self.number + 1)));
                }
                Ok(format!(
                    "The coordinator (key {signer}) signed batch {} (header 0x{}), which follows batch {} (its prev_hash is \
                     0x{}), but batch {} was not on the DA when this file was written ({}). Without it nobody can replay \
                     past batch {}: look for it on the DA; if it stays missing, the coordinator withheld it.",
                    next.header.number,
                    hex::encode(next.header.hash()),
                    self.number,
                    hex::encode(next.header.prev_hash),
                    self.number,
                    self.detail,
                    self.number.saturating_sub(1)
                ))
            }
            AlarmKind::DepositNotOnL1 => {
                let batches = self.decoded()?;
                let [batch] = batches.as_slice() else {
                    return Err(fail("the file must hold exactly the crediting batch".into()));
                };
                batch.signed_header().verify(&key).map_err(|_| fail("the batch's signature does not check".into()))?;
                if bridge::batch::txs_root(&batch.body) != batch.header.txs_root {
                    return Err(fail("the body is not the one the signed header names".into()));
                }
                let index = self.deposit_index.ok_or_else(|| fail("the deposit's index is missing".into()))?;
                let Some(BatchTx::System(SystemTx::Deposit(deposit) | SystemTx::BtcKeyedDeposit { deposit, .. })) =
                    batch.body.get(index)
                else {
                    return Err(fail(format!("transaction {index} of batch {} is not a deposit", batch.header.number)));
                };
                Ok(format!(
                    "The coordinator (key {signer}) signed batch {} crediting {} {} to {} for the L1 deposit {:?} \
                     (transaction {index} of the batch; the signature covers it through txs_root). The confirmer's L1 \
                     node said: {}. Look the reference up on {}: if it is not there at depth, the coordinator minted \
                     funds from nothing.",
                    batch.header.number,
                    deposit.amount,
                    deposit.asset,
                    deposit.account,
                    deposit.l1_ref,
                    self.detail,
                    deposit.chain
                ))
            }
            AlarmKind::PayoutNotOnL1 => {
                let batches = self.decoded()?;
                let [batch] = batches.as_slice() else {
                    return Err(fail("the file must hold exactly the recording batch".into()));
                };
                batch.signed_header().verify(&key).map_err(|_| fail("the batch's signature does not check".into()))?;
                if bridge::batch::txs_root(&batch.body) != batch.header.txs_root {
                    return Err(fail("the body is not the one the signed header names".into()));
                }
                let index = self.deposit_index.ok_or_else(|| fail("the transaction's index is missing".into()))?;
                let Some(BatchTx::System(SystemTx::BtcPayoutConfirmed { plan, attempt, .. })) = batch.body.get(index)
                else {
                    return Err(fail(format!(
                        "transaction {index} of batch {} is not a payout confirmation",
                        batch.header.number
                    )));
                };
                Ok(format!(
                    "The coordinator (key {signer}) signed batch {} recording attempt {attempt} of Bitcoin payout plan                      {plan} as confirmed (transaction {index} of the batch). The confirmer's Bitcoin node said: {}.                      Every replayer derives that attempt's txid from the plan; if the chain does not have it at depth,                      the vault's change in the ledger is not the chain's.",
                    batch.header.number, self.detail
                ))
            }
            AlarmKind::Censorship => {
                let batches = self.decoded()?;
                let [batch] = batches.as_slice() else {
                    return Err(fail("the file must hold exactly the censoring batch".into()));
                };
                let found = self.censorship.as_ref().ok_or_else(|| fail("the finding is missing".into()))?;
                crate::forced::check_censorship(&self.network, batch, found).map_err(fail)
            }
            AlarmKind::RootMismatch | AlarmKind::BrokenLink | AlarmKind::InvalidTx | AlarmKind::InvalidBatch => {
                if self.version == EVIDENCE_VERSION_HISTORY {
                    self.check_replay_from_genesis()
                } else {
                    self.check_replay_from_prior_state()
                }
            }
        }
    }
}
