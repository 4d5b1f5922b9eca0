//! Cutting files into chunks and storing the new ones.

use bytes::{Bytes, BytesMut};
use cairn_repo::object::{self, ObjectKind};
use cairn_repo::{
    ChunkIndex, ChunkLocation, ChunkRef, ContentId, Encoded, PackId, PackWriter, Repository,
};
use rayon::prelude::*;

use crate::error::BackupError;

/// Chunk size: 32 pages of 8 KiB. A changed page costs one 256 KiB chunk in an incremental
/// backup that cannot ask the server for changed blocks; files smaller than this are one
/// chunk. Chosen from `benches/`-style measurements of pgbench data: 64 KiB chunks doubled
/// manifest size for a few percent less stored, 1 MiB chunks stored 2-3x more per change.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Chunks encoded together on all cores; bounds memory to BATCH * CHUNK_SIZE in flight.
const BATCH: usize = 16;

/// One chunk after hashing: encoded only when the stanza does not have it yet.
struct Resolved {
    file: usize,
    id: ContentId,
    encoded: Option<Result<(Vec<u8>, ContentId), String>>,
    size: u64,
}

/// A chunk waiting to be recorded, in file order.
#[derive(Debug)]
enum Pending {
    /// Cut from file data: hashed (and stored if new) when resolved.
    Data(usize, Bytes),
    /// Already stored (a parent backup's chunk reused as is): recorded without reading it.
    Stored(usize, ContentId, ChunkLocation),
}

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
    repo: Repository,
    index: ChunkIndex,
    packs: PackWriter,
    pack_ids: Vec<PackId>,
    current: BytesMut,
    /// Chunks cut but not yet resolved, with the file (by manifest position) they belong to.
    pending: Vec<Pending>,
    /// Chunk refs of each file, by manifest position.
    pub refs: Vec<Vec<ChunkRef>>,
    pub new_chunks: u64,
    pub reused_chunks: u64,
}

impl Chunker {
    pub fn new(repo: Repository, index: ChunkIndex, packs: PackWriter) -> Chunker {
        Chunker {
            repo,
            index,
            packs,
            pack_ids: Vec::new(),
            current: BytesMut::with_capacity(CHUNK_SIZE),
            pending: Vec::new(),
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
        self.pending.push(Pending::Stored(file, id, loc));
        if self.pending.len() >= BATCH {
            self.resolve().await?;
        }
        Ok(())
    }

    async fn cut(&mut self, file: usize) -> Result<(), BackupError> {
        let chunk = self.current.split().freeze();
        self.current.reserve(CHUNK_SIZE);
        self.pending.push(Pending::Data(file, chunk));
        if self.pending.len() >= BATCH {
            self.resolve().await?;
        }
        Ok(())
    }

    /// Hash (and, for new chunks, encode) the pending chunks on all cores, then record them
    /// in order.
    async fn resolve(&mut self) -> Result<(), BackupError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let keys = self.repo.keys().clone();
        let level = self.repo.compress_level();
        let index = std::mem::take(&mut self.index);
        let (index, batch, results) = tokio::task::spawn_blocking(move || {
            let results: Vec<Option<Resolved>> = batch
                .par_iter()
                .map(|p| match p {
                    Pending::Data(file, data) => {
                        let id = keys.content_id_single(data);
                        let encoded = index
                            .get(&id)
                            .is_none()
                            .then(|| object::encode(&keys, ObjectKind::Chunk, data, level));
                        Some(Resolved {
                            file: *file,
                            id,
                            encoded,
                            size: data.len() as u64,
                        })
                    }
                    Pending::Stored(..) => None,
                })
                .collect();
            (index, batch, results)
        })
        .await
        .expect("chunk task panicked");
        self.index = index;
        for (pending, resolved) in batch.into_iter().zip(results) {
            let (file, loc, id) = match (pending, resolved) {
                (Pending::Stored(file, id, loc), _) => {
                    self.reused_chunks += 1;
                    if self.index.get(&id).is_none() {
                        self.index.insert(id, loc.clone());
                    }
                    (file, loc, id)
                }
                (
                    Pending::Data(..),
                    Some(Resolved {
                        file,
                        id,
                        encoded,
                        size,
                    }),
                ) => {
                    let loc = match (self.index.get(&id).cloned(), encoded) {
                        (Some(loc), _) => {
                            self.reused_chunks += 1;
                            loc
                        }
                        (None, Some(enc)) => {
                            let (bytes, cid) = enc.map_err(|m| {
                                BackupError::Repo(cairn_repo::RepoError::Encode { message: m })
                            })?;
                            let enc = Encoded::from_parts(bytes, cid, size);
                            let loc = self.packs.add(&enc).await?;
                            self.index.insert(id, loc.clone());
                            self.new_chunks += 1;
                            loc
                        }
                        (None, None) => unreachable!("unknown chunks are always encoded"),
                    };
                    (file, loc, id)
                }
                (Pending::Data(..), None) => unreachable!("data chunks are always resolved"),
            };
            let pack = match self.pack_ids.iter().position(|p| *p == loc.pack) {
                Some(i) => i,
                None => {
                    self.pack_ids.push(loc.pack.clone());
                    self.pack_ids.len() - 1
                }
            };
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
        self.resolve().await?;
        self.packs.flush().await?;
        Ok(Chunked {
            packs: self.pack_ids,
            refs: self.refs,
            stored_bytes: self.packs.stored_bytes,
            new_chunks: self.new_chunks,
            reused_chunks: self.reused_chunks,
        })
    }
}
