//! The recoverable windows per timeline, for `cairn info`: from a backup's consistency
//! point to the last archived commit reachable from it without a gap. A gap ends a window;
//! a newer backup that starts after the gap begins the next one.

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{PgTimestamp, SegmentName, TimelineId};
use cairn_repo::{BackupLabel, BackupSummary, BackupTime, DbId, WalCatalog};
use serde::{Serialize, Serializer};

use crate::error::PageNotLoaded;
use crate::plan::{Archive, Seg, off_path};

/// One recoverable window. Serialized as `cairn info --output json` shows it
/// (docs/info-json.md): the timeline as a number, times and names as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryWindow {
    pub timeline: TimelineId,
    /// The earliest backup that can start recovery in this window.
    pub backup: BackupLabel,
    /// Its consistency point: the earliest time a restore can land on.
    pub from: BackupTime,
    /// The last commit reachable from it without a gap (`None`: none after the backup).
    #[serde(serialize_with = "commit_time")]
    pub to: Option<PgTimestamp>,
    /// The first missing segment that ends the window early, when WAL exists after it.
    pub gap: Option<SegmentName>,
}

/// A commit time as text (RFC 3339, six fractional digits), or null.
fn commit_time<S: Serializer>(t: &Option<PgTimestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

/// Where a target time inside a window lands: from the first commit (or abort) the archive
/// shows at or after the window's start to the window's last commit. Recovery to a time in
/// `first..=last` stops after a commit that is itself in the window (when commit times
/// follow WAL order, as they do for one session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSpan {
    pub window: RecoveryWindow,
    pub first: PgTimestamp,
    pub last: PgTimestamp,
}

/// The windows of each timeline that has WAL or backups, in order: one from the earliest
/// backup whose WAL is complete, and after a gap, another from the earliest backup that
/// starts after the missing segment.
pub fn recoverable_windows(
    backups: &[BackupSummary],
    catalog: &WalCatalog,
    db: DbId,
) -> Result<Vec<RecoveryWindow>, PageNotLoaded> {
    Ok(walk_windows(backups, catalog, db)?
        .into_iter()
        .map(|(w, _)| w)
        .collect())
}

/// The [`CommitSpan`] of each recoverable window that has a commit after its start (what
/// `cairn drill --random` picks a moment from).
pub fn commit_spans(
    backups: &[BackupSummary],
    catalog: &WalCatalog,
    db: DbId,
) -> Result<Vec<CommitSpan>, PageNotLoaded> {
    Ok(walk_windows(backups, catalog, db)?
        .into_iter()
        .filter_map(|(window, first)| {
            let first = first?;
            let last = window.to?;
            (first <= last).then_some(CommitSpan {
                window,
                first,
                last,
            })
        })
        .collect())
}

/// Each window with the first commit known to come at or after its start.
fn walk_windows(
    backups: &[BackupSummary],
    catalog: &WalCatalog,
    db: DbId,
) -> Result<Vec<(RecoveryWindow, Option<PgTimestamp>)>, PageNotLoaded> {
    let archive = Archive::new(catalog, db);
    let mut mine: Vec<&BackupSummary> = backups.iter().filter(|b| b.db_id == db).collect();
    mine.sort_by_key(|b| b.start_lsn);
    let mut tlis: Vec<u32> = archive.timelines();
    tlis.extend(mine.iter().map(|b| b.timeline.0));
    tlis.sort_unstable();
    tlis.dedup();
    let mut out = Vec::new();
    for t in tlis {
        let hist = archive.history(TimelineId(t));
        let usable: Vec<&BackupSummary> = mine
            .iter()
            .copied()
            .filter(|b| off_path(b, &hist).is_none())
            .collect();
        // Segments before this one cannot be used: a gap lies at or after them.
        let mut resume = 0u64;
        for b in usable {
            if b.start_lsn.segment_number(archive.seg).0 < resume {
                continue;
            }
            match window_from(&archive, &hist, b)? {
                // Its own WAL is incomplete: a later backup may still start a window.
                Walk::Broken => {}
                Walk::Window(w, first, next) => {
                    out.push((w, first));
                    match next {
                        Some(n) => resume = n + 1,
                        None => break,
                    }
                }
            }
        }
    }
    Ok(out)
}

enum Walk {
    Broken,
    /// The window, the first commit known at or after its start, and the missing segment
    /// that ended it when later WAL exists.
    Window(RecoveryWindow, Option<PgTimestamp>, Option<u64>),
}

fn window_from(
    archive: &Archive<'_>,
    hist: &TimelineHistory,
    b: &BackupSummary,
) -> Result<Walk, PageNotLoaded> {
    let stop_seg = b.stop_lsn.segment_number(archive.seg).0;
    let start = b.stop_time;
    let from = start.pg();
    let mut last: Option<PgTimestamp> = None;
    let mut first: Option<PgTimestamp> = None;
    let mut gap = None;
    // A segment (or a whole page) keeps only its first and last commit times: the
    // earliest of those at or after the start is a commit known to lie in the window.
    let mut commits = |n: u64, f: Option<PgTimestamp>, l: Option<PgTimestamp>| {
        if n < stop_seg {
            return;
        }
        last = last.max(l);
        for c in [f, l].into_iter().flatten() {
            if from.is_some_and(|f| c >= f) && first.is_none_or(|x| c < x) {
                first = Some(c);
            }
        }
    };
    let path = archive.path(hist);
    let mut n = b.start_lsn.segment_number(archive.seg).0;
    loop {
        let tli = path.timeline_at(n);
        match archive.lookup(tli, n) {
            Seg::Loaded(s) => commits(n, s.first_commit_time, s.last_commit_time),
            Seg::Paged(id, p) => match archive.whole_page(&path, p, n) {
                // Before the consistency point only presence counts; after it the page's
                // figures stand for its segments'.
                Some(end) if end < stop_seg || n >= stop_seg => {
                    commits(n, p.first_commit, p.last_commit);
                    n = end + 1;
                    continue;
                }
                _ => return Err(PageNotLoaded(*id)),
            },
            Seg::Absent if n <= stop_seg => return Ok(Walk::Broken),
            Seg::Absent => {
                if archive.any_after(hist, n) {
                    gap = Some((archive.segment(tli, n), n));
                }
                break;
            }
        }
        n += 1;
    }
    let w = RecoveryWindow {
        timeline: hist.tli,
        backup: b.label.clone(),
        from: start,
        to: last,
        gap: gap.map(|(name, _)| name),
    };
    Ok(Walk::Window(w, first, gap.map(|(_, n)| n)))
}
