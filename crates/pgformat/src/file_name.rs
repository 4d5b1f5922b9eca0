//! Names of the files PostgreSQL hands to `archive_command`: WAL segments,
//! `.partial` segments, timeline `.history` files and `.backup` history files.
//!
//! Parsing is strict (upper-case hex only, exact lengths), so a name that
//! parses can be used as an object key or a file name without escaping.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lsn::{Lsn, XLogSegNo};
use crate::segment_size::WalSegmentSize;
use crate::timeline::TimelineId;

/// Length of a segment file name (XLOG_FNAME_LEN).
const SEGMENT_NAME_LEN: usize = 24;
const PARTIAL_SUFFIX: &str = ".partial";
const HISTORY_SUFFIX: &str = ".history";
const BACKUP_SUFFIX: &str = ".backup";

/// The name of a WAL segment file: timeline, "xlog id" and segment within
/// it, each as eight upper-case hex digits, e.g. `000000010000000000000003`.
///
/// Ordered by timeline, then position, like the file names sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    /// The timeline that wrote the segment.
    pub tli: TimelineId,
    /// High part of the segment number: segment number / segments per xlog id.
    pub log: u32,
    /// Low part: segment number % segments per xlog id.
    pub seg: u32,
}

impl SegmentName {
    /// The name of segment `segno` on timeline `tli`, as XLogFileName().
    pub fn from_segno(tli: TimelineId, segno: XLogSegNo, seg_size: WalSegmentSize) -> Self {
        let per_id = seg_size.segments_per_xlog_id();
        // Same truncating casts as XLogFileName(); a segment number derived
        // from an LSN always fits.
        SegmentName {
            tli,
            log: (segno.0 / per_id) as u32,
            seg: (segno.0 % per_id) as u32,
        }
    }

    /// The name of the segment holding `lsn` on timeline `tli`, as
    /// XLByteToSeg() followed by XLogFileName().
    pub fn containing(tli: TimelineId, lsn: Lsn, seg_size: WalSegmentSize) -> Self {
        Self::from_segno(tli, lsn.segment_number(seg_size), seg_size)
    }

    /// The segment number this name denotes, as XLogFromFileName().
    pub fn segno(&self, seg_size: WalSegmentSize) -> XLogSegNo {
        XLogSegNo(u64::from(self.log) * seg_size.segments_per_xlog_id() + u64::from(self.seg))
    }

    /// The first LSN of the segment.
    pub fn start_lsn(&self, seg_size: WalSegmentSize) -> Lsn {
        // log < 2^32 and seg < 2^32, so the product stays below 2^64 for any
        // valid name; wrapping only matters for names that do not fit
        // `seg_size` (see `fits`).
        Lsn(self.segno(seg_size).0.wrapping_mul(seg_size.as_u64()))
    }

    /// The next segment on the same timeline.
    pub fn next(&self, seg_size: WalSegmentSize) -> SegmentName {
        Self::from_segno(self.tli, self.segno(seg_size).next(), seg_size)
    }

    /// Whether the low part is a real segment for `seg_size` (with 16 MiB
    /// segments only `00` to `FF` are; PostgreSQL never writes the others).
    pub fn fits(&self, seg_size: WalSegmentSize) -> bool {
        u64::from(self.seg) < seg_size.segments_per_xlog_id()
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.tli.0, self.log, self.seg)
    }
}

impl FromStr for SegmentName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<WalFileName>()? {
            WalFileName::Segment(name) => Ok(name),
            _ => Err(NameError::new(s, NameProblem::NotASegment)),
        }
    }
}

/// Any file PostgreSQL archives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFileName {
    /// A whole segment: `000000010000000000000003`.
    Segment(SegmentName),
    /// A segment cut short at a timeline switch or by pg_receivewal:
    /// `000000010000000000000003.partial`.
    Partial(SegmentName),
    /// A timeline history file: `00000002.history`.
    History(TimelineId),
    /// A backup history file written by pg_backup_stop():
    /// `000000010000000000000003.00000028.backup`; `offset` is the backup's
    /// start position within `segment`.
    BackupHistory {
        /// Segment holding the backup's start LSN.
        segment: SegmentName,
        /// Start LSN's offset within that segment.
        offset: u32,
    },
}

