use cairn_exit::{Classify, ErrorKind};

/// Why a restore cannot be planned. Each says what can be reached instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the time '{given}' has no UTC offset, so it is ambiguous")]
    TimeWithoutOffset { given: String },
    #[error("invalid {what} '{given}': {why}")]
    BadTarget {
        what: &'static str,
        given: String,
        why: String,
    },
    #[error("the stanza has no backup to restore")]
    NoBackups,
    #[error("backup set {label} does not exist")]
    NoSuchSet { label: String, known: Vec<String> },
    #[error("the target is before the earliest backup's consistency point ({earliest})")]
    BeforeEarliestBackup { earliest: String },
    #[error("no backup is on an ancestor of timeline {timeline} before it branched off")]
    TimelineNotDescendant { timeline: u32 },
    #[error("the target time {target} is after the last archived commit ({last_commit})")]
    AfterLastCommit { target: String, last_commit: String },
    #[error("the target LSN {target} is beyond the end of the archived WAL ({end})")]
    AfterArchiveEnd { target: String, end: String },
    #[error("no archived WAL contains the restore point '{name}'")]
    UnknownRestorePoint { name: String, known: Vec<String> },
    #[error("no archived WAL after the backup contains a commit of transaction {xid}")]
    UnknownXid { xid: u32 },
    #[error("WAL segment {missing} is missing from the archive: recovery would stop there")]
    Gap {
        missing: String,
        reachable: Option<String>,
    },
    #[error("the chosen backup set {label} cannot reach the target: {why}")]
    SetCannotReach { label: String, why: String },
}

impl Classify for PlanError {
    fn kind(&self) -> ErrorKind {
        match self {
            PlanError::TimeWithoutOffset { .. } | PlanError::BadTarget { .. } => ErrorKind::Usage,
            _ => ErrorKind::Unreachable,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            PlanError::TimeWithoutOffset { given } => {
                format!("write the offset explicitly, e.g. '{given}+00' for UTC")
            }
            PlanError::BadTarget { .. } => return None,
            PlanError::NoBackups => "run `cairn backup` first".into(),
            PlanError::NoSuchSet { known, .. } => format!("existing sets: {}", known.join(", ")),
            PlanError::BeforeEarliestBackup { earliest } => {
                format!("the earliest reachable point is {earliest}")
            }
            PlanError::TimelineNotDescendant { .. } => {
                "pick another --target-timeline, or --target-timeline current".into()
            }
            PlanError::AfterLastCommit { last_commit, .. } => {
                format!(
                    "the latest time that can be reached is {last_commit}; or restore without a target to replay all archived WAL"
                )
            }
            PlanError::AfterArchiveEnd { end, .. } => format!("the archive ends at {end}"),
            PlanError::UnknownRestorePoint { known, .. } if known.is_empty() => {
                "no restore points are archived".into()
            }
            PlanError::UnknownRestorePoint { known, .. } => {
                format!("archived restore points: {}", known.join(", "))
            }
            PlanError::UnknownXid { .. } => {
                "check the transaction id, or target a time or LSN".into()
            }
            PlanError::Gap {
                reachable: Some(r), ..
            } => format!("the latest point reachable before the gap is {r}"),
            PlanError::Gap {
                reachable: None, ..
            } => "the gap is before any commit after the backup; take a new backup".into(),
            PlanError::SetCannotReach { .. } => "omit --set to let cairn choose".into(),
        })
    }
}
