//! Following a takeover after censorship (docs/PROTOCOL.md, "Takeover after censorship"): a
//! follower halted by `censorship` at batch n resumes when the DA serves another batch n, the
//! replacement a new coordinator sealed from the DA, and that batch passes every check,
//! the forced one first. The censoring batch was never replayed (the check runs before the
//! replay), so the state is exactly the one batch n must start from.

use super::{FollowError, Follower, Step, Taken};
use crate::alarm::AlarmKind;
use crate::evidence::Evidence;

impl Follower {
    /// Remembers the batch a `censorship` alarm names, so that only another batch resumes, and
    /// has the DA set it aside so that it can hand out a replacement.
    pub(super) fn note_censored(&mut self, number: u64, hash: [u8; 32]) {
        self.censored.entry(number).or_default().insert(hash);
        self.da.supersede(number, hash);
    }

    /// At start: a `censorship` alarm at a batch this record already replayed (its
    /// replacement) is superseded and halts nothing; the others name their batch.
    pub(super) fn superseded_at_start(&mut self, kind: AlarmKind, number: u64, evidence: &str) -> bool {
        if kind != AlarmKind::Censorship {
            return false;
        }
        if number <= self.replayed {
            tracing::info!(number, "a censorship alarm was superseded by the takeover batch replayed in its place");
            return true;
        }
        let batches = Evidence::from_json(evidence).and_then(|e| e.decoded_batches()).unwrap_or_default();
        for batch in batches.iter().filter(|b| b.header.number == number) {
            self.note_censored(number, batch.hash());
        }
        false
    }

    /// Halted by `censorship` at the next batch only: takes another batch with that number if
    /// the DA now serves one, and on its replay the alarm is superseded and following resumes.
    pub(super) async fn resume_after_takeover(&mut self, step: &mut Step) -> Result<(), FollowError> {
        let next = self.replayed + 1;
        let only_censorship_here =
            !self.alarms.is_empty() && self.alarms.iter().all(|a| a.kind == AlarmKind::Censorship && a.number == next);
        if !only_censorship_here {
            return Ok(());
        }
        let item = match self.da.fetch(next).await {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::debug!(%error, next, "no replacement for the censoring batch readable yet");
                return Ok(());
            }
        };
        if self.censored.get(&next).is_some_and(|hashes| hashes.contains(&item.batch.hash())) {
            return Ok(());
        }
        let locator = item.locator.clone();
        match self.verify_and_take(item).await? {
            Taken::Replayed => {
                self.alarms.retain(|a| !(a.kind == AlarmKind::Censorship && a.number == next));
                self.halted_at = self.alarms.iter().map(|a| a.number).min();
                self.censored.remove(&next);
                tracing::warn!(
                    number = next,
                    %locator,
                    "the censoring batch is superseded by a takeover's batch that passes the forced check; following the new history"
                );
                metrics::counter!("bridge_confirmer_alarms_superseded_total", "kind" => AlarmKind::Censorship.as_str())
                    .increment(1);
                step.replayed += 1;
            }
            Taken::Alarm(alarm) => step.alarm = Some(alarm),
            Taken::Waiting | Taken::Foreign => {}
        }
        Ok(())
    }
}
