//! The outcome of each drill, kept in the repository (`stanza/S/record/drill/...`) for
//! `info`, metrics and the status page. Schema: docs/info-json.md (`last_drill`).

use std::path::PathBuf;

use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::{BackupLabel, ObjectKey, RecordKind, RepoError, Repository, StanzaName};
use serde::{Deserialize, Serialize};

/// Whether the restored copy passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillStatus {
    Succeeded,
    Failed,
}

/// Where recovery was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Every archived segment, then PostgreSQL promotes (the scratch copy only).
    EndOfArchive,
    /// A time; recovery pauses there.
    Time,
}

/// How recovery ended in the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryEnd {
    /// Recovery ended at the end of the archive and the copy promoted.
    Promoted,
    /// Recovery paused at the target time.
    Paused,
}

/// The point the copy reached, as the server itself reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachedPoint {
    /// `pg_last_wal_replay_lsn()`.
    pub lsn: Lsn,
    /// `pg_last_xact_replay_timestamp()`: the last commit (or abort) replayed, RFC 3339 UTC
    /// with microseconds; `None` when recovery replayed none.
    pub last_commit: Option<String>,
    pub end: RecoveryEnd,
}

/// The recoverable window a `--random` target was drawn from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub timeline: TimelineId,
    pub backup: BackupLabel,
    /// The window's start (the backup's consistency point) and its last commit.
    pub from: String,
    pub to: String,
}

/// What is recorded of a drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    pub status: DrillStatus,
    pub target: TargetKind,
    /// The target time (RFC 3339 UTC), for `time`.
    pub target_time: Option<String>,
    /// The target time was drawn at random from `window`.
    pub random: bool,
    pub window: Option<WindowRecord>,
    /// The backup restored, once planned.
    pub backup: Option<BackupLabel>,
    pub timeline: Option<u32>,
    pub pg_version: Option<u32>,
    pub reached: Option<ReachedPoint>,
    /// Relations the sanity query (`SELECT count(*) FROM pg_class`) counted.
    pub relations: Option<i64>,
    /// The `--sql` query and the rows it returned.
    pub sql: Option<String>,
    pub sql_rows: Option<u64>,
    pub restore_seconds: Option<f64>,
    /// From starting the server to reaching the target.
    pub recovery_seconds: Option<f64>,
    pub bytes_restored: Option<u64>,
    /// Why it failed, one line, and the error kind's name (`cairn_exit::ErrorKind::name`).
    pub error: Option<String>,
    pub error_kind: Option<String>,
    /// The scratch directory, when `--keep` left it in place.
    pub kept: Option<PathBuf>,
}

fn kind() -> RecordKind {
    RecordKind::new("drill").expect("a valid record kind")
}

pub(crate) async fn write(
    repo: &Repository,
    stanza: &StanzaName,
    record: &DrillRecord,
) -> Result<ObjectKey, RepoError> {
    repo.put_record(stanza, &kind(), record).await
}

/// The newest recorded drill, whatever its outcome.
pub async fn last_drill(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<Option<DrillRecord>, RepoError> {
    Ok(repo
        .latest_record::<DrillRecord>(stanza, &kind())
        .await?
        .map(|r| r.value))
}

/// The newest drill that succeeded (for `cairn_drill_last_success_timestamp_seconds`).
pub async fn last_successful_drill(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<Option<DrillRecord>, RepoError> {
    for key in repo.record_keys(stanza, &kind()).await?.into_iter().rev() {
        let got = repo
            .get_json::<DrillRecord>(&key, cairn_repo::ObjectKind::Record, "drill record")
            .await;
        match got {
            Ok(Some(r)) if r.status == DrillStatus::Succeeded => return Ok(Some(r)),
            Ok(_) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: DrillStatus, started: &str) -> DrillRecord {
        DrillRecord {
            started: started.into(),
            finished: started.into(),
            duration_seconds: 1.5,
            status,
            target: TargetKind::EndOfArchive,
            target_time: None,
            random: false,
            window: None,
            backup: Some(BackupLabel::new("20261201-101500F").unwrap()),
            timeline: Some(1),
            pg_version: Some(15),
            reached: Some(ReachedPoint {
                lsn: Lsn(0x3000060),
                last_commit: Some("2026-12-01T10:20:00.000001Z".into()),
                end: RecoveryEnd::Promoted,
            }),
            relations: Some(415),
            sql: None,
            sql_rows: None,
            restore_seconds: Some(0.5),
            recovery_seconds: Some(1.0),
            bytes_restored: Some(1 << 20),
            error: None,
            error_kind: None,
            kept: None,
        }
    }

    #[tokio::test]
    async fn the_last_drill_and_the_last_successful_one() {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        assert_eq!(last_drill(&repo, &stanza).await.unwrap(), None);
        let ok = record(DrillStatus::Succeeded, "2026-12-01T10:15:00Z");
        write(&repo, &stanza, &ok).await.unwrap();
        let mut failed = record(DrillStatus::Failed, "2026-12-02T10:15:00Z");
        failed.error = Some("the --sql query returned no row: SELECT 1 WHERE false".into());
        write(&repo, &stanza, &failed).await.unwrap();
        assert_eq!(last_drill(&repo, &stanza).await.unwrap(), Some(failed));
        assert_eq!(
            last_successful_drill(&repo, &stanza).await.unwrap(),
            Some(ok)
        );
    }

    #[test]
    fn json_shape() {
        let v =
            serde_json::to_value(record(DrillStatus::Succeeded, "2026-12-01T10:15:00Z")).unwrap();
        assert_eq!(v["status"], "succeeded");
        assert_eq!(v["target"], "end-of-archive");
        assert_eq!(v["reached"]["lsn"], "0/3000060");
        assert_eq!(v["reached"]["end"], "promoted");
        assert_eq!(v["backup"], "20261201-101500F");
        let back: DrillRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, DrillStatus::Succeeded);
    }
}
