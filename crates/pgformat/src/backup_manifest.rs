//! PostgreSQL's own `backup_manifest`: the JSON document `BASE_BACKUP (MANIFEST 'yes')`
//! sends after the archives, which `pg_verifybackup` checks a backup against and which a
//! PostgreSQL 17+ server reads back (`UPLOAD_MANIFEST`) to send an incremental backup.
//!
//! Written by src/backend/backup/backup_manifest.c, read by
//! src/common/parse_manifest.c. Version 1 (PostgreSQL 13–16) and version 2 (17+, which adds
//! `System-Identifier`):
//!
//! ```text
//! { "PostgreSQL-Backup-Manifest-Version": 2,
//! "System-Identifier": 7441385093011237126,
//! "Files": [
//! { "Path": "backup_label", "Size": 227, "Last-Modified": "2026-11-22 14:05:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "a3f4b2c1" },
//! ...
//! ],
//! "WAL-Ranges": [
//! { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }
//! ],
//! "Manifest-Checksum": "<SHA-256 of everything up to the newline before this line>"}
//! ```
//!
//! A path that is not UTF-8 comes hex-encoded as `Encoded-Path`. [`PgBackupManifest::parse`]
//! verifies the manifest checksum first, as `verify_manifest_checksum()` does, so a
//! truncated or altered manifest is refused before anything in it is believed.
//! [`FileChecksummer`] computes a file's checksum the way the server did, to check files.
//!
//! ```
//! use cairn_pgformat::backup_manifest::{ChecksumAlgorithm, FileChecksummer, PgBackupManifest};
//! # let manifest = cairn_pgformat::backup_manifest::tests_support::sample();
//! let m = PgBackupManifest::parse(&manifest).unwrap();
//! let file = m.file("PG_VERSION").unwrap();
//! let expected = file.checksum.as_ref().unwrap();
//! let mut sum = FileChecksummer::new(expected.algorithm);
//! sum.update(b"17\n");
//! assert_eq!(sum.finish(), expected.value);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use sha2::Digest;

use crate::lsn::Lsn;
use crate::timeline::TimelineId;

/// The manifest format versions this parser reads.
pub const SUPPORTED_VERSIONS: [u32; 2] = [1, 2];

/// A file checksum algorithm (`pg_checksum_type`, names from `pg_checksum_type_name()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    /// The name PostgreSQL writes and accepts in `MANIFEST_CHECKSUMS`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Sha224 => "SHA224",
            ChecksumAlgorithm::Sha256 => "SHA256",
            ChecksumAlgorithm::Sha384 => "SHA384",
            ChecksumAlgorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChecksumAlgorithm {
    type Err = ManifestError;

    /// Case-insensitive, as `pg_checksum_parse_type()`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Sha224,
            ChecksumAlgorithm::Sha256,
            ChecksumAlgorithm::Sha384,
            ChecksumAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| ManifestError::Algorithm {
            name: s.to_string(),
        })
    }
}

/// A file's checksum as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChecksum {
    pub algorithm: ChecksumAlgorithm,
    /// The raw checksum bytes (the manifest has them in hex).
    pub value: Vec<u8>,
}

/// One file of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the data directory; files of a tablespace are under `pg_tblspc/<oid>/`.
    /// PostgreSQL 17+ incremental files keep their `INCREMENTAL.` name.
    pub path: String,
    pub size: u64,
    /// Seconds since the Unix epoch (the manifest writes the time in GMT).
    pub last_modified: i64,
    /// `None` when the backup was taken with `MANIFEST_CHECKSUMS 'NONE'`.
    pub checksum: Option<FileChecksum>,
}

/// A stretch of WAL the backup needs to be consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
}

/// A parsed, checksum-verified `backup_manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBackupManifest {
    /// `PostgreSQL-Backup-Manifest-Version`: 1 or 2.
    pub version: u32,
    /// Version 2 (PostgreSQL 17+): the cluster's system identifier.
    pub system_identifier: Option<u64>,
    pub files: Vec<ManifestFile>,
    /// Newest timeline first, as the server writes them.
    pub wal_ranges: Vec<WalRange>,
    /// `Manifest-Checksum`: SHA-256 of the manifest up to its last line.
    pub manifest_checksum: [u8; 32],
}

