//! The chunk index snapshot (decision 024): the stanza's pack indexes compacted into a few
//! objects, so a backup's start reads those instead of every pack index, and keeps what
//! it read in a local sorted file, searched by positioned reads, instead of in memory.
//!
//! ```text
//! stanza/S/chunk-index/head/0000000000000007   a generation: the packs it covers, its parts (JSON)
//! stanza/S/chunk-index/part/ID/000             entries, sorted by chunk id (52 bytes each)
//! ```
//!
//! A generation is a *base* (every pack it covers) or a *delta* on a base (packs written
//! since): a backup that finds [`SNAPSHOT_AFTER`] pack indexes uncovered writes a delta,
//! and folds base and delta into a new base once the delta holds more than an eighth of the
//! base, so each entry is rewritten a bounded number of times.
//!
//! **A snapshot never resurrects a chunk.** An entry counts only while its pack's index is
//! listed (expire deletes the index before the pack), so the start still lists the pack
//! indexes once (names only), and reads the few not covered. A snapshot that cannot be
//! read costs only itself: the start reads the pack indexes, with a warning.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::backend::PutOutcome;
use crate::error::RepoError;
use crate::keys::ContentId;
use crate::layout::{self, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::pack::{ChunkIndex, PackId, PackIndex};
use crate::repository::Repository;

/// Bytes of one entry: id (32), pack (u32), offset (u64), len (u32), size (u32), little-endian.
const ENTRY: usize = 52;
/// Entries per block of the local table: one positioned read per lookup.
const BLOCK: usize = 64;
/// Uncovered pack indexes that make a backup write the next generation.
pub const SNAPSHOT_AFTER: usize = 64;
/// A delta holding more than base / this many entries is folded into a new base.
const DELTA_RATIO: u64 = 8;
/// Target entries per part (3.4 MB): parts are read and written one at a time.
const PART_ENTRIES: u64 = 65_536;
const MAX_PARTS: u32 = 256;

/// A generation's head.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    seq: u64,
    /// Names the parts' directory.
    id: String,
    /// The base this delta is on (`None`: a base).
    base: Option<u64>,
    /// The packs covered; entries name them by position.
    packs: Vec<PackId>,
    parts: u32,
    entries: u64,
}

/// One entry: the raw 52 bytes.
type Raw = [u8; ENTRY];

fn raw(id: &ContentId, pack: u32, offset: u64, len: u32, size: u32) -> Raw {
    let mut r = [0u8; ENTRY];
    r[..32].copy_from_slice(&id.0);
    r[32..36].copy_from_slice(&pack.to_le_bytes());
    r[36..44].copy_from_slice(&offset.to_le_bytes());
    r[44..48].copy_from_slice(&len.to_le_bytes());
    r[48..52].copy_from_slice(&size.to_le_bytes());
    r
}

fn pack_of(r: &[u8]) -> u32 {
    u32::from_le_bytes(r[32..36].try_into().expect("4 bytes"))
}

fn set_pack(r: &mut [u8], pack: u32) {
    r[32..36].copy_from_slice(&pack.to_le_bytes());
}

/// (pack, offset, len, size) of an entry.
fn fields(r: &[u8]) -> (u32, u64, u32, u32) {
    (
        pack_of(r),
        u64::from_le_bytes(r[36..44].try_into().expect("8 bytes")),
        u32::from_le_bytes(r[44..48].try_into().expect("4 bytes")),
        u32::from_le_bytes(r[48..52].try_into().expect("4 bytes")),
    )
}

fn part_of(id: &[u8], parts: u32) -> u32 {
    u32::from(id[0]) * parts / 256
}

fn parts_for(entries: u64) -> u32 {
    let want = entries.div_ceil(PART_ENTRIES).max(1);
    (want.next_power_of_two() as u32).min(MAX_PARTS)
}

/// Entries sorted by id in an unlinked local file, with the first 8 bytes of every
/// [`BLOCK`]-th id in memory: about 1/400 of the entries' size stays in RAM.
pub(crate) struct SortedTable {
    file: File,
    len: u64,
    fences: Vec<[u8; 8]>,
}

impl std::fmt::Debug for SortedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SortedTable({} entries)", self.len)
    }
}

