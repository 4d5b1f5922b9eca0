//! `cairn backup`: connect over the replication protocol, check the cluster is the
//! stanza's, choose type and parent, stream the base backup into the repository.

use std::process::ExitCode;
use std::time::Duration;

use cairn_backup::{BackupPlan, RunOptions, ServerSource};
use cairn_basebackup::{BaseBackupOptions, ConnParams, ReplicationConnection};
use cairn_config::{Config, StanzaConfig};
use cairn_exit::{Classify, ErrorKind, Failure};
use cairn_pgformat::WalSegmentSize;
use cairn_repo::{BackupManifest, BackupType, IncrementalMode};

use crate::args::BackupType as ArgType;
use crate::progress::Progress;
use crate::stanza::stanza_name;

pub fn conn_params(st: &StanzaConfig) -> ConnParams {
    ConnParams {
        host: st.pg_host.clone(),
        port: st.pg_port,
        user: st.pg_user.clone(),
        password: st.pg_password.as_ref().map(|p| p.expose().to_string()),
        sslmode: st.pg_sslmode.clone(),
        application_name: "cairn backup".into(),
    }
}

/// `SHOW wal_segment_size` says e.g. `16MB` or `1GB`: PostgreSQL's units, as in the config.
fn parse_size(s: &str) -> Option<WalSegmentSize> {
    let bytes = cairn_config::ByteSize::parse(s).ok()?.0;
    WalSegmentSize::new(u32::try_from(bytes).ok()?).ok()
}

fn pg_failure(e: cairn_basebackup::ReplicationError) -> Failure {
    let mut f = Failure::new(e.kind(), e.to_string());
    f.hint = e.hint();
    f
}

/// Whether the server can send only changed blocks on top of `parent`: PostgreSQL 17+ with
/// `summarize_wal = on`, and a parent whose PostgreSQL `backup_manifest` cairn kept (it is
/// what `UPLOAD_MANIFEST` needs). `Err` says why not, for the log.
async fn wal_summaries<'p>(
    conn: &mut ReplicationConnection,
    parent: Option<&'p BackupManifest>,
) -> Result<Result<&'p str, String>, Failure> {
    let Some(parent) = parent else {
        return Ok(Err("a full backup".into()));
    };
    match conn.server_version_num() {
        Some(v) if v >= 170000 => {}
        _ => return Ok(Err("the server is older than PostgreSQL 17".into())),
    }
    let summarize = conn.show("summarize_wal").await.map_err(pg_failure)?;
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
fn refused(e: &cairn_basebackup::ReplicationError) -> bool {
    matches!(e, cairn_basebackup::ReplicationError::Server { .. })
}

/// The size of the databases, for the progress bar's ETA (none if SQL is not reachable).
async fn size_estimate(st: &StanzaConfig) -> Option<u64> {
    let client = crate::pg::connect(st).await.ok()?;
    let row = client
        .query_one(
            "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
            &[],
        )
        .await
        .ok()?;
    row.get::<_, Option<i64>>(0).map(|v| v as u64)
}

