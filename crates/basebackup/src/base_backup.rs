//! `BASE_BACKUP` with the PostgreSQL 15+ option syntax, and its stream
//! (`bbsink_copystream_*` in src/backend/backup/basebackup_copy.c):
//!
//! 1. a result set with the start position (`recptr`, `tli`), then one with the
//!    tablespaces (`spcoid`, `spclocation`, `size` in kB; the data directory is the row
//!    without an oid), then `CommandComplete`;
//! 2. one CopyOut whose CopyData messages start with a type byte: `n` a new archive (its
//!    name and tablespace location, empty for the data directory), `d` data of the
//!    current archive or of the manifest, `p` progress (bytes sent so far, int64), `m` the
//!    manifest follows;
//! 3. CopyDone, a result set with the end position, `CommandComplete`, `ReadyForQuery`.
//!
//! The archives are tar streams; [`BaseBackupStream`] parses them (with
//! `cairn_pgformat::tar`) so consumers see files, and hands data on as it arrives.
//! PostgreSQL 17's `UPLOAD_MANIFEST` is here too: it prepares an `INCREMENTAL` backup.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use cairn_pgformat::tar::{TarEntry, TarEvent, TarParser};
use cairn_pgformat::{Lsn, TimelineId};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::conn::{ReplicationConnection, row_values, tag};
use crate::error::ReplicationError;

/// The oldest server whose `BASE_BACKUP` syntax and stream this client speaks.
pub const MIN_SERVER_VERSION: u32 = 150000;
/// The first server with `UPLOAD_MANIFEST` and `INCREMENTAL`.
pub const INCREMENTAL_SERVER_VERSION: u32 = 170000;

/// What to ask `BASE_BACKUP` for. Besides these, cairn always asks for progress reports,
/// a manifest with CRC32C file checksums, the tablespace map, and no WAL.
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// `LABEL`, written into `backup_label`.
    pub label: String,
    /// `CHECKPOINT 'fast'` (else 'spread': the backup starts when the next spread
    /// checkpoint completes).
    pub fast_checkpoint: bool,
    /// PostgreSQL 17+: send only blocks changed since the manifest given with
    /// [`ReplicationConnection::upload_manifest`] on this connection.
    pub incremental: bool,
}

impl BaseBackupOptions {
    /// The command, e.g. `BASE_BACKUP (LABEL 'x', PROGRESS, CHECKPOINT 'fast', WAIT false,
    /// MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP)`.
    ///
    /// `WAIT false`: cairn gets WAL from its archive and waits for it there, with its own
    /// bound, as pg_basebackup sends `WAIT 0` when it fetches WAL itself. (The server still
    /// switches to a new segment at the end, so the last one gets archived.) `WAL` is not
    /// asked for for the same reason.
    pub fn command(&self) -> String {
        let mut cmd = format!(
            "BASE_BACKUP (LABEL {}, PROGRESS, CHECKPOINT '{}', WAIT false, MANIFEST 'yes', \
             MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP",
            quote_literal(&self.label),
            if self.fast_checkpoint {
                "fast"
            } else {
                "spread"
            }
        );
        if self.incremental {
            cmd.push_str(", INCREMENTAL");
        }
        cmd.push(')');
        cmd
    }
}

/// A single-quoted literal for the replication grammar (src/backend/replication/repl_scanner.l:
/// quotes doubled, no backslash escapes).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A tablespace the server will send, besides the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceInfo {
    pub oid: u32,
    /// Where the tablespace lives on the server (the target of `pg_tblspc/<oid>`).
    pub location: String,
    /// The server's estimate of its size in kB (sent because cairn asks for progress).
    pub size_kb: Option<u64>,
}

