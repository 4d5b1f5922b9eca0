//! The WAL catalog: every archived file's summary, folded from the stanza's `wal`
//! [journal](crate::journal) (a snapshot plus the entries written since), so `info`, the
//! planner and `expire` never list the whole archive, and never miss a file that lands
//! late (a `.history` or `.partial` on an older timeline, a slow async push).

use std::collections::{BTreeMap, BTreeSet};

use cairn_pgformat::{Lsn, PgTimestamp, SegmentName, TimelineId, WalFileName, XLogSegNo};
use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::journal::{Fold, JournalName};
use crate::layout::{DbId, StanzaName};
use crate::repository::Repository;
use crate::wal::{WalDetail, WalEntry};
use crate::wal_index::{PageId, PageRef};

/// One event of the `wal` journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WalEvent {
    /// A file was archived (written after the file itself is durable).
    Archived { entry: WalEntry },
    /// `expire` removed every segment and partial of a timeline that ends at or before
    /// `below` (written before the files are deleted).
    Expired {
        db_id: DbId,
        timeline: u32,
        below: Lsn,
    },
    /// `expire` removed these files by name (history and backup history files).
    Forgotten { db_id: DbId, names: Vec<String> },
}

/// A journal entry that could not be read: the file its key names may be archived, but
/// its summary is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedSummary {
    pub log_key: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cut {
    db_id: DbId,
    timeline: u32,
    below: Lsn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) entry: WalEntry,
    /// Every journal entry that announced this file (a retried push writes another).
    pub(crate) log_keys: Vec<String>,
}

/// The folded state of the `wal` journal (what snapshots hold).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalState {
    pub(crate) files: BTreeMap<String, Record>,
    pub(crate) cuts: Vec<Cut>,
    pub(crate) forgotten: Vec<(DbId, String)>,
    pub(crate) damaged: BTreeMap<String, DamagedSummary>,
}

/// Sorts by generation, timeline and name: consecutive segments are neighbours.
pub(crate) fn sort_key(db: DbId, name: &WalFileName) -> String {
    format!("{db}/{:08X}/{name}", name.timeline().0)
}

impl WalState {
    fn is_cut(&self, e: &WalEntry) -> bool {
        let Some(name) = e.file_name() else {
            return false;
        };
        if self
            .forgotten
            .iter()
            .any(|(db, n)| *db == e.db_id && *n == e.name)
        {
            return true;
        }
        let end = match (&name, &e.detail) {
            (WalFileName::Segment(_) | WalFileName::Partial(_), WalDetail::Segment { summary }) => {
                summary.end_lsn()
            }
            _ => return false,
        };
        self.cuts
            .iter()
            .any(|c| c.db_id == e.db_id && c.timeline == name.timeline().0 && end <= c.below)
    }

    fn prune(&mut self) {
        let keep: Vec<String> = self
            .files
            .iter()
            .filter(|(_, r)| !self.is_cut(&r.entry))
            .map(|(k, _)| k.clone())
            .collect();
        self.files.retain(|k, _| keep.contains(k));
    }
}

impl Fold for WalState {
    type Entry = WalEvent;

    fn apply(&mut self, key: &str, event: WalEvent) {
        match event {
            WalEvent::Archived { entry } => {
                let Some(name) = entry.file_name() else {
                    return;
                };
                if self.is_cut(&entry) {
                    return;
                }
                let rec = self
                    .files
                    .entry(sort_key(entry.db_id, &name))
                    .or_insert_with(|| Record {
                        entry: entry.clone(),
                        log_keys: Vec::new(),
                    });
                rec.log_keys.push(key.to_string());
                self.damaged.retain(|_, d| d.name != entry.name);
            }
            WalEvent::Expired {
                db_id,
                timeline,
                below,
            } => {
                self.cuts.push(Cut {
                    db_id,
                    timeline,
                    below,
                });
                self.prune();
            }
            WalEvent::Forgotten { db_id, names } => {
                self.forgotten.extend(names.into_iter().map(|n| (db_id, n)));
                self.prune();
            }
        }
    }

    fn damaged(&mut self, key: &str, tag: &str, reason: String) {
        // A later good announcement of the same file makes this one moot.
        if self.files.values().any(|r| r.entry.name == tag) {
            return;
        }
        self.damaged.insert(
            key.to_string(),
            DamagedSummary {
                log_key: key.to_string(),
                name: tag.to_string(),
                reason,
            },
        );
    }
}