impl WalFileName {
    /// The timeline the file belongs to.
    pub fn timeline(&self) -> TimelineId {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => s.tli,
            WalFileName::BackupHistory { segment, .. } => segment.tli,
            WalFileName::History(tli) => *tli,
        }
    }

    /// The segment named, for segments, partial segments and backup history files.
    pub fn segment(&self) -> Option<SegmentName> {
        match self {
            WalFileName::Segment(s) | WalFileName::Partial(s) => Some(*s),
            WalFileName::BackupHistory { segment, .. } => Some(*segment),
            WalFileName::History(_) => None,
        }
    }

    /// The name of the backup history file for a backup starting at `start`, as
    /// BackupHistoryFileName().
    pub fn backup_history(tli: TimelineId, start: Lsn, seg_size: WalSegmentSize) -> Self {
        WalFileName::BackupHistory {
            segment: SegmentName::containing(tli, start, seg_size),
            offset: start.segment_offset(seg_size) as u32,
        }
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => s.fmt(f),
            WalFileName::Partial(s) => write!(f, "{s}{PARTIAL_SUFFIX}"),
            WalFileName::History(tli) => write!(f, "{:08X}{HISTORY_SUFFIX}", tli.0),
            WalFileName::BackupHistory { segment, offset } => {
                write!(f, "{segment}.{offset:08X}{BACKUP_SUFFIX}")
            }
        }
    }
}

/// A file name that is not one PostgreSQL archives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL file name {name:?}: {problem}")]
pub struct NameError {
    /// The rejected name (truncated to 100 characters).
    pub name: String,
    /// What is wrong with it.
    pub problem: NameProblem,
}

impl NameError {
    fn new(name: &str, problem: NameProblem) -> Self {
        NameError {
            name: name.chars().take(100).collect(),
            problem,
        }
    }
}

/// Why a name was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// A path, not a bare file name.
    #[error("it contains a path separator or \"..\"; expected a bare file name")]
    Path,
    /// Not one of the four shapes.
    #[error(
        "expected 24 hex digits (segment), optionally followed by .partial or \
         .XXXXXXXX.backup, or 8 hex digits followed by .history"
    )]
    Shape,
    /// A character at `position` is not 0-9 or A-F.
    #[error("character {position} is not an upper-case hex digit")]
    NotUpperHex {
        /// Zero-based byte position.
        position: usize,
    },
    /// Timeline 0 does not exist.
    #[error("timeline 00000000 does not exist")]
    ZeroTimeline,
    /// A valid WAL file name, but not a plain segment where one was needed.
    #[error("expected a plain 24-digit segment name")]
    NotASegment,
}

/// Parses `s[range]` as upper-case hex, as the strspn("0123456789ABCDEF")
/// checks of IsXLogFileName() and friends.
fn upper_hex(s: &str, start: usize, len: usize) -> Result<u32, NameProblem> {
    let bytes = &s.as_bytes()[start..start + len];
    let mut value = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'F' => b - b'A' + 10,
            _ => {
                return Err(NameProblem::NotUpperHex {
                    position: start + i,
                });
            }
        };
        value = value << 4 | u32::from(digit);
    }
    Ok(value)
}

fn parse_segment(s: &str) -> Result<SegmentName, NameProblem> {
    let tli = upper_hex(s, 0, 8)?;
    let log = upper_hex(s, 8, 8)?;
    let seg = upper_hex(s, 16, 8)?;
    if tli == 0 {
        return Err(NameProblem::ZeroTimeline);
    }
    Ok(SegmentName {
        tli: TimelineId(tli),
        log,
        seg,
    })
}

