//! WAL page headers (`XLogPageHeaderData`, `XLogLongPageHeaderData`) and
//! the per-release page magic.
//!
//! Every `xlog_blcksz` page of a segment starts with a short header; the
//! first page of a segment carries the long one, which names the cluster
//! (system identifier) and the segment and page sizes. WAL is written in the
//! server's byte order; like PostgreSQL's own tools we read little-endian.

use crate::error::WalError;
use crate::lsn::Lsn;
use crate::timeline::TimelineId;

/// `xlp_info`: the page starts with the continuation of a record from the
/// previous page (XLP_FIRST_IS_CONTRECORD).
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `xlp_info`: the header is a long one (XLP_LONG_HEADER).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `xlp_info`: backup blocks starting on this page are optional
/// (XLP_BKP_REMOVABLE, 15 to 18; set whenever no base backup is running).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `xlp_info`: a record that was missing its continuation was abandoned and
/// this page starts afresh (XLP_FIRST_IS_OVERWRITE_CONTRECORD, 15 to 18).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// Every defined `xlp_info` bit (XLP_ALL_FLAGS, 15 to 18).
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// The `xlp_info` bits whose values changed after 18: the development
/// branch after 18 (magic 0xD120 and up) dropped XLP_BKP_REMOVABLE and moved
/// XLP_FIRST_IS_OVERWRITE_CONTRECORD to 0x0004. Releases 15 to 18 (and any
/// older magic) use the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFlagLayout {
    /// Value of XLP_FIRST_IS_OVERWRITE_CONTRECORD.
    pub overwrite_contrecord: u16,
    /// Value of XLP_ALL_FLAGS.
    pub all: u16,
    /// Value of XLP_BKP_REMOVABLE, where it exists.
    pub bkp_removable: Option<u16>,
}

/// The `xlp_info` layout of the release that wrote pages with `magic`.
pub fn page_flag_layout(magic: u16) -> PageFlagLayout {
    const NEWEST_KNOWN: u16 = 0xD118;
    if magic > NEWEST_KNOWN {
        PageFlagLayout {
            overwrite_contrecord: 0x0004,
            all: 0x0007,
            bkp_removable: None,
        }
    } else {
        PageFlagLayout {
            overwrite_contrecord: XLP_FIRST_IS_OVERWRITE_CONTRECORD,
            all: XLP_ALL_FLAGS,
            bkp_removable: Some(XLP_BKP_REMOVABLE),
        }
    }
}

/// Size of a short page header, SizeOfXLogShortPHD (20 bytes MAXALIGNed).
pub const SHORT_HEADER_LEN: usize = 24;
/// Size of a long page header, SizeOfXLogLongPHD.
pub const LONG_HEADER_LEN: usize = 40;
/// The default WAL page size (XLOG_BLCKSZ).
pub const DEFAULT_XLOG_BLCKSZ: u32 = 8192;

/// XLOG_PAGE_MAGIC of each supported major release, checked against
/// `src/include/access/xlog_internal.h` on REL_15 to REL_18.
const WAL_MAGICS: [(u32, u16); 4] = [(15, 0xD110), (16, 0xD113), (17, 0xD116), (18, 0xD118)];

/// The major release whose WAL carries `magic`, for 15 to 18.
pub fn pg_major_for_wal_magic(magic: u16) -> Option<u32> {
    WAL_MAGICS
        .iter()
        .find(|(_, m)| *m == magic)
        .map(|(v, _)| *v)
}

/// The WAL page magic of major release `major`, for 15 to 18.
pub fn wal_magic_for_pg_major(major: u32) -> Option<u16> {
    WAL_MAGICS
        .iter()
        .find(|(v, _)| *v == major)
        .map(|(_, m)| *m)
}

/// Whether `magic` looks like any PostgreSQL WAL page magic at all (every
/// release since 9.0 uses 0xD0xx or 0xD1xx). Used to tell "not WAL" from
/// "WAL of a release we do not know".
pub fn is_plausible_wal_magic(magic: u16) -> bool {
    magic & 0xF000 == 0xD000
}

/// The extra fields of a long page header (XLogLongPageHeaderData).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XLogLongPageHeader {
    /// `xlp_sysid`: the cluster's system identifier, as in pg_control.
    pub system_identifier: u64,
    /// `xlp_seg_size`: the segment size in bytes.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`: the WAL page size in bytes.
    pub xlog_blcksz: u32,
}