/// A run of segments with none missing in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRange {
    pub first: String,
    pub last: String,
    pub segments: u64,
}

impl SegmentRange {
    fn new(first: SegmentName, last: SegmentName, segments: u64) -> SegmentRange {
        SegmentRange {
            first: first.to_string(),
            last: last.to_string(),
            segments,
        }
    }
}

/// One timeline's archive, as `info` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineArchive {
    pub db_id: DbId,
    pub timeline: u32,
    /// Contiguous runs of segments; more than one means there are gaps between them.
    pub ranges: Vec<SegmentRange>,
    /// Missing segments between the ranges, as `first..=last` names.
    pub gaps: Vec<SegmentRange>,
    pub partials: Vec<String>,
    pub has_history: bool,
    pub first_commit: Option<String>,
    pub last_commit: Option<String>,
    pub restore_points: Vec<String>,
}

/// All archived WAL of a stanza, by generation, timeline and name.
///
/// Read through the [WAL index](crate::wal_index), it holds the summaries of recent
/// segments and, for older ones, only [pages](PageRef): which segments a page holds and
/// their commit times. [`Repository::load_wal_pages`] reads a page's summaries when a
/// reader needs them; [`Repository::wal_catalog`] reads everything.
#[derive(Debug, Clone, Default)]
pub struct WalCatalog {
    entries: BTreeMap<String, WalEntry>,
    log_keys: BTreeMap<String, Vec<String>>,
    damaged: Vec<DamagedSummary>,
    warnings: Vec<String>,
    /// Pages whose summaries are not loaded.
    pages: BTreeMap<PageId, PageRef>,
}

