//! Signed checkpoints for confirmers that join late: this watchman asks the group (a FROST
//! session, judged by every signer's [`ReplayPolicy`](super::ReplayPolicy)) to sign "batch N
//! has header H", for a batch its own replay made hard-final, and writes the result as a file
//! operators hand to `confirmer follow --checkpoint-file`. Every `every_batches` batches; the
//! newest file is also `latest.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use bridge::checkpoint::{CHECKPOINT_VERSION, SignedCheckpoint, checkpoint_message};
use tss::{KeyPath, SignedMessage, SigningContext, SigningRequest, TssNode};

use super::book::SettlementBook;
use super::policy::SIGN_CHECKPOINT;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointSignError {
    #[error("batch {0} is not hard-final in this watchman's replay (or too old to vouch for)")]
    NotFinal(u64),
    #[error("the signing session failed: {0}; retried at the next due turn")]
    Session(String),
    #[error("the signature came back for another message")]
    WrongSignature,
    #[error("writing the checkpoint file {path}: {reason}")]
    Write { path: String, reason: String },
}

/// What the group is asked to sign for the checkpoint of hard-final batch `number`, as this
/// watchman's own replay has it, and the header hash it vouches for. The other signers each
/// check it against their own replay.
pub fn checkpoint_request(
    book: &SettlementBook,
    genesis_hash: [u8; 32],
    number: u64,
) -> Result<(SigningRequest, [u8; 32]), CheckpointSignError> {
    let header_hash = book.final_header(number).ok_or(CheckpointSignError::NotFinal(number))?;
    Ok((checkpoint_signing_request(genesis_hash, number, header_hash), header_hash))
}

/// The signing request of "batch `number` has header `header_hash`" on the network whose
/// genesis hash is `genesis_hash` (what [`ReplayPolicy`](super::ReplayPolicy) judges).
pub fn checkpoint_signing_request(genesis_hash: [u8; 32], number: u64, header_hash: [u8; 32]) -> SigningRequest {
    SigningRequest {
        message: checkpoint_message(&genesis_hash, number, &header_hash).to_vec(),
        key_path: KeyPath::Vault,
        context: SigningContext {
            chain: "bridge".into(),
            batch: Some(number),
            purpose: SIGN_CHECKPOINT.into(),
            detail: header_hash.to_vec(),
        },
    }
}

/// The signed checkpoint a finished session makes, if its one signature is of that checkpoint.
pub fn checkpoint_from_session(
    network: &str,
    genesis_hash: [u8; 32],
    number: u64,
    header_hash: [u8; 32],
    signatures: Vec<SignedMessage>,
) -> Result<SignedCheckpoint, CheckpointSignError> {
    let message = checkpoint_message(&genesis_hash, number, &header_hash);
    let signed = signatures.into_iter().next().ok_or(CheckpointSignError::WrongSignature)?;
    if signed.request.message != message {
        return Err(CheckpointSignError::WrongSignature);
    }
    Ok(SignedCheckpoint {
        version: CHECKPOINT_VERSION,
        network: network.to_owned(),
        number,
        header_hash,
        group_key: signed.key,
        signature: signed.signature,
    })
}

/// Asks the group to sign the checkpoint of hard-final batch `number` as this watchman's own
/// replay has it.
pub async fn sign_checkpoint(
    tss: &TssNode,
    book: &SettlementBook,
    network: &str,
    genesis_hash: [u8; 32],
    number: u64,
) -> Result<SignedCheckpoint, CheckpointSignError> {
    let (request, header_hash) = checkpoint_request(book, genesis_hash, number)?;
    let outcome = tss.sign(vec![request]).await.map_err(|e| CheckpointSignError::Session(e.to_string()))?;
    checkpoint_from_session(network, genesis_hash, number, header_hash, outcome.signatures)
}

