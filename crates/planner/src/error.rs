use cairn_exit::{Classify, ErrorKind};
use cairn_pgformat::{Lsn, PgTimestamp, SegmentName, TimelineId};
use cairn_repo::{BackupLabel, BackupTime, PageId};
use cairn_target::{RestorePointName, TargetTime};

/// Why a restore cannot be planned. Each says what can be reached instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the stanza has no backup to restore")]
    NoBackups,
    #[error("backup set {label} does not exist")]
    NoSuchSet {
        label: BackupLabel,
        known: Vec<BackupLabel>,
    },
    #[error(
        "the target is before the earliest backup's consistency point ({})",
        point(*.earliest, .at.as_ref())
    )]
    BeforeEarliestBackup {
        earliest: Lsn,
        /// Its time (`None`: its manifest's time does not parse).
        at: Option<BackupTime>,
    },
    #[error("{}", not_descendant(*.timeline, .backup.as_ref()))]
    TimelineNotDescendant {
        timeline: TimelineId,
        /// The `--set` backup, when one was forced.
        backup: Option<BackupLabel>,
        /// Timelines that a backup (the forced one, or any) can reach, oldest first.
        reachable: Vec<TimelineId>,
    },
    #[error(
        "the target time {target} is after the last archived commit ({})",
        commit(.last_commit.as_ref())
    )]
    AfterLastCommit {
        target: TargetTime,
        /// `None`: no commit after the backup.
        last_commit: Option<PgTimestamp>,
    },
    #[error("the target LSN {target} is beyond the end of the archived WAL ({end})")]
    AfterArchiveEnd { target: Lsn, end: Lsn },
    #[error("no archived WAL contains the restore point '{name}'")]
    UnknownRestorePoint {
        name: RestorePointName,
        known: Vec<RestorePointName>,
    },
    #[error("no archived WAL after a backup contains a commit of transaction {xid}")]
    UnknownXid {
        xid: u32,
        /// The smallest and largest xid that committed or aborted in the archived WAL after
        /// the earliest backup (`None`: no transaction ended there).
        archived: Option<(u32, u32)>,
    },
    #[error("WAL segment {missing} is missing from the archive: recovery would stop there")]
    Gap {
        missing: SegmentName,
        /// The newest commit before the gap.
        reachable: Option<PgTimestamp>,
    },
    #[error("the chosen backup set {label} cannot reach the target: {why}")]
    SetCannotReach { label: BackupLabel, why: String },
    /// Not a refusal: load the page and plan again.
    #[error(transparent)]
    PageNotLoaded(#[from] PageNotLoaded),
}

/// A summary the planner needs lies in a page of the WAL catalog that is not loaded: load
/// it (`Repository::load_wal_pages`) and ask again. Callers that read the catalog with
/// `Repository::wal_catalog` never see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("WAL catalog page {} of timeline {} is not loaded", .0.page, .0.timeline)]
pub struct PageNotLoaded(pub PageId);

impl Classify for PlanError {
    fn kind(&self) -> ErrorKind {
        match self {
            PlanError::PageNotLoaded(_) => ErrorKind::Internal,
            _ => ErrorKind::Unreachable,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            PlanError::NoBackups => "run `cairn backup` first".into(),
            PlanError::NoSuchSet { known, .. } => format!("existing sets: {}", list(known)),
            PlanError::BeforeEarliestBackup { earliest, at } => {
                format!(
                    "the earliest reachable point is {}",
                    point(*earliest, at.as_ref())
                )
            }
            PlanError::TimelineNotDescendant {
                reachable, backup, ..
            } => match (reachable.last(), backup) {
                (Some(newest), Some(b)) => format!(
                    "backup {b} can reach timeline{} {}: e.g. --target-timeline {newest}",
                    plural(reachable.len()),
                    list(reachable)
                ),
                (Some(newest), None) => format!(
                    "a backup can reach timeline{} {}: e.g. --target-timeline {newest}",
                    plural(reachable.len()),
                    list(reachable)
                ),
                (None, _) => "--target-timeline current follows the backup's own timeline".into(),
            },
            PlanError::AfterLastCommit { last_commit, .. } => {
                format!(
                    "the latest time that can be reached is {}; or restore without a target to replay all archived WAL",
                    commit(last_commit.as_ref())
                )
            }
            PlanError::AfterArchiveEnd { end, .. } => format!("the archive ends at {end}"),
            PlanError::UnknownRestorePoint { known, .. } if known.is_empty() => {
                "no restore points are archived".into()
            }
            PlanError::UnknownRestorePoint { known, .. } => {
                format!("archived restore points: {}", list(known))
            }
            PlanError::UnknownXid {
                archived: Some((lo, hi)),
                ..
            } => format!(
                "transactions {lo} to {hi} ended in the archived WAL after the earliest backup; check the id, or target a time or LSN"
            ),
            PlanError::UnknownXid { archived: None, .. } => {
                "no transaction ended in the archived WAL after a backup; target a time or LSN"
                    .into()
            }
            PlanError::Gap {
                reachable: Some(r), ..
            } => format!("the latest point reachable before the gap is {r}"),
            PlanError::Gap {
                reachable: None, ..
            } => "the gap is before any commit after the backup; take a new backup".into(),
            PlanError::SetCannotReach { .. } => "omit --set to let cairn choose".into(),
            PlanError::PageNotLoaded(_) => return None,
        })
    }
}

fn not_descendant(timeline: TimelineId, backup: Option<&BackupLabel>) -> String {
    match backup {
        Some(b) => format!(
            "timeline {timeline} does not descend from backup {b} (not from its timeline, or it branched off before the backup ended)"
        ),
        None => format!(
            "no backup is on timeline {timeline} or on an ancestor of it before it branched off"
        ),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A backup's consistency point: `0/200200 at 2027-01-01T00:00:25Z`.
fn point(lsn: Lsn, at: Option<&BackupTime>) -> String {
    match at {
        Some(t) => format!("{lsn} at {t}"),
        None => lsn.to_string(),
    }
}

fn commit(t: Option<&PgTimestamp>) -> String {
    t.map_or_else(|| "none after the backup".into(), |t| t.to_string())
}