impl WalCatalog {
    /// A catalog of these entries (stitched), for planners and tests. The keys given are
    /// not used: entries are keyed by generation, timeline and name.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, WalEntry)>) -> WalCatalog {
        let mut c = WalCatalog {
            entries: entries
                .into_iter()
                .filter_map(|(_, e)| Some((sort_key(e.db_id, &e.file_name()?), e)))
                .collect(),
            ..Default::default()
        };
        c.stitch();
        c
    }

    pub(crate) fn from_state(state: WalState, warnings: Vec<String>) -> WalCatalog {
        let mut c = WalCatalog {
            log_keys: state
                .files
                .iter()
                .map(|(k, r)| (k.clone(), r.log_keys.clone()))
                .collect(),
            entries: state.files.into_iter().map(|(k, r)| (k, r.entry)).collect(),
            damaged: state.damaged.into_values().collect(),
            warnings,
            pages: BTreeMap::new(),
        };
        c.stitch();
        c
    }

    /// A catalog of recent files (`state`) over pages not yet loaded.
    pub(crate) fn paged(
        state: WalState,
        warnings: Vec<String>,
        pages: BTreeMap<PageId, PageRef>,
    ) -> WalCatalog {
        let mut c = WalCatalog::from_state(state, warnings);
        c.pages = pages;
        c
    }

    /// Add a loaded page's records (stitched when its index was written); a file also
    /// announced since keeps both announcements and, as the fold of the log does, the
    /// entry of the first.
    pub(crate) fn absorb_page(&mut self, id: &PageId, records: Vec<Record>) {
        self.pages.remove(id);
        for r in records {
            let Some(name) = r.entry.file_name() else {
                continue;
            };
            let key = sort_key(r.entry.db_id, &name);
            let keys = self.log_keys.entry(key.clone()).or_default();
            let mut merged = r.log_keys;
            for k in keys.drain(..) {
                if !merged.contains(&k) {
                    merged.push(k);
                }
            }
            *keys = merged;
            self.entries.insert(key, r.entry);
        }
        self.stitch();
    }

    /// Replace this catalog by `full` (a page could not be read), keeping the warnings.
    pub(crate) fn replace_with(&mut self, mut full: WalCatalog, warning: String) {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.push(warning);
        full.prepend_warnings(warnings);
        *self = full;
    }

    pub(crate) fn prepend_warnings(&mut self, warnings: Vec<String>) {
        self.warnings.splice(0..0, warnings);
    }

    /// Pages whose summaries are not loaded (none when read with
    /// [`Repository::wal_catalog`]).
    pub fn pages(&self) -> &BTreeMap<PageId, PageRef> {
        &self.pages
    }

    /// Journal entries that could not be read (their files' summaries are lost).
    pub fn damaged(&self) -> &[DamagedSummary] {
        &self.damaged
    }

    /// What reading the catalog worked around (a damaged snapshot, a rebuild).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The journal entries that announced `entry` (for `expire` and `verify`).
    pub fn log_keys(&self, entry: &WalEntry) -> &[String] {
        entry
            .file_name()
            .and_then(|n| self.log_keys.get(&sort_key(entry.db_id, &n)))
            .map_or(&[], Vec::as_slice)
    }

    pub fn entries(&self) -> impl Iterator<Item = &WalEntry> {
        self.entries.values()
    }

    /// Whether the catalog lists a file of this name (in any generation): loaded, inside a
    /// page not loaded, or with a summary that could not be read.
    pub fn lists(&self, name: &WalFileName) -> bool {
        let text = name.to_string();
        self.entries.values().any(|e| e.name == text)
            || self.damaged.iter().any(|d| d.name == text)
            || match name {
                WalFileName::Segment(s) => self
                    .pages
                    .iter()
                    .any(|(id, p)| id.timeline == s.tli.0 && p.holds(s.segno(p.seg_size).0)),
                _ => false,
            }
    }

    /// Files known, loaded or in pages.
    pub fn len(&self) -> usize {
        self.entries.len()
            + self
                .pages
                .values()
                .map(|p| p.segments as usize)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fold every record that spans two archived segments into the earlier summary, so a
    /// commit or restore point split across a segment boundary is not missed.
    fn stitch(&mut self) {
        let keys: Vec<String> = self.entries.keys().cloned().collect();
        for pair in keys.windows(2) {
            let next = match &self.entries[&pair[1]].detail {
                WalDetail::Segment { summary } => summary.clone(),
                _ => continue,
            };
            if let Some(WalEntry {
                detail: WalDetail::Segment { summary },
                ..
            }) = self.entries.get_mut(&pair[0])
            {
                // Not consecutive, or nothing spans: absorb_stitched leaves it unchanged.
                summary.absorb_stitched(&next);
            }
        }
    }

    /// Per generation and timeline: ranges, gaps, partials and commit times.
    pub fn timelines(&self) -> Vec<TimelineArchive> {
        let mut by_tl: BTreeMap<(DbId, u32), Vec<&WalEntry>> = BTreeMap::new();
        for e in self.entries.values() {
            if let Some(name) = e.file_name() {
                by_tl
                    .entry((e.db_id, name.timeline().0))
                    .or_default()
                    .push(e);
            }
        }
        let mut paged: BTreeMap<(DbId, u32), Vec<&PageRef>> = BTreeMap::new();
        for (id, p) in &self.pages {
            by_tl.entry((id.db_id, id.timeline)).or_default();
            paged.entry((id.db_id, id.timeline)).or_default().push(p);
        }
        by_tl
            .into_iter()
            .map(|((db_id, timeline), entries)| {
                let pages = paged.remove(&(db_id, timeline)).unwrap_or_default();
                timeline_archive(db_id, timeline, &entries, &pages)
            })
            .collect()
    }
}

