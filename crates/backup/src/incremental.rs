//! PostgreSQL 17+ incremental backups: rebuilding each `INCREMENTAL.<file>` the server sent
//! into the complete file, from its changed blocks and the parent backup's chunks, so every
//! cairn manifest stays complete on its own (decision 005).
//!
//! The rules are those of `reconstruct_from_incremental_file()` in
//! src/bin/pg_combinebackup/reconstruct.c, with the parent backup as the only prior one
//! (a cairn parent is always complete): the file is
//! [`IncrementalHeader::reconstructed_blocks`] long; a block the incremental file holds
//! comes from it; any other block below the truncation block length comes from the
//! parent's file when that has it; every other block is zeroes.
//!
//! The result is produced one [`CHUNK_SIZE`] range at a time, in order, so memory stays at
//! one range whatever the file's size. A range with no changed block that the parent
//! stored as exactly one chunk is the parent's chunk: its reference is reused without
//! reading it. Any other range is assembled from the parent's chunk(s) and the changed
//! blocks and goes through the chunker like streamed data.

use std::collections::HashMap;

use cairn_pgformat::incremental::{
    BLCKSZ, BlockNumber, IncrementalEvent, IncrementalHeader, IncrementalParser,
};
use cairn_repo::{
    BackupManifest, ChunkLocation, ContentId, ManifestFile, RepoError, Repository, StanzaName,
    layout,
};

use crate::chunker::{CHUNK_SIZE, Chunker};
use crate::error::BackupError;

const CHUNK: u64 = CHUNK_SIZE as u64;
const BLOCK: u64 = BLCKSZ as u64;

/// The backup_label lines `do_pg_backup_stop()` writes for an incremental backup.
/// PostgreSQL refuses to start from a label that has them ("this is an incremental
/// backup, not a data directory"); `write_backup_label()` in pg_combinebackup drops them
/// from a reconstructed backup, and so does cairn.
const INCREMENTAL_LABEL_LINES: [&str; 2] = ["INCREMENTAL FROM LSN: ", "INCREMENTAL FROM TLI: "];

/// `backup_label` of an incremental backup as that of the complete backup cairn stores.
pub(crate) fn complete_backup_label(label: &str) -> String {
    label
        .split_inclusive('\n')
        .filter(|line| !INCREMENTAL_LABEL_LINES.iter().any(|p| line.starts_with(p)))
        .collect()
}

/// One chunk of a parent file: where it starts in the file and where it is stored.
#[derive(Debug, Clone)]
struct ParentChunk {
    start: u64,
    id: ContentId,
    loc: ChunkLocation,
}

/// A file of the parent backup, as far as reconstruction needs it.
#[derive(Debug, Clone)]
pub(crate) struct ParentFile {
    size: u64,
    chunks: Vec<ParentChunk>,
}

impl ParentFile {
    /// The chunks holding bytes of `start..end` (chunks are in file order).
    fn overlapping(&self, start: u64, end: u64) -> &[ParentChunk] {
        let from = self
            .chunks
            .partition_point(|c| c.start + u64::from(c.loc.size) <= start);
        let to = self.chunks.partition_point(|c| c.start < end);
        &self.chunks[from..to.max(from)]
    }
}

/// The parent backup's files by path, for looking up what an incremental file builds on.
#[derive(Debug)]
pub(crate) struct ParentFiles<'a> {
    manifest: &'a BackupManifest,
    by_path: HashMap<&'a str, &'a ManifestFile>,
}

