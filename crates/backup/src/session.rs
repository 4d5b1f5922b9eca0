//! Starting a backup on a live server: connect over the replication protocol, check the
//! server is the stanza's cluster, then negotiate how changed data is found. With
//! PostgreSQL 17+, `summarize_wal = on` and a parent whose PostgreSQL `backup_manifest`
//! cairn kept, the server sends only changed blocks (`INCREMENTAL`); otherwise, or when
//! the server refuses, it sends every file and content addressing finds what changed.

use cairn_basebackup::{BaseBackupOptions, ConnParams, ReplicationConnection, ReplicationError};
use cairn_pgformat::WalSegmentSize;
use cairn_repo::{BackupManifest, IncrementalMode, StanzaInfo};

use crate::error::BackupError;
use crate::plan::BackupPlan;
use crate::server::{ServerSource, source_error};

/// How the server will send the backup, as decided before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartNotice {
    /// Only blocks changed since the parent (PostgreSQL 17+ WAL summaries).
    WalSummaries,
    /// Every file; `why` says why not WAL summaries (e.g. "summarize_wal is off").
    ContentAddressed { why: String },
    /// The server refused `INCREMENTAL` (`error`); the backup falls back to every file.
    Refused { error: String },
}

/// A replication connection to the stanza's cluster, checked against the stanza.
#[derive(Debug)]
pub struct Session {
    params: ConnParams,
    conn: ReplicationConnection,
    /// A second connection for a backup the server refused as `INCREMENTAL`: the first
    /// still holds the uploaded manifest. (It stays open until the session ends: the
    /// refused attempt's borrow of `conn` lasts as long as the returned stream's.)
    fallback: Option<ReplicationConnection>,
    /// The cluster's `wal_segment_size`.
    pub wal_segment_size: WalSegmentSize,
}

/// A started backup: the stream to store, and how its changed data was found.
#[derive(Debug)]
pub struct Started<'c> {
    pub source: ServerSource<'c>,
    /// `Some(WalSummaries)` when the server sends only changed blocks.
    pub incremental_mode: Option<IncrementalMode>,
}

impl Session {
    /// Connect, and refuse a server that is not the system `info` was created for.
    pub async fn connect(params: &ConnParams, info: &StanzaInfo) -> Result<Session, BackupError> {
        let mut conn = ReplicationConnection::connect(params)
            .await
            .map_err(source_error)?;
        let id = conn.identify_system().await.map_err(source_error)?;
        let generation = info.current();
        if id.system_id != generation.system_id {
            return Err(BackupError::WrongSystem {
                stanza: info.name.to_string(),
                found: id.system_id,
                expected: generation.system_id,
            });
        }
        let text = conn.show("wal_segment_size").await.map_err(source_error)?;
        let wal_segment_size =
            WalSegmentSize::from_setting(&text).map_err(|_| BackupError::UnexpectedSetting {
                name: "wal_segment_size",
                value: text.clone(),
            })?;
        Ok(Session {
            params: params.clone(),
            conn,
            fallback: None,
            wal_segment_size,
        })
    }

    /// Start the backup `plan` describes: `INCREMENTAL` on top of its parent when the server
    /// can, else (or when the server refuses it) every file. `notice` hears the choice
    /// before the server starts, which may take a checkpoint's time.
    pub async fn start(
        &mut self,
        plan: &BackupPlan,
        fast_checkpoint: bool,
        mut notice: impl FnMut(StartNotice),
    ) -> Result<Started<'_>, BackupError> {
        let base = BaseBackupOptions {
            label: format!("cairn {}", plan.label),
            fast_checkpoint,
            incremental: false,
        };
        match wal_summaries(&mut self.conn, plan.parent.as_ref()).await? {
            Ok(pg_manifest) => {
                notice(StartNotice::WalSummaries);
                match start_incremental(&mut self.conn, pg_manifest, &base).await {
                    Ok(source) => {
                        return Ok(Started {
                            source,
                            incremental_mode: Some(IncrementalMode::WalSummaries),
                        });
                    }
                    Err(e) if refused(&e) => notice(StartNotice::Refused {
                        error: e.to_string(),
                    }),
                    Err(e) => return Err(source_error(e)),
                }
                let conn = self.fallback.insert(
                    ReplicationConnection::connect(&self.params)
                        .await
                        .map_err(source_error)?,
                );
                let stream = conn.base_backup(&base).await.map_err(source_error)?;
                return Ok(Started {
                    source: ServerSource::new(stream),
                    incremental_mode: None,
                });
            }
            Err(why) => notice(StartNotice::ContentAddressed { why }),
        }
        let stream = self.conn.base_backup(&base).await.map_err(source_error)?;
        Ok(Started {
            source: ServerSource::new(stream),
            incremental_mode: None,
        })
    }
}

/// Upload the parent's PostgreSQL manifest and start an `INCREMENTAL` backup, waiting for
/// the server's first event: a refusal comes back before anything is stored.
async fn start_incremental<'c>(
    conn: &'c mut ReplicationConnection,
    pg_manifest: &str,
    base: &BaseBackupOptions,
) -> Result<ServerSource<'c>, ReplicationError> {
    conn.upload_manifest(pg_manifest.as_bytes()).await?;
    let stream = conn
        .base_backup(&BaseBackupOptions {
            incremental: true,
            ..base.clone()
        })
        .await?;
    ServerSource::start(stream).await
}

/// Whether the server can send only changed blocks on top of `parent`: PostgreSQL 17+ with
/// `summarize_wal = on`, and a parent whose PostgreSQL `backup_manifest` cairn kept (it is
/// what `UPLOAD_MANIFEST` needs). `Err` says why not, for the log.
async fn wal_summaries<'p>(
    conn: &mut ReplicationConnection,
    parent: Option<&'p BackupManifest>,
) -> Result<Result<&'p str, String>, BackupError> {
    let Some(parent) = parent else {
        return Ok(Err("a full backup".into()));
    };
    match conn.server_version_num() {
        Some(v) if v >= 170000 => {}
        _ => return Ok(Err("the server is older than PostgreSQL 17".into())),
    }
    let summarize = conn.show("summarize_wal").await.map_err(source_error)?;
    if summarize != "on" {
        return Ok(Err("summarize_wal is off".into()));
    }
    Ok(parent
        .pg_manifest
        .as_deref()
        .ok_or_else(|| format!("parent {} has no PostgreSQL backup_manifest", parent.label)))
}

/// A refusal by the server (as opposed to a lost connection): worth retrying without
/// `INCREMENTAL`.
fn refused(e: &ReplicationError) -> bool {
    matches!(e, ReplicationError::Server { .. })
}
