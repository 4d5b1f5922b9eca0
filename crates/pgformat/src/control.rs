//! The cluster identity files of a data directory: the start of
//! `global/pg_control` (ControlFileData) and `PG_VERSION`.
//!
//! Only the prefix of pg_control is read: ControlFileData keeps
//! `system_identifier`, `pg_control_version` and `catalog_version_no` at the
//! same offsets in every release, while the rest (and the CRC's position)
//! changes with `pg_control_version`.

/// Bytes of the stable prefix.
const PREFIX_LEN: usize = 16;

/// The version-independent start of `global/pg_control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlFilePrefix {
    /// The cluster's unique id; every WAL segment's long header repeats it.
    pub system_identifier: u64,
    /// PG_CONTROL_VERSION of the release that wrote it (1300 for 15 and 16,
    /// 1700 for 17, 1800 for 18).
    pub pg_control_version: u32,
    /// CATALOG_VERSION_NO: the catalog layout, `yyyymmddN`.
    pub catalog_version_no: u32,
}

/// Identity files that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// pg_control is shorter than its fixed prefix.
    #[error("pg_control is {found} bytes, need at least {PREFIX_LEN}")]
    Truncated {
        /// Bytes found.
        found: usize,
    },
    /// The prefix is implausible (zero identifier or version): not a
    /// pg_control file, or written on a machine of the other byte order.
    #[error(
        "pg_control is not valid: system identifier {system_identifier}, pg_control version {pg_control_version}"
    )]
    Implausible {
        /// As read.
        system_identifier: u64,
        /// As read.
        pg_control_version: u32,
    },
    /// PG_VERSION does not hold a major version number.
    #[error("PG_VERSION holds {text:?}, expected a major version number like \"15\"")]
    PgVersion {
        /// The file's text (truncated to 32 bytes).
        text: String,
    },
}

impl ControlFilePrefix {
    /// Reads the prefix of `global/pg_control`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ControlError> {
        if bytes.len() < PREFIX_LEN {
            return Err(ControlError::Truncated { found: bytes.len() });
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let prefix = ControlFilePrefix {
            system_identifier: u64::from_le_bytes(bytes[0..8].try_into().expect("8")),
            pg_control_version: u32_at(8),
            catalog_version_no: u32_at(12),
        };
        // A byte-swapped version (e.g. 1300 read big-endian) is far above any
        // real one; PostgreSQL's own check gives the same hint.
        if prefix.system_identifier == 0
            || prefix.pg_control_version == 0
            || prefix.pg_control_version > 0xFFFF
        {
            return Err(ControlError::Implausible {
                system_identifier: prefix.system_identifier,
                pg_control_version: prefix.pg_control_version,
            });
        }
        Ok(prefix)
    }
}

/// The major version in a `PG_VERSION` file (`"15\n"` gives 15).
pub fn parse_pg_version_file(bytes: &[u8]) -> Result<u32, ControlError> {
    let err = || ControlError::PgVersion {
        text: String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).into_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| err())?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    text.parse().map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prefix() {
        let mut b = vec![0u8; 8192];
        b[0..8].copy_from_slice(&7_312_345_678_901_234_567u64.to_le_bytes());
        b[8..12].copy_from_slice(&1300u32.to_le_bytes());
        b[12..16].copy_from_slice(&202209061u32.to_le_bytes());
        let p = ControlFilePrefix::parse(&b).unwrap();
        assert_eq!(p.system_identifier, 7_312_345_678_901_234_567);
        assert_eq!(p.pg_control_version, 1300);
        assert_eq!(p.catalog_version_no, 202209061);
        assert_eq!(
            ControlFilePrefix::parse(&b[..10]),
            Err(ControlError::Truncated { found: 10 })
        );
        b[8..12].copy_from_slice(&1300u32.to_be_bytes());
        assert!(matches!(
            ControlFilePrefix::parse(&b),
            Err(ControlError::Implausible { .. })
        ));
        assert!(matches!(
            ControlFilePrefix::parse(&[0; 16]),
            Err(ControlError::Implausible { .. })
        ));
    }

    #[test]
    fn reads_pg_version() {
        assert_eq!(parse_pg_version_file(b"15\n"), Ok(15));
        assert_eq!(parse_pg_version_file(b"18"), Ok(18));
        for bad in [
            &b""[..],
            b"\n",
            b"9.6\n",
            b"15 \n",
            b"abc",
            b"\xff",
            b"123456",
        ] {
            assert!(parse_pg_version_file(bad).is_err(), "{bad:?}");
        }
    }
}