struct TableBuilder {
    out: BufWriter<File>,
    len: u64,
    fences: Vec<[u8; 8]>,
    last: Option<[u8; 32]>,
}

impl TableBuilder {
    fn new() -> std::io::Result<TableBuilder> {
        let path = std::env::temp_dir().join(format!(
            "cairn-chunk-index-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Unlinked at once: the file lives as long as the table, whatever happens.
        std::fs::remove_file(&path)?;
        Ok(TableBuilder {
            out: BufWriter::with_capacity(1 << 20, file),
            len: 0,
            fences: Vec::new(),
            last: None,
        })
    }

    /// Append an entry; ids must come in ascending order.
    fn push(&mut self, r: &Raw) -> std::io::Result<()> {
        let id: [u8; 32] = r[..32].try_into().expect("32 bytes");
        if self.last.is_some_and(|l| l >= id) {
            return Err(std::io::Error::other("entries out of order"));
        }
        if self.len.is_multiple_of(BLOCK as u64) {
            self.fences.push(id[..8].try_into().expect("8 bytes"));
        }
        self.out.write_all(r)?;
        self.len += 1;
        self.last = Some(id);
        Ok(())
    }

    fn finish(self) -> std::io::Result<SortedTable> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(SortedTable {
            file,
            len: self.len,
            fences: self.fences,
        })
    }
}

impl SortedTable {
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// (pack, offset, len, size) of `id`. A read error reads as absent: the chunk is then
    /// stored again, which is always safe.
    pub(crate) fn find(&self, id: &ContentId) -> Option<(u32, u64, u32, u32)> {
        let key: [u8; 8] = id.0[..8].try_into().expect("8 bytes");
        let lo = self.fences.partition_point(|f| f < &key);
        let hi = self.fences.partition_point(|f| f <= &key);
        let mut buf = [0u8; BLOCK * ENTRY];
        for block in lo.saturating_sub(1)..hi.max(lo.saturating_sub(1) + 1) {
            let start = (block * BLOCK) as u64;
            let n = (self.len.saturating_sub(start)).min(BLOCK as u64) as usize;
            if n == 0 {
                continue;
            }
            let buf = &mut buf[..n * ENTRY];
            self.file.read_exact_at(buf, start * ENTRY as u64).ok()?;
            let found = buf
                .chunks_exact(ENTRY)
                .collect::<Vec<_>>()
                .binary_search_by(|e| e[..32].cmp(&id.0[..]));
            if let Ok(i) = found {
                return Some(fields(&buf[i * ENTRY..(i + 1) * ENTRY]));
            }
        }
        None
    }
}

/// The current generation: a base, and the delta on it if any.
#[derive(Debug, Default)]
struct Current {
    base: Option<Head>,
    delta: Option<Head>,
    /// Highest generation listed (readable or not).
    newest_seq: u64,
    /// Every listed generation.
    seqs: Vec<u64>,
}

impl Repository {
    async fn chunk_snapshot_head(
        &self,
        stanza: &StanzaName,
        seq: u64,
    ) -> Result<Option<Head>, RepoError> {
        let key = layout::chunk_snapshot_head(stanza, seq);
        match self
            .get_json::<Head>(
                &key,
                ObjectKind::ChunkIndexSnapshot,
                "chunk index snapshot head",
            )
            .await?
        {
            Some(h) if h.seq == seq => Ok(Some(h)),
            Some(_) => Err(RepoError::Malformed {
                what: "chunk index snapshot head",
                key,
                message: "holds another generation".into(),
            }),
            None => Ok(None),
        }
    }

