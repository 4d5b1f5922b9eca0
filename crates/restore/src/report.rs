use std::path::PathBuf;

use cairn_repo::BackupLabel;

use crate::archiving::Archiving;

/// What a finished restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The backup restored.
    pub label: BackupLabel,
    /// The data directory, resolved.
    pub pg_data: PathBuf,
    /// Regular files written from the backup (not counting `backup_label`, the signal
    /// file or the rewritten `postgresql.auto.conf`).
    pub files: u64,
    pub directories: u64,
    /// Tablespace links created under `pg_tblspc`.
    pub links: u64,
    /// Bytes of backup content written.
    pub bytes_written: u64,
    /// Delta: bytes already right on disk, not written.
    pub bytes_unchanged: u64,
    /// Delta: entries removed because the backup does not have them.
    pub removed: u64,
    /// Chunks read from the repository, each authenticated and checked against its id
    /// (delta: only those that differed on disk).
    pub chunks: u64,
    /// Where each tablespace went.
    pub tablespaces: Vec<(u32, PathBuf)>,
    /// Manifest paths deliberately not restored (e.g. a `postmaster.pid`).
    pub skipped: Vec<String>,
    /// Things the operator should know before starting PostgreSQL.
    pub warnings: Vec<String>,
    /// `recovery.signal` or `standby.signal`.
    pub signal_file: &'static str,
    /// Whether the restored cluster will archive WAL, and how.
    pub archiving: Archiving,
}
