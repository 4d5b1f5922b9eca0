//! Chunks and packs. Backup files are cut into chunks; each chunk is encoded on its own
//! (so it can be read back with one ranged GET) and appended to a pack of tens of MiB, so
//! a backup of 10 000 small files is a handful of objects. Each pack is followed by a small
//! index object listing its chunks; the union of the indexes tells a later backup which
//! chunks are already stored, including those of a backup that was interrupted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::check::Damage;
use crate::chunk_snapshot::SortedTable;
use crate::error::{BackendError, ObjectError, RepoError};
use crate::keys::{ContentId, KeySet};
use crate::layout::{self, Identity, ObjectKey, StanzaName};
use crate::object::{self, ObjectKind};
use crate::repository::{Encoded, Repository};

/// A pack's name: 16 random bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackId(String);

impl PackId {
    pub fn random() -> PackId {
        PackId(hex::encode(rand::random::<[u8; 16]>()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PackId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            Ok(PackId(s))
        } else {
            Err(format!("'{s}' is not a pack id"))
        }
    }
}

impl From<PackId> for String {
    fn from(p: PackId) -> String {
        p.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes and encodes a stanza's chunks on any thread (a backup's rayon workers), each
/// bound to its stanza and content id.
#[derive(Debug, Clone)]
pub struct ChunkCodec {
    keys: Arc<KeySet>,
    level: i32,
    stanza: StanzaName,
}

impl ChunkCodec {
    /// The content id of a chunk, hashed on the calling thread.
    pub fn content_id(&self, data: &[u8]) -> ContentId {
        self.keys.content_id_single(data)
    }

    /// Decode an encoded chunk (`bytes`, as read from its pack) on the calling thread and
    /// check it is chunk `id` of this stanza: authenticated, whole, and hashing to `id`.
    pub fn check(&self, id: &ContentId, bytes: &[u8]) -> Result<(), ObjectError> {
        object::decode(
            &self.keys,
            ObjectKind::Chunk,
            &Identity::chunk(&self.stanza, id),
            bytes,
        )
        .map(drop)
    }

    /// Encode a chunk whose content id is `id`, on the calling thread.
    pub fn encode(&self, data: &[u8], id: ContentId) -> Result<Encoded, RepoError> {
        let identity = Identity::chunk(&self.stanza, &id);
        let bytes = object::encode_with_id(
            &self.keys,
            ObjectKind::Chunk,
            &identity,
            data,
            self.level,
            id,
        )
        .map_err(|message| RepoError::Encode { message })?;
        Ok(Encoded::from_parts(bytes, id, data.len() as u64, identity))
    }
}

/// Where one chunk is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    pub pack: PackId,
    /// Byte offset of the encoded chunk in the pack.
    pub offset: u64,
    /// Encoded length.
    pub len: u32,
    /// Plaintext length.
    pub size: u32,
}

/// A pack's index object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PackIndex {
    pub(crate) pack: PackId,
    pub(crate) chunks: Vec<(ContentId, u64, u32, u32)>,
}

/// Where a chunk is, with its pack as a position in [`ChunkIndex::packs`]: a stanza's
/// index holds one of these per stored chunk, so it is kept small (about 60 bytes with the
/// map's own overhead, ~250 MB for a 1 TiB repository of 256 KiB chunks).
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    len: u32,
    size: u32,
    offset: u64,
}

/// Every chunk the stanza's packs hold: those of the chunk index snapshot in local sorted
/// tables (`crate::chunk_snapshot`), those of the pack indexes it does not cover in memory.
#[derive(Debug, Clone, Default)]
pub struct ChunkIndex {
    /// Pack indexes (or a snapshot) that could not be read (their chunks are stored
    /// again if needed).
    pub warnings: Vec<String>,
    packs: Vec<PackId>,
    positions: HashMap<PackId, u32>,
    chunks: HashMap<ContentId, Slot>,
    /// Snapshot tables, newest first.
    tables: Vec<Arc<SortedTable>>,
    /// Packs whose table entries do not count (no longer listed, or condemned).
    excluded: HashSet<u32>,
    /// Table entries per pack position.
    table_entries: Vec<u64>,
}

