//! A transaction's way from `accepted` to `paid on L1`, followed by polling: the coordinator
//! (`accepted`, `batched`, `published`), a confirmer (`hard-final`), then for a withdrawal the
//! chain (`signed`, `paid`; see [`super::l1`]). Each stage is stamped with a monotonic clock
//! from the moment `POST /tx` answered, and shown on stderr as it is reached.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::endpoints::{Api, ApiFailure};

pub const ACCEPTED: &str = "accepted";
pub const BATCHED: &str = "batched";
pub const PUBLISHED: &str = "published";
pub const HARD_FINAL: &str = "hard-final";
pub const SIGNED: &str = "signed";
pub const PAID: &str = "paid";

/// One stage reached, `at_ms` after acceptance.
#[derive(Debug, Clone, Serialize)]
pub struct StageAt {
    pub stage: &'static str,
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The stages reached so far, the deadline, and the poll interval.
#[derive(Debug)]
pub struct Tracker {
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    poll: Duration,
    pub stages: Vec<StageAt>,
    /// The transaction's batch, once the coordinator has sealed it into one.
    pub batch: Option<u64>,
    shown_problem: Option<String>,
}

impl Tracker {
    /// `start`: when `POST /tx` answered.
    pub fn new(start: Instant, timeout: Duration, poll: Duration) -> Self {
        let deadline = start.checked_add(timeout).unwrap_or(start);
        Tracker { start, deadline, timeout, poll, stages: Vec::new(), batch: None, shown_problem: None }
    }

    pub fn has(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s.stage == stage)
    }

    /// Records `stage` (once) and shows it on stderr with the time since acceptance.
    pub fn reach(&mut self, stage: &'static str, detail: Option<String>) {
        if self.has(stage) {
            return;
        }
        // Acceptance is the clock's origin: 0 by definition, not whatever a loaded machine took
        // between the answer and this line.
        let elapsed = if stage == ACCEPTED { Duration::ZERO } else { self.start.elapsed() };
        let at_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let label = if stage == PAID { "paid on L1" } else { stage };
        match &detail {
            Some(detail) => eprintln!("  {:>8.3}s  {label:<11} {detail}", elapsed.as_secs_f64()),
            None => eprintln!("  {:>8.3}s  {label}", elapsed.as_secs_f64()),
        }
        self.stages.push(StageAt { stage, at_ms, detail });
    }

    /// Waits one poll interval, or fails once the deadline has passed, saying what was awaited
    /// and the last problem seen while waiting.
    pub async fn pause(&mut self, waiting_for: &str, last_problem: &Option<String>) -> anyhow::Result<()> {
        if Instant::now() >= self.deadline {
            let seen = match last_problem {
                Some(problem) => format!("; the last problem seen: {problem}"),
                None => String::new(),
            };
            bail!(
                "timed out after {}s waiting for {waiting_for}{seen} (raise --timeout-secs, or check later with `bridgectl tx HASH`)",
                self.timeout.as_secs()
            );
        }
        // Each new problem is shown once, so a wait that will time out says why early.
        if let Some(problem) = last_problem
            && self.shown_problem.as_ref() != Some(problem)
        {
            eprintln!("  {:>8.3}s  (still waiting: {problem})", self.start.elapsed().as_secs_f64());
            self.shown_problem = Some(problem.clone());
        }
        tokio::time::sleep(self.poll).await;
        Ok(())
    }
}

/// A failure worth retrying while waiting: the service is briefly away, busy or failing.
pub fn is_transient(failure: &ApiFailure) -> bool {
    match failure {
        ApiFailure::Unreachable { .. } | ApiFailure::BadAnswer { .. } => true,
        ApiFailure::Refused { status, .. } => *status == 429 || *status >= 500,
    }
}

/// `GET /tx/{hash}` on the coordinator (the fields the wallet reads).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CoordinatorTx {
    pub hash: String,
    pub status: String,
    pub seq: u64,
    #[serde(default)]
    pub batch: Option<u64>,
    #[serde(default)]
    pub locator: Option<String>,
    pub tx: serde_json::Value,
}

/// `GET /tx/{hash}` on a confirmer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConfirmerTx {
    pub hash: String,
    pub batch: u64,
    pub hard_final: bool,
}

/// Follows the coordinator until the transaction is published; returns its batch.
pub async fn until_published(tracker: &mut Tracker, coordinator: &Api, hash: &str) -> anyhow::Result<u64> {
    let mut problem = None;
    loop {
        match coordinator.get::<CoordinatorTx>(&format!("/tx/{hash}")).await {
            Ok(tx) => {
                if let Some(batch) = tx.batch {
                    tracker.batch = Some(batch);
                    tracker.reach(BATCHED, Some(format!("batch {batch}")));
                    if tx.status == PUBLISHED {
                        tracker.reach(PUBLISHED, tx.locator.map(|l| format!("at {l}")));
                        return Ok(batch);
                    }
                }
            }
            Err(failure) if is_transient(&failure) => problem = Some(failure.to_string()),
            Err(failure) => return Err(failure.into()),
        }
        tracker.pause("the coordinator to batch and publish the transaction", &problem).await?;
    }
}

/// Follows a confirmer until it calls the transaction hard-final.
pub async fn until_hard_final(tracker: &mut Tracker, confirmer: &Api, hash: &str) -> anyhow::Result<()> {
    let mut problem = None;
    loop {
        match confirmer.get::<ConfirmerTx>(&format!("/tx/{hash}")).await {
            Ok(tx) if tx.hard_final => {
                tracker.reach(HARD_FINAL, Some(format!("batch {} replayed and verified", tx.batch)));
                return Ok(());
            }
            Ok(tx) => {
                problem = Some(format!(
                    "the confirmer replayed batch {} but does not call it hard-final (see its /status and /alarms)",
                    tx.batch
                ))
            }
            Err(failure) if failure.is_not_found() => {}
            Err(failure) if is_transient(&failure) => problem = Some(failure.to_string()),
            Err(failure) => return Err(failure.into()),
        }
        tracker.pause("a confirmer to replay the batch and call it hard-final", &problem).await?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn stages_are_recorded_once_in_order_and_time_out_clearly() {
        let mut tracker = Tracker::new(Instant::now(), Duration::ZERO, Duration::from_millis(1));
        tracker.reach(ACCEPTED, None);
        tracker.reach(BATCHED, Some("batch 1".into()));
        tracker.reach(BATCHED, Some("batch 2".into()));
        let names: Vec<_> = tracker.stages.iter().map(|s| s.stage).collect();
        assert_eq!(names, [ACCEPTED, BATCHED]);
        let error = tracker.pause("the moon", &Some("it set".into())).await.unwrap_err().to_string();
        assert!(error.contains("the moon") && error.contains("it set") && error.contains("--timeout-secs"), "{error}");
    }
}
