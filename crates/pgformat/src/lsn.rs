//! Positions in the WAL stream: [`Lsn`] (PostgreSQL's `XLogRecPtr`) and
//! [`XLogSegNo`], the number of a segment counted from the start of WAL.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::segment_size::WalSegmentSize;

/// A log sequence number: a byte position in the WAL stream (`XLogRecPtr`).
///
/// Shown as PostgreSQL shows `pg_lsn`, two hex halves split by a slash:
/// `0/16B3748`. Parsing accepts upper or lower case and zero-padded halves
/// (newer releases pad the low half to eight digits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`: no WAL position. No record ever starts at 0.
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is [`Lsn::INVALID`].
    pub fn is_invalid(self) -> bool {
        self == Lsn::INVALID
    }

    /// `self + bytes`, or `None` past the end of the 64-bit WAL space.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// `self - bytes`, or `None` before the start of WAL.
    pub fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_sub(bytes).map(Lsn)
    }

    /// The segment holding the byte at this position, as XLByteToSeg().
    pub fn segment_number(self, seg: WalSegmentSize) -> XLogSegNo {
        XLogSegNo(self.0 / seg.as_u64())
    }

    /// The offset of this position within its segment, as XLogSegmentOffset().
    pub fn segment_offset(self, seg: WalSegmentSize) -> u64 {
        self.0 & (seg.as_u64() - 1)
    }

    /// The start of the segment holding this position.
    pub fn segment_start(self, seg: WalSegmentSize) -> Lsn {
        Lsn(self.0 - self.segment_offset(seg))
    }

    /// The offset of this position within its WAL page of `page_size` bytes.
    pub fn page_offset(self, page_size: u32) -> u64 {
        self.0 % u64::from(page_size)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // LSN_FORMAT_ARGS: high and low 32 bits, "%X/%X".
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A string that is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hex numbers of 1 to 8 digits split by '/', like 0/16B3748"
)]
pub struct LsnParseError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError {
            input: s.to_owned(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| -> Option<u64> {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(h, 16).ok()
        };
        let hi = half(hi).ok_or_else(err)?;
        let lo = half(lo).ok_or_else(err)?;
        Ok(Lsn(hi << 32 | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A WAL segment number (`XLogSegNo`): segments counted from LSN 0, so the
/// same LSN range always has the same number for a given segment size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct XLogSegNo(pub u64);

impl XLogSegNo {
    /// The first LSN of this segment, as XLogSegNoOffsetToRecPtr() with offset 0.
    /// `None` if the segment lies beyond the 64-bit WAL space.
    pub fn start_lsn(self, seg: WalSegmentSize) -> Option<Lsn> {
        self.0.checked_mul(seg.as_u64()).map(Lsn)
    }

    /// The following segment.
    pub fn next(self) -> XLogSegNo {
        XLogSegNo(self.0.wrapping_add(1))
    }
}

impl fmt::Display for XLogSegNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_like_postgres() {
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn::INVALID.to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_case_insensitive_and_padded() {
        assert_eq!("0/16b3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
        assert_eq!("0/016B3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
        assert_eq!("A/0".parse::<Lsn>().unwrap(), Lsn(0xA_0000_0000));
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0-0",
            "0/123456789",
            "g/0",
            "0/0/0",
            " 0/0",
            "+1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn segment_arithmetic() {
        let seg = WalSegmentSize::DEFAULT;
        let lsn = Lsn(0x3_0100_0028);
        assert_eq!(lsn.segment_number(seg), XLogSegNo(0x301));
        assert_eq!(lsn.segment_offset(seg), 0x28);
        assert_eq!(lsn.segment_start(seg), Lsn(0x3_0100_0000));
        assert_eq!(XLogSegNo(0x301).start_lsn(seg), Some(Lsn(0x3_0100_0000)));
        assert_eq!(XLogSegNo(u64::MAX).start_lsn(seg), None);
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn(1).checked_add(1), Some(Lsn(2)));
    }

    #[test]
    fn serde_as_string() {
        let json = serde_json::to_string(&Lsn(0x16B3748)).unwrap();
        assert_eq!(json, "\"0/16B3748\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(0x16B3748));
        assert!(serde_json::from_str::<Lsn>("12").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v: u64) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            prop_assert_eq!(lsn.to_string().to_lowercase().parse::<Lsn>().unwrap(), lsn);
            let padded = format!("{:08X}/{:08X}", v >> 32, v & 0xFFFF_FFFF);
            prop_assert_eq!(padded.parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn serde_round_trip(v: u64) {
            let json = serde_json::to_string(&Lsn(v)).unwrap();
            prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), Lsn(v));
        }

        #[test]
        fn order_follows_value(a: u64, b: u64) {
            prop_assert_eq!(Lsn(a).cmp(&Lsn(b)), a.cmp(&b));
        }
    }
}
