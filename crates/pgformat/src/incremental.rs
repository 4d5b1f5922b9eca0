//! PostgreSQL 17+ incremental files: what `BASE_BACKUP (INCREMENTAL)` sends instead of a
//! relation segment whose blocks mostly did not change since the backup whose manifest was
//! uploaded. The file is named `INCREMENTAL.<segment file>` in the same directory.
//!
//! Layout, as written by `sendFile()` in src/backend/backup/basebackup.c (sizes from
//! `GetIncrementalHeaderSize()` / `GetIncrementalFileSize()` in basebackup_incremental.c) and
//! read by `make_incremental_rfile()` in src/bin/pg_combinebackup/reconstruct.c, all
//! integers 32-bit in the server's byte order:
//!
//! ```text
//! magic 0xd3ae1f0d | block count N | truncation block length | N block numbers (ascending)
//! | zero padding up to a multiple of BLCKSZ (PostgreSQL 17 and 18; only when N > 0)
//! | N blocks of BLCKSZ bytes, in the order of the block numbers
//! ```
//!
//! Block numbers are relative to the segment file. The reconstructed file is
//! [`IncrementalHeader::reconstructed_blocks`] long (`find_reconstructed_block_length()`):
//! blocks in the file come from it, other blocks below the truncation block length from the
//! prior backup, and the rest are zeroes.
//!
//! [`IncrementalParser`] is fed the file in pieces of any size and yields the header, then
//! each block with its number, without ever holding more than one block.
//!
//! ```
//! use cairn_pgformat::incremental::{BlockNumber, IncrementalEvent, IncrementalParser, encode_file, BLCKSZ};
//! let page = vec![7u8; BLCKSZ];
//! let file = encode_file(10, &[(BlockNumber(3), &page[..])]);
//! let mut parser = IncrementalParser::new();
//! let mut events = Vec::new();
//! for piece in file.chunks(1000) {
//!     parser.push(piece, &mut events).unwrap();
//! }
//! parser.finish().unwrap();
//! match &events[..] {
//!     [IncrementalEvent::Header(h), IncrementalEvent::Block { number, data }] => {
//!         assert_eq!((h.truncation_block_length, h.reconstructed_blocks()), (10, 10));
//!         assert_eq!((*number, data.len()), (BlockNumber(3), BLCKSZ));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::fmt;

/// PostgreSQL's page size (`BLCKSZ`); cairn supports the default only.
pub const BLCKSZ: usize = 8192;

/// `INCREMENTAL_MAGIC` (src/include/backup/basebackup_incremental.h).
pub const INCREMENTAL_MAGIC: u32 = 0xd3ae_1f0d;

/// Blocks per relation segment (`RELSEG_SIZE`, 1 GiB of 8 KiB pages by default). The
/// server never writes a block count or truncation length above it; like
/// `make_incremental_rfile()` we refuse one, which also bounds the header we hold.
pub const RELSEG_SIZE: u32 = 131_072;

/// The file name prefix of an incremental file (`GetIncrementalFilePath()`).
pub const INCREMENTAL_PREFIX: &str = "INCREMENTAL.";

/// Magic, block count, truncation block length.
const FIXED_HEADER: usize = 12;

/// A block number relative to the start of its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockNumber(pub u32);

impl fmt::Display for BlockNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The path of the full file an incremental file stands for: the last component loses
/// its `INCREMENTAL.` prefix (`base/5/INCREMENTAL.16384.1` -> `base/5/16384.1`). `None`
/// when `path` does not name an incremental file.
pub fn full_path(path: &str) -> Option<String> {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    let bare = name.strip_prefix(INCREMENTAL_PREFIX)?;
    (!bare.is_empty()).then(|| format!("{dir}{bare}"))
}

