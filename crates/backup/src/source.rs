//! What a base backup looks like to the code that stores it.

use bytes::Bytes;
use cairn_pgformat::{Lsn, TimelineId};

use crate::error::BackupError;

/// The kind of a tar entry of the base backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: String },
}

/// One step of a base backup stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The server started the backup (after its checkpoint).
    Started {
        start_lsn: Lsn,
        timeline: TimelineId,
    },
    /// Tablespaces outside the data directory: (oid, location).
    Tablespaces(Vec<(u32, String)>),
    /// The following entries belong to this tablespace (`None`: the data directory).
    Archive {
        tablespace: Option<u32>,
    },
    /// A file, directory or link; a file's data follows as `Data` events, then `EntryEnd`.
    Entry {
        path: String,
        kind: EntryKind,
        mode: u32,
        size: u64,
        mtime: i64,
    },
    Data(Bytes),
    EntryEnd,
    /// Part of PostgreSQL's `backup_manifest`.
    Manifest(Bytes),
    /// The backup ended; WAL up to `stop_lsn` makes it consistent.
    Finished {
        stop_lsn: Lsn,
        timeline: TimelineId,
    },
}

/// A stream of [`SourceEvent`]s.
pub trait BackupSource {
    fn next_event(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<SourceEvent>, BackupError>> + Send;
}
