//! The planner: backups + WAL catalog + target -> which backup, which WAL, which settings.
//! Pure: it reads nothing and writes nothing, so every refusal is decided before a byte
//! of the data directory is touched.

use std::collections::BTreeMap;

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::summary::SegmentSummary;
use cairn_pgformat::{
    Lsn, PgTimestamp, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo,
};
use cairn_repo::{BackupLabel, BackupSummary, DbId, WalCatalog, WalDetail};
use cairn_target::{RecoveryTarget as Target, RestorePointName, TimelineTarget};

use crate::error::PlanError;
use crate::window::BackupTime;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub target: Target,
    pub timeline: TimelineTarget,
    /// Force this backup set.
    pub set: Option<BackupLabel>,
    /// The stanza's current cluster generation.
    pub db_id: DbId,
}

/// A run of WAL segments on one timeline that recovery will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: TimelineId,
    pub first: SegmentName,
    pub last: SegmentName,
    pub segments: u64,
}

/// The plan: printed by `--dry-run`, carried out by the executor. The recovery settings
/// follow from it: `target` as the `recovery_target*` setting, `timeline` as
/// `recovery_target_timeline` (cairn-restore writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub backup: BackupLabel,
    pub why: String,
    /// Where recovery stops (as requested: the planner checked it can be reached).
    pub target: Target,
    /// The backup's consistency point, where an `Immediate` target stops.
    pub consistent_at: Lsn,
    /// The timeline recovery follows, resolved from the request.
    pub timeline: TimelineId,
    pub wal: Vec<WalRange>,
    pub bytes_to_write: u64,
    /// The end of the valid WAL in the last segment recovery reads (where a restore to the
    /// end of the archive can get to at most, as the catalog knows it).
    pub wal_end: Lsn,
    /// The newest commit (or abort) in the segments recovery reads after the backup's first
    /// segment, all of which lie after the backup began: to the end of the archive,
    /// recovery replays it. `None` when those segments hold none.
    pub last_commit: Option<PgTimestamp>,
}

impl Plan {
    /// Where recovery stops, in words: `time 2026-11-22T13:05:00Z`, `LSN 0/3000060`,
    /// `consistency of backup 20261122-130500F (0/2000100)`.
    pub fn target_description(&self) -> String {
        match &self.target {
            Target::Immediate => format!(
                "consistency of backup {} ({})",
                self.backup, self.consistent_at
            ),
            other => other.to_string(),
        }
    }
}

/// The archive as the planner sees it: segment summaries by (timeline, segment number).
pub(crate) struct Archive<'a> {
    segs: BTreeMap<(u32, u64), &'a SegmentSummary>,
    histories: BTreeMap<u32, TimelineHistory>,
    pub(crate) seg: WalSegmentSize,
}

impl<'a> Archive<'a> {
    pub(crate) fn new(catalog: &'a WalCatalog, db: DbId) -> Archive<'a> {
        let mut segs = BTreeMap::new();
        let mut histories = BTreeMap::new();
        let mut seg = WalSegmentSize::DEFAULT;
        for e in catalog.entries().filter(|e| e.db_id == db) {
            match (e.file_name(), &e.detail) {
                (Some(WalFileName::Segment(name)), WalDetail::Segment { summary }) => {
                    seg = summary.seg_size();
                    segs.insert((name.tli.0, name.segno(seg).0), summary.as_ref());
                }
                (Some(WalFileName::History(tli)), WalDetail::History { text }) => {
                    if let Ok(h) = TimelineHistory::parse(tli, text.as_bytes()) {
                        histories.insert(tli.0, h);
                    }
                }
                _ => {}
            }
        }
        Archive {
            segs,
            histories,
            seg,
        }
    }

    pub(crate) fn history(&self, tli: TimelineId) -> TimelineHistory {
        self.histories
            .get(&tli.0)
            .cloned()
            .unwrap_or_else(|| TimelineHistory::root(tli))
    }

    pub(crate) fn timelines(&self) -> Vec<u32> {
        let mut t: Vec<u32> = self
            .segs
            .keys()
            .map(|(t, _)| *t)
            .chain(self.histories.keys().copied())
            .collect();
        t.dedup();
        t
    }

    fn latest_timeline(&self, backups: &[&BackupSummary]) -> TimelineId {
        let seen = self
            .segs
            .keys()
            .map(|(t, _)| *t)
            .chain(self.histories.keys().copied())
            .chain(backups.iter().map(|b| b.timeline.0));
        TimelineId(seen.max().unwrap_or(1))
    }

    pub(crate) fn get(&self, tli: TimelineId, segno: u64) -> Option<&'a SegmentSummary> {
        self.segs.get(&(tli.0, segno)).copied()
    }

