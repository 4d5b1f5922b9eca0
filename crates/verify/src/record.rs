//! The result of each run, kept in the repository (`stanza/S/record/verify/...`) for
//! `info`, metrics and the status page.

use cairn_repo::{BackupEvent, BackupLabel, RecordKind, RepoError, Repository, StanzaName};
use serde::{Deserialize, Serialize};

use crate::report::{ObjectClass, Severity, Status, VerifyReport};

/// What is recorded of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRecord {
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    pub status: Status,
    /// Problems of severity damage, and warnings.
    pub damaged: u64,
    pub warnings: u64,
    /// The one backup checked (`--set`), or `None` for everything.
    pub set: Option<BackupLabel>,
    pub objects: u64,
    pub bytes: u64,
    pub unrestorable: Vec<BackupLabel>,
}

fn kind() -> RecordKind {
    RecordKind::new("verify").expect("a valid record kind")
}

pub(crate) async fn write(
    repo: &Repository,
    stanza: &StanzaName,
    report: &VerifyReport,
) -> Result<(), RepoError> {
    let record = VerifyRecord {
        started: report.started.clone(),
        finished: report.finished.clone(),
        duration_seconds: report.duration_seconds,
        status: report.status,
        damaged: report.damage_count() as u64,
        warnings: report.warning_count() as u64,
        set: report.set.clone(),
        objects: report.checked.objects,
        bytes: report.checked.bytes,
        unrestorable: report.unrestorable.clone(),
    };
    repo.put_record(stanza, &kind(), &record).await.map(drop)
}

/// Tell the backup catalog about damaged manifests it does not know of yet, as any reader
/// of a manifest does, so `info` lists those backups as damaged and the planner passes over
/// them. (Backups that cannot be restored for other reasons, a damaged chunk or missing WAL,
/// are in the verify record only: the catalog has no way to take a mark back once the
/// damage is repaired.)
pub(crate) async fn mark_damaged_manifests(
    repo: &Repository,
    stanza: &StanzaName,
    report: &VerifyReport,
) -> Result<(), RepoError> {
    let known = repo.backup_catalog(stanza).await?.damaged;
    for p in &report.problems {
        if p.severity != Severity::Damage || p.object != ObjectClass::Manifest {
            continue;
        }
        for label in p.backups() {
            if known.iter().any(|d| &d.label == label) {
                continue;
            }
            let event = BackupEvent::Damaged {
                label: label.clone(),
                reason: format!("{} {}", p.key, p.detail),
            };
            repo.record_backup_event(stanza, &event).await?;
        }
    }
    Ok(())
}

/// The newest recorded run of any scope.
pub async fn last_verify(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<Option<VerifyRecord>, RepoError> {
    Ok(repo
        .latest_record::<VerifyRecord>(stanza, &kind())
        .await?
        .map(|r| r.value))
}

/// The newest run that checked the whole stanza and found nothing damaged (for the
/// `cairn_verify_last_success_timestamp_seconds` metric).
pub async fn last_successful_verify(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<Option<VerifyRecord>, RepoError> {
    for key in repo.record_keys(stanza, &kind()).await?.into_iter().rev() {
        let got = repo
            .get_json::<VerifyRecord>(&key, cairn_repo::ObjectKind::Record, "verify record")
            .await;
        match got {
            Ok(Some(r)) if r.status == Status::Ok && r.set.is_none() => return Ok(Some(r)),
            Ok(_) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
