//! What `archive-get` checks before it hands a file to PostgreSQL: that it is the file
//! PostgreSQL asked for. The repository already authenticated the object and its binding
//! to the key it was read from; this checks the bytes themselves against the name, so a
//! wrong segment can never be replayed, whatever a repository holds.
//!
//! A segment is checked by its first page and its length ([`SEGMENT_HEAD`] bytes are
//! enough), so the check costs nothing next to the fetch; history and backup history files
//! are small and checked whole.

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::page::{XLP_LONG_HEADER, XLogPageHeader, pg_major_for_wal_magic};
use cairn_pgformat::{WalFileName, WalSegmentSize};
use cairn_repo::StanzaInfo;

/// How much of a segment [`check_delivered`] reads: its first page.
pub const SEGMENT_HEAD: usize = 8192;
/// History and backup history files larger than this are not what their name says.
pub const SMALL_FILE_MAX: u64 = 1 << 20;

/// How many leading bytes of a `len`-byte file `name` [`check_delivered`] needs.
pub fn head_len(name: &WalFileName, len: u64) -> usize {
    match name {
        WalFileName::Segment(_) | WalFileName::Partial(_) => len.min(SEGMENT_HEAD as u64) as usize,
        _ => len.min(SMALL_FILE_MAX) as usize,
    }
}

/// Check a file of `len` bytes beginning with `head` (at least [`head_len`] bytes) as the
/// file `name` of the stanza `info`; `Err` says what is wrong.
pub fn check_delivered(
    name: &WalFileName,
    head: &[u8],
    len: u64,
    info: &StanzaInfo,
) -> Result<(), String> {
    let bytes = head;
    match name {
        WalFileName::Segment(seg) | WalFileName::Partial(seg) => {
            let page = XLogPageHeader::parse(bytes).map_err(|e| format!("first page: {e}"))?;
            let long = page
                .long
                .filter(|_| page.info & XLP_LONG_HEADER != 0)
                .ok_or("the first page has no long header")?;
            let generation = info
                .history
                .iter()
                .find(|g| g.system_id == long.system_identifier)
                .ok_or_else(|| {
                    format!(
                        "it belongs to system {}, which is not this stanza's",
                        long.system_identifier
                    )
                })?;
            if pg_major_for_wal_magic(page.magic) != Some(generation.pg_major) {
                return Err(format!(
                    "its WAL magic {:#06X} is not PostgreSQL {}'s",
                    page.magic, generation.pg_major
                ));
            }
            let seg_size = WalSegmentSize::new(long.seg_size)
                .map_err(|_| format!("its segment size {} is not valid", long.seg_size))?;
            if len != u64::from(long.seg_size) {
                return Err(format!(
                    "it is {len} bytes, its header says segments are {}",
                    long.seg_size
                ));
            }
            if page.pageaddr != seg.start_lsn(seg_size) {
                return Err(format!(
                    "its first page is at {}, not at {} where {name} starts",
                    page.pageaddr,
                    seg.start_lsn(seg_size)
                ));
            }
            // The first segment of a timeline begins as a copy of its parent's.
            if page.tli > seg.tli {
                return Err(format!(
                    "its first page is on timeline {}, after the name's {}",
                    page.tli.0, seg.tli.0
                ));
            }
            Ok(())
        }
        _ if len > SMALL_FILE_MAX || len != bytes.len() as u64 => {
            Err(format!("it is {len} bytes, more than such a file holds"))
        }
        WalFileName::History(tli) => TimelineHistory::parse(*tli, bytes)
            .map(|_| ())
            .map_err(|e| format!("not the history of timeline {}: {e}", tli.0)),
        WalFileName::BackupHistory { .. } => {
            let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
            if text.contains("START WAL LOCATION:") {
                Ok(())
            } else {
                Err("not a backup history file".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_pgformat::builder::{DEFAULT_SYSTEM_IDENTIFIER, WalBuilder};
    use cairn_pgformat::{TimelineId, XLogSegNo};
    use cairn_repo::{DbGeneration, DbId, StanzaName};

    fn info(system_id: u64) -> StanzaInfo {
        StanzaInfo {
            name: StanzaName::new("main").unwrap(),
            seq: 1,
            history: vec![DbGeneration {
                db_id: DbId(1),
                system_id,
                pg_major: 15,
                created: String::new(),
            }],
        }
    }

    #[test]
    fn the_right_segment_passes_and_any_other_is_named() {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_switch();
        wal.append_switch();
        let (first, second) = (wal.segment(0), wal.segment(1));
        let name = WalFileName::Segment(wal.segment_name(0));
        let ours = info(DEFAULT_SYSTEM_IDENTIFIER);
        let check = |name: &WalFileName, bytes: &[u8], info: &StanzaInfo| {
            let head = &bytes[..head_len(name, bytes.len() as u64)];
            check_delivered(name, head, bytes.len() as u64, info)
        };
        assert_eq!(check(&name, &first, &ours), Ok(()));
        // Only the first page is needed.
        assert_eq!(head_len(&name, first.len() as u64), SEGMENT_HEAD);
        let wrong = check(&name, &second, &ours).unwrap_err();
        assert!(wrong.contains("first page is at"), "{wrong}");
        let foreign = check(&name, &first, &info(7)).unwrap_err();
        assert!(foreign.contains("not this stanza's"), "{foreign}");
        let short = check(&name, &first[..8192], &ours).unwrap_err();
        assert!(short.contains("bytes"), "{short}");
        let history = WalFileName::History(TimelineId(2));
        assert!(check(&history, &first, &ours).is_err());
        let text = b"1\t0/3000000\tno recovery target specified\n";
        assert_eq!(check(&history, text, &ours), Ok(()));
    }
}