    /// The segments recovery reads along `hist` from `from`, in order (endless).
    pub(crate) fn walk<'h>(
        &self,
        hist: &'h TimelineHistory,
        from: Lsn,
    ) -> impl Iterator<Item = (TimelineId, u64)> + 'h {
        let seg = self.seg;
        let first = from.segment_number(seg).0;
        // The segment holding a switchpoint is read from the child timeline.
        let spans: Vec<(TimelineId, Option<u64>)> = hist
            .spans()
            .into_iter()
            .map(|s| (s.tli, s.end.map(|e| e.segment_number(seg).0)))
            .collect();
        (first..).map(move |n| {
            let tli = spans
                .iter()
                .find(|(_, end)| end.is_none_or(|e| n < e))
                .map_or(hist.tli, |(t, _)| *t);
            (tli, n)
        })
    }

    /// Whether any segment at or after `segno` exists on the path (tells a gap from the end).
    pub(crate) fn any_after(&self, hist: &TimelineHistory, segno: u64) -> bool {
        self.segs
            .keys()
            .any(|(t, n)| *n > segno && hist.contains(TimelineId(*t)))
    }

    pub(crate) fn segment(&self, tli: TimelineId, segno: u64) -> SegmentName {
        SegmentName::from_segno(tli, XLogSegNo(segno), self.seg)
    }
}

pub(crate) fn pg_time(rfc3339: &str) -> Option<PgTimestamp> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(PgTimestamp::from_offset_datetime)
}

/// Why a backup was passed over: its timeline, or the target itself.
enum Refusal {
    Timeline(String),
    Target(String),
}

impl Refusal {
    fn why(&self) -> &str {
        match self {
            Refusal::Timeline(w) | Refusal::Target(w) => w,
        }
    }
}

/// Why recovery along `hist` cannot start from `b` (None: it can).
pub(crate) fn off_path(b: &BackupSummary, hist: &TimelineHistory) -> Option<String> {
    if !hist.contains(b.timeline) {
        return Some(format!(
            "its timeline {} is not an ancestor of timeline {}",
            b.timeline, hist.tli
        ));
    }
    match hist.switchpoint_of(b.timeline) {
        Some(sp) if b.stop_lsn > sp => Some(format!(
            "it ends after timeline {} branched off at {sp}",
            b.timeline
        )),
        _ => None,
    }
}

/// Why a backup cannot serve the target (None: it can).
fn unsuitable(
    b: &BackupSummary,
    hist: &TimelineHistory,
    target: &Target,
    archive: &Archive<'_>,
) -> Option<Refusal> {
    if let Some(why) = off_path(b, hist) {
        return Some(Refusal::Timeline(why));
    }
    let why = match target {
        Target::Time(t) => match pg_time(&b.stop_time) {
            Some(stop) if stop < t.pg() => None,
            _ => Some(format!(
                "it became consistent at {}, not before the target",
                b.stop_time
            )),
        },
        Target::Lsn(l) => (b.stop_lsn > *l)
            .then(|| format!("it became consistent at {}, after the target", b.stop_lsn)),
        Target::Name(n) => match find_restore_point(archive, hist, b.stop_lsn, n.as_str()) {
            Some(_) => None,
            None => Some(format!(
                "no restore point '{n}' follows its consistency point"
            )),
        },
        Target::Xid(x) => match find_xid(archive, hist, b, *x) {
            Some(_) => None,
            None => Some(format!("no archived commit of transaction {x} follows it")),
        },
        Target::Immediate | Target::EndOfArchive => None,
    };
    why.map(Refusal::Target)
}