/// One step of the backup, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupEvent {
    /// The backup started: replay of a restored copy starts at `start_lsn`.
    Started {
        start_lsn: Lsn,
        timeline: TimelineId,
    },
    /// The tablespaces that follow as archives of their own (empty without tablespaces).
    Tablespaces(Vec<TablespaceInfo>),
    /// A new tar archive: the data directory (`tablespace: None`, named `base.tar`) or a
    /// tablespace (named `<oid>.tar`, with its location). Entries until the next
    /// `ArchiveStart` or `ManifestData` belong to it; each archive is checked to end with
    /// its end-of-archive marker.
    ArchiveStart {
        name: String,
        tablespace: Option<String>,
    },
    /// A file, directory or link starts; a file's data follows as `Data`.
    Entry(TarEntry),
    /// The next bytes of the current file, as they arrived.
    Data(Bytes),
    EntryEnd,
    /// Bytes the server has sent so far, a few times a second at most.
    Progress(u64),
    /// The next bytes of PostgreSQL's `backup_manifest`, after the archives.
    ManifestData(Bytes),
    /// The backup ended: a restored copy is consistent once replay reaches `end_lsn`.
    Finished {
        end_lsn: Lsn,
        timeline: TimelineId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    StartRow,
    Tablespaces,
    Copy,
    EndRow,
    Done,
    /// An error was returned; the stream says so again rather than pretending to end.
    Failed,
}

/// The tar archive being received.
#[derive(Debug)]
struct Archive {
    name: String,
    tar: TarParser,
}

impl Archive {
    /// The archive is over: it must have ended with its end-of-archive marker.
    fn close(&self) -> Result<(), ReplicationError> {
        self.tar.finish().map_err(|source| ReplicationError::Tar {
            archive: self.name.clone(),
            source,
        })
    }
}

/// The events of a running base backup. Memory is bounded by one CopyData message: data is
/// handed on as it arrives, never collected per file.
///
/// The connection is busy until [`BaseBackupStream::next_event`] returns `Ok(None)`;
/// dropping the stream before leaves it in the middle of the COPY, so drop the connection
/// too.
#[derive(Debug)]
pub struct BaseBackupStream<'c> {
    conn: &'c mut ReplicationConnection,
    phase: Phase,
    tablespaces: Vec<TablespaceInfo>,
    data_directory_kb: Option<u64>,
    archive: Option<Archive>,
    in_manifest: bool,
    queue: VecDeque<BackupEvent>,
    error: Option<ReplicationError>,
}

impl ReplicationConnection {
    /// Start `BASE_BACKUP` and return its event stream.
    pub async fn base_backup(
        &mut self,
        opts: &BaseBackupOptions,
    ) -> Result<BaseBackupStream<'_>, ReplicationError> {
        self.require_version(
            MIN_SERVER_VERSION,
            "BASE_BACKUP needs PostgreSQL 15 or later",
        )?;
        if opts.incremental {
            self.require_version(
                INCREMENTAL_SERVER_VERSION,
                "incremental base backups need PostgreSQL 17 or later",
            )?;
        }
        let mut buf = BytesMut::new();
        frontend::query(&opts.command(), &mut buf)?;
        self.send(&buf).await?;
        Ok(BaseBackupStream {
            conn: self,
            phase: Phase::StartRow,
            tablespaces: Vec::new(),
            data_directory_kb: None,
            archive: None,
            in_manifest: false,
            queue: VecDeque::new(),
            error: None,
        })
    }

    /// PostgreSQL 17+: `UPLOAD_MANIFEST`, the `backup_manifest` of the backup an
    /// `INCREMENTAL` backup on this connection is to be relative to. The server checks it
    /// (and its WAL summaries) when the backup starts.
    pub async fn upload_manifest(&mut self, manifest: &[u8]) -> Result<(), ReplicationError> {
        self.require_version(
            INCREMENTAL_SERVER_VERSION,
            "UPLOAD_MANIFEST needs PostgreSQL 17 or later",
        )?;
        let mut buf = BytesMut::new();
        frontend::query("UPLOAD_MANIFEST", &mut buf)?;
        self.send(&buf).await?;
        match self.recv().await? {
            Message::CopyInResponse(_) => {}
            Message::ErrorResponse(body) => {
                let e = ReplicationError::from_response(&body);
                self.finish_command().await?;
                return Err(e);
            }
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "UPLOAD_MANIFEST answered {}",
                    tag(&other)
                )));
            }
        }
        let mut out = BytesMut::new();
        for piece in manifest.chunks(64 * 1024) {
            frontend::CopyData::new(piece)?.write(&mut out);
            self.send(&out).await?;
            out.clear();
        }
        frontend::copy_done(&mut out);
        self.send(&out).await?;
        self.finish_command().await
    }

    fn require_version(&self, min: u32, why: &'static str) -> Result<(), ReplicationError> {
        match self.server_version_num() {
            Some(v) if v < min => Err(ReplicationError::UnsupportedServer {
                version: self.parameter("server_version").unwrap_or("?").to_string(),
                why,
            }),
            _ => Ok(()),
        }
    }
}

