//! `backup_label`: the text file a base backup carries in its root (and, with stop lines
//! added, the `.backup` history file PostgreSQL archives), as written by
//! `build_backup_content()` in src/backend/access/transam/xlogbackup.c:
//!
//! ```text
//! START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
//! CHECKPOINT LOCATION: 0/2000080
//! BACKUP METHOD: streamed
//! BACKUP FROM: primary
//! START TIME: 2026-11-22 14:05:00 UTC
//! LABEL: nightly
//! START TIMELINE: 1
//! INCREMENTAL FROM LSN: 0/1000028      (PostgreSQL 17+, incremental backups only)
//! INCREMENTAL FROM TLI: 1
//! ```
//!
//! A history file adds `STOP WAL LOCATION`, `STOP TIME` and `STOP TIMELINE`. Like
//! `read_backup_label()` in xlogrecovery.c, only the start and checkpoint locations are
//! required; the other lines are read when present. Times stay as written: they are in the
//! server's `log_timezone`, whose abbreviation cannot be resolved reliably here.
//!
//! ```
//! use cairn_pgformat::backup_label::BackupLabelFile;
//! use cairn_pgformat::{Lsn, TimelineId};
//! let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
//!             CHECKPOINT LOCATION: 0/2000080\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
//!             START TIME: 2026-11-22 14:05:00 UTC\nLABEL: nightly\nSTART TIMELINE: 1\n";
//! let label = BackupLabelFile::parse(text.as_bytes()).unwrap();
//! assert_eq!(label.start_lsn, "0/2000028".parse::<Lsn>().unwrap());
//! assert_eq!(label.start_timeline, Some(TimelineId(1)));
//! assert_eq!(label.label.as_deref(), Some("nightly"));
//! assert_eq!(label.incremental_from, None);
//! assert_eq!(label.to_string(), text);
//! ```

use std::fmt;

use crate::file_name::SegmentName;
use crate::lsn::Lsn;
use crate::timeline::TimelineId;

/// Whether the backup was taken on a primary or a standby (`BACKUP FROM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFrom {
    Primary,
    Standby,
}

/// The backup an incremental backup is relative to (PostgreSQL 17+): the start of the
/// prior backup whose manifest was uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementalFrom {
    pub lsn: Lsn,
    pub timeline: TimelineId,
}

/// The parsed contents of a `backup_label` or `.backup` history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabelFile {
    /// Where replay must start (`START WAL LOCATION`).
    pub start_lsn: Lsn,
    /// The segment holding `start_lsn`, as the file names it.
    pub start_wal_file: SegmentName,
    /// History files only.
    pub stop_lsn: Option<Lsn>,
    pub stop_wal_file: Option<SegmentName>,
    /// The checkpoint the backup started from (`CHECKPOINT LOCATION`).
    pub checkpoint_lsn: Lsn,
    /// `streamed` for every backup since PostgreSQL 15.
    pub method: Option<String>,
    pub from: Option<BackupFrom>,
    /// As written, e.g. `2026-11-22 14:05:00 UTC`, in the server's `log_timezone`.
    pub start_time: Option<String>,
    pub label: Option<String>,
    pub start_timeline: Option<TimelineId>,
    pub stop_time: Option<String>,
    pub stop_timeline: Option<TimelineId>,
    pub incremental_from: Option<IncrementalFrom>,
    /// Lines this parser does not know, kept in order so that the file can be written back.
    pub other_lines: Vec<String>,
}

