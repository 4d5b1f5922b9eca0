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
//!
//! **Pages** (decision 025). Read through the WAL index, most segments sit in pages whose
//! summaries are not loaded. A page is judged from its runs of segment numbers, which give
//! each segment's LSN range: a page whose segments all stay is counted; a page whose
//! segments all go and that ends before the timeline's first kept file is a [`PageDrop`],
//! counted from its figures and read only when the run removes it; any other page (some
//! of its segments go, or it lies between kept ranges, or a file announced since the index
//! falls in its range) is one of [`pages_to_load`] and judged file by file. A page left
//! unloaded that needed loading stays whole.

use std::collections::BTreeMap;

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{Lsn, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::wal_index::{PageId, PageRef};
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

impl WalFileDrop {
    /// The drop of `entry`, announced by `log_keys`.
    pub fn of(stanza: &StanzaName, entry: &WalEntry, log_keys: &[String]) -> Option<Self> {
        let name = entry.file_name()?;
        Some(WalFileDrop {
            name: entry.name.clone(),
            end: segment_range(entry).map(|(_, end)| end),
            key: layout::wal_file(stanza, entry.db_id, &name),
            log_keys: log_keys
                .iter()
                .filter_map(|k| ObjectKey::new(k.as_str()).ok())
                .collect(),
            size: entry.size,
        })
    }
}

/// A page of segments that all go, judged from the index's figures. Its files and their
/// journal entries are read when the run removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageDrop {
    pub id: PageId,
    pub page: PageRef,
}

impl PageDrop {
    /// The first LSN of its first segment.
    pub fn start(&self) -> Lsn {
        self.page.start_lsn()
    }

    /// The first LSN after its last segment: the cut that removes it.
    pub fn end(&self) -> Lsn {
        self.page.end_lsn()
    }

    /// Whether `entry` is one of the segments this page was judged by.
    pub fn covers(&self, entry: &WalEntry) -> bool {
        let (Some(WalFileName::Segment(name)), Some((_, end))) =
            (entry.file_name(), segment_range(entry))
        else {
            return false;
        };
        entry.db_id == self.id.db_id
            && name.tli.0 == self.id.timeline
            && self.page.holds(name.segno(self.page.seg_size).0)
            && end <= self.end()
    }

    fn name_of(&self, segno: u64) -> String {
        SegmentName::from_segno(
            TimelineId(self.id.timeline),
            XLogSegNo(segno),
            self.page.seg_size,
        )
        .to_string()
    }

    /// Its first and last segment names.
    pub fn first_last(&self) -> (String, String) {
        let first = self.page.runs.first().map_or(0, |r| r.0);
        let last = self.page.runs.last().map_or(0, |r| r.1);
        (self.name_of(first), self.name_of(last))
    }
}

/// What one timeline loses and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineDrop {
    pub db_id: DbId,
    pub timeline: TimelineId,
    /// WAL ending at or before this LSN is expendable (outside kept ranges); `Lsn(0)`:
    /// nothing is.
    pub expendable_before: Lsn,
    /// Segments and partials removed by `Expired` cuts, in LSN order.
    pub cut: Vec<WalFileDrop>,
    /// Whole pages removed by `Expired` cuts, in LSN order (none of `cut` falls inside one).
    pub cut_pages: Vec<PageDrop>,
    /// Files removed by name (`Forgotten`).
    pub forget: Vec<WalFileDrop>,
    /// Files of the timeline that stay.
    pub kept_files: usize,
    /// Whether the timeline's `.history` file stays (when there is one).
    pub keep_history: bool,
}

impl TimelineDrop {
    /// The files loaded that go (pages not read are in [`TimelineDrop::cut_pages`]).
    pub fn files(&self) -> impl Iterator<Item = &WalFileDrop> {
        self.cut.iter().chain(&self.forget)
    }

    /// Files that go, pages included.
    pub fn count(&self) -> usize {
        self.files().count()
            + self
                .cut_pages
                .iter()
                .map(|p| p.page.segments as usize)
                .sum::<usize>()
    }

    /// Their bytes before compression, pages included.
    pub fn bytes(&self) -> u64 {
        self.files().map(|f| f.size).sum::<u64>()
            + self.cut_pages.iter().map(|p| p.page.bytes).sum::<u64>()
    }