/// Why bytes are not a valid `backup_manifest`. Not retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("backup_manifest is not complete: {why}")]
    Shape { why: &'static str },
    #[error(
        "backup_manifest checksum mismatch: the file says {expected}, its contents hash to {computed}"
    )]
    Checksum { expected: String, computed: String },
    #[error("backup_manifest is not valid: {0}")]
    Json(String),
    #[error(
        "backup_manifest version {version} is not supported (this cairn reads versions 1 and 2)"
    )]
    Version { version: u32 },
    #[error("backup_manifest version 2 has no System-Identifier")]
    NoSystemIdentifier,
    #[error("backup_manifest: file {index} has {why}")]
    File { index: usize, why: String },
    #[error("backup_manifest: WAL range {index} has {why}")]
    WalRange { index: usize, why: String },
    #[error("backup_manifest: unknown checksum algorithm {name:?}")]
    Algorithm { name: String },
}

/// Where the checksummed part ends: just after the newline before the last line
/// (`verify_manifest_checksum()` in src/common/parse_manifest.c).
fn checksummed_len(bytes: &[u8]) -> Result<usize, ManifestError> {
    if bytes.last() != Some(&b'\n') {
        return Err(ManifestError::Shape {
            why: "the last line does not end with a newline",
        });
    }
    let body = &bytes[..bytes.len() - 1];
    let penultimate = body
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or(ManifestError::Shape {
            why: "it has fewer than two lines",
        })?;
    Ok(penultimate + 1)
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "System-Identifier")]
    system_identifier: Option<u64>,
    #[serde(rename = "Files", default)]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<RawRange>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

