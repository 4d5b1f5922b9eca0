//! Which archived WAL files go, per generation and timeline, and the journal events that
//! record it. Pure: the WAL catalog and the retention plan in, the drops out.
//!
//! `cairn_retention::plan_wal` says, per timeline, below which LSN WAL is expendable and
//! which start-to-stop ranges stay (backups kept only by a tier or a pin). Segments and
//! `.partial` files are judged by the LSN range they hold, backup history files by the
//! segment they name, `.history` files by the plan's history rule. Files whose summary
//! cannot be read are not in the catalog and never go.
//!
//! How each removal is recorded (decision 014): the expendable files of a timeline that
//! end before every kept file of it are removed by `Expired { below }` events, a cut that
//! also hides a copy arriving late; files between kept ranges, and history and backup
//! history files, by name with `Forgotten`.

use std::collections::BTreeMap;

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{Lsn, TimelineId, WalFileName, WalSegmentSize};
use cairn_repo::{DbId, ObjectKey, StanzaName, WalCatalog, WalDetail, WalEntry, layout};
use cairn_retention::{Histories, RetentionPlan, WalPlan};

/// One archived file that goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFileDrop {
    pub name: String,
    /// The first LSN after the WAL it holds (segments and partials).
    pub end: Option<Lsn>,
    pub key: ObjectKey,
    /// The journal entries that announced it (deleted with it).
    pub log_keys: Vec<ObjectKey>,
    /// Its size before compression.
    pub size: u64,
}

/// What one timeline loses and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineDrop {
    pub db_id: DbId,
    pub timeline: TimelineId,
    /// WAL ending at or before this LSN is expendable (outside kept ranges); `Lsn(0)`:
    /// nothing is.
    pub expendable_before: Lsn,
    /// Segments and partials removed by `Expired` cuts, in LSN order.
    pub cut: Vec<WalFileDrop>,
    /// Files removed by name (`Forgotten`).
    pub forget: Vec<WalFileDrop>,
    /// Files of the timeline that stay.
    pub kept_files: usize,
    /// Whether the timeline's `.history` file stays (when there is one).
    pub keep_history: bool,
}

impl TimelineDrop {
    pub fn files(&self) -> impl Iterator<Item = &WalFileDrop> {
        self.cut.iter().chain(&self.forget)
    }
}

/// The WAL part of the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalDrops {
    /// Every timeline the catalog has, by generation and timeline.
    pub timelines: Vec<TimelineDrop>,
    pub warnings: Vec<String>,
}

impl WalDrops {
    pub fn files(&self) -> impl Iterator<Item = &WalFileDrop> {
        self.timelines.iter().flat_map(TimelineDrop::files)
    }
    pub fn count(&self) -> usize {
        self.files().count()
    }
    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.size).sum()
    }
}

/// The LSN range a segment or partial file holds.
fn segment_range(e: &WalEntry) -> Option<(Lsn, Lsn)> {
    match (e.file_name()?, &e.detail) {
        (WalFileName::Segment(_) | WalFileName::Partial(_), WalDetail::Segment { summary }) => {
            Some((summary.start_lsn, summary.end_lsn()))
        }
        _ => None,
    }
}

/// The timeline histories the catalog holds, with timeline 1 (and any timeline without a
/// history file) as a root history.
fn histories(wal: &WalCatalog, warnings: &mut Vec<String>) -> Histories {
    let mut out = Histories::new();
    for e in wal.entries() {
        let Some(name) = e.file_name() else { continue };
        let tli = name.timeline();
        if let (WalFileName::History(_), WalDetail::History { text }) = (&name, &e.detail) {
            match TimelineHistory::parse(tli, text.as_bytes()) {
                Ok(h) => {
                    out.insert((e.db_id, tli), h);
                }
                Err(err) => warnings.push(format!(
                    "{}: {err}; its timeline is treated as having no ancestors",
                    e.name
                )),
            }
        }
    }
    for e in wal.entries() {
        if let Some(name) = e.file_name() {
            out.entry((e.db_id, name.timeline()))
                .or_insert_with(|| TimelineHistory::root(name.timeline()));
        }
    }
    out
}