/// Why text is not a backup label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupLabelError {
    #[error("backup_label is not UTF-8 text")]
    NotText,
    #[error("backup_label has no {key} line")]
    Missing { key: &'static str },
    #[error("backup_label: {key} has {count} lines")]
    Duplicate { key: &'static str, count: usize },
    #[error("backup_label: cannot read {key} from {value:?}")]
    Invalid { key: &'static str, value: String },
    #[error("backup_label has INCREMENTAL FROM {present} but no INCREMENTAL FROM {missing}")]
    HalfIncremental {
        present: &'static str,
        missing: &'static str,
    },
}

const START_WAL: &str = "START WAL LOCATION";
const STOP_WAL: &str = "STOP WAL LOCATION";
const CHECKPOINT: &str = "CHECKPOINT LOCATION";
const METHOD: &str = "BACKUP METHOD";
const FROM: &str = "BACKUP FROM";
const START_TIME: &str = "START TIME";
const LABEL: &str = "LABEL";
const START_TLI: &str = "START TIMELINE";
const STOP_TIME: &str = "STOP TIME";
const STOP_TLI: &str = "STOP TIMELINE";
const INCR_LSN: &str = "INCREMENTAL FROM LSN";
const INCR_TLI: &str = "INCREMENTAL FROM TLI";

const KEYS: [&str; 12] = [
    START_WAL, STOP_WAL, CHECKPOINT, METHOD, FROM, START_TIME, LABEL, START_TLI, STOP_TIME,
    STOP_TLI, INCR_LSN, INCR_TLI,
];

/// `0/2000028 (file 000000010000000000000002)`.
fn location(key: &'static str, value: &str) -> Result<(Lsn, SegmentName), BackupLabelError> {
    let bad = || BackupLabelError::Invalid {
        key,
        value: value.to_string(),
    };
    let (lsn, rest) = value.split_once(' ').ok_or_else(bad)?;
    let file = rest
        .strip_prefix("(file ")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(bad)?;
    Ok((
        lsn.parse().map_err(|_| bad())?,
        file.parse().map_err(|_| bad())?,
    ))
}

fn parsed<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T, BackupLabelError> {
    value.parse().map_err(|_| BackupLabelError::Invalid {
        key,
        value: value.to_string(),
    })
}

impl BackupLabelFile {
    /// Parse the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<BackupLabelFile, BackupLabelError> {
        let text = std::str::from_utf8(bytes).map_err(|_| BackupLabelError::NotText)?;
        let mut values: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
        let mut counts = [0usize; KEYS.len()];
        let mut other_lines = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let known = line
                .split_once(": ")
                .and_then(|(k, v)| KEYS.iter().position(|&key| key == k).map(|i| (i, v)));
            match known {
                Some((i, v)) => {
                    values[i] = Some(v);
                    counts[i] += 1;
                }
                None => other_lines.push(line.to_string()),
            }
        }
        if let Some(i) = counts.iter().position(|&c| c > 1) {
            return Err(BackupLabelError::Duplicate {
                key: KEYS[i],
                count: counts[i],
            });
        }
        let get = |key: &'static str| values[KEYS.iter().position(|&k| k == key).unwrap_or(0)];
        let (start_lsn, start_wal_file) = location(
            START_WAL,
            get(START_WAL).ok_or(BackupLabelError::Missing { key: START_WAL })?,
        )?;
        let stop = get(STOP_WAL).map(|v| location(STOP_WAL, v)).transpose()?;
        let checkpoint_lsn = parsed(
            CHECKPOINT,
            get(CHECKPOINT).ok_or(BackupLabelError::Missing { key: CHECKPOINT })?,
        )?;
        let from = get(FROM)
            .map(|v| match v {
                "primary" => Ok(BackupFrom::Primary),
                "standby" => Ok(BackupFrom::Standby),
                other => Err(BackupLabelError::Invalid {
                    key: FROM,
                    value: other.to_string(),
                }),
            })
            .transpose()?;
        let incr_lsn: Option<Lsn> = get(INCR_LSN).map(|v| parsed(INCR_LSN, v)).transpose()?;
        let incr_tli: Option<TimelineId> =
            get(INCR_TLI).map(|v| parsed(INCR_TLI, v)).transpose()?;
        let incremental_from = match (incr_lsn, incr_tli) {
            (Some(lsn), Some(timeline)) => Some(IncrementalFrom { lsn, timeline }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(BackupLabelError::HalfIncremental {
                    present: "LSN",
                    missing: "TLI",
                });
            }
            (None, Some(_)) => {
                return Err(BackupLabelError::HalfIncremental {
                    present: "TLI",
                    missing: "LSN",
                });
            }
        };
        Ok(BackupLabelFile {
            start_lsn,
            start_wal_file,
            stop_lsn: stop.as_ref().map(|s| s.0),
            stop_wal_file: stop.map(|s| s.1),
            checkpoint_lsn,
            method: get(METHOD).map(str::to_string),
            from,
            start_time: get(START_TIME).map(str::to_string),
            label: get(LABEL).map(str::to_string),
            start_timeline: get(START_TLI).map(|v| parsed(START_TLI, v)).transpose()?,
            stop_time: get(STOP_TIME).map(str::to_string),
            stop_timeline: get(STOP_TLI).map(|v| parsed(STOP_TLI, v)).transpose()?,
            incremental_from,
            other_lines,
        })
    }

    /// Whether this is the label of a PostgreSQL 17+ incremental backup, which PostgreSQL
    /// refuses to start from until it is combined with its prior backups.
    pub fn is_incremental(&self) -> bool {
        self.incremental_from.is_some()
    }
}