/// Why bytes are not an incremental file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncrementalError {
    #[error(
        "not an incremental file: magic number {found:#010x}, expected {INCREMENTAL_MAGIC:#010x}"
    )]
    Magic { found: u32 },
    #[error("incremental file has block count {count}, more than a segment's {RELSEG_SIZE}")]
    BlockCount { count: u32 },
    #[error(
        "incremental file has truncation block length {length}, more than a segment's {RELSEG_SIZE}"
    )]
    TruncationLength { length: u32 },
    #[error("incremental file names block {block}, beyond a segment's {RELSEG_SIZE} blocks")]
    BlockRange { block: BlockNumber },
    #[error("incremental file lists block {block} after block {previous}: not ascending")]
    Order {
        previous: BlockNumber,
        block: BlockNumber,
    },
    #[error("incremental file has data after its last block (at byte {offset})")]
    Trailing { offset: u64 },
    #[error("incremental file ends after {found} bytes, its header promises {expected}")]
    Truncated { expected: u64, found: u64 },
}

/// Which order the server wrote the integers in: its own. The magic tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn read(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        }
    }
}

/// The header of an incremental file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalHeader {
    /// Blocks below this that the file does not contain come from the prior backup; at or
    /// above it, only blocks the file contains exist (gaps are zeroes).
    pub truncation_block_length: u32,
    /// The blocks the file contains, ascending, in the order their data follows.
    pub blocks: Vec<BlockNumber>,
}

impl IncrementalHeader {
    /// Bytes before the first block: `GetIncrementalHeaderSize()`, padded to a multiple of
    /// BLCKSZ only when the file holds blocks.
    pub fn header_len(&self) -> u64 {
        header_len(self.blocks.len())
    }

    /// The whole file's length (`GetIncrementalFileSize()`).
    pub fn file_len(&self) -> u64 {
        self.header_len() + self.blocks.len() as u64 * BLCKSZ as u64
    }

    /// Length in blocks of the reconstructed file: the truncation block length, extended to
    /// cover every block the file contains (`find_reconstructed_block_length()`).
    pub fn reconstructed_blocks(&self) -> u32 {
        self.blocks
            .iter()
            .map(|b| b.0 + 1)
            .fold(self.truncation_block_length, u32::max)
    }

    /// The header bytes (with padding), little-endian, as an x86 or ARM server writes them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() as usize);
        out.extend_from_slice(&INCREMENTAL_MAGIC.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.truncation_block_length.to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.0.to_le_bytes());
        }
        out.resize(self.header_len() as usize, 0);
        out
    }
}

fn header_len(blocks: usize) -> u64 {
    let raw = (FIXED_HEADER + 4 * blocks) as u64;
    if blocks > 0 {
        raw.div_ceil(BLCKSZ as u64) * BLCKSZ as u64
    } else {
        raw
    }
}

/// An incremental file with `blocks` (number, BLCKSZ bytes each, ascending): for tests of
/// this and other crates.
pub fn encode_file(truncation_block_length: u32, blocks: &[(BlockNumber, &[u8])]) -> Vec<u8> {
    let header = IncrementalHeader {
        truncation_block_length,
        blocks: blocks.iter().map(|(n, _)| *n).collect(),
    };
    let mut out = header.encode();
    for (_, data) in blocks {
        assert_eq!(data.len(), BLCKSZ, "a block is BLCKSZ bytes");
        out.extend_from_slice(data);
    }
    out
}

/// What a piece of an incremental file contained, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementalEvent {
    /// Always first, once the whole header (and its padding) has arrived.
    Header(IncrementalHeader),
    /// One block, BLCKSZ bytes.
    Block { number: BlockNumber, data: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting the fixed part, then the block numbers.
    Header,
    /// Skipping `left` bytes of padding.
    Padding { left: usize },
    /// Collecting block `index`.
    Blocks { index: usize },
    /// Every promised byte arrived.
    Done,
}