/// Timelines recovery can follow from at least one of `backups`, in order: what to
/// suggest when the requested one cannot be reached.
fn reachable_timelines(archive: &Archive<'_>, backups: &[&BackupSummary]) -> Vec<TimelineId> {
    let mut tlis = archive.timelines();
    tlis.extend(backups.iter().map(|b| b.timeline.0));
    tlis.sort_unstable();
    tlis.dedup();
    tlis.retain(|t| {
        let hist = archive.history(TimelineId(*t));
        backups.iter().any(|b| off_path(b, &hist).is_none())
    });
    tlis.into_iter().map(TimelineId).collect()
}

/// The smallest and largest xid that ended in the WAL from `b`'s stop segment on.
fn xid_range(archive: &Archive<'_>, b: &BackupSummary) -> Option<(u32, u32)> {
    let stop = b.stop_lsn.segment_number(archive.seg).0;
    let ended = archive.segs.iter().filter(|((_, n), _)| *n >= stop);
    let lo = ended.clone().filter_map(|(_, s)| s.min_xid).min()?;
    let hi = ended.filter_map(|(_, s)| s.max_xid).max()?;
    Some((lo, hi))
}

fn find_restore_point(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    after: Lsn,
    name: &str,
) -> Option<Lsn> {
    let mut hits: Vec<Lsn> = archive
        .segs
        .iter()
        .filter(|((t, _), _)| hist.contains(TimelineId(*t)))
        .flat_map(|((t, _), s)| s.restore_points.iter().map(move |rp| (TimelineId(*t), rp)))
        .filter(|(t, rp)| rp.name == name && rp.lsn >= after && hist.timeline_at(rp.lsn) == *t)
        .map(|(_, rp)| rp.lsn)
        .collect();
    hits.sort();
    hits.first().copied()
}

fn find_xid(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    b: &BackupSummary,
    xid: u32,
) -> Option<u64> {
    let stop = b.stop_lsn.segment_number(archive.seg).0;
    let last = archive.segs.keys().map(|(_, n)| *n).max()?;
    archive
        .walk(hist, b.start_lsn)
        .take_while(|(_, n)| *n <= last)
        .filter(|(_, n)| *n >= stop)
        .find(|(t, n)| {
            archive.get(*t, *n).is_some_and(
                |s| matches!((s.min_xid, s.max_xid), (Some(a), Some(z)) if a <= xid && xid <= z),
            )
        })
        .map(|(_, n)| n)
}