    /// The first and last name that goes (names of one timeline sort in LSN order).
    pub fn first_last(&self) -> Option<(String, String)> {
        let names = self
            .files()
            .map(|f| (f.name.clone(), f.name.clone()))
            .chain(self.cut_pages.iter().map(PageDrop::first_last));
        names.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

/// The WAL part of the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalDrops {
    /// Every timeline the catalog has, by generation and timeline.
    pub timelines: Vec<TimelineDrop>,
    pub warnings: Vec<String>,
}

impl WalDrops {
    pub fn count(&self) -> usize {
        self.timelines.iter().map(TimelineDrop::count).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.timelines.iter().map(TimelineDrop::bytes).sum()
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
    let timelines = wal
        .entries()
        .filter_map(|e| Some((e.db_id, e.file_name()?.timeline())))
        .chain(
            wal.pages()
                .keys()
                .map(|id| (id.db_id, TimelineId(id.timeline))),
        );
    for (db, tli) in timelines {
        out.entry((db, tli))
            .or_insert_with(|| TimelineHistory::root(tli));
    }
    out
}

/// How a page whose summaries are not loaded is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Cut,
    Load,
}

/// The retention plan for the WAL, and what it makes of each page not loaded.
struct Judged {
    wal_plan: WalPlan,
    fates: BTreeMap<PageId, Fate>,
    /// Per timeline, the end of its first kept segment or partial, loaded or in a page.
    first_kept: BTreeMap<(DbId, TimelineId), Lsn>,
    warnings: Vec<String>,
}

fn judge(wal: &WalCatalog, retention: &RetentionPlan) -> Judged {
    let mut warnings = Vec::new();
    let hist = histories(wal, &mut warnings);
    let wal_plan = cairn_retention::plan_wal(retention, &hist);
    let mut first_kept: BTreeMap<(DbId, TimelineId), Lsn> = BTreeMap::new();
    let mut kept_at = |db: DbId, tli: TimelineId, end: Lsn| {
        let k = first_kept.entry((db, tli)).or_insert(end);
        *k = (*k).min(end);
    };
    // Loaded segments and partials: where they start, per timeline.
    let mut loaded: BTreeMap<(DbId, TimelineId), Vec<Lsn>> = BTreeMap::new();
    for e in wal.entries() {
        let (Some(name), Some((start, end))) = (e.file_name(), segment_range(e)) else {
            continue;
        };
        let tli = name.timeline();
        loaded.entry((e.db_id, tli)).or_default().push(start);
        if !wal_plan.segment_expendable(e.db_id, tli, start, end) {
            kept_at(e.db_id, tli, end);
        }
    }
    let mut fates = BTreeMap::new();
    for (id, page) in wal.pages() {
        let tli = TimelineId(id.timeline);
        let (mut gone, mut kept) = (0u64, 0u64);
        for (start, end) in page.segment_ranges() {
            if wal_plan.segment_expendable(id.db_id, tli, start, end) {
                gone += 1;
            } else {
                kept += 1;
                kept_at(id.db_id, tli, end);
            }
        }
        let (lo, hi) = (page.start_lsn(), page.end_lsn());
        let overlaps = loaded
            .get(&(id.db_id, tli))
            .is_some_and(|starts| starts.iter().any(|s| lo <= *s && *s < hi));
        let fate = match (overlaps, gone, kept) {
            (true, _, _) => Fate::Load,
            (false, 0, _) => Fate::Kept,
            (false, _, 0) => Fate::Cut,
            _ => Fate::Load,
        };
        fates.insert(*id, fate);
    }
    // A cut hides everything below it: a page that goes but lies above a kept file is
    // removed by name, which needs its files.
    for (id, fate) in fates.iter_mut() {
        let first = first_kept.get(&(id.db_id, TimelineId(id.timeline)));
        if *fate == Fate::Cut && first.is_some_and(|k| wal.pages()[id].end_lsn() >= *k) {
            *fate = Fate::Load;
        }
    }
    Judged {
        wal_plan,
        fates,
        first_kept,
        warnings,
    }
}

/// The pages whose summaries [`plan`] needs loaded to judge them file by file.
pub fn pages_to_load(wal: &WalCatalog, retention: &RetentionPlan) -> Vec<PageId> {
    judge(wal, retention)
        .fates
        .into_iter()
        .filter(|(_, f)| *f == Fate::Load)
        .map(|(id, _)| id)
        .collect()
}

/// A timeline's loaded files and its pages not loaded.
type TimelineFiles<'a> = (Vec<&'a WalEntry>, Vec<(&'a PageId, &'a PageRef)>);