    /// The newest readable generation (and its base); damaged heads are passed over with a
    /// warning.
    async fn chunk_snapshot_current(
        &self,
        stanza: &StanzaName,
        warnings: &mut Vec<String>,
    ) -> Result<Current, RepoError> {
        // Newest first.
        let seqs: Vec<u64> = self
            .backend()
            .list_seqs(&layout::chunk_snapshot_head_prefix(stanza))
            .await?
            .into_iter()
            .rev()
            .collect();
        let mut cur = Current {
            newest_seq: seqs.first().copied().unwrap_or(0),
            seqs: seqs.clone(),
            ..Default::default()
        };
        for &seq in &seqs {
            let head = match self.chunk_snapshot_head(stanza, seq).await {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    warnings.push(format!("{e}; using an older chunk index snapshot"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match head.base {
                None => {
                    cur.base = Some(head);
                    return Ok(cur);
                }
                Some(b) => match self.chunk_snapshot_head(stanza, b).await {
                    Ok(Some(base)) if base.base.is_none() => {
                        cur.base = Some(base);
                        cur.delta = Some(head);
                        return Ok(cur);
                    }
                    Ok(_) => continue,
                    Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                        warnings.push(format!("{e}; using an older chunk index snapshot"));
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(cur)
    }

    /// Read a generation's parts in order, each entry given with its pack.
    async fn for_each_snapshot_entry(
        &self,
        stanza: &StanzaName,
        head: &Head,
        mut f: impl FnMut(&mut Raw, usize) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let mut parts = futures::stream::iter(0..head.parts)
            .map(|p| {
                let key = layout::chunk_snapshot_part(stanza, &head.id, p);
                async move {
                    let got = self.get(&key, ObjectKind::ChunkIndexSnapshot).await?;
                    got.map(|b| (key.clone(), b)).ok_or(RepoError::Malformed {
                        what: "chunk index snapshot",
                        key,
                        message: "a part is missing".into(),
                    })
                }
            })
            .buffered(4);
        while let Some((key, bytes)) = parts.try_next().await? {
            let bad = |message: &str| RepoError::Malformed {
                what: "chunk index snapshot",
                key: key.clone(),
                message: message.into(),
            };
            if !bytes.len().is_multiple_of(ENTRY) {
                return Err(bad("not a whole number of entries"));
            }
            for e in bytes.chunks_exact(ENTRY) {
                let mut r: Raw = e.try_into().expect("ENTRY bytes");
                let pack = pack_of(&r) as usize;
                if pack >= head.packs.len() {
                    return Err(bad("an entry names no pack"));
                }
                f(&mut r, pack)?;
            }
        }
        Ok(())
    }

    /// Load the current generation into `index` as local tables; returns the packs it
    /// covers that are still listed. A snapshot that cannot be read is dropped with a warning.
    pub(crate) async fn load_chunk_snapshot(
        &self,
        stanza: &StanzaName,
        listed: &HashSet<PackId>,
        index: &mut ChunkIndex,
    ) -> Result<HashSet<PackId>, RepoError> {
        let cur = self
            .chunk_snapshot_current(stanza, &mut index.warnings)
            .await?;
        let mut covered = HashSet::new();
        let mut tables = Vec::new();
        // The delta first: it is newer, so its location of a chunk wins.
        for head in [&cur.delta, &cur.base].into_iter().flatten() {
            let mut builder = TableBuilder::new().map_err(|e| local_error(&e))?;
            // The head's pack positions in the index, once per pack, not per entry.
            let positions: Vec<u32> = head
                .packs
                .iter()
                .map(|p| {
                    let pos = index.pack_position(p);
                    if !listed.contains(p) {
                        index.exclude(pos);
                    }
                    pos
                })
                .collect();
            let mut counts = vec![0u64; positions.len()];
            let loaded = self
                .for_each_snapshot_entry(stanza, head, |r, pack| {
                    set_pack(r, positions[pack]);
                    counts[pack] += 1;
                    builder.push(r).map_err(|e| local_error(&e))
                })
                .await;
            for (pos, n) in positions.iter().zip(counts) {
                index.count_table_entries(*pos, n);
            }
            match loaded {
                Ok(()) => tables.push(builder.finish().map_err(|e| local_error(&e))?),
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    index.warnings.push(format!(
                        "{e}; the chunk index snapshot was passed over and every pack index read"
                    ));
                    return Ok(HashSet::new());
                }
                Err(e) => return Err(e),
            }
            covered.extend(head.packs.iter().filter(|p| listed.contains(*p)).cloned());
        }
        for t in tables {
            index.add_table(Arc::new(t));
        }
        Ok(covered)
    }

    /// Bring the chunk index snapshot up to date when at least [`SNAPSHOT_AFTER`] pack
    /// indexes are not in it: a backup calls this after its manifest. Returns the generation
    /// written, if any.
    pub async fn update_chunk_snapshot(
        &self,
        stanza: &StanzaName,
    ) -> Result<Option<u64>, RepoError> {
        let prefix = layout::pack_index_prefix(stanza);
        let listed: HashSet<PackId> = self
            .backend()
            .list(&prefix, None)
            .await?
            .into_iter()
            .filter_map(|l| PackId::try_from(l.key.strip_prefix(&prefix)?.to_string()).ok())
            .collect();
        let mut warnings = Vec::new();
        let cur = self.chunk_snapshot_current(stanza, &mut warnings).await?;
        let covered: HashSet<&PackId> = [&cur.base, &cur.delta]
            .into_iter()
            .flatten()
            .flat_map(|h| &h.packs)
            .collect();
        let uncovered: Vec<PackId> = listed
            .iter()
            .filter(|p| !covered.contains(p))
            .cloned()
            .collect();
        if uncovered.len() < SNAPSHOT_AFTER {
            return Ok(None);
        }
        let read: Vec<Option<PackIndex>> = futures::stream::iter(uncovered)
            .map(|p| async move {
                let key = layout::pack_index(stanza, p.as_str());
                match self
                    .get_json::<PackIndex>(&key, ObjectKind::PackIndex, "pack index")
                    .await
                {
                    // A damaged index stays uncovered: the start reads (and warns about) it.
                    Ok(Some(pi)) if pi.pack == p => Ok(Some(pi)),
                    Ok(_) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let fresh: Vec<PackIndex> = read.into_iter().flatten().collect();
        let fresh_entries: u64 = fresh.iter().map(|p| p.chunks.len() as u64).sum();
        let base_entries = cur.base.as_ref().map_or(0, |b| b.entries);
        let delta_entries = cur.delta.as_ref().map_or(0, |d| d.entries);
        let new_base =
            cur.base.is_none() || (delta_entries + fresh_entries) * DELTA_RATIO > base_entries;

        // Entries of the new generation, newest first so deduplication keeps the newest.
        let mut packs: Vec<PackId> = Vec::new();
        let mut positions: HashMap<PackId, u32> = HashMap::new();
        let mut position = |p: &PackId| -> u32 {
            *positions.entry(p.clone()).or_insert_with(|| {
                packs.push(p.clone());
                packs.len() as u32 - 1
            })
        };
        let mut entries: Vec<Raw> = Vec::new();
        for pi in &fresh {
            let pos = position(&pi.pack);
            for (id, offset, len, size) in &pi.chunks {
                entries.push(raw(id, pos, *offset, *len, *size));
            }
        }
        let inputs: Vec<&Head> = if new_base {
            [&cur.delta, &cur.base].into_iter().flatten().collect()
        } else {
            cur.delta.iter().collect()
        };
        for head in inputs {
            let keep: Vec<Option<u32>> = head
                .packs
                .iter()
                .map(|p| listed.contains(p).then(|| position(p)))
                .collect();
            self.for_each_snapshot_entry(stanza, head, |r, pack| {
                if let Some(pos) = keep[pack] {
                    set_pack(r, pos);
                    entries.push(*r);
                }
                Ok(())
            })
            .await?;
        }
        // Stable: of equal ids the first (newest) stays.
        entries.sort_by(|a, b| a[..32].cmp(&b[..32]));
        entries.dedup_by(|a, b| a[..32] == b[..32]);
        // Packs no entry names any more are still covered (an empty pack index).
        for pi in &fresh {
            position(&pi.pack);
        }
        let head = Head {
            seq: cur.newest_seq + 1,
            id: hex::encode(rand::random::<[u8; 8]>()),
            base: if new_base {
                None
            } else {
                cur.base.as_ref().map(|b| b.seq)
            },
            packs,
            parts: parts_for(entries.len() as u64),
            entries: entries.len() as u64,
        };
        self.write_chunk_snapshot(stanza, &head, &entries).await?;
        let head_key = layout::chunk_snapshot_head(stanza, head.seq);
        if self
            .put_json(&head_key, ObjectKind::ChunkIndexSnapshot, &head)
            .await?
            == PutOutcome::Exists
        {
            // Another backup wrote this generation first: ours is not needed.
            self.delete_snapshot_parts(stanza, &head.id).await;
            return Ok(None);
        }
        self.prune_chunk_snapshots(stanza, &cur, &head).await;
        Ok(Some(head.seq))
    }

    async fn write_chunk_snapshot(
        &self,
        stanza: &StanzaName,
        head: &Head,
        entries: &[Raw],
    ) -> Result<(), RepoError> {
        let mut start = 0;
        for p in 0..head.parts {
            let end =
                start + entries[start..].partition_point(|e| part_of(&e[..32], head.parts) <= p);
            let mut body = Vec::with_capacity((end - start) * ENTRY);
            for e in &entries[start..end] {
                body.extend_from_slice(e);
            }
            let key = layout::chunk_snapshot_part(stanza, &head.id, p);
            self.put(&key, ObjectKind::ChunkIndexSnapshot, Bytes::from(body))
                .await?;
            start = end;
        }
        Ok(())
    }

    async fn delete_snapshot_parts(&self, stanza: &StanzaName, id: &str) {
        let prefix = layout::chunk_snapshot_part_prefix(stanza, id);
        if let Ok(listed) = self.backend().list(&prefix, None).await {
            for l in listed {
                if let Ok(k) = ObjectKey::new(l.key) {
                    let _ = self.backend().delete(&k).await;
                }
            }
        }
    }

    /// Keep the new generation, the one it replaces (a fallback) and their bases; delete
    /// older ones, head first so no reader finds a head without its parts. Best effort.
    async fn prune_chunk_snapshots(&self, stanza: &StanzaName, cur: &Current, new: &Head) {
        let mut keep: BTreeSet<u64> = BTreeSet::from([new.seq]);
        keep.extend(new.base);
        for h in [&cur.base, &cur.delta].into_iter().flatten() {
            keep.insert(h.seq);
        }
        let oldest_kept = keep.iter().next().copied().unwrap_or(0);
        for &seq in cur
            .seqs
            .iter()
            .filter(|s| !keep.contains(s) && **s < oldest_kept.max(new.seq))
        {
            let Ok(Some(h)) = self.chunk_snapshot_head(stanza, seq).await else {
                continue;
            };
            if self
                .backend()
                .delete(&layout::chunk_snapshot_head(stanza, seq))
                .await
                .is_ok()
            {
                self.delete_snapshot_parts(stanza, &h.id).await;
            }
        }
    }
}

fn local_error(e: &std::io::Error) -> RepoError {
    RepoError::Encode {
        message: format!(
            "the local chunk index file in {}: {e}",
            std::env::temp_dir().display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{ChunkLocation, PackWriter};

    /// Store `packs` packs of one chunk each; returns each chunk's id and location.
    async fn store(
        repo: &Repository,
        stanza: &StanzaName,
        packs: usize,
    ) -> Vec<(ContentId, ChunkLocation)> {
        let mut w = PackWriter::with_target(repo.clone(), stanza.clone(), 1);
        let mut out = Vec::new();
        for _ in 0..packs {
            let enc = repo
                .encode_chunk(stanza, &rand::random::<[u8; 32]>())
                .unwrap();
            let loc = w.add(&enc).await.unwrap();
            out.push((enc.content_id, loc));
        }
        w.flush().await.unwrap();
        out
    }

    fn heads(cur: &Current) -> (Option<u64>, Option<u64>) {
        (
            cur.base.as_ref().map(|h| h.seq),
            cur.delta.as_ref().map(|h| h.seq),
        )
    }

    #[tokio::test]
    async fn the_start_reads_base_delta_and_uncovered_packs_and_never_a_deleted_pack() {
        let repo = Repository::in_memory().await;
        let s = StanzaName::new("main").unwrap();
        let mut stored = store(&repo, &s, SNAPSHOT_AFTER - 1).await;
        assert_eq!(
            repo.update_chunk_snapshot(&s).await.unwrap(),
            None,
            "too few"
        );
        stored.extend(store(&repo, &s, 600).await);
        assert_eq!(repo.update_chunk_snapshot(&s).await.unwrap(), Some(1));
        stored.extend(store(&repo, &s, SNAPSHOT_AFTER + 1).await);
        // 65 new packs against a base of 663: a delta on it.
        assert_eq!(repo.update_chunk_snapshot(&s).await.unwrap(), Some(2));
        let cur = repo
            .chunk_snapshot_current(&s, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(heads(&cur), (Some(1), Some(2)));
        stored.extend(store(&repo, &s, 3).await);

        let index = repo.chunk_index(&s).await.unwrap();
        assert!(index.warnings.is_empty(), "{:?}", index.warnings);
        assert_eq!(index.from_snapshot(), 663 + 65);
        assert_eq!(index.len(), stored.len());
        for (id, loc) in &stored {
            assert_eq!(index.get(id).as_ref(), Some(loc));
        }
        assert!(!index.contains(&ContentId([7; 32])));

        // A pack expire deleted (index first) is not resurrected by the snapshot.
        let (gone_id, gone) = stored[100].clone();
        repo.backend()
            .delete(&layout::pack_index(&s, gone.pack.as_str()))
            .await
            .unwrap();
        let index = repo.chunk_index(&s).await.unwrap();
        assert!(!index.contains(&gone_id));
        assert!(index.contains(&stored[101].0));

        // Enough new packs to outgrow an eighth of the base: folded into a new base, which
        // no longer names the deleted pack; the oldest generations are pruned.
        stored.extend(store(&repo, &s, 100).await);
        assert_eq!(repo.update_chunk_snapshot(&s).await.unwrap(), Some(3));
        let cur = repo
            .chunk_snapshot_current(&s, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(heads(&cur), (Some(3), None));
        let base = cur.base.unwrap();
        assert!(!base.packs.contains(&gone.pack));
        assert_eq!(base.entries as usize, stored.len() - 1);
        let index = repo.chunk_index(&s).await.unwrap();
        assert_eq!(index.from_snapshot() as usize, stored.len() - 1);
        for (id, loc) in stored.iter().filter(|(id, _)| *id != gone_id) {
            assert_eq!(index.get(id).as_ref(), Some(loc));
        }
    }

    #[tokio::test]
    async fn a_damaged_snapshot_costs_only_itself() {
        let repo = Repository::in_memory().await;
        let s = StanzaName::new("main").unwrap();
        let stored = store(&repo, &s, SNAPSHOT_AFTER).await;
        assert_eq!(repo.update_chunk_snapshot(&s).await.unwrap(), Some(1));
        let cur = repo
            .chunk_snapshot_current(&s, &mut Vec::new())
            .await
            .unwrap();
        let part = layout::chunk_snapshot_part(&s, &cur.base.unwrap().id, 0);
        repo.backend().delete(&part).await.unwrap();
        repo.backend()
            .put_if_absent(&part, Bytes::from_static(b"damaged"))
            .await
            .unwrap();
        let index = repo.chunk_index(&s).await.unwrap();
        assert_eq!(index.warnings.len(), 1, "{:?}", index.warnings);
        assert!(index.warnings[0].contains("every pack index read"));
        assert_eq!(index.from_snapshot(), 0);
        for (id, loc) in &stored {
            assert_eq!(index.get(id).as_ref(), Some(loc));
        }
    }

    #[test]
    fn a_table_finds_every_entry_across_blocks_and_nothing_else() {
        let mut ids: Vec<[u8; 32]> = (0..1000).map(|_| rand::random()).collect();
        // Ids sharing their first 8 bytes across a block boundary.
        for id in &mut ids[60..70] {
            id[..8].copy_from_slice(&[9; 8]);
        }
        ids.sort();
        let mut b = TableBuilder::new().unwrap();
        for (i, id) in ids.iter().enumerate() {
            b.push(&raw(&ContentId(*id), i as u32, i as u64 * 10, 5, 6))
                .unwrap();
        }
        assert!(
            b.push(&raw(&ContentId(ids[0]), 0, 0, 0, 0)).is_err(),
            "order is checked"
        );
        let t = b.finish().unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                t.find(&ContentId(*id)),
                Some((i as u32, i as u64 * 10, 5, 6))
            );
        }
        let mut other = ids[64];
        other[31] ^= 1;
        assert!(!ids.contains(&other));
        assert_eq!(t.find(&ContentId(other)), None);
    }
}
