//! Cutting files into chunks and storing the new ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn_repo::{
    ChunkCodec, ChunkIndex, ChunkLocation, ChunkRef, ContentId, Encoded, PackId, PackWriter,
};
use rayon::prelude::*;
use tokio::sync::oneshot;

use crate::error::BackupError;

/// Chunk size: 32 pages of 8 KiB. A changed page costs one 256 KiB chunk in an incremental
/// backup that cannot ask the server for changed blocks; files smaller than this are one
/// chunk. Chosen from `benches/`-style measurements of pgbench data: 64 KiB chunks doubled
/// manifest size for a few percent less stored, 1 MiB chunks stored 2-3x more per change.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Chunks hashed (and encoded) together on all cores.
const BATCH: usize = 32;

/// Batches being hashed and encoded while the stream goes on. With the packs being stored
/// in the background, receiving, encoding and writing overlap; memory in flight stays at
/// about `IN_FLIGHT * BATCH * CHUNK_SIZE` (twice that with the encoded copies).
const IN_FLIGHT: usize = 3;

/// One chunk after hashing: encoded only when the stanza did not have it when the backup
/// started.
#[derive(Debug)]
struct Resolved {
    id: ContentId,
    encoded: Option<Result<Encoded, cairn_repo::RepoError>>,
}

/// A chunk waiting to be recorded, in file order.
#[derive(Debug)]
enum Pending {
    /// Cut from file data: hashed (and stored if new) when resolved.
    Data(usize, Bytes),
    /// Already stored (a parent backup's chunk reused as is): recorded without reading it.
    Stored(usize, ContentId, ChunkLocation),
}

/// A batch on its way through the workers, with the results in the batch's order (`None`:
/// a worker panicked).
type Working = oneshot::Receiver<Option<(Vec<Pending>, Vec<Option<Resolved>>)>>;

/// What a finished chunker stored.
#[derive(Debug)]
pub struct Chunked {
    /// The packs chunk refs point into (by index).
    pub packs: Vec<PackId>,
    /// Chunk refs of each file, by position.
    pub refs: Vec<Vec<ChunkRef>>,
    /// Bytes added to the repository.
    pub stored_bytes: u64,
    pub new_chunks: u64,
    pub reused_chunks: u64,
}

/// Turns file data into [`ChunkRef`]s, storing chunks the stanza does not have yet.
#[derive(Debug)]
pub struct Chunker {
    codec: ChunkCodec,
    /// Chunks stored before this backup: the workers read it to skip encoding them.
    existing: Arc<ChunkIndex>,
    /// Chunks this backup stored or reused, checked first when recording.
    added: ChunkIndex,
    packs: PackWriter,
    /// The packs this backup's refs point into, in manifest order, and each one's position.
    pack_ids: Vec<PackId>,
    pack_positions: HashMap<PackId, usize>,
    current: BytesMut,
    /// Chunks cut but not yet sent to the workers.
    pending: Vec<Pending>,
    /// Batches with the workers, oldest first.
    working: VecDeque<Working>,
    /// Chunk refs of each file, by manifest position.
    pub refs: Vec<Vec<ChunkRef>>,
    pub new_chunks: u64,
    pub reused_chunks: u64,
}

impl Chunker {
    pub fn new(codec: ChunkCodec, index: ChunkIndex, packs: PackWriter) -> Chunker {
        Chunker {
            codec,
            existing: Arc::new(index),
            added: ChunkIndex::default(),
            packs,
            pack_ids: Vec::new(),
            pack_positions: HashMap::new(),
            current: BytesMut::with_capacity(CHUNK_SIZE),
            pending: Vec::new(),
            working: VecDeque::new(),
            refs: Vec::new(),
            new_chunks: 0,
            reused_chunks: 0,
        }
    }

    /// Start a new file; returns its position.
    pub fn start_file(&mut self) -> usize {
        self.refs.push(Vec::new());
        self.refs.len() - 1
    }

