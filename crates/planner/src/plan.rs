//! The planner: backups + WAL catalog + target -> which backup, which WAL, which settings.
//! Pure: it reads nothing and writes nothing, so every refusal is decided before a byte
//! of the data directory is touched.

use std::collections::BTreeMap;

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::summary::{RestorePointAt, SegmentSummary};
use cairn_pgformat::{
    Lsn, PgTimestamp, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo,
};
use cairn_repo::{BackupLabel, BackupSummary, DbId, PageId, PageRef, WalCatalog, WalDetail};
use cairn_target::{RecoveryTarget as Target, RestorePointName, TimelineTarget};

use crate::error::{PageNotLoaded, PlanError};

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

/// The archive as the planner sees it: segment summaries by (timeline, segment number),
/// and pages of summaries not loaded (see `cairn_repo::wal_index`). A walk that needs a
/// summary inside a page stops with [`PageNotLoaded`]; the caller loads it and plans again.
pub(crate) struct Archive<'a> {
    segs: BTreeMap<(u32, u64), &'a SegmentSummary>,
    /// By timeline and first segment.
    pages: BTreeMap<(u32, u64), (&'a PageId, &'a PageRef)>,
    histories: BTreeMap<u32, TimelineHistory>,
    pub(crate) seg: WalSegmentSize,
}

/// The timeline of each segment along a history, worked out once per walk.
pub(crate) struct Path {
    /// Each timeline with the first segment number past its end (`None`: the last one).
    spans: Vec<(TimelineId, Option<u64>)>,
    tli: TimelineId,
}

impl Path {
    /// The timeline recovery reads segment `n` from (the segment holding a switchpoint is
    /// read from the child timeline).
    pub(crate) fn timeline_at(&self, n: u64) -> TimelineId {
        self.spans
            .iter()
            .find(|(_, end)| end.is_none_or(|e| n < e))
            .map_or(self.tli, |(t, _)| *t)
    }
}