fn timeline_archive(
    db_id: DbId,
    timeline: u32,
    entries: &[&WalEntry],
    pages: &[&PageRef],
) -> TimelineArchive {
    let mut tl = TimelineArchive {
        db_id,
        timeline,
        ranges: Vec::new(),
        gaps: Vec::new(),
        partials: Vec::new(),
        has_history: false,
        first_commit: None,
        last_commit: None,
        restore_points: Vec::new(),
    };
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut seg_size = None;
    let mut first_commit: Option<PgTimestamp> = None;
    let mut last_commit: Option<PgTimestamp> = None;
    let mut points: Vec<(Lsn, String)> = Vec::new();
    let mut commits = |first: Option<PgTimestamp>, last: Option<PgTimestamp>| {
        if let Some(t) = first {
            first_commit = Some(first_commit.map_or(t, |f| f.min(t)));
        }
        if let Some(t) = last {
            last_commit = Some(last_commit.map_or(t, |l| l.max(t)));
        }
    };
    for e in entries {
        match (e.file_name(), &e.detail) {
            (Some(WalFileName::Segment(s)), WalDetail::Segment { summary }) => {
                seg_size = Some(summary.seg_size());
                let n = s.segno(summary.seg_size()).0;
                runs.push((n, n));
                commits(summary.first_commit_time, summary.last_commit_time);
                points.extend(
                    summary
                        .restore_points
                        .iter()
                        .map(|r| (r.lsn, r.name.clone())),
                );
            }
            (Some(WalFileName::Partial(_)), _) => tl.partials.push(e.name.clone()),
            (Some(WalFileName::History(_)), _) => tl.has_history = true,
            _ => {}
        }
    }
    for p in pages {
        seg_size = Some(p.seg_size);
        runs.extend(p.runs.iter().copied());
        commits(p.first_commit, p.last_commit);
        points.extend(p.restore_points.iter().map(|r| (r.lsn, r.name.clone())));
    }
    points.sort();
    tl.restore_points = points.into_iter().map(|(_, n)| n).collect();
    tl.first_commit = first_commit.map(|t| t.to_string());
    tl.last_commit = last_commit.map(|t| t.to_string());
    let Some(seg_size) = seg_size else {
        return tl;
    };
    let name = |n: u64| SegmentName::from_segno(TimelineId(timeline), XLogSegNo(n), seg_size);
    let mut prev_end: Option<u64> = None;
    for (a, b) in merge_runs(runs) {
        if let Some(end) = prev_end {
            tl.gaps
                .push(SegmentRange::new(name(end + 1), name(a - 1), a - end - 1));
        }
        tl.ranges
            .push(SegmentRange::new(name(a), name(b), b - a + 1));
        prev_end = Some(b);
    }
    tl
}