/// A page header (XLogPageHeaderData), with the long part when
/// [`XLP_LONG_HEADER`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XLogPageHeader {
    /// `xlp_magic`: identifies the WAL format, one value per major release.
    pub magic: u16,
    /// `xlp_info`: `XLP_*` flags.
    pub info: u16,
    /// `xlp_tli`: timeline of the first record on the page.
    pub tli: TimelineId,
    /// `xlp_pageaddr`: the LSN of the page's first byte.
    pub pageaddr: Lsn,
    /// `xlp_rem_len`: bytes of a record continued from earlier pages still
    /// to come (only with [`XLP_FIRST_IS_CONTRECORD`]).
    pub rem_len: u32,
    /// The long header fields, present exactly when `info` has [`XLP_LONG_HEADER`].
    pub long: Option<XLogLongPageHeader>,
}

/// Why a page header does not fit where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageProblem {
    /// `xlp_magic` is not a PostgreSQL WAL magic, or differs from the segment's.
    #[error("magic {found:#06X} where {expected} was expected")]
    Magic {
        /// Found magic.
        found: u16,
        /// What was expected, as text ("0xD110", or "a WAL page magic").
        expected: MagicExpectation,
    },
    /// `xlp_info` has bits outside XLP_ALL_FLAGS of its release.
    #[error("undefined info bits {info:#06X}")]
    InfoBits {
        /// Found `xlp_info`.
        info: u16,
    },
    /// The first page of a segment has a short header.
    #[error("first page of the segment has no long header (xlp_info {info:#06X})")]
    NotLong {
        /// Found `xlp_info`.
        info: u16,
    },
    /// `xlp_pageaddr` is not where the page lies: typically a recycled
    /// segment not yet overwritten.
    #[error("page address {found} where {expected} was expected")]
    PageAddr {
        /// Where the page lies.
        expected: Lsn,
        /// What its header says.
        found: Lsn,
    },
    /// The first page's address is not at a segment boundary.
    #[error("page address {pageaddr} is not the start of a segment")]
    NotSegmentStart {
        /// What the header says.
        pageaddr: Lsn,
    },
    /// The timeline went down from one page to the next.
    #[error("timeline {found} after timeline {after}")]
    TimelineBackwards {
        /// This page's timeline.
        found: TimelineId,
        /// The previous page's timeline.
        after: TimelineId,
    },
    /// Timeline 0 never exists.
    #[error("timeline 0")]
    ZeroTimeline,
    /// A long header later in the segment disagrees with the first one.
    #[error("long header disagrees with the segment's first page")]
    LongHeaderMismatch,
}

/// What magic a page was expected to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagicExpectation {
    /// Any PostgreSQL WAL magic (first page of a segment).
    AnyWal,
    /// The same magic as the segment's first page.
    Same(u16),
}

