//! Checking a replay alarm (root mismatch, broken link, invalid tx, invalid batch): batch n,
//! signed by the coordinator, must fail to replay from the state the coordinator itself
//! committed to before it.
//!
//! Version 2 starts from that state: a snapshot after batch n − 1, accepted only if it rebuilds
//! the `post_state_root` of batch n − 1's signed header. Version 1 replays batches 1..n − 1 from
//! genesis to reach it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bridge::batch::replay;
use bridge::state::AccountEntry;
use bridge::state::snapshot::SupplyTotals;
use bridge::{Amount, AssetId, SignedBatch, Snapshot, State, StateKey};

use super::{EVIDENCE_VERSION_HISTORY, Evidence, EvidenceError};
use crate::alarm::AlarmKind;

impl Evidence {
    /// Version 1: batches 1..=n, the ones before n replayed from genesis.
    pub(super) fn check_replay_from_genesis(&self) -> Result<String, EvidenceError> {
        debug_assert_eq!(self.version, EVIDENCE_VERSION_HISTORY);
        let batches = self.decoded()?;
        let Some((bad, before)) = batches.split_last() else {
            return Err(self.not_proven("the file holds no batches"));
        };
        if bad.header.number != self.number || batches.len() as u64 != self.number {
            return Err(self.not_proven(format!("the file must hold batches 1 to {}", self.number)));
        }
        self.check_signed(bad)?;
        let mut state = State::genesis(self.network.clone());
        for batch in before {
            replay(&mut state, batch).map_err(|e| {
                self.not_proven(format!("batch {} before it does not replay ({e})", batch.header.number))
            })?;
        }
        let error = self.fails_as_claimed(&mut state, bad)?;
        Ok(format!(
            "Batch {} is signed by the coordinator (key {}) and follows batches 1 to {}, which replay cleanly from \
             the network's genesis; replaying it with the protocol's rules fails: {error}. The coordinator published \
             a batch the rules refuse, so nothing from batch {} on is final.",
            self.number,
            self.signer(),
            self.number - 1,
            self.number
        ))
    }

    /// Version 2: the bad batch alone, replayed from the state after batch n − 1 (genesis for
    /// batch 1), which the file's snapshot must rebuild under that batch's signed header.
    pub(super) fn check_replay_from_prior_state(&self) -> Result<String, EvidenceError> {
        let batches = self.decoded()?;
        let [bad] = batches.as_slice() else {
            return Err(self.not_proven("the file must hold exactly the bad batch"));
        };
        if bad.header.number != self.number || self.number == 0 {
            return Err(self.not_proven(format!("the file's batch is {}, not {}", bad.header.number, self.number)));
        }
        self.check_signed(bad)?;
        let (mut state, from) = match (self.number, &self.prior_header, &self.prior_state) {
            (1, None, None) => (State::genesis(self.network.clone()), "the network's genesis".to_owned()),
            (1, _, _) => return Err(self.not_proven("batch 1 follows genesis: the file must hold no prior state")),
            (_, Some(prior), Some(encoded)) => {
                let previous = self.number - 1;
                if prior.header.number != previous {
                    return Err(self.not_proven(format!(
                        "the prior header is batch {}, not batch {previous}",
                        prior.header.number
                    )));
                }
                prior
                    .verify(&self.network.coordinator_key)
                    .map_err(|_| self.not_proven("the prior header's signature does not check"))?;
                // A broken link is the claim itself (the replay shows it); any other claim is
                // about the batch that follows this header, on the same chain.
                if self.kind != AlarmKind::BrokenLink && bad.header.prev_hash != prior.header.hash() {
                    return Err(self.not_proven(format!(
                        "batch {} does not follow the prior header: its prev_hash is 0x{}, the header hashes to 0x{}",
                        self.number,
                        hex::encode(bad.header.prev_hash),
                        hex::encode(prior.header.hash())
                    )));
                }
                let bytes =
                    BASE64.decode(encoded).map_err(|e| EvidenceError::Malformed(format!("the prior state: {e}")))?;
                let mut snapshot = Snapshot::decode(&bytes)
                    .map_err(|e| self.not_proven(format!("the prior state does not decode: {e}")))?;
                snapshot.supplies = least_supplies(&snapshot.entries);
                let state = State::restore(self.network.clone(), snapshot, prior)
                    .map_err(|e| self.not_proven(format!("the prior state is not batch {previous}'s: {e}")))?;
                (
                    state,
                    format!(
                        "the state after batch {previous} (header 0x{}, signed by it)",
                        hex::encode(prior.header.hash())
                    ),
                )
            }
            (_, _, _) => {
                return Err(self.not_proven(format!(
                    "the file must hold batch {}'s signed header and the state after it",
                    self.number - 1
                )));
            }
        };
        let error = self.fails_as_claimed(&mut state, bad)?;
        Ok(format!(
            "Batch {} is signed by the coordinator (key {}); replaying it with the protocol's rules from {from}, \
             whose state root the snapshot in this file rebuilds, fails: {error}. The coordinator published a batch \
             the rules refuse, so nothing from batch {} on is final.",
            self.number,
            self.signer(),
            self.number
        ))
    }

    fn check_signed(&self, bad: &SignedBatch) -> Result<(), EvidenceError> {
        bad.signed_header()
            .verify(&self.network.coordinator_key)
            .map_err(|_| self.not_proven("the bad batch's signature does not check"))
    }

    /// Replays `bad` on `state`: it must fail, and as the file's kind says.
    fn fails_as_claimed(&self, state: &mut State, bad: &SignedBatch) -> Result<bridge::ReplayError, EvidenceError> {
        let error = match replay(state, bad) {
            Ok(_) => return Err(self.not_proven(format!("batch {} replays cleanly", self.number))),
            Err(error) => error,
        };
        if AlarmKind::of_replay(&error) != Some(self.kind) {
            return Err(self.not_proven(format!("batch {} fails differently: {error}", self.number)));
        }
        Ok(error)
    }

    fn not_proven(&self, reason: impl Into<String>) -> EvidenceError {
        EvidenceError::NotProven { kind: self.kind, reason: reason.into() }
    }

    fn signer(&self) -> String {
        format!("0x{}", hex::encode(self.network.coordinator_key))
    }
}

/// The least per-asset totals the snapshot's balances allow: deposited = the sum of the
/// balances, withdrawn = 0. No root commits to the totals, so the file's own are not taken: a
/// forger could set `deposited` near 2^128 and make an honest deposit "overflow". These are at
/// most the true totals (deposited ≥ liabilities, withdrawn ≥ 0), and the rules only ever ask
/// whether a total can grow, so every batch that replays from the true totals replays from these.
/// An account entry that does not decode is left to [`State::restore`], which refuses it.
fn least_supplies(entries: &[(StateKey, Vec<u8>)]) -> Vec<SupplyTotals> {
    let mut liabilities: BTreeMap<AssetId, Option<Amount>> = BTreeMap::new();
    for (key, value) in entries {
        let StateKey::Account(_) = key else { continue };
        let Ok(account) = AccountEntry::decode(value) else { continue };
        for (asset, amount) in account.balances {
            let sum = liabilities.entry(asset).or_insert(Some(Amount::ZERO));
            *sum = sum.and_then(|s| s.checked_add(amount));
        }
    }
    liabilities
        .into_iter()
        // Balances that overflow their sum are refused by `State::restore` with no totals given.
        .filter_map(|(asset, sum)| sum.map(|deposited| SupplyTotals { asset, deposited, withdrawn: Amount::ZERO }))
        .collect()
}
