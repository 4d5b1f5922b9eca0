//! The real [`BackupSource`]: a `BASE_BACKUP` stream from `cairn-basebackup`.

use cairn_basebackup::{BackupEvent, BaseBackupStream, ReplicationError};
use cairn_exit::Classify;
use cairn_pgformat::tar::TarKind;

use crate::error::BackupError;
use crate::source::{BackupSource, EntryKind, SourceEvent};

/// Adapts a server's base backup stream.
#[derive(Debug)]
pub struct ServerSource<'c> {
    stream: BaseBackupStream<'c>,
    /// The event [`ServerSource::start`] waited for, handed out first.
    first: Option<BackupEvent>,
    /// Bytes the server reported sending so far.
    pub progress: u64,
}

impl<'c> ServerSource<'c> {
    pub fn new(stream: BaseBackupStream<'c>) -> ServerSource<'c> {
        ServerSource {
            stream,
            first: None,
            progress: 0,
        }
    }

    /// Wait until the server has started the backup (its first event), so that a refusal
    /// comes back as the server's own error before anything is stored: PostgreSQL 17+ refuses
    /// `INCREMENTAL` in `PrepareForIncrementalBackup()`, before it sends the start position,
    /// when the WAL summaries it needs are missing.
    pub async fn start(stream: BaseBackupStream<'c>) -> Result<ServerSource<'c>, ReplicationError> {
        let mut source = ServerSource::new(stream);
        loop {
            match source.stream.next_event().await? {
                Some(BackupEvent::Progress(p)) => source.progress = p,
                other => {
                    source.first = other;
                    return Ok(source);
                }
            }
        }
    }
}

pub(crate) fn source_error(e: ReplicationError) -> BackupError {
    BackupError::Source {
        message: e.to_string(),
        hint: e.hint(),
        kind: e.kind(),
    }
}

impl BackupSource for ServerSource<'_> {
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, BackupError> {
        loop {
            let ev = match self.first.take() {
                Some(ev) => ev,
                None => match self.stream.next_event().await.map_err(source_error)? {
                    Some(ev) => ev,
                    None => return Ok(None),
                },
            };
            return Ok(Some(match ev {
                BackupEvent::Started {
                    start_lsn,
                    timeline,
                } => SourceEvent::Started {
                    start_lsn,
                    timeline,
                },
                BackupEvent::Tablespaces(list) => SourceEvent::Tablespaces(
                    list.into_iter().map(|t| (t.oid, t.location)).collect(),
                ),
                BackupEvent::ArchiveStart { name, tablespace } => {
                    // Tablespace archives are named OID.tar; the data directory's base.tar.
                    let oid = match tablespace {
                        None => None,
                        Some(_) => {
                            Some(name.trim_end_matches(".tar").parse::<u32>().map_err(|_| {
                                BackupError::Protocol(format!(
                                    "tablespace archive '{name}' is not named after its OID"
                                ))
                            })?)
                        }
                    };
                    SourceEvent::Archive { tablespace: oid }
                }
                BackupEvent::Entry(e) => SourceEvent::Entry {
                    path: e.path,
                    kind: match e.kind {
                        TarKind::File => EntryKind::File,
                        TarKind::Dir => EntryKind::Dir,
                        TarKind::Symlink { target } => EntryKind::Symlink { target },
                    },
                    mode: e.mode,
                    size: e.size,
                    mtime: e.mtime,
                },
                BackupEvent::Data(d) => SourceEvent::Data(d),
                BackupEvent::EntryEnd => SourceEvent::EntryEnd,
                BackupEvent::Progress(p) => {
                    self.progress = p;
                    continue;
                }
                BackupEvent::ManifestData(d) => SourceEvent::Manifest(d),
                BackupEvent::Finished { end_lsn, timeline } => SourceEvent::Finished {
                    stop_lsn: end_lsn,
                    timeline,
                },
            }));
        }
    }
}