impl FromStr for WalFileName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |p| NameError::new(s, p);
        if s.contains('/') || s.contains('\\') || s.contains("..") || s.contains('\0') {
            return Err(fail(NameProblem::Path));
        }
        // Every valid name is ASCII; checking first keeps the slicing below safe.
        if !s.is_ascii() {
            return Err(fail(NameProblem::Shape));
        }
        let n = SEGMENT_NAME_LEN;
        let name = if s.len() == n {
            WalFileName::Segment(parse_segment(s).map_err(fail)?)
        } else if s.len() == n + PARTIAL_SUFFIX.len() && s.ends_with(PARTIAL_SUFFIX) {
            WalFileName::Partial(parse_segment(s).map_err(fail)?)
        } else if s.len() == 8 + HISTORY_SUFFIX.len() && s.ends_with(HISTORY_SUFFIX) {
            let tli = upper_hex(s, 0, 8).map_err(fail)?;
            if tli == 0 {
                return Err(fail(NameProblem::ZeroTimeline));
            }
            WalFileName::History(TimelineId(tli))
        } else if s.len() == n + 1 + 8 + BACKUP_SUFFIX.len()
            && s.ends_with(BACKUP_SUFFIX)
            && s.as_bytes()[n] == b'.'
        {
            let segment = parse_segment(s).map_err(fail)?;
            let offset = upper_hex(s, n + 1, 8).map_err(fail)?;
            WalFileName::BackupHistory { segment, offset }
        } else {
            return Err(fail(NameProblem::Shape));
        };
        Ok(name)
    }
}