/// The batch due for a checkpoint every `every` batches, given what is hard-final here and the
/// last one written (0: none), if a new one is due. Only the newest multiple is due: a watchman
/// that was down does not sign the ones it missed.
pub fn due_checkpoint(every: u64, last: u64, hard_final: u64) -> Option<u64> {
    let every = every.max(1);
    let due = hard_final / every * every;
    (due > 0 && due > last).then_some(due)
}

/// The checkpoint duty's decisions, apart from its I/O and free of any clock (time is handed
/// in as the duty's own elapsed time): which batch to sign next, at most one session in flight,
/// and a pause after a failure. The binary's [`CheckpointDuty`] and the simulator drive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSchedule {
    every: u64,
    last: u64,
    in_flight: Option<u64>,
    retry_at: Option<Duration>,
}

impl CheckpointSchedule {
    /// Every `every` batches, after batch `last` (0: none yet).
    pub fn new(every: u64, last: u64) -> Self {
        CheckpointSchedule { every: every.max(1), last, in_flight: None, retry_at: None }
    }

    /// The batch to start a session for at `now`, if one is due and none is in flight or
    /// waiting out a failure; it is then in flight. `done(n)`: batch `n`'s checkpoint exists
    /// already (a file an earlier run wrote), which is not signed again.
    pub fn start(&mut self, hard_final: u64, now: Duration, done: impl Fn(u64) -> bool) -> Option<u64> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let number = due_checkpoint(self.every, self.last, hard_final)?;
        if done(number) {
            self.last = number;
            return None;
        }
        self.in_flight = Some(number);
        Some(number)
    }

    /// The batch whose session is in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// The last batch signed (0: none).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The session for `number` made its checkpoint.
    pub fn signed(&mut self, number: u64) {
        debug_assert_eq!(self.in_flight, Some(number), "a checkpoint signed that was not in flight");
        self.in_flight = None;
        self.retry_at = None;
        self.last = self.last.max(number);
    }

    /// The session in flight failed at `now`: the next waits [`CHECKPOINT_RETRY`].
    pub fn failed(&mut self, now: Duration) {
        self.in_flight = None;
        self.retry_at = Some(now + CHECKPOINT_RETRY);
    }
}

/// When and where this watchman writes signed checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointWriter {
    pub dir: PathBuf,
    pub every_batches: u64,
    /// The last batch written by this process (0: none yet; an existing file is not redone).
    pub last: u64,
}

impl CheckpointWriter {
    /// The batch due for a checkpoint given what is hard-final here, if a new one is due.
    pub fn due(&self, hard_final: u64) -> Option<u64> {
        due_checkpoint(self.every_batches, self.last, hard_final).filter(|due| !self.path_of(*due).exists())
    }

    pub fn path_of(&self, number: u64) -> PathBuf {
        self.dir.join(format!("checkpoint-{number}.json"))
    }

