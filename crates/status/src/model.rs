//! [`StanzaStatus`]: what a stanza looks like to an operator, computed from its catalog
//! objects only: stanza info, the backup catalog, the WAL catalog, and the newest
//! `verify` and `drill` records. Never a WAL file, a manifest or a pack.

use std::time::Duration;

use cairn_pgformat::WalFileName;
use cairn_planner::{PageNotLoaded, RecoveryWindow};
use cairn_repo::{
    BackupCatalog, BackupLabel, BackupSummary, BackupType, RepoError, Repository, StanzaName,
    WalCatalog, WalDetail,
};
use serde::Serialize;

use crate::records::{RunHistory, run_history};
use crate::time::UtcTime;

/// The backup types, in the order status lists them.
pub const BACKUP_TYPES: [BackupType; 3] = [BackupType::Full, BackupType::Diff, BackupType::Incr];

/// One stanza's operational state.
#[derive(Debug, Clone, Serialize)]
pub struct StanzaStatus {
    pub stanza: StanzaName,
    /// `false`: the repository has no such stanza (everything else is empty).
    pub exists: bool,
    pub backups: BackupStats,
    pub archive: ArchiveStats,
    /// What the stanza occupies in the repository, estimated from the catalogs: the bytes
    /// each listed backup added, plus the archived WAL at its original size.
    pub repo_size_bytes: u64,
    /// Each timeline's recoverable windows (`cairn info`'s), oldest first.
    pub windows: Vec<RecoveryWindow>,
    /// From the earliest to the latest moment any window reaches.
    pub recovery_window: Option<TimeSpan>,
    pub verify: RunHistory,
    pub drill: RunHistory,
    /// What reading the catalogs worked around.
    pub warnings: Vec<String>,
}

/// The stanza's backups.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupStats {
    /// Usable backups.
    pub count: usize,
    /// Backups whose manifest cannot be used.
    pub damaged: usize,
    /// Per type (full, diff, incr), each listed even when it has none.
    pub by_type: Vec<TypeStats>,
    /// The newest usable backup of any type.
    pub newest: Option<LastBackup>,
}

impl BackupStats {
    pub fn of_type(&self, t: BackupType) -> Option<&TypeStats> {
        self.by_type.iter().find(|s| s.backup_type == t)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TypeStats {
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub count: usize,
    /// The newest backup of this type.
    pub last: Option<LastBackup>,
}

/// A finished backup, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastBackup {
    pub label: BackupLabel,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub started: UtcTime,
    pub finished: UtcTime,
    pub duration_seconds: f64,
    /// Bytes it added to the repository (chunks no earlier backup had).
    pub added_bytes: u64,
}

impl LastBackup {
    fn of(b: &BackupSummary) -> Option<LastBackup> {
        let started = UtcTime::from_offset(b.start_time.0);
        let finished = UtcTime::from_offset(b.stop_time.0);
        Some(LastBackup {
            label: b.label.clone(),
            backup_type: b.backup_type,
            started,
            finished,
            duration_seconds: finished.since(started).as_secs_f64(),
            added_bytes: b.repo_added,
        })
    }
}

/// The stanza's WAL archive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveStats {
    /// Archived files of every kind (segments, partials, history files).
    pub files: u64,
    pub segments: u64,
    /// Their size before compression.
    pub bytes: u64,
    /// The segment (or partial) archived last.
    pub last_segment: Option<ArchivedSegment>,
    /// The newest commit (or abort) time in any archived segment.
    pub last_commit: Option<UtcTime>,
    /// Missing segments between archived ones, over all timelines.
    pub gaps: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedSegment {
    pub name: String,
    pub archived_at: UtcTime,
}

/// A span of time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimeSpan {
    pub start: UtcTime,
    pub end: UtcTime,
}

/// Why status could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl cairn_exit::Classify for StatusError {
    fn kind(&self) -> cairn_exit::ErrorKind {
        match self {
            StatusError::Repo(e) => e.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            StatusError::Repo(e) => e.hint(),
        }
    }
}

impl StanzaStatus {
    /// The status of a stanza the repository does not have.
    pub fn missing(stanza: StanzaName) -> StanzaStatus {
        StanzaStatus {
            stanza,
            exists: false,
            backups: BackupStats {
                by_type: BACKUP_TYPES
                    .iter()
                    .map(|t| TypeStats {
                        backup_type: *t,
                        count: 0,
                        last: None,
                    })
                    .collect(),
                ..Default::default()
            },
            archive: ArchiveStats::default(),
            repo_size_bytes: 0,
            windows: Vec::new(),
            recovery_window: None,
            verify: RunHistory::default(),
            drill: RunHistory::default(),
            warnings: Vec::new(),
        }
    }

    /// Status from catalogs already read (no I/O): what [`stanza_status`] computes.
    /// `windows` are the recoverable windows of `current_db` (`recoverable_windows` over
    /// these catalogs, with the WAL pages they need loaded).
    pub fn from_catalogs(
        stanza: StanzaName,
        backups: &BackupCatalog,
        wal: &WalCatalog,
        windows: Vec<RecoveryWindow>,
        verify: RunHistory,
        drill: RunHistory,
    ) -> StanzaStatus {
        let mut s = StanzaStatus::missing(stanza);
        s.exists = true;
        s.backups = backup_stats(backups);
        s.archive = archive_stats(wal);
        let backup_bytes: u64 = backups.usable.iter().map(|b| b.repo_added).sum();
        s.repo_size_bytes = backup_bytes + s.archive.bytes;
        s.windows = windows;
        s.recovery_window = span_of(&s.windows);
        s.verify = verify;
        s.drill = drill;
        s.warnings.extend(backups.warnings.iter().cloned());
        s.warnings.extend(wal.warnings().iter().cloned());
        s
    }
}

