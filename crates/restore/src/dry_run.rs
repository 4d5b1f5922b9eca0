//! The plan as `restore --dry-run --output json` and `cairn serve`'s
//! `/api/v1/stanzas/{stanza}/plan` show it (one document for both).

use std::path::Path;

use cairn_planner::Plan;
use cairn_target::{RecoveryTarget, TargetAction, TargetTime};
use serde::Serialize;

use crate::archiving::ArchiveMode;
use crate::recovery::RecoverySettings;

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
