//! `BASE_BACKUP` (PostgreSQL 15+ option syntax) and its CopyOut stream: result sets with
//! the start position and tablespaces, then CopyData messages tagged 'n' (new archive),
//! 'd' (data), 'p' (progress), 'm' (manifest follows), then the end position.
//! See `bbsink_copystream_*` in src/backend/backup/basebackup_copy.c.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use cairn_pgformat::tar::{TarEntry, TarEvent, TarParser};
use cairn_pgformat::{Lsn, TimelineId};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::conn::{ReplicationConnection, row_values, server_error, tag};
use crate::error::ReplicationError;

#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    pub label: String,
    /// `CHECKPOINT 'fast'` (else 'spread').
    pub fast_checkpoint: bool,
    /// PostgreSQL 17+: send only blocks changed since the manifest given with
    /// [`ReplicationConnection::upload_manifest`].
    pub incremental: bool,
}

/// A tablespace the server will send, besides the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceInfo {
    pub oid: u32,
    pub location: String,
}

/// One step of the backup, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupEvent {
    Started {
        start_lsn: Lsn,
        timeline: TimelineId,
    },
    Tablespaces(Vec<TablespaceInfo>),
    /// A new tar archive: the data directory (`tablespace: None`) or a tablespace.
    ArchiveStart {
        name: String,
        tablespace: Option<String>,
    },
    Entry(TarEntry),
    Data(Bytes),
    EntryEnd,
    Progress(u64),
    ManifestData(Bytes),
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
}

/// The events of a running base backup. Memory is bounded: data is handed on as it
/// arrives, never collected per file.
#[derive(Debug)]
pub struct BaseBackupStream<'c> {
    conn: &'c mut ReplicationConnection,
    phase: Phase,
    tablespaces: Vec<TablespaceInfo>,
    tar: TarParser,
    in_manifest: bool,
    queue: VecDeque<BackupEvent>,
    error: Option<ReplicationError>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl ReplicationConnection {
    /// Start `BASE_BACKUP` and return its event stream.
    pub async fn base_backup(
        &mut self,
        opts: &BaseBackupOptions,
    ) -> Result<BaseBackupStream<'_>, ReplicationError> {
        let mut cmd = format!(
            "BASE_BACKUP (LABEL {}, PROGRESS, CHECKPOINT '{}', MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP, WAIT true",
            quote(&opts.label),
            if opts.fast_checkpoint {
                "fast"
            } else {
                "spread"
            }
        );
        if opts.incremental {
            cmd.push_str(", INCREMENTAL");
        }
        cmd.push(')');
        let mut buf = BytesMut::new();
        frontend::query(&cmd, &mut buf)?;
        self.send(&buf).await?;
        Ok(BaseBackupStream {
            conn: self,
            phase: Phase::StartRow,
            tablespaces: Vec::new(),
            tar: TarParser::new(),
            in_manifest: false,
            queue: VecDeque::new(),
            error: None,
        })
    }

    /// PostgreSQL 17+: `UPLOAD_MANIFEST`, the parent's `backup_manifest` for an
    /// `INCREMENTAL` backup on this connection.
    pub async fn upload_manifest(&mut self, manifest: &[u8]) -> Result<(), ReplicationError> {
        let mut buf = BytesMut::new();
        frontend::query("UPLOAD_MANIFEST", &mut buf)?;
        self.send(&buf).await?;
        match self.recv().await? {
            Message::CopyInResponse(_) => {}
            Message::ErrorResponse(body) => {
                let e = server_error(&body);
                while !matches!(self.recv().await?, Message::ReadyForQuery(_)) {}
                return Err(e);
            }
            other => {
                return Err(ReplicationError::Protocol(format!(
                    "UPLOAD_MANIFEST: {}",
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
        let mut error = None;
        loop {
            match self.recv().await? {
                Message::ErrorResponse(body) => error = Some(server_error(&body)),
                Message::ReadyForQuery(_) => return error.map_or(Ok(()), Err),
                _ => {}
            }
        }
    }
}

fn lsn_row(values: &[Option<String>]) -> Result<(Lsn, TimelineId), ReplicationError> {
    let bad = || ReplicationError::Protocol(format!("bad position row {values:?}"));
    let lsn: Lsn = values
        .first()
        .cloned()
        .flatten()
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let tli: u32 = values
        .get(1)
        .cloned()
        .flatten()
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    Ok((lsn, TimelineId(tli)))
}

fn cstring(b: &mut Bytes) -> Result<String, ReplicationError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| ReplicationError::Protocol("unterminated string".into()))?;
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
            if self.phase == Phase::Done {
                return match self.error.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            self.step().await?;
        }
    }

    async fn step(&mut self) -> Result<(), ReplicationError> {
        match self.conn.recv().await? {
            Message::RowDescription(_)
            | Message::NoticeResponse(_)
            | Message::ParameterStatus(_) => {}
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
                    Phase::Tablespaces => {
                        // spcoid, spclocation, size; the data directory's row has no oid.
                        if let (Some(Some(oid)), Some(Some(loc))) = (values.first(), values.get(1))
                        {
                            let oid = oid.parse().map_err(|_| {
                                ReplicationError::Protocol("bad tablespace oid".into())
                            })?;
                            self.tablespaces.push(TablespaceInfo {
                                oid,
                                location: loc.clone(),
                            });
                        }
                    }
                    Phase::EndRow => {
                        let (end_lsn, timeline) = lsn_row(&values)?;
                        self.queue
                            .push_back(BackupEvent::Finished { end_lsn, timeline });
                    }
                    _ => {
                        return Err(ReplicationError::Protocol(
                            "a row in the middle of the archive stream".into(),
                        ));
                    }
                }
            }
            Message::CommandComplete(_) => match self.phase {
                Phase::StartRow => self.phase = Phase::Tablespaces,
                Phase::Tablespaces => {
                    self.queue
                        .push_back(BackupEvent::Tablespaces(std::mem::take(
                            &mut self.tablespaces,
                        )));
                    self.phase = Phase::Copy;
                }
                _ => {}
            },
            Message::CopyOutResponse(_) => {
                if self.phase == Phase::Tablespaces {
                    self.queue
                        .push_back(BackupEvent::Tablespaces(std::mem::take(
                            &mut self.tablespaces,
                        )));
                }
                self.phase = Phase::Copy;
            }
            Message::CopyData(body) => self.copy_data(body.into_bytes())?,
            Message::CopyDone => self.phase = Phase::EndRow,
            Message::ErrorResponse(body) => self.error = Some(server_error(&body)),
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

    fn copy_data(&mut self, mut data: Bytes) -> Result<(), ReplicationError> {
        if data.is_empty() {
            return Ok(());
        }
        let kind = data[0];
        data.advance(1);
        match kind {
            b'n' => {
                let name = cstring(&mut data)?;
                let location = cstring(&mut data)?;
                self.tar = TarParser::new();
                self.in_manifest = false;
                self.queue.push_back(BackupEvent::ArchiveStart {
                    name,
                    tablespace: (!location.is_empty()).then_some(location),
                });
            }
            b'm' => self.in_manifest = true,
            b'p' => {
                if data.len() >= 8 {
                    self.queue.push_back(BackupEvent::Progress(data.get_u64()));
                }
            }
            b'd' if self.in_manifest => self.queue.push_back(BackupEvent::ManifestData(data)),
            b'd' => {
                for ev in self.tar.push(&data)? {
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
                    "unknown CopyData kind {:?}",
                    other as char
                )));
            }
        }
        Ok(())
    }
}
