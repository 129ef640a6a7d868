//! `DirDa`: one file per batch in a local directory, the embedded default for a single machine
//! and for the devnet. Files are written atomically and never overwritten: write a temporary
//! file, fsync it, link it into place (which fails if the name exists), fsync the directory.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bridge::SignedBatch;
use bridge::codec::encode_batch;

use super::{DaError, DataAvailability, FetchedBatch, Published, check_published};

#[derive(Debug, Clone)]
pub struct DirDa {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    coordinator_key: [u8; 32],
    /// A number known to be published with all before it, so `latest` scans only what is new.
    latest_hint: AtomicU64,
}

impl DirDa {
    /// Opens (creating if needed) the store in `dir` for batches signed by `coordinator_key`.
    pub fn open(dir: impl Into<PathBuf>, coordinator_key: [u8; 32]) -> Result<Self, DaError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        Ok(DirDa { inner: Arc::new(Inner { dir, coordinator_key, latest_hint: AtomicU64::new(0) }) })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, DaError> + Send + 'static,
    ) -> Result<T, DaError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner)).await.map_err(|e| DaError::Worker(e.to_string()))?
    }
}

fn io(path: &Path, source: std::io::Error) -> DaError {
    DaError::Io { path: path.display().to_string(), source }
}

impl Inner {
    fn file_name(number: u64) -> String {
        // Zero-padded so that a directory listing sorts in batch order.
        format!("batch-{number:020}.brbt")
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(Self::file_name(number))
    }

    fn publish(&self, number: u64, bytes: &[u8]) -> Result<Published, DaError> {
        let path = self.path(number);
        let locator = Self::file_name(number);
        match fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(Published { number, locator }),
            Ok(_) => return Err(DaError::Conflict { number, locator }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        // Unique per call, not only per process: two publishers in one process (the background
        // one and a shutdown's last round) must never write the same temporary file.
        static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{locator}.{}.{}.tmp",
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().map_err(|e| io(&tmp, e))?;
        // `hard_link` refuses an existing target, so a racing writer can never be overwritten.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return match fs::read(&path) {
                    Ok(existing) if existing == bytes => Ok(Published { number, locator }),
                    Ok(_) => Err(DaError::Conflict { number, locator }),
                    Err(e) => Err(io(&path, e)),
                };
            }
            Err(e) => return Err(io(&path, e)),
        }
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io(&self.dir, e))?;
        tracing::debug!(number, file = %path.display(), "batch written");
        Ok(Published { number, locator })
    }

    fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        let path = self.path(number);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let locator = Self::file_name(number);
        let batch = check_published(&bytes, &locator, number, &self.coordinator_key)?;
        Ok(Some(FetchedBatch { locator, batch, size: bytes.len() }))
    }
}

#[async_trait]
impl DataAvailability for DirDa {
    async fn publish(&self, batch: &SignedBatch) -> Result<Published, DaError> {
        let number = batch.header.number;
        let bytes = encode_batch(batch);
        self.blocking(move |inner| inner.publish(number, &bytes)).await
    }

    async fn publish_snapshot(&self, number: u64, _root: [u8; 32], bytes: &[u8]) -> Result<Option<String>, DaError> {
        let bytes = bytes.to_vec();
        self.blocking(move |inner| super::snapshot_files::publish_in_dir(&inner.dir, number, &bytes).map(Some)).await
    }

    async fn snapshots_of(&self, number: u64) -> Result<Vec<(String, Vec<u8>)>, DaError> {
        self.blocking(move |inner| super::snapshot_files::read_in_dir(&inner.dir, number)).await
    }

    async fn fetch(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        self.blocking(move |inner| inner.fetch(number)).await
    }

    async fn signed_after(&self, number: u64) -> Result<Option<FetchedBatch>, DaError> {
        self.blocking(move |inner| {
            let mut later: Vec<u64> = fs::read_dir(&inner.dir)
                .map_err(|e| io(&inner.dir, e))?
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name().into_string().ok()?;
                    name.strip_prefix("batch-")?.strip_suffix(".brbt")?.parse().ok()
                })
                .filter(|&n| n > number)
                .collect();
            later.sort_unstable();
            // Files that do not check are someone else's bytes, not evidence; a few are looked
            // past, not a whole directory of them.
            for n in later.into_iter().take(16) {
                match inner.fetch(n) {
                    Ok(Some(fetched)) => return Ok(Some(fetched)),
                    Ok(None) | Err(DaError::Invalid { .. } | DaError::Misfiled { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        })
        .await
    }

    async fn confirmations(&self, number: u64) -> Result<Option<u64>, DaError> {
        // A file that exists was fsynced before it was linked into place: final at once.
        self.blocking(move |inner| Ok(inner.path(number).exists().then_some(u64::MAX))).await
    }

    async fn latest(&self) -> Result<u64, DaError> {
        self.blocking(|inner| {
            let mut n = inner.latest_hint.load(Ordering::Relaxed);
            if n > 0 && !inner.path(n).exists() {
                n = 0; // files were removed behind our back: scan again from the start
            }
            while inner.path(n + 1).exists() {
                n += 1;
            }
            inner.latest_hint.store(n, Ordering::Relaxed);
            Ok(n)
        })
        .await
    }
}