fn lsn_row(values: &[Option<String>]) -> Result<(Lsn, TimelineId), ReplicationError> {
    let bad = || ReplicationError::Protocol(format!("bad position row {values:?}"));
    let col = |i: usize| values.get(i).cloned().flatten().ok_or_else(bad);
    Ok((
        col(0)?.parse().map_err(|_| bad())?,
        col(1)?.parse().map_err(|_| bad())?,
    ))
}

fn tablespace_row(
    values: &[Option<String>],
) -> Result<(Option<TablespaceInfo>, Option<u64>), ReplicationError> {
    let bad = || ReplicationError::Protocol(format!("bad tablespace row {values:?}"));
    let col = |i: usize| values.get(i).cloned().flatten();
    let size_kb = col(2).map(|s| s.parse().map_err(|_| bad())).transpose()?;
    Ok(match (col(0), col(1)) {
        (Some(oid), Some(location)) => (
            Some(TablespaceInfo {
                oid: oid.parse().map_err(|_| bad())?,
                location,
                size_kb,
            }),
            size_kb,
        ),
        (None, None) => (None, size_kb),
        _ => return Err(bad()),
    })
}

/// A NUL-terminated string at the start of `b`, consumed.
fn cstring(b: &mut Bytes) -> Result<String, ReplicationError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| ReplicationError::Protocol("unterminated string in CopyData".into()))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