fn backup_stats(c: &BackupCatalog) -> BackupStats {
    let newest_of = |t: Option<BackupType>| {
        c.usable
            .iter()
            .filter(|b| t.is_none_or(|t| b.backup_type == t))
            .filter_map(LastBackup::of)
            .max_by(|a, b| a.finished.cmp(&b.finished).then(a.label.cmp(&b.label)))
    };
    BackupStats {
        count: c.usable.len(),
        damaged: c.damaged.len(),
        by_type: BACKUP_TYPES
            .iter()
            .map(|t| TypeStats {
                backup_type: *t,
                count: c.usable.iter().filter(|b| b.backup_type == *t).count(),
                last: newest_of(Some(*t)),
            })
            .collect(),
        newest: newest_of(None),
    }
}

fn archive_stats(wal: &WalCatalog) -> ArchiveStats {
    let mut a = ArchiveStats::default();
    for e in wal.entries() {
        a.files += 1;
        a.bytes += e.size;
        let is_segment = matches!(
            e.file_name(),
            Some(WalFileName::Segment(_) | WalFileName::Partial(_))
        );
        if !is_segment {
            continue;
        }
        a.segments += 1;
        if let Some(at) = UtcTime::parse_rfc3339(&e.archived_at) {
            let newer = a
                .last_segment
                .as_ref()
                .is_none_or(|l| (at, e.name.as_str()) > (l.archived_at, l.name.as_str()));
            if newer {
                a.last_segment = Some(ArchivedSegment {
                    name: e.name.clone(),
                    archived_at: at,
                });
            }
        }
        if let WalDetail::Segment { summary } = &e.detail
            && let Some(c) = summary
                .last_commit_time
                .and_then(|t| t.try_to_offset_datetime())
        {
            let c = UtcTime::from_offset(c);
            a.last_commit = Some(a.last_commit.map_or(c, |l| l.max(c)));
        }
    }
    for p in wal.pages().values() {
        a.files += p.segments;
        a.segments += p.segments;
        a.bytes += p.bytes;
        if let Some((at, name)) = &p.newest_archived
            && let Some(at) = UtcTime::parse_rfc3339(at)
            && a.last_segment
                .as_ref()
                .is_none_or(|l| (at, name.as_str()) > (l.archived_at, l.name.as_str()))
        {
            a.last_segment = Some(ArchivedSegment {
                name: name.clone(),
                archived_at: at,
            });
        }
        if let Some(c) = p.last_commit.and_then(|t| t.try_to_offset_datetime()) {
            let c = UtcTime::from_offset(c);
            a.last_commit = Some(a.last_commit.map_or(c, |l| l.max(c)));
        }
    }
    a.gaps = wal
        .timelines()
        .iter()
        .flat_map(|t| &t.gaps)
        .map(|g| g.segments)
        .sum();
    a
}

fn span_of(windows: &[RecoveryWindow]) -> Option<TimeSpan> {
    let mut span: Option<TimeSpan> = None;
    for w in windows {
        let start = UtcTime::from_offset(w.from.0);
        // A window with no commit after its backup reaches only the backup's end.
        let end =
            w.to.and_then(|t| t.try_to_offset_datetime())
                .map(UtcTime::from_offset)
                .map_or(start, |e| e.max(start));
        span = Some(match span {
            None => TimeSpan { start, end },
            Some(s) => TimeSpan {
                start: s.start.min(start),
                end: s.end.max(end),
            },
        });
    }
    span
}

/// Compute a stanza's status from its catalogs: stanza info, the backup and WAL
/// catalogs and the newest `verify` and `drill` records, read concurrently.
pub async fn stanza_status(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<StanzaStatus, StatusError> {
    let Some(info) = repo.stanza_info(stanza).await? else {
        return Ok(StanzaStatus::missing(stanza.clone()));
    };
    let (backups, mut wal, verify, drill) = futures::try_join!(
        repo.backup_catalog(stanza),
        repo.wal_catalog_paged(stanza),
        run_history(repo, stanza, "verify"),
        run_history(repo, stanza, "drill"),
    )?;
    let windows = loop {
        match cairn_planner::recoverable_windows(&backups.usable, &wal, info.current().db_id) {
            Ok(w) => break w,
            Err(PageNotLoaded(page)) => repo.load_wal_pages(stanza, &mut wal, &[page]).await?,
        }
    };
    let mut s = StanzaStatus::from_catalogs(stanza.clone(), &backups, &wal, windows, verify, drill);
    s.warnings.splice(0..0, repo.warnings().iter().cloned());
    Ok(s)
}

/// How long ago the newest backup finished, at `now`.
pub fn backup_age(s: &StanzaStatus, now: UtcTime) -> Option<Duration> {
    s.backups.newest.as_ref().map(|b| b.finished.age_at(now))
}
