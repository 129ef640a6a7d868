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
use tss::{KeyPath, SigningContext, SigningRequest, TssNode};

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

/// Asks the group to sign the checkpoint of hard-final batch `number` as this watchman's own
/// replay has it. The other signers each check it against their own replay.
pub async fn sign_checkpoint(
    tss: &TssNode,
    book: &SettlementBook,
    network: &str,
    genesis_hash: [u8; 32],
    number: u64,
) -> Result<SignedCheckpoint, CheckpointSignError> {
    let header_hash = book.final_header(number).ok_or(CheckpointSignError::NotFinal(number))?;
    let message = checkpoint_message(&genesis_hash, number, &header_hash);
    let request = SigningRequest {
        message: message.to_vec(),
        key_path: KeyPath::Vault,
        context: SigningContext {
            chain: "bridge".into(),
            batch: Some(number),
            purpose: SIGN_CHECKPOINT.into(),
            detail: header_hash.to_vec(),
        },
    };
    let outcome = tss.sign(vec![request]).await.map_err(|e| CheckpointSignError::Session(e.to_string()))?;
    let signed = outcome.signatures.into_iter().next().ok_or(CheckpointSignError::WrongSignature)?;
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
        let every = self.every_batches.max(1);
        let due = hard_final / every * every;
        (due > 0 && due > self.last && !self.path_of(due).exists()).then_some(due)
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

/// The watchman loop's checkpoint duty: at most one signing session in flight, on a task of its
/// own so that settling never waits for it.
#[derive(Debug)]
pub struct CheckpointDuty {
    writer: CheckpointWriter,
    network: String,
    genesis_hash: [u8; 32],
    in_flight: Option<(u64, JoinHandle<Result<SignedCheckpoint, CheckpointSignError>>)>,
    retry_at: Option<Instant>,
}

impl CheckpointDuty {
    pub fn new(writer: CheckpointWriter, network: String, genesis_hash: [u8; 32]) -> Self {
        CheckpointDuty { writer, network, genesis_hash, in_flight: None, retry_at: None }
    }

    /// One turn: writes a finished session's checkpoint (or notes its failure), then starts the
    /// next due one if none is in flight.
    pub async fn turn(&mut self, tss: &Arc<TssNode>, book: &SettlementBook) {
        if self.in_flight.as_ref().is_some_and(|(_, task)| task.is_finished())
            && let Some((number, task)) = self.in_flight.take()
        {
            // Finished: this await does not wait.
            match task.await {
                Ok(Ok(checkpoint)) => match self.writer.write(&checkpoint) {
                    Ok(path) => {
                        tracing::info!(batch = number, path = %path.display(), "signed checkpoint written");
                        metrics::gauge!("watchman_checkpoint_batch").set(number as f64);
                    }
                    Err(error) => self.failed(number, &error.to_string()),
                },
                Ok(Err(error)) => self.failed(number, &error.to_string()),
                Err(error) => self.failed(number, &error.to_string()),
            }
        }
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let Some(number) = self.writer.due(book.hard_final()) else { return };
        let (tss, book, network, genesis_hash) = (tss.clone(), book.clone(), self.network.clone(), self.genesis_hash);
        let task = tokio::spawn(async move { sign_checkpoint(&tss, &book, &network, genesis_hash, number).await });
        self.in_flight = Some((number, task));
    }

    fn failed(&mut self, number: u64, error: &str) {
        metrics::counter!("watchman_checkpoint_failures_total").increment(1);
        tracing::warn!(batch = number, %error, "signing a checkpoint failed; retrying in 30 s");
        self.retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
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
}