/// The file again, in `build_backup_content()`'s order.
impl fmt::Display for BackupLabelFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{START_WAL}: {} (file {})",
            self.start_lsn, self.start_wal_file
        )?;
        if let (Some(lsn), Some(file)) = (self.stop_lsn, &self.stop_wal_file) {
            writeln!(f, "{STOP_WAL}: {lsn} (file {file})")?;
        }
        writeln!(f, "{CHECKPOINT}: {}", self.checkpoint_lsn)?;
        if let Some(m) = &self.method {
            writeln!(f, "{METHOD}: {m}")?;
        }
        if let Some(from) = self.from {
            let from = match from {
                BackupFrom::Primary => "primary",
                BackupFrom::Standby => "standby",
            };
            writeln!(f, "{FROM}: {from}")?;
        }
        if let Some(t) = &self.start_time {
            writeln!(f, "{START_TIME}: {t}")?;
        }
        if let Some(l) = &self.label {
            writeln!(f, "{LABEL}: {l}")?;
        }
        if let Some(t) = self.start_timeline {
            writeln!(f, "{START_TLI}: {t}")?;
        }
        if let Some(t) = &self.stop_time {
            writeln!(f, "{STOP_TIME}: {t}")?;
        }
        if let Some(t) = self.stop_timeline {
            writeln!(f, "{STOP_TLI}: {t}")?;
        }
        if let Some(i) = self.incremental_from {
            writeln!(f, "{INCR_LSN}: {}", i.lsn)?;
            writeln!(f, "{INCR_TLI}: {}", i.timeline)?;
        }
        for line in &self.other_lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PG17_INCREMENTAL: &str = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n\
        CHECKPOINT LOCATION: 0/4000080\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: primary\n\
        START TIME: 2026-11-23 01:02:03 CET\n\
        LABEL: cairn 20261123-010203F_20261123-010300I\n\
        START TIMELINE: 1\n\
        INCREMENTAL FROM LSN: 0/2000028\n\
        INCREMENTAL FROM TLI: 1\n";

    #[test]
    fn an_incremental_label_round_trips() {
        let l = BackupLabelFile::parse(PG17_INCREMENTAL.as_bytes()).unwrap();
        assert_eq!(l.start_lsn, Lsn(0x400_0028));
        assert_eq!(l.start_wal_file.to_string(), "000000010000000000000004");
        assert_eq!(l.checkpoint_lsn, Lsn(0x400_0080));
        assert_eq!(l.from, Some(BackupFrom::Primary));
        assert_eq!(
            l.label.as_deref(),
            Some("cairn 20261123-010203F_20261123-010300I")
        );
        assert_eq!(
            l.incremental_from,
            Some(IncrementalFrom {
                lsn: Lsn(0x200_0028),
                timeline: TimelineId(1)
            })
        );
        assert!(l.is_incremental());
        assert_eq!(l.to_string(), PG17_INCREMENTAL);
    }

    #[test]
    fn a_history_file_has_stop_lines() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
            STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n\
            CHECKPOINT LOCATION: 0/2000060\n\
            BACKUP METHOD: streamed\n\
            BACKUP FROM: standby\n\
            START TIME: 2026-11-22 14:05:00 UTC\n\
            LABEL: a label: with a colon\n\
            START TIMELINE: 2\n\
            STOP TIME: 2026-11-22 14:06:00 UTC\n\
            STOP TIMELINE: 3\n";
        let l = BackupLabelFile::parse(text.as_bytes()).unwrap();
        assert_eq!(l.stop_lsn, Some(Lsn(0x200_0100)));
        assert_eq!(l.from, Some(BackupFrom::Standby));
        assert_eq!(l.label.as_deref(), Some("a label: with a colon"));
        assert_eq!(
            (l.start_timeline, l.stop_timeline),
            (Some(TimelineId(2)), Some(TimelineId(3)))
        );
        assert_eq!(l.to_string(), text);
    }

    #[test]
    fn bad_labels_are_refused_with_the_line() {
        let missing = "CHECKPOINT LOCATION: 0/1\n";
        assert_eq!(
            BackupLabelFile::parse(missing.as_bytes()),
            Err(BackupLabelError::Missing { key: START_WAL })
        );
        let bad = "START WAL LOCATION: 0/1 (file nope)\nCHECKPOINT LOCATION: 0/1\n";
        assert!(matches!(
            BackupLabelFile::parse(bad.as_bytes()),
            Err(BackupLabelError::Invalid { key: START_WAL, .. })
        ));
        let half = PG17_INCREMENTAL.replace("INCREMENTAL FROM TLI: 1\n", "");
        assert!(matches!(
            BackupLabelFile::parse(half.as_bytes()),
            Err(BackupLabelError::HalfIncremental { .. })
        ));
        let twice = format!("{PG17_INCREMENTAL}LABEL: again\n");
        assert!(matches!(
            BackupLabelFile::parse(twice.as_bytes()),
            Err(BackupLabelError::Duplicate {
                key: LABEL,
                count: 2
            })
        ));
        assert_eq!(
            BackupLabelFile::parse(b"\xff"),
            Err(BackupLabelError::NotText)
        );
    }

    proptest! {
        #[test]
        fn written_labels_parse_back(
            start in any::<u64>(), ckpt in any::<u64>(), tli in 1u32..,
            label in "[ -~]{0,60}", incr in proptest::option::of((any::<u64>(), 1u32..)),
        ) {
            let seg = crate::WalSegmentSize::new(16 << 20).unwrap();
            let l = BackupLabelFile {
                start_lsn: Lsn(start),
                start_wal_file: SegmentName::containing(TimelineId(tli), Lsn(start), seg),
                stop_lsn: None,
                stop_wal_file: None,
                checkpoint_lsn: Lsn(ckpt),
                method: Some("streamed".into()),
                from: Some(BackupFrom::Primary),
                start_time: Some("2026-11-22 14:05:00 UTC".into()),
                label: Some(label.trim().to_string()).filter(|l| !l.is_empty()),
                start_timeline: Some(TimelineId(tli)),
                stop_time: None,
                stop_timeline: None,
                incremental_from: incr.map(|(lsn, t)| IncrementalFrom { lsn: Lsn(lsn), timeline: TimelineId(t) }),
                other_lines: vec![],
            };
            prop_assert_eq!(BackupLabelFile::parse(l.to_string().as_bytes()).unwrap(), l);
        }
    }
}