/// What the progress bar's ETA is measured against: the database size, except when the
/// server sends only changed blocks (WAL summaries), where that size would promise a
/// wait many times too long; then only bytes and rate are shown.
fn eta_basis(estimate: Option<u64>, mode: Option<IncrementalMode>) -> Option<u64> {
    match mode {
        Some(IncrementalMode::WalSummaries) => None,
        _ => estimate,
    }
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    requested: Option<ArgType>,
    archive_timeout: u64,
    spread: bool,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let (_, st) = cfg.stanza(stanza)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&name).await?;
    let mut conn = ReplicationConnection::connect(&conn_params(st))
        .await
        .map_err(pg_failure)?;
    let id = conn.identify_system().await.map_err(pg_failure)?;
    let generation = info.current();
    if id.system_id != generation.system_id {
        return Err(cairn_backup::BackupError::WrongSystem {
            stanza: name.to_string(),
            found: id.system_id,
            expected: generation.system_id,
        }
        .into());
    }
    let seg_text = conn.show("wal_segment_size").await.map_err(pg_failure)?;
    let seg = parse_size(&seg_text).ok_or_else(|| {
        Failure::new(
            ErrorKind::Postgres,
            format!("unexpected wal_segment_size '{seg_text}'"),
        )
    })?;
    let estimate = size_estimate(st).await;
    let existing = repo.backups(&name).await?;
    let requested = requested.map(|t| match t {
        ArgType::Full => BackupType::Full,
        ArgType::Diff => BackupType::Diff,
        ArgType::Incr => BackupType::Incr,
    });
    let plan = BackupPlan::choose(
        requested,
        &existing,
        generation.db_id,
        time::OffsetDateTime::now_utc(),
    );
    if plan.promoted_to_full {
        eprintln!("cairn: no full backup of this cluster exists yet: taking a full backup");
    }
    let on_top = plan
        .parent
        .as_ref()
        .map(|p| format!(" on top of {}", p.label))
        .unwrap_or_default();
    let base = BaseBackupOptions {
        label: format!("cairn {}", plan.label),
        fast_checkpoint: !spread,
        incremental: false,
    };
    let mut incremental_mode = None;
    let mut started = None;
    let mut refused_once = false;
    match wal_summaries(&mut conn, plan.parent.as_ref()).await? {
        Ok(pg_manifest) => {
            eprintln!(
                "cairn: {} backup {}{on_top} starting (WAL summaries: the server sends only blocks changed since the parent)",
                plan.backup_type, plan.label
            );
            let attempt = async {
                conn.upload_manifest(pg_manifest.as_bytes()).await?;
                let stream = conn
                    .base_backup(&BaseBackupOptions {
                        incremental: true,
                        ..base.clone()
                    })
                    .await?;
                ServerSource::start(stream).await
            };
            match attempt.await {
                Ok(source) => {
                    incremental_mode = Some(IncrementalMode::WalSummaries);
                    started = Some(source);
                }
                Err(e) if refused(&e) => {
                    refused_once = true;
                    eprintln!(
                        "cairn: the server refused an incremental backup ({e}); falling back to the server sending every file (content addressing)"
                    )
                }
                Err(e) => return Err(pg_failure(e)),
            }
        }
        Err(why) => eprintln!(
            "cairn: {} backup {}{on_top} starting (changed data found by content addressing: the server sends every file; {why})",
            plan.backup_type, plan.label
        ),
    }
    let source = match started {
        Some(source) => source,
        None => {
            // A new connection: the refused one still holds the uploaded manifest.
            if refused_once {
                conn = ReplicationConnection::connect(&conn_params(st))
                    .await
                    .map_err(pg_failure)?;
            }
            let stream = conn.base_backup(&base).await.map_err(pg_failure)?;
            ServerSource::new(stream)
        }
    };
    let mut source = Progress::new(
        source,
        eta_basis(estimate, incremental_mode),
        plan.label.as_str(),
    );
    let opts = RunOptions {
        archive_timeout: Duration::from_secs(archive_timeout),
        wal_segment_size: seg,
        progress_every: None,
        incremental_mode,
        ..Default::default()
    };
    let m = cairn_backup::run(&repo, &info, &plan, &mut source, &opts)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    println!(
        "backup {} ({}, {}) complete: start {} stop {}, database {:.1} MiB, received {:.1} MiB, added {:.1} MiB to the repository",
        m.label,
        m.backup_type,
        match m.incremental_mode {
            IncrementalMode::Full => "full",
            IncrementalMode::ContentAddressed => "content-addressed",
            IncrementalMode::WalSummaries => "wal-summaries",
        },
        m.start_lsn,
        m.stop_lsn,
        m.db_size as f64 / 1048576.0,
        m.bytes_received as f64 / 1048576.0,
        m.repo_added as f64 / 1048576.0
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_eta_when_only_changed_blocks_are_sent() {
        assert_eq!(eta_basis(Some(100), None), Some(100));
        assert_eq!(eta_basis(Some(100), Some(IncrementalMode::Full)), Some(100));
        assert_eq!(
            eta_basis(Some(100), Some(IncrementalMode::ContentAddressed)),
            Some(100)
        );
        assert_eq!(
            eta_basis(Some(100), Some(IncrementalMode::WalSummaries)),
            None
        );
    }

    #[test]
    fn wal_that_never_arrived_is_an_archive_timeout_with_a_hint() {
        let f = Failure::from_error(&cairn_backup::BackupError::WalNotArchived {
            segment: "000000010000000000000003".into(),
            waited: Duration::from_secs(2),
        });
        assert_eq!(f.kind, ErrorKind::ArchiveTimeout);
        assert_eq!(f.kind.code(), 16);
        assert!(
            f.message.contains("000000010000000000000003"),
            "{}",
            f.message
        );
        assert!(f.hint.is_some_and(|h| h.contains("archive_command")));
        let other = Failure::from_error(&cairn_backup::BackupError::Protocol("x".into()));
        assert_ne!(other.kind, ErrorKind::ArchiveTimeout);
    }

    #[test]
    fn segment_sizes() {
        assert_eq!(super::parse_size("16MB").unwrap().bytes(), 16 << 20);
        assert_eq!(super::parse_size("1GB").unwrap().bytes(), 1 << 30);
        assert!(super::parse_size("3MB").is_none());
        assert!(super::parse_size("MB").is_none());
    }
}