    pub async fn data(&mut self, file: usize, mut data: &[u8]) -> Result<(), BackupError> {
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.current.len()).min(data.len());
            self.current.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.current.len() == CHUNK_SIZE {
                self.cut(file).await?;
            }
        }
        Ok(())
    }

    pub async fn end_file(&mut self, file: usize) -> Result<(), BackupError> {
        if !self.current.is_empty() {
            self.cut(file).await?;
        }
        Ok(())
    }

    /// Record a chunk that is already stored as the next chunk of `file`. Only at a chunk
    /// boundary: the data given to [`Chunker::data`] since the last cut must be none.
    pub async fn reuse(
        &mut self,
        file: usize,
        id: ContentId,
        loc: ChunkLocation,
    ) -> Result<(), BackupError> {
        if !self.current.is_empty() {
            return Err(BackupError::Protocol(format!(
                "a stored chunk reused {} bytes into a chunk",
                self.current.len()
            )));
        }
        self.push(Pending::Stored(file, id, loc)).await
    }

    async fn cut(&mut self, file: usize) -> Result<(), BackupError> {
        let chunk = self.current.split().freeze();
        self.current.reserve(CHUNK_SIZE);
        self.push(Pending::Data(file, chunk)).await
    }

    async fn push(&mut self, p: Pending) -> Result<(), BackupError> {
        self.pending.push(p);
        if self.pending.len() >= BATCH {
            self.dispatch();
            while self.working.len() > IN_FLIGHT {
                self.record_oldest().await?;
            }
        }
        Ok(())
    }

    /// Send the pending chunks to the workers: hashed, and encoded when new, on all cores.
    /// Straight to rayon (no blocking-pool thread in between: one wakeup less per batch).
    fn dispatch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let codec = self.codec.clone();
        let existing = Arc::clone(&self.existing);
        let (tx, rx) = oneshot::channel();
        rayon::spawn(move || {
            let work = std::panic::AssertUnwindSafe(|| {
                batch
                    .par_iter()
                    .map(|p| match p {
                        Pending::Data(_, data) => {
                            let id = codec.content_id(data);
                            let encoded = (!existing.contains(&id)).then(|| codec.encode(data, id));
                            Some(Resolved { id, encoded })
                        }
                        Pending::Stored(..) => None,
                    })
                    .collect::<Vec<_>>()
            });
            // A panic becomes an error for the backup, not an abort of the process.
            let _ = tx.send(std::panic::catch_unwind(work).ok().map(|r| (batch, r)));
        });
        self.working.push_back(rx);
    }

    fn lookup(&self, id: &ContentId) -> Option<ChunkLocation> {
        self.added.get(id).or_else(|| self.existing.get(id))
    }

    /// Wait for the oldest batch and record its chunks in order, storing the new ones.
    async fn record_oldest(&mut self) -> Result<(), BackupError> {
        let Some(task) = self.working.pop_front() else {
            return Ok(());
        };
        let (batch, results) = task.await.ok().flatten().ok_or_else(|| {
            BackupError::Repo(cairn_repo::RepoError::Encode {
                message: "a chunk worker failed".into(),
            })
        })?;
        for (pending, resolved) in batch.into_iter().zip(results) {
            let (file, loc, id) = match (pending, resolved) {
                (Pending::Stored(file, id, loc), _) => {
                    self.reused_chunks += 1;
                    if self.lookup(&id).is_none() {
                        self.added.insert(id, loc.clone());
                    }
                    (file, loc, id)
                }
                (Pending::Data(file, _), Some(Resolved { id, encoded })) => {
                    let loc = match (self.lookup(&id), encoded) {
                        (Some(loc), _) => {
                            self.reused_chunks += 1;
                            loc
                        }
                        (None, encoded) => {
                            // Never encoded: only when `existing` had it, which it still has.
                            let enc = encoded.ok_or_else(|| {
                                BackupError::Protocol(
                                    "a new chunk reached the pack unencoded".into(),
                                )
                            })??;
                            let loc = self.packs.add(&enc).await?;
                            self.added.insert(id, loc.clone());
                            self.new_chunks += 1;
                            loc
                        }
                    };
                    (file, loc, id)
                }
                (Pending::Data(..), None) => unreachable!("data chunks are always resolved"),
            };
            let next = self.pack_ids.len();
            let pack = *self
                .pack_positions
                .entry(loc.pack.clone())
                .or_insert_with(|| {
                    self.pack_ids.push(loc.pack.clone());
                    next
                });
            self.refs[file].push(ChunkRef {
                id,
                pack: pack as u32,
                offset: loc.offset,
                len: loc.len,
                size: loc.size,
            });
        }
        Ok(())
    }

    /// Store everything still pending; afterwards every chunk referenced is durable.
    /// Returns the packs the refs point into and the bytes added to the repository.
    pub async fn finish(mut self) -> Result<Chunked, BackupError> {
        self.dispatch();
        let mut first_error = None;
        while !self.working.is_empty() {
            if let Err(e) = self.record_oldest().await {
                first_error.get_or_insert(e);
            }
        }
        // Even after an error: what was stored is kept for the next attempt to reuse.
        let flushed = self.packs.flush().await;
        if let Some(e) = first_error {
            return Err(e);
        }
        flushed?;
        Ok(Chunked {
            packs: self.pack_ids,
            refs: self.refs,
            stored_bytes: self.packs.stored_bytes,
            new_chunks: self.new_chunks,
            reused_chunks: self.reused_chunks,
        })
    }
}
