//! Garbage collection of packs, and what `expire` must remember between runs
//! (docs/decisions/014-expire-and-gc.md).
//!
//! A pack no kept manifest references is first *condemned*: the stanza's GC state records
//! it with the time. Only a later `expire` deletes it (index first, then the pack), once the
//! grace has passed and no backup that may have loaded the chunk index before the
//! condemnation still runs. A backup excludes the chunks of condemned packs from its chunk
//! index ([`Repository::backup_chunk_index`]) and stores them again, so no new manifest
//! references a condemned pack.
//!
//! ```text
//! stanza/S/gc/00000007    GC state generation 7: condemned packs, deletes not yet confirmed
//! ```
//!
//! Generations are written create-if-absent under the maintenance lock; the newest wins and
//! the three before it are kept. A backup that cannot read the newest generation treats
//! every pack as condemned (it stores every chunk again: slow, never wrong).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::backend::PutOutcome;
use crate::error::RepoError;
use crate::keys::ContentId;
use crate::layout::{self, Identity, ObjectKey, StanzaName};
use crate::object::{self, ObjectKind};
use crate::pack::{ChunkIndex, ChunkLocation, PackId, PackWriter};
use crate::repository::{Encoded, Repository, now_rfc3339};

/// Generations kept before the newest.
const GENERATIONS_KEPT: u64 = 3;

/// What `expire` remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcState {
    /// Packs no kept manifest referenced when an `expire` looked, with when one first
    /// found that (RFC 3339, UTC).
    #[serde(default)]
    pub condemned: BTreeMap<PackId, String>,
    /// Objects whose removal is already recorded in a journal (WAL files and their
    /// journal entries) but whose delete may not have finished: the next `expire` deletes
    /// them first.
    #[serde(default)]
    pub pending: Vec<ObjectKey>,
}

#[derive(Serialize, Deserialize)]
struct GcStateObject {
    seq: u64,
    written: String,
    state: GcState,
}

/// The GC state as read.
#[derive(Debug, Clone, Default)]
pub struct GcStateRead {
    /// The highest generation stored (0: none); the next one is `seq + 1`.
    pub seq: u64,
    /// The newest readable generation's state (empty when none is readable).
    pub state: GcState,
    /// Whether the highest generation could be read.
    pub newest_readable: bool,
    /// Generations passed over and why.
    pub warnings: Vec<String>,
}

/// A chunk inside a pack: what a repack copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredChunk {
    pub offset: u64,
    pub len: u32,
    pub size: u32,
    pub id: ContentId,
}

/// The stanza's packs and pack indexes, from one listing of each prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackListing {
    /// Stored packs and their sizes.
    pub packs: BTreeMap<PackId, u64>,
    /// Packs that have an index.
    pub indexes: BTreeSet<PackId>,
}

impl PackListing {
    /// Every pack named by a pack object or an index.
    pub fn all(&self) -> BTreeSet<PackId> {
        self.packs
            .keys()
            .chain(self.indexes.iter())
            .cloned()
            .collect()
    }
}