impl<'a> ParentFiles<'a> {
    pub(crate) fn new(manifest: &'a BackupManifest) -> ParentFiles<'a> {
        ParentFiles {
            manifest,
            by_path: manifest
                .files
                .iter()
                .map(|f| (f.path.as_str(), f))
                .collect(),
        }
    }

    /// The parent's file at `path` (cairn's path: tablespaces under `pg_tblspc/OID/`).
    pub(crate) fn get(&self, stanza: &StanzaName, path: &str) -> Result<ParentFile, BackupError> {
        let missing = || BackupError::NotInParent {
            path: path.to_string(),
            parent: self.manifest.label.to_string(),
        };
        let file = self.by_path.get(path).ok_or_else(missing)?;
        if file.kind != cairn_repo::FileKind::File {
            return Err(missing());
        }
        let mut start = 0;
        let mut chunks = Vec::with_capacity(file.chunks.len());
        for c in &file.chunks {
            let loc = self.manifest.location(c).ok_or_else(|| {
                BackupError::Repo(RepoError::Malformed {
                    what: "backup manifest",
                    key: layout::backup_manifest(stanza, self.manifest.label.as_str()),
                    message: format!("a chunk of {path} names pack {} it does not list", c.pack),
                })
            })?;
            chunks.push(ParentChunk {
                start,
                id: c.id,
                loc,
            });
            start += u64::from(c.size);
        }
        Ok(ParentFile {
            size: file.size.min(start),
            chunks,
        })
    }
}

/// Where reconstruction reads parent chunks and sends its result.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    pub repo: &'a Repository,
    pub stanza: &'a StanzaName,
    pub chunker: &'a mut Chunker,
}

/// The file being rebuilt, once its header is known.
#[derive(Debug)]
struct Layout {
    /// Bytes below this may come from the parent.
    truncation: u64,
    /// The reconstructed file's length.
    len: u64,
    /// Blocks the incremental file holds, ascending.
    changed: Vec<BlockNumber>,
    /// The next range to produce.
    next_range: u64,
    /// The range being assembled because blocks of it changed, and its bytes.
    open: Option<(u64, Vec<u8>)>,
}

/// Rebuilds one `INCREMENTAL.` file fed to it in pieces.
#[derive(Debug)]
pub(crate) struct Reconstruction {
    /// The complete file's path, for errors.
    path: String,
    /// The file's position in the chunker.
    file: usize,
    parent: ParentFile,
    parser: IncrementalParser,
    events: Vec<IncrementalEvent>,
    layout: Option<Layout>,
}

impl Reconstruction {
    pub(crate) fn new(path: String, file: usize, parent: ParentFile) -> Reconstruction {
        Reconstruction {
            path,
            file,
            parent,
            parser: IncrementalParser::new(),
            events: Vec::new(),
            layout: None,
        }
    }

    fn format_error(&self, source: cairn_pgformat::incremental::IncrementalError) -> BackupError {
        BackupError::Incremental {
            path: self.path.clone(),
            source,
        }
    }

    /// The next piece of the incremental file.
    pub(crate) async fn data(
        &mut self,
        data: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), BackupError> {
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.parser.push(data, &mut events) {
            return Err(self.format_error(e));
        }
        for ev in events.drain(..) {
            match ev {
                IncrementalEvent::Header(h) => self.layout = Some(layout(&h)),
                IncrementalEvent::Block { number, data } => self.block(number, &data, sink).await?,
            }
        }
        self.events = events;
        Ok(())
    }

    /// The incremental file ended: produce the rest. Returns the complete file's size.
    pub(crate) async fn finish(mut self, sink: &mut Sink<'_>) -> Result<u64, BackupError> {
        if let Err(e) = self.parser.finish() {
            return Err(self.format_error(e));
        }
        let layout = self
            .layout
            .as_mut()
            .expect("a finished parser has seen the header");
        let ranges = layout.len.div_ceil(CHUNK);
        let open = layout.open.take();
        if let Some((range, bytes)) = open {
            self.produce(range, Some(bytes), sink).await?;
        }
        while self.layout().next_range < ranges {
            let range = self.layout().next_range;
            self.produce(range, None, sink).await?;
        }
        sink.chunker.end_file(self.file).await?;
        Ok(self.layout().len)
    }

    fn layout(&mut self) -> &mut Layout {
        self.layout.as_mut().expect("blocks follow the header")
    }

    /// A changed block, in ascending order: produce every range before its own, then put
    /// it into its range.
    async fn block(
        &mut self,
        number: BlockNumber,
        data: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), BackupError> {
        let at = u64::from(number.0) * BLOCK;
        let range = at / CHUNK;
        if let Some((open, _)) = &self.layout().open
            && *open != range
        {
            let (open, bytes) = self.layout().open.take().expect("checked");
            self.produce(open, Some(bytes), sink).await?;
        }
        while self.layout().next_range < range {
            let next = self.layout().next_range;
            self.produce(next, None, sink).await?;
        }
        if self.layout().open.is_none() {
            let bytes = self.base(range, sink).await?;
            self.layout().open = Some((range, bytes));
        }
        let (_, bytes) = self.layout().open.as_mut().expect("just opened");
        let off = (at - range * CHUNK) as usize;
        bytes[off..off + BLCKSZ].copy_from_slice(data);
        Ok(())
    }

