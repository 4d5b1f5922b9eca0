//! The WAL index: what `info`, `check`, metrics and the planner read instead of every
//! segment's summary, so their cost stays flat as the archive grows to a million segments.
//!
//! ```text
//! stanza/S/journal/wal/index/0000000000000007            index 7, derived from snapshot 7
//! stanza/S/journal/wal/page/1-00000002-0000000000000003-<id>   summaries of 1,024 segments
//! ```
//!
//! Whoever writes a `wal` journal snapshot also writes the index derived from it: the
//! segments' summaries cut into pages of [`PAGE_SEGMENTS`] consecutive segments of one
//! timeline, and for each page what readers ask without its summaries (which segments it
//! holds, its first and last commit, its xid range, its restore points, where its WAL
//! ends). History, partial and backup history files stay in the index itself. A page is
//! named by a keyed hash of its content, so an unchanged page is written once and shared
//! by the indexes that follow.
//!
//! A reader of the index that folds 64 or more new entries on top of it writes the next
//! index itself, without a snapshot: it reads only the pages the new segments fall into
//! (and the page before each), so keeping the index current costs what was archived since,
//! not the archive.
//!
//! **A cache, never the truth.** The index carries its resume point, so a reader folds the
//! same journal entries on top of it as a reader of a snapshot would. Whenever the index
//! cannot answer exactly (none written yet, damaged, an `expire` since, a page that cannot
//! be read) the reader falls back to the whole catalog, with a warning for damage; a
//! missing or damaged page is written again at once, under a new index.

use std::collections::{BTreeMap, BTreeSet};

use cairn_pgformat::summary::RestorePointAt;
use cairn_pgformat::{Lsn, PgTimestamp, WalFileName, WalSegmentSize};
use serde::{Deserialize, Serialize};

use crate::catalog::{Record, WalCatalog, WalEvent, WalState};
use crate::error::RepoError;
use crate::journal::{Fold, JournalName, SNAPSHOT_EVERY, SNAPSHOTS_KEPT, SnapshotMeta};
use crate::layout::{self, DbId, Identity, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::Repository;
use crate::wal::{WalDetail, WalEntry};

/// Segments per page: 16 GiB of WAL at the default segment size.
pub const PAGE_SEGMENTS: u64 = 1024;

/// Which page: a generation, a timeline and a block of consecutive segment numbers
/// ([`PAGE_SEGMENTS`] of them; readers go by a page's runs, never by the block size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageId {
    pub db_id: DbId,
    pub timeline: u32,
    pub page: u64,
}

impl PageId {
    /// The page that holds segment `segno` of `timeline`, `per_page` segments a page.
    fn of(db_id: DbId, timeline: u32, segno: u64, per_page: u64) -> PageId {
        PageId {
            db_id,
            timeline,
            page: segno / per_page,
        }
    }

    /// The page that holds `entry`, if it is a segment with its summary (nothing else
    /// goes into pages).
    fn holding(entry: &WalEntry, per_page: u64) -> Option<PageId> {
        match (entry.file_name(), &entry.detail) {
            (Some(WalFileName::Segment(name)), WalDetail::Segment { summary }) => Some(Self::of(
                entry.db_id,
                name.tli.0,
                name.segno(summary.seg_size()).0,
                per_page,
            )),
            _ => None,
        }
    }
}

/// The segments of a stitched catalog as the records of the pages they go into.
fn cut_into_pages(stitched: &WalCatalog, per_page: u64) -> BTreeMap<PageId, Vec<Record>> {
    let mut paged: BTreeMap<PageId, Vec<Record>> = BTreeMap::new();
    for e in stitched.entries() {
        if let Some(id) = PageId::holding(e, per_page) {
            paged.entry(id).or_default().push(Record {
                entry: e.clone(),
                log_keys: stitched.log_keys(e).to_vec(),
            });
        }
    }
    paged
}

