//! Checks a WAL file before it is archived: it must be what its name says, whole, and
//! from the stanza's cluster. A file that fails is refused and nothing is stored.

use cairn_exit::{Classify, ErrorKind};
use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::page::pg_major_for_wal_magic;
use cairn_pgformat::summary::summarize_segment;
use cairn_pgformat::{WalError, WalFileName};
use cairn_repo::{DbGeneration, WalDetail};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("not a valid WAL segment: {0}")]
    Segment(#[source] WalError),
    #[error("it was written by system {found}, but the stanza belongs to system {expected}")]
    ForeignSystem { found: u64, expected: u64 },
    #[error("it was written by PostgreSQL {found}, but the stanza is PostgreSQL {expected}")]
    WrongVersion { found: String, expected: u32 },
    #[error("its content is segment {content} of timeline {tli}, not what its name says")]
    NameMismatch { content: String, tli: u32 },
    #[error("not a valid timeline history file: {0}")]
    History(String),
    #[error("not a valid backup history file: {0}")]
    BackupHistory(String),
}

impl Classify for ValidateError {
    fn kind(&self) -> ErrorKind {
        match self {
            ValidateError::ForeignSystem { .. } | ValidateError::WrongVersion { .. } => {
                ErrorKind::Stanza
            }
            _ => ErrorKind::InvalidInput,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ValidateError::ForeignSystem { .. } | ValidateError::WrongVersion { .. } => Some(
                "each cluster needs its own stanza; after pg_upgrade run `cairn stanza-upgrade`"
                    .into(),
            ),
            ValidateError::Segment(_) => {
                Some("the file may be truncated or not from pg_wal".into())
            }
            _ => None,
        }
    }
}

/// Validate `bytes` as the file `name` of the cluster generation `generation` and return
/// the summary to store beside it.
pub fn validate(
    name: &WalFileName,
    bytes: &[u8],
    generation: &DbGeneration,
) -> Result<WalDetail, ValidateError> {
    match name {
        WalFileName::Segment(seg) | WalFileName::Partial(seg) => {
            let summary = summarize_segment(bytes).map_err(ValidateError::Segment)?;
            if summary.system_identifier != generation.system_id {
                return Err(ValidateError::ForeignSystem {
                    found: summary.system_identifier,
                    expected: generation.system_id,
                });
            }
            match pg_major_for_wal_magic(summary.magic) {
                Some(v) if v == generation.pg_major => {}
                found => {
                    return Err(ValidateError::WrongVersion {
                        found: found.map_or_else(
                            || format!("with WAL magic {:#06X}", summary.magic),
                            |v| v.to_string(),
                        ),
                        expected: generation.pg_major,
                    });
                }
            }
            let seg_size = summary.seg_size();
            // The first segment of a new timeline starts as a copy of its parent's, page
            // headers included, so earlier pages may carry an older timeline.
            let tli_ok =
                summary.timeline <= summary.last_timeline && summary.last_timeline <= seg.tli;
            if !tli_ok || summary.start_lsn != seg.start_lsn(seg_size) {
                let content = cairn_pgformat::SegmentName::from_segno(
                    summary.timeline,
                    summary.start_lsn.segment_number(seg_size),
                    seg_size,
                );
                return Err(ValidateError::NameMismatch {
                    content: content.to_string(),
                    tli: summary.timeline.0,
                });
            }
            Ok(WalDetail::Segment {
                summary: Box::new(summary),
            })
        }
        WalFileName::History(tli) => {
            TimelineHistory::parse(*tli, bytes)
                .map_err(|e| ValidateError::History(e.to_string()))?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ValidateError::History("not UTF-8".into()))?;
            Ok(WalDetail::History { text })
        }
        WalFileName::BackupHistory { .. } => {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ValidateError::BackupHistory("not UTF-8".into()))?;
            if !text.contains("START WAL LOCATION:") || bytes.len() > 64 * 1024 {
                return Err(ValidateError::BackupHistory(
                    "no START WAL LOCATION line".into(),
                ));
            }
            Ok(WalDetail::BackupHistory { text })
        }
    }
}