impl ChunkIndex {
    pub fn get(&self, id: &ContentId) -> Option<ChunkLocation> {
        let loc = |pack: u32, offset, len, size| ChunkLocation {
            pack: self.packs[pack as usize].clone(),
            offset,
            len,
            size,
        };
        if let Some(s) = self.chunks.get(id) {
            return Some(loc(s.pack, s.offset, s.len, s.size));
        }
        self.tables.iter().find_map(|t| {
            t.find(id)
                .filter(|(pack, ..)| !self.excluded.contains(pack))
                .map(|(pack, offset, len, size)| loc(pack, offset, len, size))
        })
    }
    pub fn contains(&self, id: &ContentId) -> bool {
        self.chunks.contains_key(id) || self.get(id).is_some()
    }
    pub(crate) fn exclude(&mut self, pack: u32) {
        self.excluded.insert(pack);
    }
    pub(crate) fn count_table_entries(&mut self, pack: u32, n: u64) {
        let p = pack as usize;
        if self.table_entries.len() <= p {
            self.table_entries.resize(p + 1, 0);
        }
        self.table_entries[p] += n;
    }
    pub(crate) fn add_table(&mut self, table: Arc<SortedTable>) {
        self.tables.push(table);
    }
    /// Chunks found in the snapshot (the rest came from pack indexes read one by one).
    pub fn from_snapshot(&self) -> u64 {
        self.tables.iter().map(|t| t.len()).sum()
    }
    pub fn insert(&mut self, id: ContentId, loc: ChunkLocation) {
        let pack = self.pack_position(&loc.pack);
        self.chunks.insert(
            id,
            Slot {
                pack,
                len: loc.len,
                size: loc.size,
                offset: loc.offset,
            },
        );
    }
    pub(crate) fn pack_position(&mut self, pack: &PackId) -> u32 {
        if let Some(p) = self.positions.get(pack) {
            return *p;
        }
        let p = self.packs.len() as u32;
        self.packs.push(pack.clone());
        self.positions.insert(pack.clone(), p);
        p
    }
    /// Chunks indexed (a chunk both in the snapshot and in a pack read on its own
    /// counts twice).
    pub fn len(&self) -> usize {
        let table: u64 = self
            .table_entries
            .iter()
            .enumerate()
            .filter(|(p, _)| !self.excluded.contains(&(*p as u32)))
            .map(|(_, n)| n)
            .sum();
        self.chunks.len() + table as usize
    }
    /// This index without the chunks stored in `packs` (condemned ones: see `crate::gc`).
    pub fn without_packs(mut self, packs: &std::collections::BTreeSet<PackId>) -> ChunkIndex {
        let gone: std::collections::HashSet<u32> = packs
            .iter()
            .filter_map(|p| self.positions.get(p).copied())
            .collect();
        if !gone.is_empty() {
            self.chunks.retain(|_, s| !gone.contains(&s.pack));
        }
        self.excluded.extend(gone);
        self
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends encoded chunks to a pack in memory; a full pack is stored in the background
/// while the next one fills, so a backup never stops receiving to wait for an fsync.
#[derive(Debug)]
pub struct PackWriter {
    repo: Repository,
    stanza: StanzaName,
    target: usize,
    pack: PackId,
    buf: Vec<u8>,
    entries: Vec<(ContentId, u64, u32, u32)>,
    /// Packs being stored, oldest first.
    storing: VecDeque<JoinHandle<Result<(), RepoError>>>,
    /// Bytes stored (or being stored) in packs by this writer so far.
    pub stored_bytes: u64,
}

/// Packs are flushed once they reach this size.
pub const PACK_TARGET: usize = 32 << 20;

/// Full packs stored at the same time; bounds the writer's memory to about
/// `(STORING + 1) * PACK_TARGET`.
const STORING: usize = 2;

impl PackWriter {
    pub fn new(repo: Repository, stanza: StanzaName) -> PackWriter {
        PackWriter::with_target(repo, stanza, PACK_TARGET)
    }

    pub fn with_target(repo: Repository, stanza: StanzaName, target: usize) -> PackWriter {
        PackWriter {
            repo,
            stanza,
            target,
            pack: PackId::random(),
            buf: Vec::new(),
            entries: Vec::new(),
            storing: VecDeque::new(),
            stored_bytes: 0,
        }
    }

    /// Append an encoded chunk; returns where it will be. A full pack starts storing.
    pub async fn add(&mut self, encoded: &Encoded) -> Result<ChunkLocation, RepoError> {
        if encoded.identity() != &Identity::chunk(&self.stanza, &encoded.content_id) {
            return Err(RepoError::Encode {
                message: format!(
                    "{} is not a chunk of stanza {}",
                    encoded.identity(),
                    self.stanza
                ),
            });
        }
        let offset = self.buf.len() as u64;
        let bytes = encoded.bytes();
        let loc = ChunkLocation {
            pack: self.pack.clone(),
            offset,
            len: bytes.len() as u32,
            size: encoded.plaintext_len as u32,
        };
        if self.buf.is_empty() {
            self.buf.reserve(self.target + bytes.len());
        }
        self.buf.extend_from_slice(bytes);
        self.entries
            .push((encoded.content_id, offset, loc.len, loc.size));
        if self.buf.len() >= self.target {
            self.seal().await?;
        }
        Ok(loc)
    }

    /// Start storing the current pack and its index; waits only when [`STORING`] packs
    /// are already on their way.
    async fn seal(&mut self) -> Result<(), RepoError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        self.stored_bytes += data.len() as u64;
        let index = PackIndex {
            pack: std::mem::replace(&mut self.pack, PackId::random()),
            chunks: std::mem::take(&mut self.entries),
        };
        let (repo, stanza) = (self.repo.clone(), self.stanza.clone());
        self.storing.push_back(tokio::spawn(async move {
            store_pack(&repo, &stanza, data, &index).await
        }));
        while self.storing.len() > STORING {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), RepoError> {
        match self.storing.pop_front() {
            Some(task) => task.await.map_err(|e| RepoError::Encode {
                message: format!("storing a pack: {e}"),
            })?,
            None => Ok(()),
        }
    }

    /// Store the current pack (if any) and wait for every pack on its way. After this
    /// returns, every chunk added so far is durable.
    pub async fn flush(&mut self) -> Result<(), RepoError> {
        self.seal().await?;
        let mut first_error = None;
        while !self.storing.is_empty() {
            if let Err(e) = self.wait_oldest().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Store a pack, then its index: an index never names a pack that is not there.
async fn store_pack(
    repo: &Repository,
    stanza: &StanzaName,
    data: Bytes,
    index: &PackIndex,
) -> Result<(), RepoError> {
    repo.backend()
        .put_if_absent(&layout::pack(stanza, index.pack.as_str()), data)
        .await?;
    repo.put_json(
        &layout::pack_index(stanza, index.pack.as_str()),
        ObjectKind::PackIndex,
        index,
    )
    .await?;
    Ok(())
}

/// One chunk as a pack index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedChunk {
    pub id: ContentId,
    pub offset: u64,
    pub len: u32,
    pub size: u32,
}

/// One pack index, read and checked against the pack it names.
#[derive(Debug, Clone)]
pub struct PackIndexCheck {
    pub key: ObjectKey,
    /// The pack the index's key names.
    pub pack: PackId,
    pub bytes: u64,
    /// The chunks it lists, when it can be read at all (`None`: it does not decode or
    /// parse, and [`Repository::chunk_index`] fails on it).
    pub listed: Option<Vec<IndexedChunk>>,
    /// What is wrong with it: unreadable, or listing entries that are not in its pack
    /// (beyond the pack's end, overlapping, another pack's, or a missing pack).
    pub damage: Option<Damage>,
}

/// A stanza's packs (with their sizes) and its pack indexes, each checked.
#[derive(Debug, Clone, Default)]
pub struct PackInventory {
    pub packs: BTreeMap<PackId, u64>,
    pub indexes: Vec<PackIndexCheck>,
    /// Names under `pack/` and `pack-index/` that are not cairn's.
    pub strays: Vec<String>,
}

/// Whether an index's entries fit the pack (`size` bytes, `None`: missing) without overlap.
fn index_agrees(mut chunks: Vec<(u64, u64)>, size: Option<u64>) -> Result<(), String> {
    let Some(size) = size else {
        return Err("the pack it indexes is missing".into());
    };
    chunks.sort_unstable();
    let mut end = 0;
    for (offset, len) in chunks {
        if offset < end {
            return Err(format!("entries overlap at offset {offset}"));
        }
        end = offset + len;
        if end > size {
            return Err(format!(
                "an entry ends at {end}, beyond the pack's end ({size} bytes)"
            ));
        }
    }
    Ok(())
}

impl Repository {
    /// List the stanza's packs and read every pack index (`only`: those of these packs),
    /// checking each against the key it is stored under and the pack it names.
    pub async fn pack_inventory(
        &self,
        stanza: &StanzaName,
        only: Option<&BTreeSet<PackId>>,
    ) -> Result<PackInventory, BackendError> {
        let mut inv = PackInventory::default();
        for l in self
            .backend()
            .list(&layout::pack_prefix(stanza), None)
            .await?
        {
            match PackId::try_from(l.key.rsplit('/').next().unwrap_or("").to_string()) {
                Ok(p)
                    if ObjectKey::new(l.key.clone()).ok()
                        == Some(layout::pack(stanza, p.as_str())) =>
                {
                    inv.packs.insert(p, l.size);
                }
                _ => inv.strays.push(l.key),
            }
        }
        let index_prefix = layout::pack_index_prefix(stanza);
        let mut keys = Vec::new();
        for l in self.backend().list(&index_prefix, None).await? {
            let name = l.key.strip_prefix(&index_prefix).unwrap_or("").to_string();
            match PackId::try_from(name) {
                Ok(p) if only.is_none_or(|o| o.contains(&p)) => {
                    keys.push((layout::pack_index(stanza, p.as_str()), p))
                }
                Ok(_) => {}
                Err(_) => inv.strays.push(l.key),
            }
        }
        let packs = &inv.packs;
        let checks: Vec<PackIndexCheck> = futures::stream::iter(keys)
            .map(|(key, pack)| async move {
                let c = self
                    .check_object(&key, ObjectKind::PackIndex, &Identity::of(&key))
                    .await?;
                let parsed = c.result.and_then(|d| {
                    serde_json::from_slice::<PackIndex>(&d.plaintext)
                        .map_err(|e| Damage::Content(format!("not a pack index: {e}")))
                });
                let (listed, damage) = match parsed {
                    Err(d) => (None, Some(d)),
                    Ok(pi) => {
                        let damage = if pi.pack != pack {
                            Some(Damage::Content(format!(
                                "it is the index of pack {}",
                                pi.pack
                            )))
                        } else {
                            let spans = pi.chunks.iter().map(|c| (c.1, u64::from(c.2))).collect();
                            index_agrees(spans, packs.get(&pack).copied())
                                .err()
                                .map(Damage::Content)
                        };
                        let listed = pi
                            .chunks
                            .into_iter()
                            .map(|(id, offset, len, size)| IndexedChunk {
                                id,
                                offset,
                                len,
                                size,
                            })
                            .collect();
                        (Some(listed), damage)
                    }
                };
                Ok::<_, BackendError>(PackIndexCheck {
                    key,
                    pack,
                    bytes: c.bytes,
                    listed,
                    damage,
                })
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        inv.indexes = checks;
        inv.indexes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(inv)
    }
}

impl Repository {
    /// The chunk encoder of `stanza`.
    pub fn chunk_codec(&self, stanza: &StanzaName) -> ChunkCodec {
        ChunkCodec {
            keys: self.shared_keys(),
            level: self.compress_level(),
            stanza: stanza.clone(),
        }
    }

    /// Hash and encode one chunk (small inputs; a backup uses [`ChunkCodec`] on all cores).
    pub fn encode_chunk(&self, stanza: &StanzaName, data: &[u8]) -> Result<Encoded, RepoError> {
        let codec = self.chunk_codec(stanza);
        codec.encode(data, codec.content_id(data))
    }

    /// Every chunk of the stanza: the chunk index snapshot, and the pack indexes it does
    /// not cover.
    pub async fn chunk_index(&self, stanza: &StanzaName) -> Result<ChunkIndex, RepoError> {
        self.chunk_index_with(stanza, true).await
    }

    /// [`Repository::chunk_index`] from the pack indexes alone (`snapshot` false): what
    /// a start did before snapshots, for the scale benchmark and tests.
    pub async fn chunk_index_with(
        &self,
        stanza: &StanzaName,
        snapshot: bool,
    ) -> Result<ChunkIndex, RepoError> {
        let prefix = layout::pack_index_prefix(stanza);
        let listed = self.backend().list(&prefix, None).await?;
        let mut index = ChunkIndex::default();
        let covered = if snapshot {
            let packs: HashSet<PackId> = listed
                .iter()
                .filter_map(|l| PackId::try_from(l.key.strip_prefix(&prefix)?.to_string()).ok())
                .collect();
            self.load_chunk_snapshot(stanza, &packs, &mut index).await?
        } else {
            HashSet::new()
        };
        let keys: Vec<ObjectKey> = listed
            .into_iter()
            .filter(|l| {
                l.key
                    .strip_prefix(&prefix)
                    .and_then(|p| PackId::try_from(p.to_string()).ok())
                    .is_none_or(|p| !covered.contains(&p))
            })
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect();
        let read: Vec<(ObjectKey, Result<Option<PackIndex>, RepoError>)> =
            futures::stream::iter(keys)
                .map(|k| async move {
                    let got = self
                        .get_json::<PackIndex>(&k, ObjectKind::PackIndex, "pack index")
                        .await;
                    (k, got)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        let mut indexes = Vec::with_capacity(read.len());
        for (key, got) in read {
            match got {
                Ok(Some(pi)) => indexes.push(pi),
                Ok(None) => {}
                // A damaged index costs only itself: its chunks are unknown to this backup,
                // which stores them again. `verify` names it.
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => index
                    .warnings
                    .push(format!("pack index {key} skipped: {e}")),
                Err(e) => return Err(e),
            }
        }
        for pi in indexes {
            let pack = index.pack_position(&pi.pack);
            for (id, offset, len, size) in pi.chunks {
                index.chunks.insert(
                    id,
                    Slot {
                        pack,
                        len,
                        size,
                        offset,
                    },
                );
            }
        }
        Ok(index)
    }

    /// Read one chunk back: a ranged GET, authenticated and checked against its id.
    pub async fn read_chunk(
        &self,
        stanza: &StanzaName,
        id: &ContentId,
        loc: &ChunkLocation,
    ) -> Result<Vec<u8>, RepoError> {
        let key = layout::pack(stanza, loc.pack.as_str());
        let range = loc.offset..loc.offset + u64::from(loc.len);
        let Some(bytes) = self.backend().get_range(&key, range).await? else {
            return Err(RepoError::Malformed {
                what: "pack",
                key,
                message: "is missing".into(),
            });
        };
        // The identity binds the header's content id to `id`, and decoding checks the
        // plaintext against it.
        object::decode(
            self.keys(),
            ObjectKind::Chunk,
            &Identity::chunk(stanza, id),
            &bytes,
        )
        .map_err(|e| RepoError::object(&key, e))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[tokio::test]
    async fn chunks_round_trip_through_packs_and_the_index() {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        let mut w = PackWriter::with_target(repo.clone(), stanza.clone(), 1_000);
        let mut stored = Vec::new();
        for i in 0..50u32 {
            let data: Vec<u8> = (0..1000u32).map(|j| (i * 7 + j % 13) as u8).collect();
            let enc = repo.encode_chunk(&stanza, &data).unwrap();
            let loc = w.add(&enc).await.unwrap();
            stored.push((enc.content_id, loc, data));
        }
        w.flush().await.unwrap();
        let index = repo.chunk_index(&stanza).await.unwrap();
        assert_eq!(index.len(), 50);
        let packs: std::collections::HashSet<_> =
            stored.iter().map(|(_, l, _)| l.pack.clone()).collect();
        assert!(packs.len() > 1, "small target: several packs");
        for (id, loc, data) in &stored {
            assert_eq!(index.get(id).as_ref(), Some(loc));
            assert_eq!(&repo.read_chunk(&stanza, id, loc).await.unwrap(), data);
        }
        // A damaged pack index costs only itself: the others still index their chunks.
        let first_pack = stored[0].1.pack.clone();
        let key = layout::pack_index(&stanza, first_pack.as_str());
        repo.backend().delete(&key).await.unwrap();
        repo.backend()
            .put_if_absent(&key, Bytes::from_static(b"damaged"))
            .await
            .unwrap();
        let partial = repo.chunk_index(&stanza).await.unwrap();
        assert_eq!(partial.warnings.len(), 1, "{:?}", partial.warnings);
        assert!(partial.warnings[0].contains(key.as_str()));
        for (id, loc, _) in &stored {
            assert_eq!(partial.contains(id), loc.pack != first_pack);
        }
        // A chunk read with another chunk's id is refused.
        let (id0, _, _) = &stored[0];
        let (_, loc1, _) = &stored[1];
        assert!(repo.read_chunk(&stanza, id0, loc1).await.is_err());
    }
}