    /// Writes `checkpoint` as `checkpoint-N.json` and `latest.json` (each through a temporary
    /// file and a rename, so a reader never sees half a file).
    pub fn write(&mut self, checkpoint: &SignedCheckpoint) -> Result<PathBuf, CheckpointSignError> {
        let path = self.path_of(checkpoint.number);
        let text = serde_json::to_vec_pretty(checkpoint)
            .map_err(|e| CheckpointSignError::Write { path: path.display().to_string(), reason: e.to_string() })?;
        for target in [path.clone(), self.dir.join("latest.json")] {
            write_atomically(&target, &text).map_err(|e| CheckpointSignError::Write {
                path: target.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        self.last = checkpoint.number;
        Ok(path)
    }
}

/// After a failed session, the next try waits this long: the others may simply not have made
/// the batch hard-final yet, and a session each turn would flood the mesh and the logs.
pub const CHECKPOINT_RETRY: Duration = Duration::from_secs(30);

/// The watchman loop's checkpoint duty, the I/O shell around a [`CheckpointSchedule`]: at most
/// one signing session in flight, on a task of its own so that settling never waits for it.
#[derive(Debug)]
pub struct CheckpointDuty {
    writer: CheckpointWriter,
    schedule: CheckpointSchedule,
    network: String,
    genesis_hash: [u8; 32],
    task: Option<JoinHandle<Result<SignedCheckpoint, CheckpointSignError>>>,
    /// The schedule's time is measured from here.
    origin: Instant,
}

impl CheckpointDuty {
    pub fn new(writer: CheckpointWriter, network: String, genesis_hash: [u8; 32]) -> Self {
        let schedule = CheckpointSchedule::new(writer.every_batches, writer.last);
        CheckpointDuty { writer, schedule, network, genesis_hash, task: None, origin: Instant::now() }
    }

    /// One turn: writes a finished session's checkpoint (or notes its failure), then starts the
    /// next due one if the schedule says so.
    pub async fn turn(&mut self, tss: &Arc<TssNode>, book: &SettlementBook) {
        if self.task.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(task) = self.task.take()
            && let Some(number) = self.schedule.in_flight()
        {
            // Finished: this await does not wait.
            let written = match task.await {
                Ok(Ok(checkpoint)) => self.writer.write(&checkpoint).map_err(|e| e.to_string()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match written {
                Ok(path) => {
                    self.schedule.signed(number);
                    tracing::info!(batch = number, path = %path.display(), "signed checkpoint written");
                    metrics::gauge!("watchman_checkpoint_batch").set(number as f64);
                }
                Err(error) => {
                    self.schedule.failed(self.origin.elapsed());
                    metrics::counter!("watchman_checkpoint_failures_total").increment(1);
                    tracing::warn!(batch = number, %error, "signing a checkpoint failed; retrying in 30 s");
                }
            }
        }
        let writer = &self.writer;
        let Some(number) =
            self.schedule.start(book.hard_final(), self.origin.elapsed(), |n| writer.path_of(n).exists())
        else {
            return;
        };
        let (tss, book, network, genesis_hash) = (tss.clone(), book.clone(), self.network.clone(), self.genesis_hash);
        self.task =
            Some(tokio::spawn(async move { sign_checkpoint(&tss, &book, &network, genesis_hash, number).await }));
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.partial");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_at_each_multiple_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CheckpointWriter { dir: dir.path().to_owned(), every_batches: 10, last: 0 };
        assert_eq!(writer.due(9), None);
        assert_eq!(writer.due(10), Some(10));
        assert_eq!(writer.due(27), Some(20));
        writer.last = 20;
        assert_eq!(writer.due(29), None);
        assert_eq!(writer.due(30), Some(30));
        std::fs::write(writer.path_of(30), b"{}").unwrap();
        assert_eq!(writer.due(35), None, "a file already written is not signed again");
    }

    #[test]
    fn one_checkpoint_session_at_a_time_and_a_failure_waits_out_the_retry() {
        let never = |_| false;
        let mut schedule = CheckpointSchedule::new(4, 0);
        assert_eq!(schedule.start(3, Duration::ZERO, never), None, "nothing hard-final at a multiple yet");
        assert_eq!(schedule.start(9, Duration::ZERO, never), Some(8), "the newest multiple only");
        assert_eq!(schedule.start(12, Duration::ZERO, never), None, "one session in flight");
        schedule.failed(Duration::from_secs(10));
        assert_eq!(schedule.in_flight(), None);
        let before = Duration::from_secs(10) + CHECKPOINT_RETRY - Duration::from_millis(1);
        assert_eq!(schedule.start(12, before, never), None, "a failure waits out the retry");
        assert_eq!(schedule.start(12, before + Duration::from_millis(1), never), Some(12));
        schedule.signed(12);
        assert_eq!((schedule.last(), schedule.in_flight()), (12, None));
        assert_eq!(schedule.start(15, before, never), None, "batch 12 is done");
        assert_eq!(schedule.start(16, before, |n| n == 16), None, "a checkpoint written before is not signed again");
        assert_eq!(schedule.last(), 16);
        assert_eq!(schedule.start(20, before, never), Some(20));
    }
}