impl BaseBackupStream<'_> {
    /// The next event, or `None` once the server has finished the backup.
    pub async fn next_event(&mut self) -> Result<Option<BackupEvent>, ReplicationError> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Ok(Some(e));
            }
            match self.phase {
                Phase::Failed => {
                    return Err(ReplicationError::Protocol(
                        "the base backup already failed".into(),
                    ));
                }
                Phase::Done => {
                    return match self.error.take() {
                        Some(e) => {
                            self.phase = Phase::Failed;
                            Err(e)
                        }
                        None => Ok(None),
                    };
                }
                _ => {}
            }
            if let Err(e) = self.step().await {
                // Nothing sensible can follow a broken stream.
                self.phase = Phase::Failed;
                return Err(self.error.take().unwrap_or(e));
            }
        }
    }

    /// The server's estimate of the bytes it will send (the sum of the tablespace sizes),
    /// once the [`BackupEvent::Tablespaces`] event has been seen.
    pub fn estimated_size(&self) -> Option<u64> {
        let mut kb = self.data_directory_kb?;
        for t in &self.tablespaces {
            kb += t.size_kb?;
        }
        Some(kb * 1024)
    }

    /// The server's warnings so far (see [`ReplicationConnection::take_notices`]); a
    /// backup that fails page checksum verification names each bad block here before its
    /// final error.
    pub fn take_notices(&mut self) -> Vec<String> {
        self.conn.take_notices()
    }

    fn announce_tablespaces(&mut self) {
        self.queue
            .push_back(BackupEvent::Tablespaces(self.tablespaces.clone()));
        self.phase = Phase::Copy;
    }

    async fn step(&mut self) -> Result<(), ReplicationError> {
        match self.conn.recv_after(&mut self.error).await? {
            Message::RowDescription(_) => {}
            Message::DataRow(row) => {
                let values = row_values(&row)?;
                match self.phase {
                    Phase::StartRow => {
                        let (start_lsn, timeline) = lsn_row(&values)?;
                        self.queue.push_back(BackupEvent::Started {
                            start_lsn,
                            timeline,
                        });
                    }
                    Phase::Tablespaces => match tablespace_row(&values)? {
                        (Some(t), _) => self.tablespaces.push(t),
                        (None, size_kb) => self.data_directory_kb = size_kb,
                    },
                    Phase::EndRow => {
                        let (end_lsn, timeline) = lsn_row(&values)?;
                        self.queue
                            .push_back(BackupEvent::Finished { end_lsn, timeline });
                    }
                    Phase::Copy | Phase::Done | Phase::Failed => {
                        return Err(ReplicationError::Protocol(
                            "a row in the middle of the archive stream".into(),
                        ));
                    }
                }
            }
            Message::CommandComplete(_) => match self.phase {
                Phase::StartRow => self.phase = Phase::Tablespaces,
                Phase::Tablespaces => self.announce_tablespaces(),
                _ => {}
            },
            Message::CopyOutResponse(_) => {
                if self.phase == Phase::Tablespaces {
                    self.announce_tablespaces();
                }
            }
            Message::CopyData(body) => self.copy_data(body.into_bytes())?,
            Message::CopyDone => {
                self.end_archive()?;
                self.phase = Phase::EndRow;
            }
            Message::ErrorResponse(body) => {
                self.error
                    .get_or_insert(ReplicationError::from_response(&body));
            }
            Message::ReadyForQuery(_) => self.phase = Phase::Done,
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "in BASE_BACKUP: {}",
                    tag(&other)
                )));
            }
        }
        Ok(())
    }

    fn end_archive(&mut self) -> Result<(), ReplicationError> {
        match self.archive.take() {
            Some(a) => a.close(),
            None => Ok(()),
        }
    }

    fn copy_data(&mut self, mut data: Bytes) -> Result<(), ReplicationError> {
        if self.phase != Phase::Copy {
            return Err(ReplicationError::Protocol(
                "CopyData outside the archive stream".into(),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        let kind = data[0];
        data.advance(1);
        match kind {
            b'n' => {
                self.end_archive()?;
                let name = cstring(&mut data)?;
                let location = cstring(&mut data)?;
                self.archive = Some(Archive {
                    name: name.clone(),
                    tar: TarParser::new(),
                });
                self.in_manifest = false;
                self.queue.push_back(BackupEvent::ArchiveStart {
                    name,
                    tablespace: (!location.is_empty()).then_some(location),
                });
            }
            b'm' => {
                self.end_archive()?;
                self.in_manifest = true;
            }
            b'p' => {
                if data.len() < 8 {
                    return Err(ReplicationError::Protocol("short progress message".into()));
                }
                self.queue.push_back(BackupEvent::Progress(data.get_u64()));
            }
            b'd' if self.in_manifest => self.queue.push_back(BackupEvent::ManifestData(data)),
            b'd' => {
                let archive = self.archive.as_mut().ok_or_else(|| {
                    ReplicationError::Protocol("archive data before any archive started".into())
                })?;
                let events = archive
                    .tar
                    .push(&data)
                    .map_err(|source| ReplicationError::Tar {
                        archive: archive.name.clone(),
                        source,
                    })?;
                for ev in events {
                    self.queue.push_back(match ev {
                        TarEvent::Entry(e) => BackupEvent::Entry(e),
                        TarEvent::Data(d) => BackupEvent::Data(data.slice_ref(d)),
                        TarEvent::EntryEnd => BackupEvent::EntryEnd,
                        TarEvent::End => continue,
                    });
                }
            }
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "unknown CopyData type {:?}",
                    other as char
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_quotes_the_label() {
        let o = BaseBackupOptions {
            label: "it's".into(),
            fast_checkpoint: true,
            incremental: true,
        };
        assert_eq!(
            o.command(),
            "BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAIT false, MANIFEST 'yes', \
             MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, INCREMENTAL)"
        );
    }

    #[test]
    fn tablespace_rows() {
        let row = |v: [Option<&str>; 3]| v.map(|c| c.map(str::to_string)).to_vec();
        assert_eq!(
            tablespace_row(&row([Some("16384"), Some("/srv/ts"), Some("12")])).unwrap(),
            (
                Some(TablespaceInfo {
                    oid: 16384,
                    location: "/srv/ts".into(),
                    size_kb: Some(12)
                }),
                Some(12)
            )
        );
        assert_eq!(
            tablespace_row(&row([None, None, Some("30000")])).unwrap(),
            (None, Some(30000))
        );
        assert!(tablespace_row(&row([Some("x"), Some("/a"), None])).is_err());
    }
}