/// `2026-11-22 14:05:00 GMT`, as `pg_strftime("%Y-%m-%d %H:%M:%S %Z", pg_gmtime())`.
fn parse_gmt(s: &str) -> Option<i64> {
    let rest = s.strip_suffix(" GMT").or_else(|| s.strip_suffix(" UTC"))?;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(rest, &format).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

fn file(index: usize, raw: RawFile) -> Result<ManifestFile, ManifestError> {
    let bad = |why: String| ManifestError::File { index, why };
    let path = match (raw.path, raw.encoded_path) {
        (Some(p), None) => p,
        (None, Some(hex_path)) => {
            let bytes = hex::decode(&hex_path)
                .map_err(|_| bad(format!("an Encoded-Path that is not hex: {hex_path:?}")))?;
            String::from_utf8(bytes).map_err(|_| {
                bad(format!(
                    "a path that is not UTF-8 (Encoded-Path {hex_path}), which cairn cannot store"
                ))
            })?
        }
        (Some(_), Some(_)) => return Err(bad("both Path and Encoded-Path".into())),
        (None, None) => return Err(bad("no Path".into())),
    };
    let last_modified = parse_gmt(&raw.last_modified)
        .ok_or_else(|| bad(format!("a Last-Modified time {:?}", raw.last_modified)))?;
    let checksum = match (raw.algorithm, raw.checksum) {
        (None, None) => None,
        (Some(a), Some(c)) => Some(FileChecksum {
            algorithm: a.parse()?,
            value: hex::decode(&c)
                .map_err(|_| bad(format!("a Checksum that is not hex: {c:?}")))?,
        }),
        (Some(_), None) => return Err(bad("a Checksum-Algorithm without a Checksum".into())),
        (None, Some(_)) => return Err(bad("a Checksum without a Checksum-Algorithm".into())),
    };
    Ok(ManifestFile {
        path,
        size: raw.size,
        last_modified,
        checksum,
    })
}

fn wal_range(index: usize, raw: RawRange) -> Result<WalRange, ManifestError> {
    let bad = |why: String| ManifestError::WalRange { index, why };
    let lsn = |s: &str| {
        s.parse::<Lsn>()
            .map_err(|_| bad(format!("an LSN {s:?} that is not one")))
    };
    let (start_lsn, end_lsn) = (lsn(&raw.start)?, lsn(&raw.end)?);
    if raw.timeline == 0 {
        return Err(bad("timeline 0".into()));
    }
    if end_lsn < start_lsn {
        return Err(bad(format!(
            "End-LSN {end_lsn} before Start-LSN {start_lsn}"
        )));
    }
    Ok(WalRange {
        timeline: TimelineId(raw.timeline),
        start_lsn,
        end_lsn,
    })
}

impl PgBackupManifest {
    /// Verify the manifest checksum, then parse.
    pub fn parse(bytes: &[u8]) -> Result<PgBackupManifest, ManifestError> {
        let covered = checksummed_len(bytes)?;
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let computed: [u8; 32] = sha2::Sha256::digest(&bytes[..covered]).into();
        let expected = hex::decode(&raw.checksum)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        if expected != Some(computed) {
            return Err(ManifestError::Checksum {
                expected: raw.checksum,
                computed: hex::encode(computed),
            });
        }
        if !SUPPORTED_VERSIONS.contains(&raw.version) {
            return Err(ManifestError::Version {
                version: raw.version,
            });
        }
        if raw.version >= 2 && raw.system_identifier.is_none() {
            return Err(ManifestError::NoSystemIdentifier);
        }
        Ok(PgBackupManifest {
            version: raw.version,
            system_identifier: raw.system_identifier,
            files: raw
                .files
                .into_iter()
                .enumerate()
                .map(|(i, f)| file(i, f))
                .collect::<Result<_, _>>()?,
            wal_ranges: raw
                .wal_ranges
                .into_iter()
                .enumerate()
                .map(|(i, r)| wal_range(i, r))
                .collect::<Result<_, _>>()?,
            manifest_checksum: computed,
        })
    }

    /// The entry for `path`, if the backup has that file.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Computes a file checksum as the server did (`pg_checksum_update()`/`pg_checksum_final()`
/// in src/common/checksum_helper.c), fed in pieces.
#[derive(Debug, Clone)]
pub struct FileChecksummer(State);

#[derive(Debug, Clone)]
enum State {
    Crc32c(u32),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl FileChecksummer {
    pub fn new(algorithm: ChecksumAlgorithm) -> FileChecksummer {
        FileChecksummer(match algorithm {
            ChecksumAlgorithm::Crc32c => State::Crc32c(0),
            ChecksumAlgorithm::Sha224 => State::Sha224(sha2::Sha224::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => State::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        })
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            State::Sha224(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// The checksum bytes, comparable with [`FileChecksum::value`].
    pub fn finish(self) -> Vec<u8> {
        match self.0 {
            // The server copies its pg_crc32c out in memory order: little-endian on every
            // platform PostgreSQL builds for in practice.
            State::Crc32c(crc) => crc.to_le_bytes().to_vec(),
            State::Sha224(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha384(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// Manifests for examples and tests, written the way the server writes them.
#[doc(hidden)]
pub mod tests_support {
    use super::*;

    /// A file entry line as `AddFileToBackupManifest()` writes it.
    pub fn file_line(path: &str, data: &[u8], algorithm: Option<ChecksumAlgorithm>) -> String {
        let mut line = format!(
            "{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": \"2026-11-22 14:05:00 GMT\"",
            serde_json::Value::String(path.to_string()),
            data.len()
        );
        if let Some(a) = algorithm {
            let mut sum = FileChecksummer::new(a);
            sum.update(data);
            line.push_str(&format!(
                ", \"Checksum-Algorithm\": \"{a}\", \"Checksum\": \"{}\"",
                hex::encode(sum.finish())
            ));
        }
        line.push_str(" }");
        line
    }

    /// A complete manifest around the given file lines, with its checksum.
    pub fn manifest(version: u32, file_lines: &[String]) -> Vec<u8> {
        let mut m = format!("{{ \"PostgreSQL-Backup-Manifest-Version\": {version},\n");
        if version >= 2 {
            m.push_str("\"System-Identifier\": 7441385093011237126,\n");
        }
        m.push_str("\"Files\": [");
        for (i, line) in file_lines.iter().enumerate() {
            m.push_str(if i == 0 { "\n" } else { ",\n" });
            m.push_str(line);
        }
        m.push_str("\n],\n\"WAL-Ranges\": [\n");
        m.push_str("{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }");
        m.push_str("\n],\n");
        let sum = hex::encode(sha2::Sha256::digest(m.as_bytes()));
        m.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
        m.into_bytes()
    }

    /// A small version 2 manifest with `PG_VERSION` holding `17\n`.
    pub fn sample() -> Vec<u8> {
        manifest(
            2,
            &[
                file_line("PG_VERSION", b"17\n", Some(ChecksumAlgorithm::Crc32c)),
                file_line(
                    "global/pg_control",
                    &[0; 8192],
                    Some(ChecksumAlgorithm::Crc32c),
                ),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_version_2_manifest_parses() {
        let m = PgBackupManifest::parse(&sample()).unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(m.system_identifier, Some(7441385093011237126));
        assert_eq!(m.files.len(), 2);
        let f = m.file("global/pg_control").unwrap();
        assert_eq!(f.size, 8192);
        assert_eq!(f.last_modified, 1_795_356_300);
        assert_eq!(
            m.wal_ranges,
            vec![WalRange {
                timeline: TimelineId(1),
                start_lsn: Lsn(0x200_0028),
                end_lsn: Lsn(0x200_0100)
            }]
        );
    }

    #[test]
    fn version_1_has_no_system_identifier_and_checksums_may_be_absent() {
        let m = manifest(1, &[file_line("base/1/1259", &[1; 10], None)]);
        let m = PgBackupManifest::parse(&m).unwrap();
        assert_eq!((m.version, m.system_identifier), (1, None));
        assert_eq!(m.files[0].checksum, None);
    }

    #[test]
    fn any_change_breaks_the_checksum() {
        let good = sample();
        let mut bad = good.clone();
        let at = bad.windows(4).position(|w| w == b"8192").unwrap();
        bad[at] = b'9';
        assert!(matches!(
            PgBackupManifest::parse(&bad),
            Err(ManifestError::Checksum { .. })
        ));
        // Truncated: the last line is gone.
        let cut = &good[..good.len() - 10];
        assert!(PgBackupManifest::parse(cut).is_err());
    }

    #[test]
    fn encoded_paths_are_decoded() {
        let line = format!(
            "{{ \"Encoded-Path\": \"{}\", \"Size\": 0, \"Last-Modified\": \"2026-11-22 14:05:00 GMT\" }}",
            hex::encode("base/1/ünï")
        );
        let m = PgBackupManifest::parse(&manifest(2, &[line])).unwrap();
        assert_eq!(m.files[0].path, "base/1/ünï");
    }

    #[test]
    fn unknown_versions_and_algorithms_are_refused() {
        assert!(matches!(
            PgBackupManifest::parse(&manifest(3, &[])),
            Err(ManifestError::Version { version: 3 })
        ));
        let line = file_line("a", b"x", Some(ChecksumAlgorithm::Sha256)).replace("SHA256", "MD5");
        assert!(matches!(
            PgBackupManifest::parse(&manifest(2, &[line])),
            Err(ManifestError::Algorithm { .. })
        ));
        assert_eq!(
            "crc32c".parse::<ChecksumAlgorithm>().unwrap(),
            ChecksumAlgorithm::Crc32c
        );
    }

    #[test]
    fn crc32c_is_the_castagnoli_crc_in_memory_order() {
        // CRC-32C of "123456789" is 0xe3069283.
        let mut c = FileChecksummer::new(ChecksumAlgorithm::Crc32c);
        c.update(b"12345");
        c.update(b"6789");
        assert_eq!(c.finish(), vec![0x83, 0x92, 0x06, 0xe3]);
    }

    proptest! {
        #[test]
        fn manifests_round_trip(
            files in proptest::collection::vec(("[a-zA-Z0-9_./\"\\\\ ]{1,40}", proptest::collection::vec(any::<u8>(), 0..200), 0usize..6), 0..8),
            version in 1u32..=2,
        ) {
            let algs = [None, Some(ChecksumAlgorithm::Crc32c), Some(ChecksumAlgorithm::Sha224), Some(ChecksumAlgorithm::Sha256), Some(ChecksumAlgorithm::Sha384), Some(ChecksumAlgorithm::Sha512)];
            let lines: Vec<String> = files.iter().map(|(p, d, a)| file_line(p, d, algs[*a])).collect();
            let m = PgBackupManifest::parse(&manifest(version, &lines)).unwrap();
            prop_assert_eq!(m.files.len(), files.len());
            for (f, (p, d, a)) in m.files.iter().zip(&files) {
                prop_assert_eq!(&f.path, p);
                prop_assert_eq!(f.size, d.len() as u64);
                prop_assert_eq!(f.checksum.as_ref().map(|c| c.algorithm), algs[*a]);
                if let Some(c) = &f.checksum {
                    let mut s = FileChecksummer::new(c.algorithm);
                    s.update(d);
                    prop_assert_eq!(&s.finish(), &c.value);
                }
            }
        }
    }
}