/// What goes of the WAL catalog under `retention`.
pub fn plan(stanza: &StanzaName, wal: &WalCatalog, retention: &RetentionPlan) -> WalDrops {
    let judged = judge(wal, retention);
    let mut warnings = judged.warnings.clone();
    // Segment sizes per generation, for backup history files (which have no summary).
    let mut seg_sizes: BTreeMap<DbId, WalSegmentSize> = BTreeMap::new();
    for e in wal.entries() {
        if let WalDetail::Segment { summary } = &e.detail {
            seg_sizes.entry(e.db_id).or_insert(summary.seg_size());
        }
    }
    for (id, page) in wal.pages() {
        seg_sizes.entry(id.db_id).or_insert(page.seg_size);
    }
    let mut by_tl: BTreeMap<(DbId, TimelineId), TimelineFiles> = BTreeMap::new();
    for e in wal.entries() {
        if let Some(name) = e.file_name() {
            by_tl
                .entry((e.db_id, name.timeline()))
                .or_default()
                .0
                .push(e);
        }
    }
    for (id, page) in wal.pages() {
        let tl = (id.db_id, TimelineId(id.timeline));
        by_tl.entry(tl).or_default().1.push((id, page));
    }
    let timelines = by_tl
        .into_iter()
        .map(|((db, tli), (entries, pages))| {
            let mut drop = timeline(stanza, wal, &judged, &seg_sizes, db, tli, &entries);
            for (id, page) in pages {
                match judged.fates[id] {
                    Fate::Kept => drop.kept_files += page.segments as usize,
                    Fate::Cut => drop.cut_pages.push(PageDrop {
                        id: *id,
                        page: page.clone(),
                    }),
                    Fate::Load => {
                        drop.kept_files += page.segments as usize;
                        warnings.push(format!(
                            "WAL catalog page {} was not read: its {} segments stay",
                            page.key, page.segments
                        ));
                    }
                }
            }
            drop
        })
        .collect();
    WalDrops {
        timelines,
        warnings,
    }
}

fn timeline(
    stanza: &StanzaName,
    wal: &WalCatalog,
    judged: &Judged,
    seg_sizes: &BTreeMap<DbId, WalSegmentSize>,
    db: DbId,
    tli: TimelineId,
    entries: &[&WalEntry],
) -> TimelineDrop {
    let wal_plan = &judged.wal_plan;
    let drop_of = |e: &WalEntry| WalFileDrop::of(stanza, e, wal.log_keys(e));
    let mut segments: Vec<(Lsn, &WalEntry, bool)> = Vec::new();
    let mut forget = Vec::new();
    let mut kept_files = 0;
    for e in entries {
        let Some(name) = e.file_name() else { continue };
        if let Some((start, end)) = segment_range(e) {
            let gone = wal_plan.segment_expendable(db, tli, start, end);
            segments.push((end, e, gone));
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
        match drop_of(e) {
            Some(d) if gone => forget.push(d),
            _ => kept_files += 1,
        }
    }
    segments.sort_by_key(|(end, e, _)| (*end, e.name.clone()));
    // A cut hides every segment ending at or before it: only below the first kept one,
    // counting the kept segments of pages not loaded.
    let first_kept = judged.first_kept.get(&(db, tli)).copied();
    let mut cut = Vec::new();
    for (end, e, gone) in &segments {
        match drop_of(e) {
            Some(d) if *gone && first_kept.is_none_or(|k| *end < k) => cut.push(d),
            Some(d) if *gone => forget.push(d),
            _ => kept_files += 1,
        }
    }
    let t = wal_plan.timeline(db, tli);
    TimelineDrop {
        db_id: db,
        timeline: tli,
        expendable_before: t.map_or(Lsn::INVALID, |t| t.expendable_before),
        cut,
        cut_pages: Vec::new(),
        forget,
        kept_files,
        keep_history: t.is_none_or(|t| t.keep_history),
    }
}
