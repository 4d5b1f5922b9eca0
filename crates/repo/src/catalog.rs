//! The WAL catalog: every archived file's summary, read from a compacted snapshot plus the
//! summaries written since, so `info` and the planner never list the whole archive.
//!
//! A snapshot records `resume_after`, a key some way before its newest entry; readers list
//! only summaries after it. The margin covers pushes that land out of order (async
//! archiving runs several at once). A reader that finds many new summaries writes the
//! next snapshot (create-if-absent, so racing readers are harmless).

use std::collections::BTreeMap;

use cairn_pgformat::{SegmentName, WalFileName};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::layout::{self, DbId, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::Repository;
use crate::wal::{WalDetail, WalEntry};

/// Summaries listed before a snapshot's newest entry on every read (out-of-order margin).
const RESUME_MARGIN: usize = 256;
/// New summaries that make a reader write a new snapshot.
const SNAPSHOT_EVERY: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    seq: u64,
    resume_after: Option<String>,
    entries: Vec<(String, WalEntry)>,
}

/// All archived WAL of a stanza, by summary key (which sorts by generation, timeline, name).
#[derive(Debug, Clone, Default)]
pub struct WalCatalog {
    entries: BTreeMap<String, WalEntry>,
}

/// A run of segments with none missing in between.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRange {
    pub first: String,
    pub last: String,
    pub segments: u64,
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

impl WalCatalog {
    /// A catalog of these entries (stitched), for planners and tests.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, WalEntry)>) -> WalCatalog {
        let mut c = WalCatalog {
            entries: entries.into_iter().collect(),
        };
        c.stitch();
        c
    }

    pub fn entries(&self) -> impl Iterator<Item = &WalEntry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        by_tl
            .into_iter()
            .map(|((db_id, timeline), entries)| timeline_archive(db_id, timeline, &entries))
            .collect()
    }
}

fn timeline_archive(db_id: DbId, timeline: u32, entries: &[&WalEntry]) -> TimelineArchive {
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
    let mut segs: Vec<(u64, SegmentName, &cairn_pgformat::summary::SegmentSummary)> = Vec::new();
    for e in entries {
        match (e.file_name(), &e.detail) {
            (Some(WalFileName::Segment(s)), WalDetail::Segment { summary }) => {
                let seg_size = summary.seg_size();
                segs.push((s.segno(seg_size).0, s, summary));
            }
            (Some(WalFileName::Partial(_)), _) => tl.partials.push(e.name.clone()),
            (Some(WalFileName::History(_)), _) => tl.has_history = true,
            _ => {}
        }
    }
    segs.sort_by_key(|(n, _, _)| *n);
    let mut first_commit = None;
    let mut last_commit = None;
    for (_, _, s) in &segs {
        if let Some(t) = s.first_commit_time {
            first_commit = Some(first_commit.map_or(t, |f: cairn_pgformat::PgTimestamp| f.min(t)));
        }
        if let Some(t) = s.last_commit_time {
            last_commit = Some(last_commit.map_or(t, |l: cairn_pgformat::PgTimestamp| l.max(t)));
        }
        tl.restore_points
            .extend(s.restore_points.iter().map(|r| r.name.clone()));
    }
    tl.first_commit = first_commit.map(|t| t.to_string());
    tl.last_commit = last_commit.map(|t| t.to_string());
    let mut i = 0;
    while i < segs.len() {
        let start = i;
        while i + 1 < segs.len() && segs[i + 1].0 == segs[i].0 + 1 {
            i += 1;
        }
        tl.ranges.push(SegmentRange {
            first: segs[start].1.to_string(),
            last: segs[i].1.to_string(),
            segments: segs[i].0 - segs[start].0 + 1,
        });
        if i + 1 < segs.len() {
            let seg_size = segs[i].2.seg_size();
            let tli = segs[i].1.tli;
            let from = cairn_pgformat::XLogSegNo(segs[i].0 + 1);
            let to = cairn_pgformat::XLogSegNo(segs[i + 1].0 - 1);
            tl.gaps.push(SegmentRange {
                first: SegmentName::from_segno(tli, from, seg_size).to_string(),
                last: SegmentName::from_segno(tli, to, seg_size).to_string(),
                segments: to.0 - from.0 + 1,
            });
        }
        i += 1;
    }
    tl
}