/// A page as the index describes it: enough to answer `info` and to tell whether a plan
/// needs the page's summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRef {
    /// The page object.
    pub key: String,
    /// Segments in the page.
    pub segments: u64,
    /// Runs of consecutive segment numbers, inclusive, in order.
    pub runs: Vec<(u64, u64)>,
    pub seg_size: WalSegmentSize,
    /// Earliest and latest commit (or abort) time of its segments.
    pub first_commit: Option<PgTimestamp>,
    pub last_commit: Option<PgTimestamp>,
    /// Smallest and largest xid that ended in its segments.
    pub min_xid: Option<u32>,
    pub max_xid: Option<u32>,
    pub restore_points: Vec<RestorePointAt>,
    /// The end of the valid WAL of its last segment.
    pub end_of_wal: Lsn,
    /// Bytes of its segments as PostgreSQL wrote them.
    pub bytes: u64,
    /// The segment archived last, and when (RFC 3339).
    pub newest_archived: Option<(String, String)>,
}

impl PageRef {
    /// Whether the page holds segment `segno`.
    pub fn holds(&self, segno: u64) -> bool {
        self.runs.iter().any(|&(a, b)| a <= segno && segno <= b)
    }

    /// The LSN range of each of its segments, in order, from its runs.
    pub fn segment_ranges(&self) -> impl Iterator<Item = (Lsn, Lsn)> + '_ {
        let seg = self.seg_size.as_u64();
        self.runs.iter().flat_map(move |&(a, b)| {
            (a..=b).map(move |n| {
                let start = n.saturating_mul(seg);
                (Lsn(start), Lsn(start.saturating_add(seg)))
            })
        })
    }

    /// The first LSN of its first segment.
    pub fn start_lsn(&self) -> Lsn {
        self.segment_ranges().next().map_or(Lsn(0), |(s, _)| s)
    }

    /// The first LSN after its last segment.
    pub fn end_lsn(&self) -> Lsn {
        let seg = self.seg_size.as_u64();
        self.runs.last().map_or(Lsn(0), |&(_, b)| {
            Lsn(b.saturating_add(1).saturating_mul(seg))
        })
    }

    /// Whether it holds every segment from `from` to `to`, inclusive.
    pub fn holds_all(&self, from: u64, to: u64) -> bool {
        self.runs.iter().any(|&(a, b)| a <= from && to <= b)
    }

    fn of(key: String, records: &[Record]) -> PageRef {
        let mut p = PageRef {
            key,
            segments: 0,
            runs: Vec::new(),
            seg_size: WalSegmentSize::DEFAULT,
            first_commit: None,
            last_commit: None,
            min_xid: None,
            max_xid: None,
            restore_points: Vec::new(),
            end_of_wal: Lsn(0),
            bytes: 0,
            newest_archived: None,
        };
        let mut segnos = Vec::new();
        for r in records {
            let (Some(WalFileName::Segment(name)), WalDetail::Segment { summary }) =
                (r.entry.file_name(), &r.entry.detail)
            else {
                continue;
            };
            p.seg_size = summary.seg_size();
            let n = name.segno(p.seg_size).0;
            segnos.push((n, n));
            p.segments += 1;
            p.first_commit = min_opt(p.first_commit, summary.first_commit_time);
            p.last_commit = max_opt(p.last_commit, summary.last_commit_time);
            p.min_xid = min_opt(p.min_xid, summary.min_xid);
            p.max_xid = max_opt(p.max_xid, summary.max_xid);
            p.restore_points
                .extend(summary.restore_points.iter().cloned());
            p.end_of_wal = p.end_of_wal.max(summary.end_of_wal);
            p.bytes += r.entry.size;
            let this = (r.entry.archived_at.clone(), r.entry.name.clone());
            if p.newest_archived.as_ref().is_none_or(|n| this > *n) {
                p.newest_archived = Some(this);
            }
        }
        p.runs = crate::catalog::merge_runs(segnos);
        p
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.max(b)
}

/// The index object.
#[derive(Serialize, Deserialize)]
struct WalIndex {
    meta: SnapshotMeta,
    /// The snapshot's state without the segments that went into pages.
    state: WalState,
    pages: Vec<(PageId, PageRef)>,
}