impl Repository {
    /// The newest readable GC state of the stanza.
    pub async fn gc_state(&self, stanza: &StanzaName) -> Result<GcStateRead, RepoError> {
        // Newest first.
        let seqs: Vec<u64> = self
            .backend()
            .list_seqs(&layout::gc_prefix(stanza))
            .await?
            .into_iter()
            .rev()
            .collect();
        let mut out = GcStateRead {
            seq: seqs.first().copied().unwrap_or(0),
            newest_readable: seqs.is_empty(),
            ..Default::default()
        };
        for (i, &seq) in seqs.iter().enumerate() {
            let key = layout::gc_state(stanza, seq);
            match self
                .get_json::<GcStateObject>(&key, ObjectKind::GcState, "garbage collection state")
                .await
            {
                Ok(Some(o)) if o.seq == seq => {
                    out.state = o.state;
                    out.newest_readable = i == 0;
                    return Ok(out);
                }
                Ok(Some(_)) => out
                    .warnings
                    .push(format!("{key} holds another generation; passed over")),
                Ok(None) => {}
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    out.warnings.push(format!("{e}; using an older generation"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Store generation `seq` of the GC state (create-if-absent; only `expire`, under the
    /// maintenance lock, writes it) and delete generations older than the kept ones.
    pub async fn write_gc_state(
        &self,
        stanza: &StanzaName,
        seq: u64,
        state: &GcState,
    ) -> Result<(), RepoError> {
        let key = layout::gc_state(stanza, seq);
        let object = GcStateObject {
            seq,
            written: now_rfc3339(),
            state: state.clone(),
        };
        if self.put_json(&key, ObjectKind::GcState, &object).await? == PutOutcome::Exists {
            return Err(RepoError::Concurrent {
                what: "garbage collection state",
                key,
            });
        }
        let listed = self
            .backend()
            .list(&layout::gc_prefix(stanza), None)
            .await?;
        for l in listed {
            if layout::parse_seq(&l.key).is_some_and(|s| s + GENERATIONS_KEPT < seq)
                && let Ok(k) = ObjectKey::new(l.key)
            {
                self.backend().delete(&k).await?;
            }
        }
        Ok(())
    }

    /// The chunk index a backup deduplicates against: every pack index, without the chunks
    /// of condemned packs (the backup stores those again). When the newest GC state cannot
    /// be read, nothing is reused.
    pub async fn backup_chunk_index(&self, stanza: &StanzaName) -> Result<ChunkIndex, RepoError> {
        let gc = self.gc_state(stanza).await?;
        if !gc.newest_readable {
            return Ok(ChunkIndex::default());
        }
        let index = self.chunk_index(stanza).await?;
        let condemned: BTreeSet<PackId> = gc.state.condemned.into_keys().collect();
        Ok(index.without_packs(&condemned))
    }

    /// The stanza's packs (with sizes) and pack indexes: one listing of each prefix.
    pub async fn pack_listing(&self, stanza: &StanzaName) -> Result<PackListing, RepoError> {
        let pack_prefix = layout::pack_prefix(stanza);
        let index_prefix = layout::pack_index_prefix(stanza);
        let packs = self
            .backend()
            .list(&pack_prefix, None)
            .await?
            .into_iter()
            .filter_map(|l| {
                let id = l.key.rsplit('/').next()?.to_string();
                let id = PackId::try_from(id).ok()?;
                (layout::pack(stanza, id.as_str()).as_str() == l.key).then_some((id, l.size))
            })
            .collect();
        let indexes = self
            .backend()
            .list(&index_prefix, None)
            .await?
            .into_iter()
            .filter_map(|l| PackId::try_from(l.key.strip_prefix(&index_prefix)?.to_string()).ok())
            .collect();
        Ok(PackListing { packs, indexes })
    }

    /// Delete a pack: its index first, so no chunk index ever names a missing pack.
    pub async fn delete_pack(&self, stanza: &StanzaName, pack: &PackId) -> Result<(), RepoError> {
        self.backend()
            .delete(&layout::pack_index(stanza, pack.as_str()))
            .await?;
        self.backend()
            .delete(&layout::pack(stanza, pack.as_str()))
            .await?;
        Ok(())
    }

    /// Copy `chunks` of `pack` into `writer` as they are (a chunk's identity is its stanza
    /// and content id, not its pack), each checked first so damage is never copied. Returns
    /// each chunk's old offset and new location; `Err` when the pack or a chunk cannot be
    /// read (nothing of that pack should then be relocated).
    pub async fn copy_chunks(
        &self,
        stanza: &StanzaName,
        pack: &PackId,
        chunks: &[StoredChunk],
        writer: &mut PackWriter,
    ) -> Result<Vec<(u64, ChunkLocation)>, RepoError> {
        let key = layout::pack(stanza, pack.as_str());
        let Some(bytes) = self.backend().get(&key).await? else {
            return Err(RepoError::Malformed {
                what: "pack",
                key,
                message: "is missing".into(),
            });
        };
        let keys = self.shared_keys();
        let (stanza2, key2, chunks2, bytes2) =
            (stanza.clone(), key.clone(), chunks.to_vec(), bytes.clone());
        // Decrypting and decompressing a pack's worth of chunks: off the async threads.
        let encoded: Vec<Encoded> = tokio::task::spawn_blocking(move || {
            chunks2
                .iter()
                .map(|c| {
                    let end = c.offset + u64::from(c.len);
                    let slice = bytes2.get(c.offset as usize..end as usize).ok_or_else(|| {
                        RepoError::Malformed {
                            what: "pack",
                            key: key2.clone(),
                            message: format!("is {} bytes, a chunk ends at {end}", bytes2.len()),
                        }
                    })?;
                    let identity = Identity::chunk(&stanza2, &c.id);
                    object::decode(&keys, ObjectKind::Chunk, &identity, slice)
                        .map_err(|e| RepoError::object(&key2, e))?;
                    Ok(Encoded::from_parts(
                        slice.to_vec(),
                        c.id,
                        u64::from(c.size),
                        identity,
                    ))
                })
                .collect::<Result<Vec<Encoded>, RepoError>>()
        })
        .await
        .map_err(|e| RepoError::Encode {
            message: format!("checking chunks: {e}"),
        })??;
        drop(bytes);
        let mut out = Vec::with_capacity(encoded.len());
        for (c, e) in chunks.iter().zip(&encoded) {
            out.push((c.offset, writer.add(e).await?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn setup() -> (Repository, StanzaName) {
        let repo = Repository::in_memory().await;
        let s = StanzaName::new("main").unwrap();
        repo.create_stanza(&s, 42, 15).await.unwrap();
        (repo, s)
    }

    fn data(i: u32) -> Vec<u8> {
        (0..3000u32)
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect()
    }

    #[tokio::test]
    async fn generations_newest_wins_old_ones_go_and_a_damaged_newest_is_reported() {
        let (repo, s) = setup().await;
        let first = repo.gc_state(&s).await.unwrap();
        assert_eq!((first.seq, first.newest_readable), (0, true));
        let pack = PackId::random();
        for seq in 1..=6 {
            let mut st = GcState::default();
            st.condemned.insert(pack.clone(), format!("gen {seq}"));
            repo.write_gc_state(&s, seq, &st).await.unwrap();
        }
        let read = repo.gc_state(&s).await.unwrap();
        assert_eq!(read.seq, 6);
        assert!(read.newest_readable);
        assert_eq!(read.state.condemned[&pack], "gen 6");
        let left = repo
            .backend()
            .list(&layout::gc_prefix(&s), None)
            .await
            .unwrap();
        assert_eq!(left.len(), 4, "the newest and three before it");
        assert!(matches!(
            repo.write_gc_state(&s, 6, &GcState::default()).await,
            Err(RepoError::Concurrent { .. })
        ));
        // A damaged newest generation: the one before is used, and it is said.
        let k6 = layout::gc_state(&s, 6);
        repo.backend().delete(&k6).await.unwrap();
        repo.backend()
            .put_if_absent(&k6, Bytes::from_static(b"garbage"))
            .await
            .unwrap();
        let read = repo.gc_state(&s).await.unwrap();
        assert_eq!(read.seq, 6);
        assert!(!read.newest_readable);
        assert_eq!(read.state.condemned[&pack], "gen 5");
        assert_eq!(read.warnings.len(), 1);
        // ... and a backup then reuses nothing.
        let mut w = PackWriter::with_target(repo.clone(), s.clone(), 1 << 20);
        w.add(&repo.encode_chunk(&s, &data(1)).unwrap())
            .await
            .unwrap();
        w.flush().await.unwrap();
        assert_eq!(repo.chunk_index(&s).await.unwrap().len(), 1);
        assert!(repo.backup_chunk_index(&s).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn condemned_packs_are_left_out_of_the_backup_index_and_deleted_index_first() {
        let (repo, s) = setup().await;
        let mut packs = Vec::new();
        for i in 0..2 {
            let mut w = PackWriter::with_target(repo.clone(), s.clone(), 1 << 20);
            let loc = w
                .add(&repo.encode_chunk(&s, &data(i)).unwrap())
                .await
                .unwrap();
            w.flush().await.unwrap();
            packs.push(loc.pack);
        }
        let listing = repo.pack_listing(&s).await.unwrap();
        assert_eq!(listing.packs.len(), 2);
        assert_eq!(listing.indexes.len(), 2);
        let mut st = GcState::default();
        st.condemned.insert(packs[0].clone(), now_rfc3339());
        repo.write_gc_state(&s, 1, &st).await.unwrap();
        let index = repo.backup_chunk_index(&s).await.unwrap();
        assert_eq!(index.len(), 1);
        let id1 = repo.chunk_codec(&s).content_id(&data(1));
        assert_eq!(index.get(&id1).unwrap().pack, packs[1]);
        repo.delete_pack(&s, &packs[0]).await.unwrap();
        let listing = repo.pack_listing(&s).await.unwrap();
        assert_eq!(listing.all(), [packs[1].clone()].into());
    }

    #[tokio::test]
    async fn copied_chunks_read_back_at_their_new_place_and_damage_is_not_copied() {
        let (repo, s) = setup().await;
        let mut w = PackWriter::with_target(repo.clone(), s.clone(), 1 << 20);
        let mut stored = Vec::new();
        for i in 0..5 {
            let enc = repo.encode_chunk(&s, &data(i)).unwrap();
            let loc = w.add(&enc).await.unwrap();
            stored.push((enc.content_id, loc));
        }
        w.flush().await.unwrap();
        let old = stored[0].1.pack.clone();
        let live: Vec<StoredChunk> = [1usize, 3]
            .iter()
            .map(|&i| StoredChunk {
                offset: stored[i].1.offset,
                len: stored[i].1.len,
                size: stored[i].1.size,
                id: stored[i].0,
            })
            .collect();
        let mut nw = PackWriter::with_target(repo.clone(), s.clone(), 1 << 20);
        let moved = repo.copy_chunks(&s, &old, &live, &mut nw).await.unwrap();
        nw.flush().await.unwrap();
        assert_eq!(moved.len(), 2);
        for ((offset, new), c) in moved.iter().zip(&live) {
            assert_eq!(*offset, c.offset);
            assert_ne!(new.pack, old);
            let i = if c.id == stored[1].0 { 1 } else { 3 };
            assert_eq!(
                repo.read_chunk(&s, &c.id, new).await.unwrap(),
                data(i as u32)
            );
        }
        // The new pack's index lists only the copied chunks.
        let index = repo.chunk_index(&s).await.unwrap();
        assert_eq!(index.len(), 5);
        // A damaged chunk stops the copy.
        let key = layout::pack(&s, old.as_str());
        let mut bytes = repo.backend().get(&key).await.unwrap().unwrap().to_vec();
        bytes[live[0].offset as usize + 200] ^= 1;
        repo.backend().delete(&key).await.unwrap();
        repo.backend()
            .put_if_absent(&key, bytes.into())
            .await
            .unwrap();
        let mut nw = PackWriter::with_target(repo.clone(), s.clone(), 1 << 20);
        assert!(matches!(
            repo.copy_chunks(&s, &old, &live, &mut nw).await,
            Err(RepoError::Object { .. })
        ));
    }
}