impl Repository {
    /// Read the stanza's WAL catalog (snapshot + summaries written since).
    pub async fn wal_catalog(&self, stanza: &StanzaName) -> Result<WalCatalog, RepoError> {
        let snaps = self
            .backend()
            .list(&layout::wal_catalog_prefix(stanza), None)
            .await?;
        let newest = snaps.iter().filter_map(|l| layout::parse_seq(&l.key)).max();
        let (mut entries, resume_after, seq) = match newest {
            Some(seq) => {
                let key = layout::wal_catalog(stanza, seq);
                match self
                    .get_json::<Snapshot>(&key, ObjectKind::WalCatalog, "WAL catalog")
                    .await?
                {
                    Some(s) => (
                        s.entries.into_iter().collect::<BTreeMap<_, _>>(),
                        s.resume_after,
                        s.seq,
                    ),
                    None => (BTreeMap::new(), None, seq),
                }
            }
            None => (BTreeMap::new(), None, 0),
        };
        let listed = self
            .backend()
            .list(&layout::wal_summary_prefix(stanza), resume_after.as_deref())
            .await?;
        let fresh: Vec<ObjectKey> = listed
            .into_iter()
            .filter(|l| !entries.contains_key(&l.key))
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect();
        let fetched: Vec<(String, Option<WalEntry>)> = futures::stream::iter(fresh)
            .map(|key| async move {
                let e = self
                    .get_json::<WalEntry>(&key, ObjectKind::WalSummary, "WAL summary")
                    .await?;
                Ok::<_, RepoError>((key.to_string(), e))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let added = fetched.len();
        for (k, e) in fetched {
            if let Some(e) = e {
                entries.insert(k, e);
            }
        }
        let mut catalog = WalCatalog { entries };
        catalog.stitch();
        if added >= SNAPSHOT_EVERY {
            // Best effort: a reader without write access still gets the catalog.
            let _ = self.write_snapshot(stanza, seq + 1, &catalog).await;
        }
        Ok(catalog)
    }

    async fn write_snapshot(
        &self,
        stanza: &StanzaName,
        seq: u64,
        catalog: &WalCatalog,
    ) -> Result<(), RepoError> {
        let keys: Vec<&String> = catalog.entries.keys().collect();
        let resume_after = keys
            .len()
            .checked_sub(RESUME_MARGIN + 1)
            .map(|i| keys[i].clone());
        let snap = Snapshot {
            seq,
            resume_after,
            entries: catalog
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        self.put_json(
            &layout::wal_catalog(stanza, seq),
            ObjectKind::WalCatalog,
            &snap,
        )
        .await?;
        // Keep the two previous snapshots for readers that listed before this one.
        if let Some(old) = seq.checked_sub(3).filter(|s| *s > 0) {
            let _ = self
                .backend()
                .delete(&layout::wal_catalog(stanza, old))
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    use cairn_pgformat::builder::WalBuilder;
    use cairn_pgformat::{
        Lsn, PgTimestamp, TimelineId, WalSegmentSize, XLogSegNo, summarize_segment,
    };

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
        let bytes = wal.segment(i);
        let summary = summarize_segment(&bytes).unwrap();
        let name = WalFileName::Segment(wal.segment_name(i));
        let enc = repo
            .encode(ObjectKind::WalFile, bytes.into())
            .await
            .unwrap();
        repo.push_wal(
            stanza,
            DbId(1),
            &name,
            &enc,
            WalDetail::Segment {
                summary: Box::new(summary),
            },
        )
        .await
        .unwrap();
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
                    .encode(ObjectKind::WalFile, text.clone().into())
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
        for tli in 2..(2 + SNAPSHOT_EVERY as u32) {
            push_history(tli).await;
        }
        assert_eq!(
            repo.wal_catalog(&stanza).await.unwrap().len(),
            SNAPSHOT_EVERY
        );
        let snaps = repo
            .backend()
            .list(&layout::wal_catalog_prefix(&stanza), None)
            .await
            .unwrap();
        assert_eq!(snaps.len(), 1, "a snapshot was written");
        push_history(200).await;
        let cat = repo.wal_catalog(&stanza).await.unwrap();
        assert_eq!(cat.len(), SNAPSHOT_EVERY + 1);
        assert!(cat.entries().any(|e| e.name == "000000C8.history"));
    }
}