/// An incremental parser over one incremental file; see the module documentation.
#[derive(Debug, Clone)]
pub struct IncrementalParser {
    state: State,
    order: Order,
    /// Header bytes, then the block being collected.
    buf: Vec<u8>,
    /// Bytes needed for the header so far (grows once the block count is known).
    header_need: usize,
    blocks: Vec<BlockNumber>,
    /// Bytes consumed.
    offset: u64,
    /// Bytes the whole file has, once the header is known.
    expected: Option<u64>,
}

impl Default for IncrementalParser {
    fn default() -> Self {
        IncrementalParser {
            state: State::Header,
            order: Order::Little,
            buf: Vec::with_capacity(FIXED_HEADER),
            header_need: FIXED_HEADER,
            blocks: Vec::new(),
            offset: 0,
            expected: None,
        }
    }
}

impl IncrementalParser {
    pub fn new() -> IncrementalParser {
        IncrementalParser::default()
    }

    /// The header, once it has been parsed.
    pub fn header_known(&self) -> bool {
        self.expected.is_some()
    }

    /// Feed the next piece of the file; complete items are appended to `out`.
    pub fn push(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<IncrementalEvent>,
    ) -> Result<(), IncrementalError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    let take = (self.header_need - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    self.consume(&mut input, take);
                    if self.buf.len() == self.header_need {
                        self.header_step(out)?;
                    }
                }
                State::Padding { left } => {
                    let take = left.min(input.len());
                    self.consume(&mut input, take);
                    self.state = if take == left {
                        State::Blocks { index: 0 }
                    } else {
                        State::Padding { left: left - take }
                    };
                }
                State::Blocks { index } => {
                    let take = (BLCKSZ - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    self.consume(&mut input, take);
                    if self.buf.len() == BLCKSZ {
                        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLCKSZ));
                        out.push(IncrementalEvent::Block {
                            number: self.blocks[index],
                            data,
                        });
                        self.state = if index + 1 == self.blocks.len() {
                            self.buf = Vec::new();
                            State::Done
                        } else {
                            State::Blocks { index: index + 1 }
                        };
                    }
                }
                State::Done => {
                    return Err(IncrementalError::Trailing {
                        offset: self.offset,
                    });
                }
            }
        }
        Ok(())
    }

    /// Check that the whole file arrived.
    pub fn finish(&self) -> Result<(), IncrementalError> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(IncrementalError::Truncated {
                expected: self.expected.unwrap_or(self.header_need as u64),
                found: self.offset,
            }),
        }
    }

    fn consume(&mut self, input: &mut &[u8], n: usize) {
        *input = &input[n..];
        self.offset += n as u64;
    }

    /// The header buffer is full: either the fixed part (learn the block count and ask for
    /// the block numbers) or everything (emit the header).
    fn header_step(&mut self, out: &mut Vec<IncrementalEvent>) -> Result<(), IncrementalError> {
        if self.header_need == FIXED_HEADER {
            let le = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            self.order = if le == INCREMENTAL_MAGIC {
                Order::Little
            } else if le.swap_bytes() == INCREMENTAL_MAGIC {
                Order::Big
            } else {
                return Err(IncrementalError::Magic { found: le });
            };
            let count = self.order.read(&self.buf[4..8]);
            if count > RELSEG_SIZE {
                return Err(IncrementalError::BlockCount { count });
            }
            let length = self.order.read(&self.buf[8..12]);
            if length > RELSEG_SIZE {
                return Err(IncrementalError::TruncationLength { length });
            }
            self.header_need = FIXED_HEADER + 4 * count as usize;
            self.buf.reserve(4 * count as usize);
            if self.header_need > FIXED_HEADER {
                return Ok(());
            }
        }
        let truncation_block_length = self.order.read(&self.buf[8..12]);
        let mut blocks = Vec::with_capacity((self.header_need - FIXED_HEADER) / 4);
        for raw in self.buf[FIXED_HEADER..].chunks_exact(4) {
            let block = BlockNumber(self.order.read(raw));
            if block.0 >= RELSEG_SIZE {
                return Err(IncrementalError::BlockRange { block });
            }
            // The server sorts them (`GetFileBackupMethod()`); reconstruction in one pass
            // relies on it.
            if let Some(&previous) = blocks.last()
                && previous >= block
            {
                return Err(IncrementalError::Order { previous, block });
            }
            blocks.push(block);
        }
        let header = IncrementalHeader {
            truncation_block_length,
            blocks,
        };
        self.expected = Some(header.file_len());
        let padding = (header.header_len() - self.header_need as u64) as usize;
        self.blocks = header.blocks.clone();
        self.buf = Vec::with_capacity(BLCKSZ);
        self.state = match (padding, self.blocks.is_empty()) {
            (_, true) => State::Done,
            (0, false) => State::Blocks { index: 0 },
            (left, false) => State::Padding { left },
        };
        out.push(IncrementalEvent::Header(header));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8], piece: usize) -> Result<Vec<IncrementalEvent>, IncrementalError> {
        let mut p = IncrementalParser::new();
        let mut out = Vec::new();
        for part in bytes.chunks(piece.max(1)) {
            p.push(part, &mut out)?;
        }
        p.finish()?;
        Ok(out)
    }

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; BLCKSZ]
    }

    #[test]
    fn header_sizes_follow_get_incremental_header_size() {
        assert_eq!(header_len(0), 12);
        assert_eq!(header_len(1), BLCKSZ as u64);
        // 12 + 4 * 2045 = 8192 exactly: no padding.
        assert_eq!(header_len(2045), BLCKSZ as u64);
        assert_eq!(header_len(2046), 2 * BLCKSZ as u64);
    }

    #[test]
    fn an_unchanged_segment_is_just_the_fixed_header() {
        let file = encode_file(128, &[]);
        assert_eq!(file.len(), 12);
        let ev = parse_all(&file, 5).unwrap();
        assert_eq!(
            ev,
            [IncrementalEvent::Header(IncrementalHeader {
                truncation_block_length: 128,
                blocks: vec![]
            })]
        );
    }

    #[test]
    fn blocks_come_with_their_numbers_after_the_padding() {
        let (a, b) = (page(1), page(2));
        let file = encode_file(4, &[(BlockNumber(1), &a), (BlockNumber(6), &b)]);
        assert_eq!(file.len(), 3 * BLCKSZ);
        // Little-endian on the wire: magic d3ae1f0d is 0d 1f ae d3.
        assert_eq!(&file[..4], &[0x0d, 0x1f, 0xae, 0xd3]);
        let ev = parse_all(&file, 333).unwrap();
        let IncrementalEvent::Header(h) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(h.reconstructed_blocks(), 7);
        assert_eq!(h.file_len(), file.len() as u64);
        assert_eq!(
            ev[1],
            IncrementalEvent::Block {
                number: BlockNumber(1),
                data: a
            }
        );
        assert_eq!(
            ev[2],
            IncrementalEvent::Block {
                number: BlockNumber(6),
                data: b
            }
        );
    }

    #[test]
    fn a_big_endian_server_is_understood() {
        let mut file = Vec::new();
        for v in [INCREMENTAL_MAGIC, 1, 3, 2] {
            file.extend_from_slice(&v.to_be_bytes());
        }
        file.resize(BLCKSZ, 0);
        file.extend_from_slice(&page(9));
        let ev = parse_all(&file, 4096).unwrap();
        assert_eq!(
            ev[0],
            IncrementalEvent::Header(IncrementalHeader {
                truncation_block_length: 3,
                blocks: vec![BlockNumber(2)]
            })
        );
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn refusals() {
        let mut bad = encode_file(1, &[]);
        bad[0] ^= 1;
        assert!(matches!(
            parse_all(&bad, 100),
            Err(IncrementalError::Magic { .. })
        ));

        let mut huge = encode_file(1, &[]);
        huge[4..8].copy_from_slice(&(RELSEG_SIZE + 1).to_le_bytes());
        assert_eq!(
            parse_all(&huge, 100),
            Err(IncrementalError::BlockCount {
                count: RELSEG_SIZE + 1
            })
        );

        let mut long = encode_file(1, &[]);
        long[8..12].copy_from_slice(&(RELSEG_SIZE + 1).to_le_bytes());
        assert!(matches!(
            parse_all(&long, 100),
            Err(IncrementalError::TruncationLength { .. })
        ));

        let p = page(0);
        let unordered = IncrementalHeader {
            truncation_block_length: 0,
            blocks: vec![BlockNumber(5), BlockNumber(5)],
        };
        let mut file = unordered.encode();
        file.extend_from_slice(&p);
        file.extend_from_slice(&p);
        assert!(matches!(
            parse_all(&file, 100),
            Err(IncrementalError::Order { .. })
        ));

        let beyond = IncrementalHeader {
            truncation_block_length: 0,
            blocks: vec![BlockNumber(RELSEG_SIZE)],
        };
        assert!(matches!(
            parse_all(&beyond.encode(), 100),
            Err(IncrementalError::BlockRange { .. })
        ));

        let whole = encode_file(2, &[(BlockNumber(0), &p)]);
        assert_eq!(
            parse_all(&whole[..whole.len() - 1], 100),
            Err(IncrementalError::Truncated {
                expected: whole.len() as u64,
                found: whole.len() as u64 - 1
            })
        );
        let mut longer = whole.clone();
        longer.push(0);
        assert_eq!(
            parse_all(&longer, 100),
            Err(IncrementalError::Trailing {
                offset: whole.len() as u64
            })
        );
        assert!(matches!(
            parse_all(&whole[..7], 100),
            Err(IncrementalError::Truncated { found: 7, .. })
        ));
    }

    #[test]
    fn full_paths() {
        assert_eq!(
            full_path("base/5/INCREMENTAL.16384").as_deref(),
            Some("base/5/16384")
        );
        assert_eq!(
            full_path("pg_tblspc/16390/PG_17_202406281/5/INCREMENTAL.16391.2").as_deref(),
            Some("pg_tblspc/16390/PG_17_202406281/5/16391.2")
        );
        assert_eq!(full_path("INCREMENTAL.1259").as_deref(), Some("1259"));
        assert_eq!(full_path("base/5/16384"), None);
        assert_eq!(full_path("base/INCREMENTAL.x/16384"), None);
        assert_eq!(full_path("base/5/INCREMENTAL."), None);
    }

    proptest! {
        #[test]
        fn round_trip(
            numbers in proptest::collection::btree_set(0u32..3000, 0..40),
            truncation in 0u32..3100,
            seed in any::<u8>(),
            piece in 1usize..20_000,
        ) {
            let pages: Vec<(BlockNumber, Vec<u8>)> = numbers
                .iter()
                .map(|&n| (BlockNumber(n), vec![seed.wrapping_add(n as u8); BLCKSZ]))
                .collect();
            let refs: Vec<(BlockNumber, &[u8])> =
                pages.iter().map(|(n, d)| (*n, d.as_slice())).collect();
            let file = encode_file(truncation, &refs);
            let ev = parse_all(&file, piece).unwrap();
            let header = IncrementalHeader {
                truncation_block_length: truncation,
                blocks: numbers.iter().map(|&n| BlockNumber(n)).collect(),
            };
            prop_assert_eq!(header.file_len(), file.len() as u64);
            prop_assert_eq!(&ev[0], &IncrementalEvent::Header(header));
            prop_assert_eq!(ev.len(), pages.len() + 1);
            for (e, (n, d)) in ev[1..].iter().zip(&pages) {
                prop_assert_eq!(e, &IncrementalEvent::Block { number: *n, data: d.clone() });
            }
        }
    }
}