/// Plan a restore.
pub fn plan(
    backups: &[BackupSummary],
    catalog: &WalCatalog,
    req: &PlanRequest,
) -> Result<Plan, PlanError> {
    let archive = Archive::new(catalog, req.db_id);
    let mine: Vec<&BackupSummary> = backups.iter().filter(|b| b.db_id == req.db_id).collect();
    if mine.is_empty() {
        return Err(PlanError::NoBackups);
    }
    let candidates: Vec<&BackupSummary> =
        match &req.set {
            Some(label) => vec![*mine.iter().find(|b| b.label == *label).ok_or_else(|| {
                PlanError::NoSuchSet {
                    label: label.clone(),
                    known: mine.iter().map(|b| b.label.clone()).collect(),
                }
            })?],
            None => mine.iter().rev().copied().collect(),
        };
    let latest = archive.latest_timeline(&mine);
    let mut refusals = Vec::new();
    let mut chosen = None;
    for b in &candidates {
        let tli = match req.timeline {
            TimelineTarget::Latest => latest,
            TimelineTarget::Current => b.timeline,
            TimelineTarget::Id(t) => t,
        };
        let hist = archive.history(tli);
        match unsuitable(b, &hist, &req.target, &archive) {
            None => {
                chosen = Some((*b, hist));
                break;
            }
            Some(why) => refusals.push(why),
        }
    }
    let passed_over: Vec<String> = candidates
        .iter()
        .zip(&refusals)
        .take(3)
        .map(|(b, r)| format!("{}: {}", b.label, r.why()))
        .collect();
    let Some((b, hist)) = chosen else {
        return Err(no_backup_error(
            req,
            &candidates,
            &archive,
            latest,
            refusals,
        ));
    };
    let why = match (&req.set, candidates.first()) {
        (Some(_), _) => format!("set {} was asked for", b.label),
        (None, Some(newest)) if newest.label == b.label => {
            "the newest backup that can reach the target".to_string()
        }
        (None, _) => format!(
            "the newest backup that can reach the target; {} newer cannot ({}{})",
            refusals.len(),
            passed_over.join("; "),
            if refusals.len() > passed_over.len() {
                "; ..."
            } else {
                ""
            }
        ),
    };
    let segments = wal_for(&archive, &hist, b, &req.target)?;
    let start_seg = b.start_lsn.segment_number(archive.seg).0;
    let (mut wal_end, mut last_commit) = (b.stop_lsn, None);
    for &(t, n) in &segments {
        if let Some(s) = archive.get(t, n) {
            wal_end = wal_end.max(s.end_of_wal);
            if n > start_seg && s.last_commit_time > last_commit {
                last_commit = s.last_commit_time;
            }
        }
    }
    Ok(Plan {
        backup: b.label.clone(),
        why,
        target: req.target.clone(),
        consistent_at: b.stop_lsn,
        timeline: hist.tli,
        wal: ranges(&archive, &segments),
        bytes_to_write: b.db_size,
        wal_end,
        last_commit,
    })
}

fn no_backup_error(
    req: &PlanRequest,
    candidates: &[&BackupSummary],
    archive: &Archive<'_>,
    latest: TimelineId,
    refusals: Vec<Refusal>,
) -> PlanError {
    let requested = match req.timeline {
        TimelineTarget::Id(t) => t,
        TimelineTarget::Latest => latest,
        // A backup is always on its own timeline: `current` only fails on the target.
        TimelineTarget::Current => candidates[0].timeline,
    };
    if let Some(label) = &req.set {
        return match refusals.into_iter().next() {
            Some(Refusal::Timeline(_)) => PlanError::TimelineNotDescendant {
                timeline: requested,
                backup: Some(label.clone()),
                reachable: reachable_timelines(archive, candidates),
            },
            other => PlanError::SetCannotReach {
                label: label.clone(),
                why: other.map(|r| r.why().to_string()).unwrap_or_default(),
            },
        };
    }
    // Candidates are newest first; these are on the requested timeline's path.
    let on_path: Vec<&BackupSummary> = candidates
        .iter()
        .zip(&refusals)
        .filter(|(_, r)| matches!(r, Refusal::Target(_)))
        .map(|(b, _)| *b)
        .collect();
    let Some(earliest) = on_path.last() else {
        return PlanError::TimelineNotDescendant {
            timeline: requested,
            backup: None,
            reachable: reachable_timelines(archive, candidates),
        };
    };
    match &req.target {
        Target::Name(n) => {
            let mut known: Vec<RestorePointName> = Vec::new();
            for rp in archive.segs.values().flat_map(|s| &s.restore_points) {
                // PostgreSQL allows no longer name than RestorePointName does.
                if let Ok(name) = RestorePointName::new(&rp.name)
                    && !known.contains(&name)
                {
                    known.push(name);
                }
            }
            PlanError::UnknownRestorePoint {
                name: n.clone(),
                known,
            }
        }
        Target::Xid(x) => PlanError::UnknownXid {
            xid: *x,
            archived: xid_range(archive, earliest),
        },
        // Time and LSN: every backup on the path became consistent after the target.
        _ => PlanError::BeforeEarliestBackup {
            earliest: earliest.stop_lsn,
            at: BackupTime::parse(&earliest.stop_time),
        },
    }
}