impl Repository {
    /// Read the stanza's WAL catalog through its index: the summaries of segments archived
    /// since the index and of the files it keeps itself, and the other segments as pages
    /// not loaded ([`Repository::load_wal_pages`] reads them). Falls back to
    /// [`Repository::wal_catalog`] where the index cannot answer exactly.
    pub async fn wal_catalog_paged(&self, stanza: &StanzaName) -> Result<WalCatalog, RepoError> {
        let mut warnings = Vec::new();
        let Some(index) = self.newest_wal_index(stanza, &mut warnings).await? else {
            return self.wal_catalog_noting(stanza, warnings).await;
        };
        let fetched = self
            .journal_fresh::<WalEvent>(
                stanza,
                JournalName::Wal,
                index.meta.resume_after.as_deref(),
                &index.meta.folded_after,
            )
            .await?;
        // Removals (expire) are applied by the whole catalog until the next index.
        let removal = fetched
            .iter()
            .any(|(_, got)| matches!(got, Ok(Some(e)) if !matches!(e, WalEvent::Archived { .. })));
        if removal {
            return self.wal_catalog_noting(stanza, warnings).await;
        }
        let count = fetched.len();
        let mut state = index.state.clone();
        let mut keys = BTreeSet::new();
        for (key, got) in fetched {
            match got {
                Ok(Some(event)) => state.apply(key.as_str(), event),
                Ok(None) => continue,
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => state.damaged(
                    key.as_str(),
                    crate::journal::log_key_tag(key.as_str()),
                    e.to_string(),
                ),
                Err(e) => return Err(e),
            }
            keys.insert(key.to_string());
        }
        if count >= SNAPSHOT_EVERY {
            // Best effort, as every index write: this answer does not depend on it.
            let _ = self.extend_wal_index(stanza, &index, &state, keys).await;
        }
        Ok(WalCatalog::paged(
            state,
            warnings,
            index.pages.into_iter().collect(),
        ))
    }

    /// Write the next index without a snapshot: `base` with the entries folded since
    /// (`state` is its state with them applied, `keys` their keys) moved into pages. Reads
    /// only the pages the new segments fall into and the page before each (whose last
    /// summary may take a record that spans into the new one), so its cost follows the
    /// entries since `base`, not the archive. A page that cannot be read leaves the index
    /// as it is: the reader that needs the page repairs it.
    async fn extend_wal_index(
        &self,
        stanza: &StanzaName,
        base: &WalIndex,
        state: &WalState,
        keys: BTreeSet<String>,
    ) -> Result<(), RepoError> {
        let per = self.wal_page_segments();
        let mut kept = state.clone();
        let mut fresh = Vec::new();
        let mut touched = BTreeSet::new();
        for (key, r) in &state.files {
            let Some(id) = PageId::holding(&r.entry, per) else {
                continue;
            };
            touched.insert(id);
            if let Some(before) = id.page.checked_sub(1) {
                touched.insert(PageId { page: before, ..id });
            }
            kept.files.remove(key);
            fresh.push((key.clone(), r.clone()));
        }
        let mut pages: BTreeMap<PageId, PageRef> = base.pages.iter().cloned().collect();
        // The pages' records first: a file announced again keeps its first entry, as the
        // fold of the log does, with both announcements.
        let mut work = WalState::default();
        for id in &touched {
            let Some(page) = pages.get(id) else { continue };
            let Some(records) = self.read_wal_page(stanza, &page.key).await.ok().flatten() else {
                return Ok(());
            };
            for r in records {
                if let Some(name) = r.entry.file_name() {
                    work.files
                        .insert(crate::catalog::sort_key(r.entry.db_id, &name), r);
                }
            }
        }
        for (key, r) in fresh {
            match work.files.get_mut(&key) {
                Some(had) => had.log_keys.extend(r.log_keys),
                None => {
                    work.files.insert(key, r);
                }
            }
        }
        let paged = cut_into_pages(&WalCatalog::from_state(work, Vec::new()), per);
        let had: BTreeSet<String> = pages.values().map(|p| p.key.clone()).collect();
        for (id, records) in paged {
            let key = self
                .store_wal_page(stanza, &id, &records, &had, &BTreeSet::new())
                .await?;
            pages.insert(id, PageRef::of(key, &records));
        }
        let seq = base.meta.seq + 1;
        let mut all = base.meta.folded_after.clone();
        all.extend(keys);
        let newest = all
            .iter()
            .next_back()
            .cloned()
            .max(base.meta.newest.clone());
        let index = WalIndex {
            meta: SnapshotMeta::after(stanza, JournalName::Wal, seq, newest, all),
            state: kept,
            pages: pages.into_iter().collect(),
        };
        self.put_json(
            &layout::wal_index(stanza, seq),
            ObjectKind::WalCatalog,
            &index,
        )
        .await?;
        self.drop_old_wal_indexes(stanza, seq).await
    }