/// What the archive knows of one segment.
pub(crate) enum Seg<'a> {
    Absent,
    Loaded(&'a SegmentSummary),
    /// Archived, in a page whose summaries are not loaded.
    Paged(&'a PageId, &'a PageRef),
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
        let mut pages = BTreeMap::new();
        for (id, p) in catalog.pages().iter().filter(|(id, _)| id.db_id == db) {
            seg = p.seg_size;
            if let Some((first, _)) = p.runs.first() {
                pages.insert((id.timeline, *first), (id, p));
            }
        }
        Archive {
            segs,
            pages,
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

    /// Every timeline with segments or a history file, in order.
    pub(crate) fn timelines(&self) -> Vec<u32> {
        let mut t: Vec<u32> = self
            .segs
            .keys()
            .map(|(t, _)| *t)
            .chain(self.pages.keys().map(|(t, _)| *t))
            .chain(self.histories.keys().copied())
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    fn latest_timeline(&self, backups: &[&BackupSummary]) -> TimelineId {
        let seen = self
            .timelines()
            .into_iter()
            .chain(backups.iter().map(|b| b.timeline.0));
        TimelineId(seen.max().unwrap_or(1))
    }

    pub(crate) fn lookup(&self, tli: TimelineId, segno: u64) -> Seg<'a> {
        if let Some(s) = self.segs.get(&(tli.0, segno)) {
            return Seg::Loaded(s);
        }
        // Pages of a timeline do not overlap: only the last one starting at or before
        // `segno` can hold it.
        match self.pages.range((tli.0, 0)..=(tli.0, segno)).next_back() {
            Some((_, (id, p))) if p.holds(segno) => Seg::Paged(id, p),
            _ => Seg::Absent,
        }
    }

    /// The timelines recovery along `hist` reads segments from, for a walk.
    pub(crate) fn path(&self, hist: &TimelineHistory) -> Path {
        Path {
            spans: hist
                .spans()
                .into_iter()
                .map(|s| (s.tli, s.end.map(|e| e.segment_number(self.seg).0)))
                .collect(),
            tli: hist.tli,
        }
    }

    /// A page recovery along `path` reads whole and from its first segment when it
    /// reaches segment `n`, and the last segment of it: then the page's figures stand for
    /// its segments' (no gap inside, no timeline switch, nothing before `n`).
    pub(crate) fn whole_page(&self, path: &Path, p: &PageRef, n: u64) -> Option<u64> {
        let [(first, last)] = p.runs[..] else {
            return None;
        };
        (first == n && path.timeline_at(last) == path.timeline_at(n)).then_some(last)
    }

    /// Whether any segment at or after `segno` exists on the path (tells a gap from the end).
    pub(crate) fn any_after(&self, hist: &TimelineHistory, segno: u64) -> bool {
        self.segs
            .keys()
            .any(|(t, n)| *n > segno && hist.contains(TimelineId(*t)))
            || self.pages.iter().any(|((t, _), (_, p))| {
                hist.contains(TimelineId(*t)) && p.runs.iter().any(|(_, b)| *b > segno)
            })
    }

    /// The highest segment number archived on any timeline.
    fn last_segno(&self) -> Option<u64> {
        let loaded = self.segs.keys().map(|(_, n)| *n);
        let paged = self
            .pages
            .values()
            .filter_map(|(_, p)| p.runs.last().map(|r| r.1));
        loaded.chain(paged).max()
    }

    pub(crate) fn segment(&self, tli: TimelineId, segno: u64) -> SegmentName {
        SegmentName::from_segno(tli, XLogSegNo(segno), self.seg)
    }
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
) -> Result<Option<Refusal>, PageNotLoaded> {
    if let Some(why) = off_path(b, hist) {
        return Ok(Some(Refusal::Timeline(why)));
    }
    let why = match target {
        Target::Time(t) => match b.stop_time.pg() {
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
        Target::Xid(x) => match find_xid(archive, hist, b, *x)? {
            Some(_) => None,
            None => Some(format!("no archived commit of transaction {x} follows it")),
        },
        Target::Immediate | Target::EndOfArchive => None,
    };
    Ok(why.map(Refusal::Target))
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
fn xid_range(
    archive: &Archive<'_>,
    b: &BackupSummary,
) -> Result<Option<(u32, u32)>, PageNotLoaded> {
    let stop = b.stop_lsn.segment_number(archive.seg).0;
    let ended = archive.segs.iter().filter(|((_, n), _)| *n >= stop);
    let mut lo = ended.clone().filter_map(|(_, s)| s.min_xid).min();
    let mut hi = ended.filter_map(|(_, s)| s.max_xid).max();
    for (id, p) in archive.pages.values() {
        match p.runs.first() {
            Some((first, _)) if *first >= stop => {
                lo = lo.into_iter().chain(p.min_xid).min();
                hi = hi.max(p.max_xid);
            }
            _ if p.runs.last().is_some_and(|(_, last)| *last >= stop) => {
                return Err(PageNotLoaded(**id));
            }
            _ => {}
        }
    }
    Ok(lo.zip(hi))
}

/// Every restore point the archive knows of, with its timeline.
fn restore_points<'a>(
    archive: &'a Archive<'_>,
) -> impl Iterator<Item = (TimelineId, &'a RestorePointAt)> + 'a {
    let loaded = archive
        .segs
        .iter()
        .flat_map(|((t, _), s)| s.restore_points.iter().map(move |rp| (TimelineId(*t), rp)));
    let paged = archive
        .pages
        .iter()
        .flat_map(|((t, _), (_, p))| p.restore_points.iter().map(move |rp| (TimelineId(*t), rp)));
    loaded.chain(paged)
}

fn find_restore_point(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    after: Lsn,
    name: &str,
) -> Option<Lsn> {
    restore_points(archive)
        .filter(|(t, rp)| {
            hist.contains(*t)
                && rp.name == name
                && rp.lsn >= after
                && hist.timeline_at(rp.lsn) == *t
        })
        .map(|(_, rp)| rp.lsn)
        .min()
}

fn find_xid(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    b: &BackupSummary,
    xid: u32,
) -> Result<Option<u64>, PageNotLoaded> {
    let stop = b.stop_lsn.segment_number(archive.seg).0;
    let Some(last) = archive.last_segno() else {
        return Ok(None);
    };
    let first = b.start_lsn.segment_number(archive.seg).0;
    let path = archive.path(hist);
    for n in first.max(stop)..=last {
        let holds = |lo: Option<u32>, hi: Option<u32>| matches!((lo, hi), (Some(a), Some(z)) if a <= xid && xid <= z);
        match archive.lookup(path.timeline_at(n), n) {
            Seg::Loaded(s) if holds(s.min_xid, s.max_xid) => return Ok(Some(n)),
            Seg::Paged(id, p) if holds(p.min_xid, p.max_xid) => return Err(PageNotLoaded(*id)),
            _ => {}
        }
    }
    Ok(None)
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
        match unsuitable(b, &hist, &req.target, &archive)? {
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
        // wal_for passed over whole pages only: their figures are their segments'.
        let (end, commit) = match archive.lookup(t, n) {
            Seg::Loaded(s) => (s.end_of_wal, s.last_commit_time),
            Seg::Paged(_, p) if p.runs.first().is_some_and(|r| r.0 > start_seg) => {
                (p.end_of_wal, p.last_commit)
            }
            Seg::Paged(id, _) => return Err(PageNotLoaded(*id).into()),
            Seg::Absent => continue,
        };
        wal_end = wal_end.max(end);
        if n > start_seg && commit > last_commit {
            last_commit = commit;
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
            for (_, rp) in restore_points(archive) {
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
        Target::Xid(x) => match xid_range(archive, earliest) {
            Ok(archived) => PlanError::UnknownXid { xid: *x, archived },
            Err(missing) => missing.into(),
        },
        // Time and LSN: every backup on the path became consistent after the target.
        _ => PlanError::BeforeEarliestBackup {
            earliest: earliest.stop_lsn,
            at: Some(earliest.stop_time),
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
        Target::Xid(x) => find_xid(archive, hist, b, *x)?,
        Target::Time(_) | Target::EndOfArchive => None,
    };
    let path = archive.path(hist);
    let mut n = b.start_lsn.segment_number(seg).0;
    loop {
        let tli = path.timeline_at(n);
        let s = match archive.lookup(tli, n) {
            Seg::Loaded(s) => s,
            Seg::Paged(id, p) => {
                // A whole page the target cannot be inside is passed over on its figures.
                let inside = |last: u64| match target {
                    Target::Time(t) => {
                        last >= stop_seg && p.last_commit.is_some_and(|c| c > t.pg())
                    }
                    Target::EndOfArchive => false,
                    _ => fixed_end.is_none_or(|e| e <= last),
                };
                match archive.whole_page(&path, p, n) {
                    Some(last) if !inside(last) => {
                        out.extend((n..=last).map(|m| (tli, m)));
                        end_of_wal = end_of_wal.max(p.end_of_wal);
                        last_commit = last_commit.max(p.last_commit);
                        n = last + 1;
                        continue;
                    }
                    _ => return Err(PageNotLoaded(*id).into()),
                }
            }
            Seg::Absent => {
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
            }
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
        n += 1;
    }
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
