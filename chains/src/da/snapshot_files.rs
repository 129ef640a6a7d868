//! State snapshots on the DA, for confirmers that join late (fast sync). A snapshot on the DA is
//! the encoded `bridge::Snapshot` of some batch, published by the coordinator; it is never
//! trusted as it stands: a reader checks it against a batch header it already trusts (an
//! operator's checkpoint) with `bridge::State::restore`.
//!
//! `DirDa` keeps them as files `snapshots/snapshot-<number>.brss` beside its batches.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::DaError;

/// The Arweave `Codec` tag of a snapshot transaction.
pub const SNAPSHOT_CODEC: &str = "bridge-snapshot-v1+zstd";

fn io(path: &Path, source: std::io::Error) -> DaError {
    DaError::Io { path: path.display().to_string(), source }
}

fn file_name(number: u64) -> String {
    format!("snapshot-{number:020}.brss")
}

fn dir_of(da_dir: &Path) -> PathBuf {
    da_dir.join("snapshots")
}

/// Writes `bytes` as the snapshot of batch `number` under `da_dir`: a temporary file, fsync,
/// rename into place, fsync of the directory, so a reader sees the whole file or none.
pub(super) fn publish_in_dir(da_dir: &Path, number: u64, bytes: &[u8]) -> Result<String, DaError> {
    let dir = dir_of(da_dir);
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let path = dir.join(file_name(number));
    match fs::read(&path) {
        Ok(existing) if existing == bytes => return Ok(file_name(number)),
        Ok(_) | Err(_) => {}
    }
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name(number),
        std::process::id(),
        NEXT_TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| io(&dir, e))?;
    Ok(file_name(number))
}

/// The snapshot file of batch `number` under `da_dir`, if there is one (unchecked bytes).
pub(super) fn read_in_dir(da_dir: &Path, number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
    let path = dir_of(da_dir).join(file_name(number));
    match fs::read(&path) {
        Ok(bytes) => Ok(vec![(file_name(number), bytes)]),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&path, e)),
    }
}
