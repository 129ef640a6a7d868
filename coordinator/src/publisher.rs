//! The publisher: takes sealed batches from the ledger, in order, and publishes them through the
//! data-availability layer, noting where each went. A batch is never dropped (it stays in the
//! ledger, unpublished, until the DA accepts it) and never published twice (the DA refuses or
//! recognises a repeat, and the ledger remembers the locator).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use chains::da::{DaError, DataAvailability, Published};
use chains::task::{Schedule, Task, TaskError};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing batch {number} failed: {source}; it stays in the ledger and is retried")]
    Da { number: u64, source: DaError },
    /// The DA answered for another batch than the one given: it (or the publisher's journal)
    /// cannot be trusted to file batches, and another try would not tell why.
    #[error(
        "the DA filed batch {number} as batch {filed} ({locator}): publication stops; check the DA and the \
         publisher's journal (docs/OPERATIONS.md)"
    )]
    Misfiled { number: u64, filed: u64, locator: String },
}

impl PublishError {
    /// Whether another round cannot help: the DA contradicts the ledger (a batch filed under
    /// another number, a different batch under this number, two batches signed with one number).
    pub fn is_fatal(&self) -> bool {
        match self {
            PublishError::Misfiled { .. } => true,
            PublishError::Da { source, .. } => {
                #[cfg(feature = "planted-bugs")]
                if bridge::planted::active(bridge::planted::PlantedBug::UnreachableDaIsFatal)
                    && matches!(source, DaError::Gateway(_))
                {
                    return true;
                }
                matches!(source, DaError::Conflict { .. } | DaError::Misfiled { .. } | DaError::Equivocation(_))
            }
            PublishError::Store(_) => false,
        }
    }
}

/// The longest wait between two tries of a failing publication ([`Publisher::schedule`]).
const MAX_RETRY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Publisher {
    store: Store,
    da: Arc<dyn DataAvailability>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("store", &self.store.backend()).finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(store: Store, da: Arc<dyn DataAvailability>) -> Self {
        Publisher { store, da }
    }

    /// Publishes every sealed batch the ledger holds without a locator, in order; stops at the
    /// first failure so that batches are never published out of order.
    pub async fn publish_pending(&self) -> Result<Vec<Published>, PublishError> {
        let mut done = Vec::new();
        let pending = self.store.unpublished_batches().await?;
        metrics::gauge!("bridge_coordinator_unpublished_batches").set(pending.len() as f64);
        let mut left = pending.len();
        for batch in pending {
            let number = batch.header.number;
            let published = self.da.publish(&batch).await.map_err(|source| PublishError::Da { number, source })?;
            if published.number != number {
                return Err(PublishError::Misfiled { number, filed: published.number, locator: published.locator });
            }
            self.store.set_published(number, &published.locator).await?;
            left -= 1;
            // Lag: from the batch's seal (its timestamp) to the DA's acceptance.
            let lag_ms = crate::node::unix_millis().saturating_sub(batch.header.timestamp);
            metrics::histogram!("bridge_coordinator_publish_lag_seconds").record(lag_ms as f64 / 1000.0);
            metrics::gauge!("bridge_coordinator_published_batch").set(number as f64);
            metrics::gauge!("bridge_coordinator_unpublished_batches").set(left as f64);
            tracing::info!(number, locator = %published.locator, lag_ms, "batch published");
            done.push(published);
        }
        Ok(done)
    }

    /// When the publisher's turns run: every `retry` (and at each seal); a failing DA is tried
    /// again after `retry`, doubling up to 10 s, not the default minute: every user waits on
    /// publication for hard finality, and a gateway answers a retry every 10 s cheaply. The
    /// coordinator's supervisor and the simulator both pace the task by this.
    pub fn schedule(retry: Duration) -> Schedule {
        Schedule { max_retry: MAX_RETRY.max(retry), ..Schedule::every(retry) }
    }

    /// The publisher as a supervised task: a round whenever a batch is sealed (`sealed` is
    /// notified) and at least every `retry`.
    pub fn task(self, sealed: Arc<Notify>) -> PublishTask {
        PublishTask { publisher: self, sealed }
    }
}

/// See [`Publisher::task`]. A failed round is retried with backoff, the batch staying in the
/// ledger meanwhile; a DA that contradicts the ledger stops the coordinator.
#[derive(Debug)]
pub struct PublishTask {
    publisher: Publisher,
    sealed: Arc<Notify>,
}

impl Task for PublishTask {
    async fn turn(&mut self) -> Result<(), TaskError> {
        match self.publisher.publish_pending().await {
            Ok(_) => Ok(()),
            Err(error) if error.is_fatal() => Err(TaskError::fatal(error)),
            Err(error) => Err(TaskError::transient(error)),
        }
    }

    async fn idle(&mut self, retry: Duration) {
        let _ = tokio::time::timeout(retry, self.sealed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use chains::arweave::GatewayError;

    use super::*;

    fn da(source: DaError) -> PublishError {
        PublishError::Da { number: 7, source }
    }

    /// A DA that cannot be reached, is slow or refuses for now is tried again (an outage must
    /// not stop the coordinator); one that contradicts the ledger stops publication for a human.
    #[test]
    fn only_a_da_contradicting_the_ledger_stops_publication() {
        let unreachable = GatewayError::Unreachable { url: "https://gw".into(), attempts: 3, last: "timeout".into() };
        let refused = GatewayError::Refused { url: "https://gw".into(), status: 503, body: "busy".into() };
        for transient in [
            da(DaError::Gateway(unreachable)),
            da(DaError::Gateway(refused)),
            da(DaError::Worker("the worker restarted".into())),
            da(DaError::OutOfOrder { number: 7, previous: 6 }),
        ] {
            assert!(!transient.is_fatal(), "{transient} must be retried");
        }
        for fatal in [
            da(DaError::Conflict { number: 7, locator: "abc".into() }),
            da(DaError::Misfiled { locator: "abc".into(), expected: 7, found: 8 }),
            PublishError::Misfiled { number: 7, filed: 8, locator: "abc".into() },
        ] {
            assert!(fatal.is_fatal(), "{fatal} must stop publication");
        }
    }
}