    /// Bytes of `range` of the complete file.
    fn bounds(&mut self, range: u64) -> (u64, u64) {
        let start = range * CHUNK;
        (start, (start + CHUNK).min(self.layout().len))
    }

    /// Hand `range` to the chunker: its assembled bytes, or (no block changed) the parent's
    /// chunk when it covers exactly this range, else the parent's bytes read back.
    async fn produce(
        &mut self,
        range: u64,
        bytes: Option<Vec<u8>>,
        sink: &mut Sink<'_>,
    ) -> Result<(), BackupError> {
        let bytes = match bytes {
            Some(b) => b,
            None => {
                let (start, end) = self.bounds(range);
                let truncation = self.layout().truncation;
                let same = self.parent.overlapping(start, end).first().filter(|c| {
                    c.start == start && end <= truncation && u64::from(c.loc.size) == end - start
                });
                match same {
                    Some(c) => {
                        let (id, loc) = (c.id, c.loc.clone());
                        sink.chunker.reuse(self.file, id, loc).await?;
                        self.layout().next_range = range + 1;
                        return Ok(());
                    }
                    None => self.base(range, sink).await?,
                }
            }
        };
        sink.chunker.data(self.file, &bytes).await?;
        self.layout().next_range = range + 1;
        Ok(())
    }

    /// `range` as the parent gives it: the parent's whole blocks below the truncation
    /// length, zeroes elsewhere. The parent is read only when a block it gives is not one
    /// the incremental file replaces anyway.
    async fn base(&mut self, range: u64, sink: &mut Sink<'_>) -> Result<Vec<u8>, BackupError> {
        let (start, end) = self.bounds(range);
        let mut bytes = vec![0u8; (end - start) as usize];
        let parent_blocks_end = self.parent.size / BLOCK * BLOCK;
        let from_parent_end = end.min(self.layout().truncation).min(parent_blocks_end);
        if from_parent_end <= start {
            return Ok(bytes);
        }
        let first = (start / BLOCK) as u32;
        let last = (from_parent_end / BLOCK) as u32;
        let changed = &self.layout().changed;
        let lo = changed.partition_point(|b| b.0 < first);
        let hi = changed.partition_point(|b| b.0 < last);
        if hi - lo == (last - first) as usize {
            return Ok(bytes);
        }
        for c in self.parent.overlapping(start, from_parent_end) {
            let plain = sink.repo.read_chunk(sink.stanza, &c.id, &c.loc).await?;
            let c_end = c.start + plain.len() as u64;
            let (a, b) = (c.start.max(start), c_end.min(from_parent_end));
            if a < b {
                bytes[(a - start) as usize..(b - start) as usize]
                    .copy_from_slice(&plain[(a - c.start) as usize..(b - c.start) as usize]);
            }
        }
        Ok(bytes)
    }
}

fn layout(h: &IncrementalHeader) -> Layout {
    Layout {
        truncation: u64::from(h.truncation_block_length) * BLOCK,
        len: u64::from(h.reconstructed_blocks()) * BLOCK,
        changed: h.blocks.clone(),
        next_range: 0,
        open: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_lines_leave_the_backup_label() {
        let label = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n\
                     CHECKPOINT LOCATION: 0/4000080\n\
                     BACKUP METHOD: streamed\n\
                     START TIMELINE: 1\n\
                     INCREMENTAL FROM LSN: 0/2000028\n\
                     INCREMENTAL FROM TLI: 1\n";
        assert_eq!(
            complete_backup_label(label),
            "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n\
             CHECKPOINT LOCATION: 0/4000080\n\
             BACKUP METHOD: streamed\n\
             START TIMELINE: 1\n"
        );
        let full =
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1";
        assert_eq!(complete_backup_label(full), full);
    }
}
