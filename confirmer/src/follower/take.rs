//! One fetched batch taken: its signatures (off the async threads), its deposits against this
//! node's L1 views, its forced range against the gateway, then its replay and record.

use super::*;

impl Follower {
    /// Checks one batch's signatures off the async threads, then takes it: the one-at-a-time
    /// paths (the pipelined `step` verifies the next batch while taking this one instead).
    pub(super) async fn verify_and_take(&mut self, item: FetchedBatch) -> Result<Taken, FollowError> {
        let body = item.batch.body.clone();
        let domain = self.state.domain().clone();
        let verified = tokio::task::spawn_blocking(move || bridge::tx::verify_all(&body, &domain))
            .await
            .map_err(|e| FollowError::Worker(e.to_string()))?;
        self.take(item, verified).await
    }

    /// Checks one fetched batch's deposits and replays it.
    pub(super) async fn take(
        &mut self,
        item: FetchedBatch,
        verified: Vec<Result<bridge::Tx, bridge::TxError>>,
    ) -> Result<Taken, FollowError> {
        let number = item.batch.header.number;
        // The DA checked the header's signature; the body must be the one it names, or these
        // are not the coordinator's bytes and nothing in them counts.
        if bridge::batch::txs_root(&item.batch.body) != item.batch.header.txs_root {
            if self.foreign.insert(number) {
                tracing::warn!(number, locator = %item.locator, "ignoring a batch body that is not the one the coordinator signed");
                metrics::counter!("bridge_confirmer_foreign_entries_total").increment(1);
            }
            return Ok(Taken::Foreign);
        }
        // L1 facts first: the state must not take in a batch whose deposits or payout
        // confirmations L1 denies.
        let mut unverified = None;
        for (index, tx) in item.batch.body.iter().enumerate() {
            let BatchTx::System(system) = tx else { continue };
            let (chain, what, kind, verifier, check) = match system {
                SystemTx::Deposit(deposit) => {
                    let Some(verifier) = self.verifiers.for_chain(deposit.chain) else {
                        unverified.get_or_insert_with(|| format!("unverified: deposit on {}", deposit.chain));
                        continue;
                    };
                    let detail = format!("deposit {:?} on {}", deposit.l1_ref, deposit.chain);
                    // A Bitcoin deposit pays the account's address under the key in force at
                    // this batch (the genesis key until a rotation's first batch).
                    let check = match bridge::rotation::key_at(&self.state, number) {
                        Some(key) if deposit.chain == Chain::Bitcoin => {
                            verifier.check_under_key(deposit, key.key.internal_key).await?
                        }
                        _ => verifier.check(deposit).await?,
                    };
                    (deposit.chain, detail, AlarmKind::DepositNotOnL1, verifier.clone(), check)
                }
                SystemTx::BtcKeyedDeposit { deposit, key_epoch } => {
                    // Outside the grace (or under a key not in force yet) the replay below refuses it.
                    let Ok(owner) =
                        bridge::rotation::keyed_deposit_owner(&self.state, number, *key_epoch, deposit.account)
                    else {
                        continue;
                    };
                    let Some(keys) = bridge::rotation::vault_keys(&self.state) else { continue };
                    let Some(verifier) = self.verifiers.for_chain(Chain::Bitcoin) else {
                        unverified.get_or_insert_with(|| "unverified: late bitcoin deposit".to_string());
                        continue;
                    };
                    let detail = format!("deposit {:?} to key epoch {key_epoch} on bitcoin", deposit.l1_ref);
                    let check = verifier.check_under_key(deposit, keys.internal_key_of(&owner)).await?;
                    (Chain::Bitcoin, detail, AlarmKind::DepositNotOnL1, verifier.clone(), check)
                }
                SystemTx::BtcPayoutConfirmed { plan, attempt, height } => {
                    // Without a vault the replay below refuses the batch, as the coordinator's error.
                    let Some(keys) = bridge::rotation::vault_keys(&self.state) else { continue };
                    let Some(verifier) = self.verifiers.for_chain(Chain::Bitcoin) else {
                        unverified.get_or_insert_with(|| "unverified: bitcoin payout".to_string());
                        continue;
                    };
                    let detail = format!("attempt {attempt} of payout plan {plan} on bitcoin");
                    // A plan is signed only once its batch is hard-final, so it cannot confirm in
                    // the batch that makes it: it must be pending before this batch.
                    let check = match self.state.btc_plan(*plan) {
                        Some(planned) => verifier.check_payout(&keys, planned, *attempt, *height).await?,
                        None => {
                            DepositCheck::NotOnL1 { reason: format!("plan {plan} was not pending before this batch") }
                        }
                    };
                    (Chain::Bitcoin, detail, AlarmKind::PayoutNotOnL1, verifier.clone(), check)
                }
                // A key rotation carries no L1 fact: the replay checks the old group's signature.
                SystemTx::BtcPayoutPlan { .. }
                | SystemTx::BtcConsolidationPlan { .. }
                | SystemTx::BtcSweepPlan { .. }
                | SystemTx::KeyRotation(_) => {
                    continue;
                }
            };
            // A node that says it is in sync, yet stays far below the block the batch names, is
            // not lagging: the batch names a block its chain does not have.
            #[cfg(feature = "planted-bugs")]
            let check = match check {
                DepositCheck::NodeBehind { node_height, needed }
                    if bridge::planted::active(bridge::planted::PlantedBug::NotSeenYetIsAbsent) =>
                {
                    DepositCheck::NotOnL1 {
                        reason: format!("not on this node at height {node_height} (needs {needed})"),
                    }
                }
                other => other,
            };
            let beyond = match check {
                DepositCheck::NodeBehind { needed, .. } => {
                    self.named_beyond_synced_tip(&*verifier, (number, index), needed).await
                }
                _ => None,
            };
            let (node_height, needed_height) = match (check, beyond) {
                (_, Some(reason)) | (DepositCheck::NotOnL1 { reason }, None) => {
                    let detail = format!("{what}: {reason}");
                    let evidence = Evidence {
                        batches: Evidence::encode_batches(&[&item.batch]),
                        deposit_index: Some(index),
                        ..self.evidence(kind, number, &detail)
                    };
                    return Ok(Taken::Alarm(self.raise(kind, number, detail, evidence).await?));
                }
                (DepositCheck::Confirmed, None) => continue,
                (DepositCheck::NotYetDeep, None) => (None, None),
                (DepositCheck::NodeBehind { node_height, needed }, None) => (Some(node_height), Some(needed)),
            };
            let waiting = Waiting { batch: number, chain, what, node_height, needed_height };
            if self.waiting.as_ref() != Some(&waiting) {
                match (node_height, needed_height) {
                    (Some(height), Some(needed)) => tracing::info!(
                        number, %chain, what = %waiting.what, height, needed,
                        "waiting for this confirmer's L1 node to reach the batch's block"
                    ),
                    _ => tracing::info!(number, %chain, what = %waiting.what, "waiting for an L1 fact to reach depth"),
                }
            }
            metrics::gauge!("bridge_confirmer_l1_blocks_behind", "chain" => chain.to_string())
                .set(needed_height.zip(node_height).map_or(0, |(needed, have)| needed.saturating_sub(have)) as f64);
            self.waiting = Some(waiting);
            return Ok(Taken::Waiting);
        }
        if let Some(waited) = self.waiting.take() {
            metrics::gauge!("bridge_confirmer_l1_blocks_behind", "chain" => waited.chain.to_string()).set(0.0);
        }
        // Forced transactions before the state moves: a wait must leave it as it was.
        match self.check_forced(&item).await? {
            Ok(None) => {}
            Ok(Some(why)) => {
                unverified.get_or_insert(why);
            }
            Err(taken) => return Ok(taken),
        }
        let replayed = match replay_verified(&mut self.state, &item.batch, verified) {
            Ok(replayed) => replayed,
            Err(error) => match planted_of_replay(&error) {
                Some(kind) => {
                    let detail = error.to_string();
                    let evidence = self.replay_evidence(kind, &item.batch, &detail).await?;
                    return Ok(Taken::Alarm(self.raise(kind, number, detail, evidence).await?));
                }
                None => {
                    // Not the coordinator's doing (someone's edit of its bytes): not an alarm,
                    // and not progress either.
                    if self.foreign.insert(number) {
                        tracing::warn!(number, %error, "ignoring a batch body that is not the one the coordinator signed");
                        metrics::counter!("bridge_confirmer_foreign_entries_total").increment(1);
                    }
                    return Ok(Taken::Foreign);
                }
            },
        };
        // The state holds the batch now: until the database records it, nothing else is taken.
        self.unrecorded = Some(unrecorded::Unrecorded {
            tx_hashes: replayed_tx_hashes(&replayed),
            batch: ReplayedBatch { batch: item.batch, locator: item.locator, unverified },
            settlement: replayed.settlement,
        });
        self.record_owed().await?;
        Ok(Taken::Replayed)
    }

