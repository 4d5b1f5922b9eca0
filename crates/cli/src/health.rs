//! What `cairn check` adds as a health check: the `[health]` thresholds (or the flags that
//! override them) against the stanza's status, PostgreSQL's own archiver statistics, so a
//! failing `archive_command` is reported within seconds, and the async workers' log.

use std::time::Duration;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_status::{Health, Problem, StanzaStatus, Thresholds};

use crate::pg;

/// `[health]`, with `--max-backup-age` / `--max-archive-lag` in its place where given.
pub fn thresholds(
    cfg: &Config,
    max_backup_age: Option<Duration>,
    max_archive_lag: Option<Duration>,
) -> Thresholds {
    let from_config = Thresholds::from_config(&cfg.health);
    Thresholds {
        max_backup_age: max_backup_age.or(from_config.max_backup_age),
        max_archive_lag: max_archive_lag.or(from_config.max_archive_lag),
    }
}

/// The failure `check` exits with when the stanza does not meet the thresholds: every
/// reason in one line, and what to do about the first.
pub fn unhealthy(status: &StanzaStatus, health: &Health) -> Option<Failure> {
    let first = health.problems.first()?;
    let reasons: Vec<&str> = health.reasons().collect();
    let hint = match &first.problem {
        Problem::StanzaMissing { .. } => "run `cairn stanza-create`",
        Problem::NoBackup { .. } | Problem::BackupTooOld { .. } => {
            "take a backup (`cairn backup`), and check the schedule that should have taken one"
        }
        Problem::NoArchive { .. } | Problem::ArchiveLag { .. } => {
            "check archive_command in PostgreSQL's log; on a quiet server set archive_timeout \
             below max-archive-lag so a segment is archived even without writes"
        }
    };
    Some(
        Failure::new(
            ErrorKind::Unhealthy,
            format!(
                "stanza '{}' is unhealthy: {}",
                status.stanza,
                reasons.join("; ")
            ),
        )
        .with_hint(hint),
    )
}

/// `pg_stat_archiver` at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Archiver {
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    pub last_archived_wal: Option<String>,
    /// Whether the newest attempt failed (it is newer than the newest success).
    pub failing: bool,
}

impl Archiver {
    pub async fn read(client: &tokio_postgres::Client) -> Result<Archiver, Failure> {
        let row = client
            .query_one(
                "SELECT failed_count, last_failed_wal, \
                 to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                 last_archived_wal, \
                 last_failed_time IS NOT NULL AND \
                 (last_archived_time IS NULL OR last_failed_time > last_archived_time) \
                 FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| pg::sql_failure("cannot read pg_stat_archiver", &e))?;
        Ok(Archiver {
            failed_count: row.get(0),
            last_failed_wal: row.get(1),
            last_failed_time: row.get(2),
            last_archived_wal: row.get(3),
            failing: row.get(4),
        })
    }

    /// The failure to report when archiving is failing now.
    pub fn failure(&self) -> Option<Failure> {
        if !self.failing {
            return None;
        }
        let wal = self.last_failed_wal.as_deref().unwrap_or("a WAL file");
        let at = self
            .last_failed_time
            .as_deref()
            .unwrap_or("an unknown time");
        let last_ok = match &self.last_archived_wal {
            Some(w) => format!("the last file archived was {w}"),
            None => "nothing has been archived since the statistics were reset".into(),
        };
        Some(
            Failure::new(
                ErrorKind::ArchiveTimeout,
                format!(
                    "archive_command is failing: PostgreSQL could not archive {wal} \
                     (last_failed_wal, at {at}; {} failed attempts in all); {last_ok}",
                    self.failed_count
                ),
            )
            .with_hint(
                "PostgreSQL's log has the archive_command's error (cairn-archive-push logs one \
                 line per call there); PostgreSQL retries once it is fixed",
            ),
        )
    }
}

/// Watch `pg_stat_archiver` until archiving fails, then return why (never returns
/// otherwise; race it against the wait for the segment).
pub async fn watch_archiver(client: &tokio_postgres::Client) -> Failure {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        match Archiver::read(client).await {
            Ok(a) => {
                if let Some(f) = a.failure() {
                    return f;
                }
            }
            // The wait for the segment reports the outcome; statistics are only a shortcut.
            Err(f) => tracing::debug!("pg_stat_archiver: {}", f.message),
        }
    }
}

/// How far back the async workers' errors count as recent.
pub const RECENT_WORKER_ERRORS: Duration = Duration::from_secs(3600);

/// A line naming the async workers' log when they logged errors in the last hour.
pub fn worker_log_warning(cfg: &Config) -> Option<String> {
    if !cfg.archive.async_ {
        return None;
    }
    let path = cairn_startup::worker_log_path(cfg);
    match cairn_startup::recent_errors(&path, RECENT_WORKER_ERRORS) {
        Ok(Some(e)) => Some(format!(
            "the async archiving workers logged {} in the last hour, the last: {}; see {}",
            crate::quantity::count(e.count as u64, "error", "errors"),
            e.last.trim(),
            e.path.display()
        )),
        Ok(None) => None,
        Err(err) => Some(format!("cannot read {}: {err}", path.display())),
    }
}