macro_rules! serde_as_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_string!(SegmentName);
serde_as_string!(WalFileName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG16: WalSegmentSize = WalSegmentSize::DEFAULT;

    #[test]
    fn segment_names_like_xlogfilename() {
        let name = SegmentName::from_segno(TimelineId(1), XLogSegNo(3), SEG16);
        assert_eq!(name.to_string(), "000000010000000000000003");
        let name = SegmentName::from_segno(TimelineId(2), XLogSegNo(0x1FF), SEG16);
        assert_eq!(name.to_string(), "0000000200000001000000FF");
        assert_eq!(name.segno(SEG16), XLogSegNo(0x1FF));
        assert_eq!(name.start_lsn(SEG16), Lsn(0x1_FF00_0000));
        assert_eq!(name.next(SEG16).to_string(), "000000020000000200000000");
        let gig = WalSegmentSize::new(1 << 30).unwrap();
        let name = SegmentName::from_segno(TimelineId(1), XLogSegNo(5), gig);
        assert_eq!(name.to_string(), "000000010000000100000001");
        assert!(name.fits(gig));
        assert!(
            !"0000000100000001000000FF"
                .parse::<SegmentName>()
                .unwrap()
                .fits(gig)
        );
        assert_eq!(
            SegmentName::containing(TimelineId(1), Lsn(0x16B3748), SEG16).to_string(),
            "000000010000000000000001"
        );
    }

    #[test]
    fn parses_every_kind() {
        let seg: SegmentName = "000000010000000000000003".parse().unwrap();
        assert_eq!(
            "000000010000000000000003".parse::<WalFileName>().unwrap(),
            WalFileName::Segment(seg)
        );
        assert_eq!(
            "000000010000000000000003.partial"
                .parse::<WalFileName>()
                .unwrap(),
            WalFileName::Partial(seg)
        );
        assert_eq!(
            "0000000A.history".parse::<WalFileName>().unwrap(),
            WalFileName::History(TimelineId(10))
        );
        assert_eq!(
            "000000010000000000000003.00000028.backup"
                .parse::<WalFileName>()
                .unwrap(),
            WalFileName::BackupHistory {
                segment: seg,
                offset: 0x28
            }
        );
        assert_eq!(
            WalFileName::backup_history(TimelineId(1), Lsn(0x300_0028), SEG16).to_string(),
            "000000010000000000000003.00000028.backup"
        );
        assert_eq!(
            WalFileName::History(TimelineId(7)).timeline(),
            TimelineId(7)
        );
    }

    #[test]
    fn rejects_anything_else() {
        let cases = [
            ("", NameProblem::Shape),
            ("00000001000000000000003", NameProblem::Shape),
            ("0000000100000000000000030", NameProblem::Shape),
            (
                "00000001000000000000000a",
                NameProblem::NotUpperHex { position: 23 },
            ),
            (
                "0000000g0000000000000003",
                NameProblem::NotUpperHex { position: 7 },
            ),
            ("../00000001000000000003", NameProblem::Path),
            ("pg_wal/000000010000000000000003", NameProblem::Path),
            ("000000010000000000000003/", NameProblem::Path),
            ("0000000100000000000000..", NameProblem::Path),
            ("000000000000000000000003", NameProblem::ZeroTimeline),
            ("00000000.history", NameProblem::ZeroTimeline),
            ("00000001.History", NameProblem::Shape),
            ("0000001.history", NameProblem::Shape),
            ("000000010000000000000003.partia", NameProblem::Shape),
            (
                "000000010000000000000003.0000028.backup",
                NameProblem::Shape,
            ),
            (
                "000000010000000000000003-00000028.backup",
                NameProblem::Shape,
            ),
            (
                "000000010000000000000003.0000002g.backup",
                NameProblem::NotUpperHex { position: 32 },
            ),
            ("00000001000000000000000Ä", NameProblem::Shape),
            ("000000010000000000000003.ready", NameProblem::Shape),
        ];
        for (name, problem) in cases {
            let err = name.parse::<WalFileName>().unwrap_err();
            assert_eq!(err.problem, problem, "{name:?}");
        }
        assert_eq!(
            "00000001.history"
                .parse::<SegmentName>()
                .unwrap_err()
                .problem,
            NameProblem::NotASegment
        );
    }

    #[test]
    fn serde_as_strings() {
        let name: WalFileName = "00000002.history".parse().unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"00000002.history\"");
        assert_eq!(serde_json::from_str::<WalFileName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<SegmentName>("\"00000002.history\"").is_err());
    }

    fn any_segment() -> impl Strategy<Value = SegmentName> {
        (1u32.., any::<u32>(), any::<u32>()).prop_map(|(t, log, seg)| SegmentName {
            tli: TimelineId(t),
            log,
            seg,
        })
    }

    fn any_file() -> impl Strategy<Value = WalFileName> {
        prop_oneof![
            any_segment().prop_map(WalFileName::Segment),
            any_segment().prop_map(WalFileName::Partial),
            (1u32..).prop_map(|t| WalFileName::History(TimelineId(t))),
            (any_segment(), any::<u32>())
                .prop_map(|(segment, offset)| WalFileName::BackupHistory { segment, offset }),
        ]
    }

    proptest! {
        #[test]
        fn file_name_round_trip(name in any_file()) {
            let text = name.to_string();
            prop_assert_eq!(text.parse::<WalFileName>().unwrap(), name);
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(serde_json::from_str::<WalFileName>(&json).unwrap(), name);
            prop_assert!(text.to_lowercase().parse::<WalFileName>().is_err() || text == text.to_lowercase());
        }

        #[test]
        fn segno_round_trip(tli in 1u32.., shift in 20u32..=30, segno in any::<u64>()) {
            let size = WalSegmentSize::new(1 << shift).unwrap();
            // Only segment numbers an LSN can reach.
            let segno = XLogSegNo(segno / size.as_u64());
            let name = SegmentName::from_segno(TimelineId(tli), segno, size);
            prop_assert!(name.fits(size));
            prop_assert_eq!(name.segno(size), segno);
            prop_assert_eq!(name.to_string().parse::<SegmentName>().unwrap(), name);
            if let Some(next) = segno.0.checked_add(1).filter(|n| *n <= u64::MAX / size.as_u64()) {
                prop_assert_eq!(name.next(size).segno(size), XLogSegNo(next));
            }
        }

        #[test]
        fn order_matches_text_order(a in any_segment(), b in any_segment()) {
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,48}") {
            let _ = s.parse::<WalFileName>();
        }
    }
}
