//! An equivocation found late (docs/PROTOCOL.md, "Equivocation found late"): a second batch
//! numbered n that the coordinator signed, posted after this follower replayed its batch n.
//! It is an equivocation whenever it is found, alarmed at n, and hard finality falls back
//! below n: what was final on the DA as it then stood is not final on the DA as it now is.

use super::{FollowError, Follower};
use crate::alarm::{Alarm, AlarmKind};
use crate::evidence::Evidence;

impl Follower {
    /// Asks the DA (a bounded question, every step) for two signed batches under one number
    /// this follower has passed; the alarm if it has them.
    pub(super) async fn late_equivocation(&mut self) -> Result<Option<Alarm>, FollowError> {
        if self.replayed == 0 {
            return Ok(None);
        }
        let pair = match self.da.equivocation_through(self.replayed).await {
            Ok(Some(pair)) => pair,
            Ok(None) => return Ok(None),
            Err(error) => {
                // A DA that cannot be read now is asked again next step.
                tracing::debug!(%error, "looking for a late equivocation failed; retrying");
                return Ok(None);
            }
        };
        let number = pair.first.header.number;
        // Only evidence anyone can check counts, and a takeover's replacement of a batch this
        // follower found censoring is no equivocation (follower/takeover.rs).
        let censored = self.censored.get(&number).is_some_and(|hashes| {
            hashes.contains(&pair.first.header.hash()) || hashes.contains(&pair.second.header.hash())
        });
        if number == 0 || number > self.replayed || censored || pair.verify(&self.params.coordinator_key).is_err() {
            tracing::debug!(number, "the DA's equivocation evidence does not name two batches to alarm; ignoring it");
            return Ok(None);
        }
        let detail = format!(
            "two batches numbered {number} signed by the coordinator, the second found after this confirmer replayed batch {}",
            self.replayed
        );
        let evidence = Evidence { equivocation: Some(pair), ..self.evidence(AlarmKind::Equivocation, number, &detail) };
        let alarm = self.raise(AlarmKind::Equivocation, number, detail, evidence).await?;
        // Hard finality precedes every alarm.
        self.hard_final = self.hard_final.min(number - 1);
        Ok(Some(alarm))
    }
}
