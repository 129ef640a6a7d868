//! What the follower alarms besides a bad replay, and every alarm's evidence file: a batch
//! withheld while a later one is published, and the file each alarm records beside it.

use super::*;

impl Follower {
    /// Batch `replayed + 1` is missing: is a later one published? If one stays published
    /// while this one stays missing for the configured wait, the coordinator withheld it.
    pub(super) async fn check_gap(&mut self) -> Result<Option<Alarm>, FollowError> {
        let missing = self.replayed + 1;
        // Any later batch the coordinator signed, linked or not (a DA that hands out only linked
        // batches would hide it). An entry that does not check is no sign of a gap; a DA that
        // cannot be read now is asked again next step.
        let later = match self.da.signed_after(missing).await {
            Ok(later) => later,
            Err(error) => {
                tracing::debug!(%error, missing, "looking for a batch after the missing one failed; retrying");
                None
            }
        };
        let Some(later) = later.filter(|later| later.batch.header.number > missing) else {
            self.gap.clear();
            return Ok(None);
        };
        match self.gap.observe(missing, (self.clock)(), self.missing_batch_wait) {
            GapVerdict::Opened => {
                tracing::warn!(
                    missing,
                    later = later.batch.header.number,
                    wait_s = self.missing_batch_wait.as_secs(),
                    "a batch is missing while a later one is published; waiting before raising missing_batch"
                );
                return Ok(None);
            }
            GapVerdict::Waiting => return Ok(None),
            GapVerdict::Withheld => {}
        }
        // The evidence names the batch directly before the later header (which that header's
        // signature proves the coordinator made); every batch from `missing` to it is missing.
        let later_number = later.batch.header.number;
        let number = later_number - 1;
        let detail = if number == missing {
            format!("batch {later_number} is published at {} but batch {missing} is not", later.locator)
        } else {
            format!("batch {later_number} is published at {} but batches {missing} to {number} are not", later.locator)
        };
        let evidence = Evidence {
            next_header: Some(later.batch.signed_header()),
            ..self.evidence(AlarmKind::MissingBatch, number, &detail)
        };
        Ok(Some(self.raise(AlarmKind::MissingBatch, number, detail, evidence).await?))
    }

    pub(super) fn evidence(&self, kind: AlarmKind, number: u64, detail: &str) -> Evidence {
        Evidence {
            version: EVIDENCE_VERSION,
            kind,
            number,
            network: self.params.clone(),
            detail: detail.to_owned(),
            batches: Vec::new(),
            equivocation: None,
            deposit_index: None,
            next_header: None,
            censorship: None,
            prior_header: None,
            prior_state: None,
        }
    }

    /// A replay alarm's file: the bad batch, the signed header of the batch before it and the
    /// state after that one, which the refused replay left as it was. It costs the state and the
    /// batch, not the history, and a node started from a snapshot has all of it.
    pub(super) async fn replay_evidence(
        &self,
        kind: AlarmKind,
        bad: &SignedBatch,
        detail: &str,
    ) -> Result<Evidence, FollowError> {
        let number = bad.header.number;
        let evidence = Evidence { batches: Evidence::encode_batches(&[bad]), ..self.evidence(kind, number, detail) };
        // Batch 1 follows genesis, which the network's parameters in the file define.
        if self.replayed == 0 {
            return Ok(evidence);
        }
        let own_record = |reason: String| FollowError::OwnRecord { number: self.replayed, reason };
        let prior = self
            .store
            .replayed_batch(self.replayed)
            .await?
            .ok_or_else(|| own_record("the last replayed batch is not in the record".into()))?;
        let snapshot = self.state.snapshot().map_err(|e| own_record(e.to_string()))?;
        Ok(Evidence {
            prior_header: Some(prior.batch.signed_header()),
            prior_state: Some(Evidence::encode_state(&snapshot)),
            ..evidence
        })
    }

    pub(super) async fn raise(
        &mut self,
        kind: AlarmKind,
        number: u64,
        detail: String,
        evidence: Evidence,
    ) -> Result<Alarm, FollowError> {
        let alarm = Alarm { number, kind, detail };
        tracing::error!(number, kind = %kind, detail = %alarm.detail, "ALARM: hard finality stops here");
        metrics::counter!("bridge_confirmer_alarms_total", "kind" => kind.as_str()).increment(1);
        self.store.record_alarm(&alarm, &evidence.to_json()).await?;
        self.halted_at = Some(self.halted_at.map_or(number, |n| n.min(number)));
        self.alarms.push(alarm.clone());
        Ok(alarm)
    }
}
