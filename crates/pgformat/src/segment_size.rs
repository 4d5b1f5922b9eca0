//! [`WalSegmentSize`]: the size of one WAL segment file (`wal_segment_size`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest segment size PostgreSQL accepts (WalSegMinSize).
const MIN_BYTES: u32 = 1024 * 1024;
/// Largest segment size PostgreSQL accepts (WalSegMaxSize).
const MAX_BYTES: u32 = 1024 * 1024 * 1024;

/// The size of a WAL segment: a power of two from 1 MiB to 1 GiB, as
/// IsValidWalSegSize() demands. Chosen at initdb time (`--wal-segsize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSegmentSize(u32);

/// A number that is not a valid WAL segment size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL segment size {bytes}: must be a power of two from 1 MiB to 1 GiB")]
pub struct SegmentSizeError {
    /// The rejected size in bytes.
    pub bytes: u64,
}

impl WalSegmentSize {
    /// PostgreSQL's default, 16 MiB.
    pub const DEFAULT: WalSegmentSize = WalSegmentSize(16 * 1024 * 1024);

    /// Checks `bytes` as IsValidWalSegSize() does.
    pub fn new(bytes: u32) -> Result<Self, SegmentSizeError> {
        if bytes.is_power_of_two() && (MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            Ok(WalSegmentSize(bytes))
        } else {
            Err(SegmentSizeError {
                bytes: u64::from(bytes),
            })
        }
    }

    /// Parse the setting as `SHOW wal_segment_size` prints it: `16MB`, `1GB`, or a number
    /// with PostgreSQL's other memory units (`kB`, `TB`, 1024-based) or none (bytes).
    pub fn from_setting(text: &str) -> Result<Self, SegmentSizeError> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "kB" => 10,
            "MB" => 20,
            "GB" => 30,
            "TB" => 40,
            _ => return Err(SegmentSizeError { bytes: 0 }),
        };
        let bytes = num
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .ok_or(SegmentSizeError { bytes: 0 })?;
        WalSegmentSize::new(u32::try_from(bytes).map_err(|_| SegmentSizeError { bytes })?)
    }

    /// Size in bytes.
    pub fn bytes(self) -> u32 {
        self.0
    }

    /// Size in bytes, widened for LSN arithmetic.
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// Segments per 4 GiB "xlog id", the middle part of a segment file
    /// name, as XLogSegmentsPerXLogId().
    pub fn segments_per_xlog_id(self) -> u64 {
        0x1_0000_0000 / self.as_u64()
    }
}

impl Default for WalSegmentSize {
    fn default() -> Self {
        WalSegmentSize::DEFAULT
    }
}

impl fmt::Display for WalSegmentSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= MAX_BYTES {
            write!(f, "{}GB", self.0 / MAX_BYTES)
        } else {
            write!(f, "{}MB", self.0 / MIN_BYTES)
        }
    }
}

impl Serialize for WalSegmentSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for WalSegmentSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = u32::deserialize(deserializer)?;
        WalSegmentSize::new(bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_valid_sizes() {
        for shift in 20..=30 {
            let s = WalSegmentSize::new(1 << shift).unwrap();
            assert_eq!(s.bytes(), 1 << shift);
        }
        for bad in [0, 1, 512 * 1024, 3 * 1024 * 1024, (1 << 31), u32::MAX] {
            assert!(WalSegmentSize::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn settings_as_show_prints_them() {
        assert_eq!(
            WalSegmentSize::from_setting("16MB").unwrap().bytes(),
            16 << 20
        );
        assert_eq!(
            WalSegmentSize::from_setting("1GB").unwrap().bytes(),
            1 << 30
        );
        assert_eq!(
            WalSegmentSize::from_setting("1024kB").unwrap().bytes(),
            1 << 20
        );
        assert_eq!(
            WalSegmentSize::from_setting("2097152").unwrap().bytes(),
            2 << 20
        );
        for bad in ["3MB", "MB", "16XB", "", "4TB", "99999999999999999999MB"] {
            assert!(WalSegmentSize::from_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_xlog_id() {
        assert_eq!(WalSegmentSize::DEFAULT.segments_per_xlog_id(), 256);
        assert_eq!(
            WalSegmentSize::new(1 << 30).unwrap().segments_per_xlog_id(),
            4
        );
        assert_eq!(
            WalSegmentSize::new(1 << 20).unwrap().segments_per_xlog_id(),
            4096
        );
    }

    #[test]
    fn display_and_serde() {
        assert_eq!(WalSegmentSize::DEFAULT.to_string(), "16MB");
        assert_eq!(WalSegmentSize::new(1 << 30).unwrap().to_string(), "1GB");
        let json = serde_json::to_string(&WalSegmentSize::DEFAULT).unwrap();
        assert_eq!(json, "16777216");
        assert_eq!(
            serde_json::from_str::<WalSegmentSize>(&json).unwrap(),
            WalSegmentSize::DEFAULT
        );
        assert!(serde_json::from_str::<WalSegmentSize>("1000").is_err());
    }
}