/// Sorted, disjoint, non-adjacent runs covering the same segment numbers as `runs`.
pub(crate) fn merge_runs(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (a, b) in runs {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

impl Repository {
    /// Read the stanza's WAL catalog (snapshot + journal entries written since).
    /// Every summary is loaded: for `expire`, `verify` and anything else that goes through
    /// all archived files. Writing a snapshot also writes the [WAL index](crate::wal_index)
    /// derived from it.
    pub async fn wal_catalog(&self, stanza: &StanzaName) -> Result<WalCatalog, RepoError> {
        self.wal_catalog_with(stanza, None).await
    }

    /// [`Repository::wal_catalog`]; with `repair`, also write a snapshot and an index now,
    /// storing these page keys again even where an object stands under them (a reader
    /// found it missing or damaged).
    pub(crate) async fn wal_catalog_with(
        &self,
        stanza: &StanzaName,
        repair: Option<&BTreeSet<String>>,
    ) -> Result<WalCatalog, RepoError> {
        let folded = self
            .journal_fold_with::<WalState>(stanza, JournalName::Wal, repair.is_some())
            .await?;
        if let Some(meta) = &folded.written {
            // Best effort, as the snapshot: readers fall back to the snapshot without it.
            let none = BTreeSet::new();
            let rewrite = repair.unwrap_or(&none);
            let _ = self
                .write_wal_index(stanza, meta, &folded.state, rewrite)
                .await;
        }
        Ok(WalCatalog::from_state(folded.state, folded.warnings))
    }

    /// Record removals in the `wal` journal (before the files are deleted).
    pub async fn record_wal_event(
        &self,
        stanza: &StanzaName,
        event: &WalEvent,
    ) -> Result<(), RepoError> {
        let tag = match event {
            WalEvent::Archived { entry } => entry.name.clone(),
            WalEvent::Expired { timeline, .. } => format!("expired-{timeline:08X}"),
            WalEvent::Forgotten { .. } => "forgotten".to_string(),
        };
        self.journal_append(stanza, JournalName::Wal, &tag, event)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use cairn_pgformat::builder::WalBuilder;
    use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalSegmentSize, XLogSegNo};

    use super::*;

    async fn repo() -> (Repository, StanzaName) {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(
            &stanza,
            cairn_pgformat::builder::DEFAULT_SYSTEM_IDENTIFIER,
            15,
        )
        .await
        .unwrap();
        (repo, stanza)
    }

    async fn push_segment(repo: &Repository, stanza: &StanzaName, wal: &WalBuilder, i: usize) {
        crate::test_util::push_built_segment(repo, stanza, wal, i).await;
    }

    #[tokio::test]
    async fn ranges_gaps_and_a_commit_across_the_segment_boundary() {
        let (repo, stanza) = repo().await;
        let seg = WalSegmentSize::new(1 << 20).unwrap();
        let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg);
        let t = |s: i64| PgTimestamp(800_000_000_000_000 + s * 1_000_000);
        wal.append_commit(700, t(1));
        // The latest commit of all straddles the end of the first segment.
        let boundary = Lsn(XLogSegNo(2).start_lsn(seg).unwrap().0);
        wal.fill_to(Lsn(boundary.0 - 16));
        let spanning = wal.append_commit(701, t(100));
        assert!(spanning < boundary && wal.next_lsn() > boundary);
        for s in 2..6 {
            wal.append_commit(700 + s as u32, t(s));
            wal.append_switch();
        }
        for i in [0, 1, 2, 4] {
            push_segment(&repo, &stanza, &wal, i).await;
        }
        let cat = repo.wal_catalog(&stanza).await.unwrap();
        let tls = cat.timelines();
        assert_eq!(tls.len(), 1);
        let tl = &tls[0];
        assert_eq!(
            tl.ranges.iter().map(|r| r.segments).collect::<Vec<_>>(),
            vec![3, 1]
        );
        assert_eq!(tl.gaps.len(), 1);
        assert_eq!(tl.gaps[0].first, wal.segment_name(3).to_string());
        assert_eq!(tl.first_commit.as_deref(), Some(t(1).to_string().as_str()));
        assert_eq!(
            tl.last_commit.as_deref(),
            Some(t(100).to_string().as_str()),
            "the spanning commit was stitched"
        );
    }

    #[tokio::test]
    async fn snapshots_are_written_and_read_back_with_later_pushes() {
        let (repo, stanza) = repo().await;
        let push_history = |tli: u32| {
            let repo = repo.clone();
            let stanza = stanza.clone();
            async move {
                let text = format!(
                    "{}\t0/{:X}\tno recovery target specified\n",
                    tli - 1,
                    tli * 0x100_0000
                );
                let name = WalFileName::History(TimelineId(tli));
                let enc = repo
                    .encode_wal(&stanza, DbId(1), &name, text.clone().into())
                    .await
                    .unwrap();
                repo.push_wal(
                    &stanza,
                    DbId(1),
                    &name,
                    &enc,
                    WalDetail::History { text: text.clone() },
                )
                .await
                .unwrap();
            }
        };
        for tli in 2..(2 + 70) {
            push_history(tli).await;
        }
        assert_eq!(repo.wal_catalog(&stanza).await.unwrap().len(), 70);
        let snaps = repo
            .backend()
            .list(&crate::layout::journal_snap_prefix(&stanza, "wal"), None)
            .await
            .unwrap();
        assert_eq!(snaps.len(), 1, "a snapshot was written");
        push_history(200).await;
        let cat = repo.wal_catalog(&stanza).await.unwrap();
        assert_eq!(cat.len(), 71);
        assert!(cat.entries().any(|e| e.name == "000000C8.history"));
    }

    /// `wal_listed` (what archive-get asks when a file is not delivered) answers through
    /// the index: segments inside pages not loaded are listed, a segment past the archive's
    /// end, inside a gap, or on another timeline is not.
    #[tokio::test]
    async fn listed_through_pages_not_loaded() {
        let (repo, stanza) = repo().await;
        let repo = repo.with_wal_page_segments(2);
        let seg = WalSegmentSize::new(1 << 20).unwrap();
        let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg);
        for s in 0..10 {
            wal.append_commit(700 + s, PgTimestamp(800_000_000_000_000));
            wal.append_switch();
        }
        for i in (0..wal.segment_count()).filter(|i| *i != 4) {
            push_segment(&repo, &stanza, &wal, i).await;
        }
        repo.refresh_wal_index(&stanza).await.unwrap();
        let paged = repo.wal_catalog_paged(&stanza).await.unwrap();
        assert!(paged.pages().len() >= 4, "{}", paged.pages().len());
        let info = repo.stanza_info(&stanza).await.unwrap().unwrap();
        let name = |tli: u32, n: u64| {
            WalFileName::Segment(cairn_pgformat::SegmentName::from_segno(
                TimelineId(tli),
                XLogSegNo(n),
                seg,
            ))
        };
        let last = wal.segment_count() as u64;
        for (tli, n, listed) in [
            (1, 1, true),
            (1, 3, true),
            (1, 5, false),
            (1, last, true),
            (1, last + 1, false),
            (2, 3, false),
        ] {
            assert_eq!(paged.lists(&name(tli, n)), listed, "{tli} {n}");
            assert_eq!(repo.wal_listed(&info, &name(tli, n)).await.unwrap(), listed);
        }
    }
}
