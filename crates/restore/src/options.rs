use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::recovery::RecoverySettings;

/// Where and how to restore one backup.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The data directory to write: must not exist, or be empty (see `delta`). Its parent
    /// must exist.
    pub pg_data: PathBuf,
    /// Relocated tablespaces: oid -> absolute directory (missing or empty). Tablespaces not
    /// listed go back to the location they had when the backup was taken.
    pub tablespace_map: BTreeMap<u32, PathBuf>,
    /// Restore over an existing data directory (one with `PG_VERSION`, and no
    /// `postmaster.pid`): remove what the backup lacks, rewrite only chunks whose content
    /// differs. A non-empty tablespace directory is accepted only when the data
    /// directory's `pg_tblspc/OID` already links to it; only the backup's own directories
    /// inside it are cleaned.
    pub delta: bool,
    /// What goes into `postgresql.auto.conf` and which signal file is written.
    pub recovery: RecoverySettings,
    /// Files restored at the same time (0 counts as 1). Each has a few chunks in flight, so
    /// memory stays near `concurrency * (READ_AHEAD + 1) * chunk size`.
    pub concurrency: usize,
    /// Counters a progress display may read while the restore runs.
    pub progress: Arc<RestoreProgress>,
}

/// How far a restore has got: files finished and their bytes (written or found unchanged).
#[derive(Debug, Default)]
pub struct RestoreProgress {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl RestoreProgress {
    pub(crate) fn file_done(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl RestoreOptions {
    /// Options for a plain restore into `pg_data`: original tablespace locations, two files
    /// in flight per core.
    pub fn new(pg_data: impl Into<PathBuf>, recovery: RecoverySettings) -> RestoreOptions {
        RestoreOptions {
            pg_data: pg_data.into(),
            tablespace_map: BTreeMap::new(),
            delta: false,
            recovery,
            concurrency: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4),
            progress: Arc::default(),
        }
    }
}
