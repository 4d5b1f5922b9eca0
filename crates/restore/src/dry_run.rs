//! Choosing what to restore, and the plan as `restore --dry-run --output json` and
//! `cairn serve`'s `/api/v1/stanzas/{stanza}/plan` show it (one document for both).

use std::path::Path;

use cairn_exit::{Classify, ErrorKind};
use cairn_planner::{Plan, PlanError, PlanRequest};
use cairn_repo::{BackupManifest, RepoError, Repository, StanzaName};
use cairn_target::{RecoveryTarget, TargetAction, TargetTime};
use serde::Serialize;

use crate::archiving::ArchiveMode;
use crate::recovery::RecoverySettings;

/// Why no restore could be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl Classify for PlanningError {
    fn kind(&self) -> ErrorKind {
        match self {
            PlanningError::Repo(e) => e.kind(),
            PlanningError::Plan(e) => e.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PlanningError::Repo(e) => e.hint(),
            PlanningError::Plan(e) => e.hint(),
        }
    }
}

/// Plan a restore of `stanza` from the backup catalog and the WAL catalog, and read the
/// chosen backup's manifest. A manifest found damaged only now costs only its backup: the
/// plan is made again without it (`warn` hears which), unless `request.set` names it.
pub async fn plan_restore(
    repo: &Repository,
    stanza: &StanzaName,
    request: &PlanRequest,
    warn: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Plan, BackupManifest), PlanningError> {
    let backups = repo.backup_catalog(stanza).await?;
    for w in backups.warnings.iter().chain(repo.warnings()) {
        warn(w);
    }
    if let Some(d) = request
        .set
        .as_ref()
        .and_then(|l| backups.damaged.iter().find(|d| &d.label == l))
    {
        return Err(RepoError::BackupDamaged {
            label: d.label.to_string(),
            key: d.key.clone(),
            reason: d.reason.clone(),
        }
        .into());
    }
    let mut usable = backups.usable;
    let catalog = repo.wal_catalog(stanza).await?;
    // A set of an older cluster generation (before a stanza-upgrade) restores with that
    // generation's WAL.
    let mut request = request.clone();
    if let Some(b) = request
        .set
        .as_ref()
        .and_then(|l| usable.iter().find(|b| &b.label == l))
    {
        request.db_id = b.db_id;
    }
    let request = &request;
    loop {
        let plan = cairn_planner::plan(&usable, &catalog, request)?;
        match repo.manifest(stanza, &plan.backup).await {
            Ok(m) => return Ok((plan, m)),
            Err(RepoError::BackupDamaged { reason, .. }) if request.set.is_none() => {
                warn(&format!(
                    "backup {} cannot be used ({reason}); planning without it",
                    plan.backup
                ));
                usable.retain(|b| b.label != plan.backup);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A target time as RFC 3339, in UTC and in the offset the operator wrote.
#[derive(Debug, Serialize)]
pub struct TimeDoc {
    pub utc: String,
    pub given: String,
}

impl TimeDoc {
    fn of(t: &TargetTime) -> TimeDoc {
        let rfc = |at: time::OffsetDateTime| {
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        TimeDoc {
            utc: rfc(t.at.to_offset(time::UtcOffset::UTC)),
            given: rfc(t.at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WalRangeDoc {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
}

/// The plan itself.
#[derive(Debug, Serialize)]
pub struct PlanDoc {
    pub backup: String,
    pub why: String,
    pub target: String,
    pub timeline: u32,
    pub wal: Vec<WalRangeDoc>,
    pub bytes_to_write: u64,
    /// recovery_target* and recovery_target_timeline, in the order they are written.
    pub settings: Vec<(&'static str, String)>,
}

impl PlanDoc {
    pub fn of(plan: &Plan, recovery: &RecoverySettings) -> PlanDoc {
        PlanDoc {
            backup: plan.backup.to_string(),
            why: plan.why.clone(),
            target: plan.target_description(),
            timeline: plan.timeline.0,
            wal: plan
                .wal
                .iter()
                .map(|r| WalRangeDoc {
                    timeline: r.timeline.0,
                    first: r.first.to_string(),
                    last: r.last.to_string(),
                    segments: r.segments,
                })
                .collect(),
            bytes_to_write: plan.bytes_to_write,
            settings: recovery.target_settings(),
        }
    }
}

/// What a restore would do: the document of `restore --dry-run --output json`.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub plan: PlanDoc,
    pub target_time: Option<TimeDoc>,
    pub pg_data: String,
    pub restore_command: String,
    pub target_action: Option<&'static str>,
    pub signal: &'static str,
    pub archive_mode: &'static str,
}

impl DryRun {
    pub fn new(plan: &Plan, recovery: &RecoverySettings, pg_data: &Path) -> DryRun {
        DryRun {
            plan: PlanDoc::of(plan, recovery),
            target_time: match &plan.target {
                RecoveryTarget::Time(t) => Some(TimeDoc::of(t)),
                _ => None,
            },
            pg_data: pg_data.display().to_string(),
            restore_command: recovery.restore_command(),
            target_action: recovery.action.map(TargetAction::as_str),
            signal: recovery.signal_file(),
            archive_mode: archive_mode_name(recovery.archive_mode),
        }
    }
}

pub fn archive_mode_name(mode: ArchiveMode) -> &'static str {
    match mode {
        ArchiveMode::Preserve => "preserve",
        ArchiveMode::Off => "off",
    }
}