/// What goes of the WAL catalog under `retention`.
pub fn plan(stanza: &StanzaName, wal: &WalCatalog, retention: &RetentionPlan) -> WalDrops {
    let mut warnings = Vec::new();
    let hist = histories(wal, &mut warnings);
    let wal_plan = cairn_retention::plan_wal(retention, &hist);
    // Segment sizes per generation, for backup history files (which have no summary).
    let mut seg_sizes: BTreeMap<DbId, WalSegmentSize> = BTreeMap::new();
    for e in wal.entries() {
        if let WalDetail::Segment { summary } = &e.detail {
            seg_sizes.entry(e.db_id).or_insert(summary.seg_size());
        }
    }
    let mut by_tl: BTreeMap<(DbId, TimelineId), Vec<&WalEntry>> = BTreeMap::new();
    for e in wal.entries() {
        if let Some(name) = e.file_name() {
            by_tl.entry((e.db_id, name.timeline())).or_default().push(e);
        }
    }
    let timelines = by_tl
        .into_iter()
        .map(|((db, tli), entries)| timeline(stanza, wal, &wal_plan, &seg_sizes, db, tli, &entries))
        .collect();
    WalDrops {
        timelines,
        warnings,
    }
}

fn timeline(
    stanza: &StanzaName,
    wal: &WalCatalog,
    wal_plan: &WalPlan,
    seg_sizes: &BTreeMap<DbId, WalSegmentSize>,
    db: DbId,
    tli: TimelineId,
    entries: &[&WalEntry],
) -> TimelineDrop {
    let drop_of = |e: &WalEntry, name: &WalFileName, end: Option<Lsn>| WalFileDrop {
        name: e.name.clone(),
        end,
        key: layout::wal_file(stanza, db, name),
        log_keys: wal
            .log_keys(e)
            .iter()
            .filter_map(|k| ObjectKey::new(k.as_str()).ok())
            .collect(),
        size: e.size,
    };
    let mut segments: Vec<(Lsn, &WalEntry, WalFileName, bool)> = Vec::new();
    let mut forget = Vec::new();
    let mut kept_files = 0;
    for e in entries {
        let Some(name) = e.file_name() else { continue };
        if let Some((start, end)) = segment_range(e) {
            let gone = wal_plan.segment_expendable(db, tli, start, end);
            segments.push((end, e, name, gone));
            continue;
        }
        let gone = match &name {
            WalFileName::History(_) => wal_plan.history_expendable(db, tli),
            WalFileName::BackupHistory { segment, .. } => seg_sizes.get(&db).is_some_and(|&seg| {
                let start = segment.start_lsn(seg);
                let end = Lsn(start.0.saturating_add(seg.as_u64()));
                wal_plan.segment_expendable(db, tli, start, end)
            }),
            // A segment without a segment summary: nothing to judge it by.
            _ => false,
        };
        if gone {
            forget.push(drop_of(e, &name, None));
        } else {
            kept_files += 1;
        }
    }
    segments.sort_by_key(|(end, e, _, _)| (*end, e.name.clone()));
    // A cut hides every segment ending at or before it: only below the first kept one.
    let first_kept = segments
        .iter()
        .filter(|(_, _, _, gone)| !gone)
        .map(|(end, _, _, _)| *end)
        .min();
    let mut cut = Vec::new();
    for (end, e, name, gone) in &segments {
        if !gone {
            kept_files += 1;
        } else if first_kept.is_none_or(|k| *end < k) {
            cut.push(drop_of(e, name, Some(*end)));
        } else {
            forget.push(drop_of(e, name, Some(*end)));
        }
    }
    let t = wal_plan.timeline(db, tli);
    TimelineDrop {
        db_id: db,
        timeline: tli,
        expendable_before: t.map_or(Lsn::INVALID, |t| t.expendable_before),
        cut,
        forget,
        kept_files,
        keep_history: t.is_none_or(|t| t.keep_history),
    }
}