    /// The alarm's reason once the fact at `at` (batch, position) has named a block beyond this
    /// node's synced tip for the whole wait; `None` while it has not (or the node cannot say).
    pub(super) async fn named_beyond_synced_tip(
        &mut self,
        verifier: &dyn DepositVerifier,
        at: (u64, usize),
        needed: u64,
    ) -> Option<String> {
        let tip = match verifier.beyond_synced_tip(needed).await {
            Ok(tip) => tip,
            Err(error) => {
                tracing::debug!(%error, "could not ask the L1 node whether it is in sync; waiting");
                None
            }
        };
        let Some(tip) = tip else {
            self.beyond.clear();
            return None;
        };
        let (first, lasted) = self.beyond.observe(at, (self.clock)(), self.beyond_tip_wait);
        if first {
            tracing::warn!(
                batch = at.0,
                needed,
                tip,
                wait_s = self.beyond_tip_wait.as_secs(),
                "a batch names an L1 block far beyond this node's tip though the node says it is in sync; waiting before an alarm"
            );
        }
        lasted.then(|| {
            format!(
                "the batch needs block {needed}, but this node, in sync by its own word, stayed more than its depth and slack below it for {} s (tip {tip})",
                self.beyond_tip_wait.as_secs()
            )
        })
    }

    /// The forced check of one batch: `Ok(None)` kept, `Ok(Some(why))` unchecked (no gateway),
    /// `Err(taken)` a wait or a `censorship` alarm.
    pub(super) async fn check_forced(
        &mut self,
        item: &FetchedBatch,
    ) -> Result<Result<Option<String>, Taken>, FollowError> {
        let (Some(previous), Some(_)) = (self.forced_cursor, &item.batch.header.forced) else { return Ok(Ok(None)) };
        let Some(checker) = &self.forced else {
            return Ok(Ok(Some("unverified: forced transactions (no Arweave gateway to check them)".into())));
        };
        let number = item.batch.header.number;
        let verdict = checker
            .check(previous, &item.batch, &item.locator)
            .await
            .map_err(|e| FollowError::Forced(e.to_string()))?;
        match verdict {
            crate::forced::ForcedVerdict::Kept => Ok(Ok(None)),
            crate::forced::ForcedVerdict::Wait(why) => {
                tracing::info!(number, %why, "waiting for the gateway to show the batch's forced range");
                Ok(Err(Taken::Waiting))
            }
            crate::forced::ForcedVerdict::Censored(found) => {
                self.note_censored(number, item.batch.hash());
                let detail = found.describe(number);
                let evidence = Evidence {
                    batches: Evidence::encode_batches(&[&item.batch]),
                    censorship: Some(*found),
                    ..self.evidence(AlarmKind::Censorship, number, &detail)
                };
                Ok(Err(Taken::Alarm(self.raise(AlarmKind::Censorship, number, detail, evidence).await?)))
            }
        }
    }
}

/// [`AlarmKind::of_replay`], or with the planted bug `InvalidTxIgnored` on, an invalid
/// transaction taken for someone else's bytes.
fn planted_of_replay(error: &bridge::ReplayError) -> Option<AlarmKind> {
    #[cfg(feature = "planted-bugs")]
    if matches!(error, bridge::ReplayError::InvalidTx { .. })
        && bridge::planted::active(bridge::planted::PlantedBug::InvalidTxIgnored)
    {
        return None;
    }
    AlarmKind::of_replay(error)
}

/// Every transaction a replayed batch ran, user and forced, for the transaction index.
pub(super) fn replayed_tx_hashes(replayed: &bridge::batch::Replayed) -> Vec<[u8; 32]> {
    replayed.receipts.iter().chain(&replayed.forced_receipts).map(|receipt| receipt.tx_hash).collect()
}
