//! The recoverable windows per timeline, for `cairn info`: from a backup's consistency
//! point to the last archived commit reachable from it without a gap. A gap ends a window;
//! a newer backup that starts after the gap begins the next one.

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{PgTimestamp, TimelineId};
use cairn_repo::{BackupSummary, DbId, WalCatalog};
use serde::Serialize;

use crate::plan::{Archive, off_path, pg_time};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryWindow {
    pub timeline: u32,
    /// The earliest backup that can start recovery in this window.
    pub backup: String,
    /// Its consistency point: the earliest time a restore can land on.
    pub from: String,
    /// The last commit reachable from it without a gap (`None`: none after the backup).
    pub to: Option<String>,
    /// The first missing segment that ends the window early, when WAL exists after it.
    pub gap: Option<String>,
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
) -> Vec<RecoveryWindow> {
    walk_windows(backups, catalog, db)
        .into_iter()
        .map(|(w, _)| w)
        .collect()
}

/// The [`CommitSpan`] of each recoverable window that has a commit after its start (what
/// `cairn drill --random` picks a moment from).
pub fn commit_spans(backups: &[BackupSummary], catalog: &WalCatalog, db: DbId) -> Vec<CommitSpan> {
    walk_windows(backups, catalog, db)
        .into_iter()
        .filter_map(|(window, first)| {
            let first = first?;
            let last = window.to.as_deref()?.parse::<PgTimestamp>().ok()?;
            (first <= last).then_some(CommitSpan {
                window,
                first,
                last,
            })
        })
        .collect()
}

/// Each window with the first commit known to come at or after its start.
fn walk_windows(
    backups: &[BackupSummary],
    catalog: &WalCatalog,
    db: DbId,
) -> Vec<(RecoveryWindow, Option<PgTimestamp>)> {
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
            match window_from(&archive, &hist, b) {
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
    out
}

enum Walk {
    Broken,
    /// The window, the first commit known at or after its start, and the missing segment
    /// that ended it when later WAL exists.
    Window(RecoveryWindow, Option<PgTimestamp>, Option<u64>),
}

fn window_from(archive: &Archive<'_>, hist: &TimelineHistory, b: &BackupSummary) -> Walk {
    let stop_seg = b.stop_lsn.segment_number(archive.seg).0;
    let from = pg_time(&b.stop_time);
    let mut last: Option<PgTimestamp> = None;
    let mut first: Option<PgTimestamp> = None;
    let mut gap = None;
    for (tli, n) in archive.walk(hist, b.start_lsn) {
        match archive.get(tli, n) {
            Some(s) => {
                if n >= stop_seg
                    && let Some(c) = s.last_commit_time
                {
                    last = Some(last.map_or(c, |l: PgTimestamp| l.max(c)));
                }
                // A segment keeps only its first and last commit times: the earliest of
                // those at or after the start is a commit known to lie in the window.
                if n >= stop_seg {
                    for c in [s.first_commit_time, s.last_commit_time]
                        .into_iter()
                        .flatten()
                    {
                        if from.is_some_and(|f| c >= f) && first.is_none_or(|x| c < x) {
                            first = Some(c);
                        }
                    }
                }
            }
            None if n <= stop_seg => return Walk::Broken,
            None => {
                if archive.any_after(hist, n) {
                    gap = Some((archive.name(tli, n), n));
                }
                break;
            }
        }
    }
    let w = RecoveryWindow {
        timeline: hist.tli.0,
        backup: b.label.to_string(),
        from: b.stop_time.clone(),
        to: last.map(|l| l.to_string()),
        gap: gap.as_ref().map(|(name, _)| name.clone()),
    };
    Walk::Window(w, first, gap.map(|(_, n)| n))
}