    async fn wal_catalog_noting(
        &self,
        stanza: &StanzaName,
        warnings: Vec<String>,
    ) -> Result<WalCatalog, RepoError> {
        let mut full = self.wal_catalog(stanza).await?;
        full.prepend_warnings(warnings);
        Ok(full)
    }

    /// Read the summaries of `pages` into `catalog`. A page that cannot be read costs the
    /// index, not the answer: the whole catalog is read instead, with a warning.
    pub async fn load_wal_pages(
        &self,
        stanza: &StanzaName,
        catalog: &mut WalCatalog,
        pages: &[PageId],
    ) -> Result<(), RepoError> {
        for id in pages {
            let Some(page) = catalog.pages().get(id).cloned() else {
                continue;
            };
            let why = match self.read_wal_page(stanza, &page.key).await {
                Ok(Some(records)) => {
                    catalog.absorb_page(id, records);
                    continue;
                }
                Ok(None) => format!("WAL catalog page {} is missing", page.key),
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => e.to_string(),
                Err(e) => return Err(e),
            };
            // Repaired on the way: a new index whose page is stored again.
            let full = self
                .wal_catalog_with(stanza, Some(&BTreeSet::from([page.key.clone()])))
                .await?;
            catalog.replace_with(
                full,
                format!("{why}; read the whole WAL catalog instead and wrote the page again"),
            );
            return Ok(());
        }
        Ok(())
    }

    /// The files of one page, each with the journal entries that announced it, for
    /// `expire` removing a page it judged whole. A page that cannot be read is answered
    /// from the whole catalog (which stores the page again).
    pub async fn wal_page_files(
        &self,
        stanza: &StanzaName,
        id: &PageId,
        page: &PageRef,
    ) -> Result<Vec<(WalEntry, Vec<String>)>, RepoError> {
        match self.read_wal_page(stanza, &page.key).await {
            Ok(Some(records)) => {
                return Ok(records.into_iter().map(|r| (r.entry, r.log_keys)).collect());
            }
            Ok(None) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => {}
            Err(e) => return Err(e),
        }
        let full = self
            .wal_catalog_with(stanza, Some(&BTreeSet::from([page.key.clone()])))
            .await?;
        let seg = page.seg_size;
        Ok(full
            .entries()
            .filter(|e| match e.file_name() {
                Some(WalFileName::Segment(n)) => {
                    e.db_id == id.db_id && n.tli.0 == id.timeline && page.holds(n.segno(seg).0)
                }
                _ => false,
            })
            .map(|e| (e.clone(), full.log_keys(e).to_vec()))
            .collect())
    }

    /// Write a snapshot of the WAL catalog and its index now, so readers after a change
    /// (an `expire`) read through the index again.
    pub async fn refresh_wal_index(&self, stanza: &StanzaName) -> Result<(), RepoError> {
        self.wal_catalog_with(stanza, Some(&BTreeSet::new()))
            .await
            .map(|_| ())
    }

    async fn read_wal_page(
        &self,
        stanza: &StanzaName,
        key: &str,
    ) -> Result<Option<Vec<Record>>, RepoError> {
        let Some(key) = Self::wal_page_key(stanza, key) else {
            return Ok(None);
        };
        self.get_json(&key, ObjectKind::WalCatalog, "WAL catalog page")
            .await
    }