/// The segments from the backup's start to where recovery stops, refusing gaps.
fn wal_for(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    b: &BackupSummary,
    target: &Target,
) -> Result<Vec<(TimelineId, u64)>, PlanError> {
    let seg = archive.seg;
    let stop_seg = b.stop_lsn.segment_number(seg).0;
    let mut out = Vec::new();
    let mut last_commit: Option<PgTimestamp> = None;
    let mut end_of_wal = b.stop_lsn;
    // Where to stop walking: Some(segno) known in advance, None = decided on the way.
    let fixed_end: Option<u64> = match target {
        Target::Immediate => Some(stop_seg),
        Target::Lsn(l) => Some(l.segment_number(seg).0),
        Target::Name(n) => find_restore_point(archive, hist, b.stop_lsn, n.as_str())
            .map(|l| l.segment_number(seg).0),
        Target::Xid(x) => find_xid(archive, hist, b, *x),
        Target::Time(_) | Target::EndOfArchive => None,
    };
    for (tli, n) in archive.walk(hist, b.start_lsn) {
        let Some(s) = archive.get(tli, n) else {
            let reachable = last_commit;
            if n <= stop_seg || archive.any_after(hist, n) {
                return Err(PlanError::Gap {
                    missing: archive.segment(tli, n),
                    reachable,
                });
            }
            // The end of the archive.
            return match target {
                Target::EndOfArchive => Ok(out),
                Target::Time(t) => Err(PlanError::AfterLastCommit {
                    target: *t,
                    last_commit: reachable,
                }),
                Target::Lsn(l) => Err(PlanError::AfterArchiveEnd {
                    target: *l,
                    end: end_of_wal,
                }),
                _ => Err(PlanError::Gap {
                    missing: archive.segment(tli, n),
                    reachable,
                }),
            };
        };
        out.push((tli, n));
        end_of_wal = s.end_of_wal;
        if let Some(t) = s.last_commit_time {
            last_commit = Some(last_commit.map_or(t, |c: PgTimestamp| c.max(t)));
        }
        let reached = match (target, fixed_end) {
            (Target::Time(t), _) => n >= stop_seg && s.last_commit_time.is_some_and(|c| c > t.pg()),
            (Target::Lsn(l), Some(end)) if n >= end => {
                if *l > s.end_of_wal && !archive.any_after(hist, n) {
                    return Err(PlanError::AfterArchiveEnd {
                        target: *l,
                        end: s.end_of_wal,
                    });
                }
                true
            }
            (Target::Immediate | Target::Name(_) | Target::Xid(_), Some(end)) => n >= end,
            _ => false,
        };
        if reached {
            return Ok(out);
        }
    }
    unreachable!("walk is endless; every target ends it")
}

fn ranges(archive: &Archive<'_>, segs: &[(TimelineId, u64)]) -> Vec<WalRange> {
    let mut out: Vec<WalRange> = Vec::new();
    let mut prev: Option<(TimelineId, u64)> = None;
    for &(t, n) in segs {
        match (out.last_mut(), prev) {
            (Some(r), Some((pt, pn))) if pt == t && pn + 1 == n => {
                r.last = archive.segment(t, n);
                r.segments += 1;
            }
            _ => out.push(WalRange {
                timeline: t,
                first: archive.segment(t, n),
                last: archive.segment(t, n),
                segments: 1,
            }),
        }
        prev = Some((t, n));
    }
    out
}