impl std::fmt::Display for MagicExpectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MagicExpectation::AnyWal => f.write_str("a PostgreSQL WAL page magic"),
            MagicExpectation::Same(m) => write!(f, "{m:#06X}"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl XLogPageHeader {
    /// Reads a page header from the start of `bytes`. Only the layout is
    /// checked here; whether the header fits its position is the segment
    /// reader's business.
    pub fn parse(bytes: &[u8]) -> Result<Self, WalError> {
        let short = |needed| WalError::Truncated {
            what: "WAL page header",
            needed,
            found: bytes.len(),
        };
        if bytes.len() < SHORT_HEADER_LEN {
            return Err(short(SHORT_HEADER_LEN));
        }
        let info = u16_at(bytes, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            if bytes.len() < LONG_HEADER_LEN {
                return Err(short(LONG_HEADER_LEN));
            }
            Some(XLogLongPageHeader {
                system_identifier: u64_at(bytes, 24),
                seg_size: u32_at(bytes, 32),
                xlog_blcksz: u32_at(bytes, 36),
            })
        } else {
            None
        };
        Ok(XLogPageHeader {
            magic: u16_at(bytes, 0),
            info,
            tli: TimelineId(u32_at(bytes, 4)),
            pageaddr: Lsn(u64_at(bytes, 8)),
            rem_len: u32_at(bytes, 16),
            long,
        })
    }

    /// The header's size on the page, as XLogPageHeaderSize().
    pub fn size(&self) -> usize {
        if self.long.is_some() {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        }
    }

    /// Whether the page begins with the continuation of an earlier record.
    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    /// The header's bytes. The [`XLP_LONG_HEADER`] bit is written to match
    /// `long`, so `parse(encode(h)) == h` for every parsed header.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        let info = match self.long {
            Some(_) => self.info | XLP_LONG_HEADER,
            None => self.info & !XLP_LONG_HEADER,
        };
        out.extend_from_slice(&self.magic.to_le_bytes());
        out.extend_from_slice(&info.to_le_bytes());
        out.extend_from_slice(&self.tli.0.to_le_bytes());
        out.extend_from_slice(&self.pageaddr.0.to_le_bytes());
        out.extend_from_slice(&self.rem_len.to_le_bytes());
        // Padding up to MAXALIGN, zero as PostgreSQL leaves it.
        out.extend_from_slice(&[0; 4]);
        if let Some(long) = self.long {
            out.extend_from_slice(&long.system_identifier.to_le_bytes());
            out.extend_from_slice(&long.seg_size.to_le_bytes());
            out.extend_from_slice(&long.xlog_blcksz.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn magic_table() {
        assert_eq!(pg_major_for_wal_magic(0xD110), Some(15));
        assert_eq!(pg_major_for_wal_magic(0xD113), Some(16));
        assert_eq!(pg_major_for_wal_magic(0xD116), Some(17));
        assert_eq!(pg_major_for_wal_magic(0xD118), Some(18));
        assert_eq!(pg_major_for_wal_magic(0xD10D), None);
        for v in 15..=18 {
            assert_eq!(
                pg_major_for_wal_magic(wal_magic_for_pg_major(v).unwrap()),
                Some(v)
            );
        }
        assert_eq!(wal_magic_for_pg_major(14), None);
        assert!(is_plausible_wal_magic(0xD10D));
        assert!(!is_plausible_wal_magic(0x0000));
    }

    #[test]
    fn flag_layouts() {
        for magic in [0xD110, 0xD113, 0xD116, 0xD118] {
            let l = page_flag_layout(magic);
            assert_eq!(
                (l.overwrite_contrecord, l.all, l.bkp_removable),
                (0x0008, 0x000F, Some(0x0004))
            );
        }
        let l = page_flag_layout(0xD120);
        assert_eq!(
            (l.overwrite_contrecord, l.all, l.bkp_removable),
            (0x0004, 0x0007, None)
        );
    }

    #[test]
    fn parses_a_long_header() {
        let mut b = vec![0u8; 40];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&(XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD).to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&0x300_0000u64.to_le_bytes());
        b[16..20].copy_from_slice(&77u32.to_le_bytes());
        b[24..32].copy_from_slice(&7_000_000_000_000_000_001u64.to_le_bytes());
        b[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        let h = XLogPageHeader::parse(&b).unwrap();
        assert_eq!(h.magic, 0xD110);
        assert_eq!(h.pageaddr, Lsn(0x300_0000));
        assert_eq!(h.rem_len, 77);
        assert!(h.is_contrecord());
        assert_eq!(h.size(), LONG_HEADER_LEN);
        let long = h.long.unwrap();
        assert_eq!(long.seg_size, 16 << 20);
        assert_eq!(long.xlog_blcksz, 8192);
        assert_eq!(h.encode(), b);
        assert!(matches!(
            XLogPageHeader::parse(&b[..30]),
            Err(WalError::Truncated { needed: 40, .. })
        ));
        assert!(matches!(
            XLogPageHeader::parse(&b[..10]),
            Err(WalError::Truncated { needed: 24, .. })
        ));
    }

    fn any_header() -> impl Strategy<Value = XLogPageHeader> {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            proptest::option::of((any::<u64>(), any::<u32>(), any::<u32>())),
        )
            .prop_map(|(magic, info, tli, addr, rem_len, long)| {
                let long = long.map(|(s, seg, blk)| XLogLongPageHeader {
                    system_identifier: s,
                    seg_size: seg,
                    xlog_blcksz: blk,
                });
                let info = if long.is_some() {
                    info | XLP_LONG_HEADER
                } else {
                    info & !XLP_LONG_HEADER
                };
                XLogPageHeader {
                    magic,
                    info,
                    tli: TimelineId(tli),
                    pageaddr: Lsn(addr),
                    rem_len,
                    long,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(h in any_header()) {
            let bytes = h.encode();
            prop_assert_eq!(bytes.len(), h.size());
            prop_assert_eq!(XLogPageHeader::parse(&bytes).unwrap(), h);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = XLogPageHeader::parse(&bytes);
        }
    }
}