    /// The newest index that reads back, noting damaged ones passed over.
    async fn newest_wal_index(
        &self,
        stanza: &StanzaName,
        warnings: &mut Vec<String>,
    ) -> Result<Option<WalIndex>, RepoError> {
        let mut seqs = self.wal_index_seqs(stanza).await?;
        seqs.reverse();
        for seq in seqs {
            let key = layout::wal_index(stanza, seq);
            match self
                .get_json::<WalIndex>(&key, ObjectKind::WalCatalog, "WAL index")
                .await
            {
                Ok(Some(i)) if i.meta.seq == seq => return Ok(Some(i)),
                Ok(Some(_)) => warnings.push(format!("{key} holds another index; passed over")),
                Ok(None) => {}
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    warnings.push(format!("{e}; using an older WAL index"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Index sequence numbers, oldest first.
    async fn wal_index_seqs(&self, stanza: &StanzaName) -> Result<Vec<u64>, RepoError> {
        Ok(self
            .backend()
            .list_seqs(&layout::wal_index_prefix(stanza))
            .await?)
    }

    /// The key of a page an index names, if it is one of this stanza's pages (an index
    /// names nothing else; anything else is not read).
    fn wal_page_key(stanza: &StanzaName, key: &str) -> Option<ObjectKey> {
        key.starts_with(&layout::wal_page_prefix(stanza))
            .then(|| ObjectKey::new(key.to_string()).ok())
            .flatten()
    }

    /// Write the index derived from snapshot `meta.seq` of `state`, the pages it needs that
    /// the newest index does not have, and drop indexes (and their pages) older than the
    /// snapshots kept.
    pub(crate) async fn write_wal_index(
        &self,
        stanza: &StanzaName,
        meta: &SnapshotMeta,
        state: &WalState,
        rewrite: &BTreeSet<String>,
    ) -> Result<(), RepoError> {
        let previous = self.newest_wal_index(stanza, &mut Vec::new()).await?;
        let had: BTreeSet<String> = previous
            .iter()
            .flat_map(|i| i.pages.iter().map(|(_, p)| p.key.clone()))
            .collect();
        // Stitched, so a page's summaries hold the records that span into the next one.
        let stitched = WalCatalog::from_state(state.clone(), Vec::new());
        let paged = cut_into_pages(&stitched, self.wal_page_segments());
        let mut kept = state.clone();
        for r in paged.values().flatten() {
            if let Some(name) = r.entry.file_name() {
                kept.files
                    .remove(&crate::catalog::sort_key(r.entry.db_id, &name));
            }
        }
        let mut pages = Vec::with_capacity(paged.len());
        for (id, records) in paged {
            let key = self
                .store_wal_page(stanza, &id, &records, &had, rewrite)
                .await?;
            pages.push((id, PageRef::of(key, &records)));
        }
        // Indexes written between snapshots (`extend_wal_index`) count on from the
        // snapshot's number: this one comes after them.
        let seq = meta
            .seq
            .max(previous.as_ref().map_or(0, |i| i.meta.seq + 1));
        let index = WalIndex {
            meta: SnapshotMeta {
                seq,
                ..meta.clone()
            },
            state: kept,
            pages,
        };
        let written: BTreeSet<String> = index.pages.iter().map(|(_, p)| p.key.clone()).collect();
        self.put_json(
            &layout::wal_index(stanza, seq),
            ObjectKind::WalCatalog,
            &index,
        )
        .await?;
        if !rewrite.is_empty() {
            self.drop_broken_pages(stanza, seq, rewrite, &written)
                .await?;
        }
        self.drop_old_wal_indexes(stanza, seq).await
    }

    /// Store a page under the keyed hash of its content, unless an index in `had` already
    /// names it; a key in `rewrite` (found damaged) is stored again over what stands there.
    async fn store_wal_page(
        &self,
        stanza: &StanzaName,
        id: &PageId,
        records: &[Record],
        had: &BTreeSet<String>,
        rewrite: &BTreeSet<String>,
    ) -> Result<String, RepoError> {
        let json = serde_json::to_vec(records).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?;
        let content = self.keys().content_id_single(&json).to_string();
        let key = layout::wal_page(stanza, id.db_id, id.timeline, id.page, &content[..32]);
        if rewrite.contains(key.as_str()) {
            let encoded = self
                .encode_as(ObjectKind::WalCatalog, Identity::of(&key), json.into())
                .await?;
            self.backend()
                .put_overwrite(&key, encoded.bytes().clone())
                .await?;
        } else if !had.contains(key.as_str()) {
            self.put(&key, ObjectKind::WalCatalog, json.into()).await?;
        }
        Ok(key.to_string())
    }

    /// After a repair: drop the other indexes that name a `broken` page, and the broken
    /// pages the new index (`written`) does not use.
    async fn drop_broken_pages(
        &self,
        stanza: &StanzaName,
        newest: u64,
        broken: &BTreeSet<String>,
        written: &BTreeSet<String>,
    ) -> Result<(), RepoError> {
        for seq in self.wal_index_seqs(stanza).await? {
            if seq == newest {
                continue;
            }
            let names_broken = self
                .index_page_keys(stanza, seq)
                .await
                .is_some_and(|keys| keys.iter().any(|k| broken.contains(k)));
            if names_broken {
                self.backend()
                    .delete(&layout::wal_index(stanza, seq))
                    .await?;
            }
        }
        for key in broken.difference(written) {
            if let Some(k) = Self::wal_page_key(stanza, key) {
                self.backend().delete(&k).await?;
            }
        }
        Ok(())
    }

    /// Delete indexes older than the snapshots kept before `newest`, and their pages that
    /// no kept index uses. A kept index that cannot be read keeps every page.
    async fn drop_old_wal_indexes(
        &self,
        stanza: &StanzaName,
        newest: u64,
    ) -> Result<(), RepoError> {
        let seqs = self.wal_index_seqs(stanza).await?;
        let floor = newest.saturating_sub(SNAPSHOTS_KEPT);
        let (old, kept): (Vec<u64>, Vec<u64>) = seqs.into_iter().partition(|s| *s < floor);
        if old.is_empty() {
            return Ok(());
        }
        let mut in_use = BTreeSet::new();
        let mut all_read = true;
        for seq in kept {
            match self.index_page_keys(stanza, seq).await {
                Some(keys) => in_use.extend(keys),
                None => all_read = false,
            }
        }
        for seq in old {
            let pages = self.index_page_keys(stanza, seq).await;
            self.backend()
                .delete(&layout::wal_index(stanza, seq))
                .await?;
            if !all_read {
                continue;
            }
            for key in pages.into_iter().flatten() {
                if !in_use.contains(&key)
                    && let Some(k) = Self::wal_page_key(stanza, &key)
                {
                    self.backend().delete(&k).await?;
                }
            }
        }
        Ok(())
    }

    async fn index_page_keys(&self, stanza: &StanzaName, seq: u64) -> Option<Vec<String>> {
        let index = self
            .get_json::<WalIndex>(
                &layout::wal_index(stanza, seq),
                ObjectKind::WalCatalog,
                "WAL index",
            )
            .await
            .ok()??;
        Some(index.pages.into_iter().map(|(_, p)| p.key).collect())
    }
}

/// The WAL index read object by object, for `verify`: each index and each page the
/// indexes name, with its damage if any.
#[derive(Debug, Clone, Default)]
pub struct IndexCheck {
    pub objects: Vec<(ObjectKey, u64, Option<crate::check::Damage>)>,
}

impl Repository {
    /// Read every WAL index and every page they name, each decoded and parsed;
    /// `checked` is told the bytes of each object read.
    pub async fn check_wal_index(
        &self,
        stanza: &StanzaName,
        checked: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<IndexCheck, crate::error::BackendError> {
        use crate::check::Damage;
        let mut out = IndexCheck::default();
        let seqs = self
            .backend()
            .list_seqs(&layout::wal_index_prefix(stanza))
            .await?;
        let mut pages = BTreeSet::new();
        for seq in seqs {
            let key = layout::wal_index(stanza, seq);
            let c = self
                .check_object(&key, ObjectKind::WalCatalog, &Identity::of(&key))
                .await?;
            checked(c.bytes);
            let damage = match c.result {
                // Dropped by a writer between listing and reading: not damage.
                Err(Damage::Missing) => continue,
                Err(d) => Some(d),
                Ok(d) => match serde_json::from_slice::<WalIndex>(&d.plaintext) {
                    Err(e) => Some(Damage::Content(format!("not a WAL index: {e}"))),
                    Ok(i) if i.meta.seq != seq => Some(Damage::Content(format!(
                        "it says it is index {}",
                        i.meta.seq
                    ))),
                    Ok(i) => {
                        pages.extend(i.pages.into_iter().map(|(_, p)| p.key));
                        None
                    }
                },
            };
            out.objects.push((key, c.bytes, damage));
        }
        for page in pages {
            let Some(key) = Self::wal_page_key(stanza, &page) else {
                continue;
            };
            let c = self
                .check_object(&key, ObjectKind::WalCatalog, &Identity::of(&key))
                .await?;
            checked(c.bytes);
            let damage = match c.result {
                Err(d) => Some(d),
                Ok(d) => serde_json::from_slice::<Vec<Record>>(&d.plaintext)
                    .err()
                    .map(|e| Damage::Content(format!("not a WAL index page: {e}"))),
            };
            out.objects.push((key, c.bytes, damage));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use cairn_pgformat::builder::WalBuilder;
    use cairn_pgformat::{PgTimestamp, XLogSegNo};

    use super::*;

    /// 64 or more entries since the index: the reader writes the next index itself, from
    /// the pages the new segments touch, without a snapshot; read back, it is the whole
    /// catalog, a commit spanning the old and new pages stitched as a fold would.
    #[tokio::test]
    async fn a_reader_extends_the_index_without_a_snapshot() {
        let repo = Repository::in_memory().await.with_wal_page_segments(4);
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, 7, 15).await.unwrap();
        let seg = WalSegmentSize::new(1 << 20).unwrap();
        let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg);
        let t = |s: i64| PgTimestamp(800_000_000_000_000 + s * 1_000_000);
        for s in 0..10 {
            wal.append_commit(700 + s as u32, t(s));
            wal.append_switch();
        }
        // Segment 11, the last of page 2 (segments 8 to 11), ends inside a commit that
        // the first new segment, in page 3, completes.
        let boundary = Lsn(XLogSegNo(12).start_lsn(seg).unwrap().0);
        wal.fill_to(Lsn(boundary.0 - 16));
        wal.append_commit(799, t(500));
        for s in 0..70 {
            wal.append_commit(800 + s, t(1000 + s as i64));
            wal.append_switch();
        }
        let old = 11;
        for i in 0..old {
            crate::test_util::push_built_segment(&repo, &stanza, &wal, i).await;
        }
        repo.refresh_wal_index(&stanza).await.unwrap();
        let seqs = repo.wal_index_seqs(&stanza).await.unwrap();
        let snaps = || async {
            repo.backend()
                .list_seqs(&layout::journal_snap_prefix(&stanza, "wal"))
                .await
                .unwrap()
        };
        let snapshots = snaps().await;
        for i in old..wal.segment_count() {
            crate::test_util::push_built_segment(&repo, &stanza, &wal, i).await;
        }
        // A file announced again since the index keeps both announcements.
        crate::test_util::push_built_segment(&repo, &stanza, &wal, 2).await;

        let first = repo.wal_catalog_paged(&stanza).await.unwrap();
        let after = repo.wal_index_seqs(&stanza).await.unwrap();
        assert_eq!(after.last(), Some(&(seqs.last().unwrap() + 1)), "{after:?}");
        assert_eq!(snaps().await, snapshots, "no snapshot written");

        let mut second = repo.wal_catalog_paged(&stanza).await.unwrap();
        assert!(
            second.entries().next().is_none(),
            "every segment is in a page"
        );
        // The old page's figures take the spanning commit too.
        let page2 = second
            .pages()
            .iter()
            .find(|(id, _)| id.page == 2)
            .unwrap()
            .1;
        assert_eq!(page2.last_commit, Some(t(500)));
        let ids: Vec<PageId> = second.pages().keys().copied().collect();
        repo.load_wal_pages(&stanza, &mut second, &ids)
            .await
            .unwrap();
        assert!(second.pages().is_empty());
        let whole = repo.wal_catalog(&stanza).await.unwrap();
        let mut firsts = first;
        let ids: Vec<PageId> = firsts.pages().keys().copied().collect();
        repo.load_wal_pages(&stanza, &mut firsts, &ids)
            .await
            .unwrap();
        for cat in [&second, &firsts] {
            assert_eq!(cat.len(), whole.len());
            for (a, b) in cat.entries().zip(whole.entries()) {
                assert_eq!(a, b, "{}", a.name);
                assert_eq!(cat.log_keys(a), whole.log_keys(b), "{}", a.name);
            }
        }
        let tenth = whole.entries().nth(old - 1).unwrap();
        let WalDetail::Segment { summary } = &tenth.detail else {
            panic!("a segment")
        };
        assert_eq!(summary.last_commit_time, Some(t(500)), "stitched");
        assert_eq!(whole.log_keys(whole.entries().nth(2).unwrap()).len(), 2);
    }
}
