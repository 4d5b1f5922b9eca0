//! Waiting for WAL to arrive in the repository: a backup waits for the segments from its
//! start to its stop, `cairn check` for the segment it switched away from. One loop for
//! both, so they agree on what "archived" means and on how long they wait.

use std::time::{Duration, Instant};

use cairn_pgformat::{Lsn, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::{DbId, Repository, StanzaName, layout};

use crate::error::BackupError;

/// The polling interval starts here and doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Wait until every segment of `segments` is stored for generation `db` of `stanza`, in
/// order. Gives up with [`BackupError::WalNotArchived`], naming the first missing segment,
/// once `timeout` has passed.
pub async fn wait_for_wal(
    repo: &Repository,
    stanza: &StanzaName,
    db: DbId,
    segments: impl IntoIterator<Item = SegmentName>,
    timeout: Duration,
) -> Result<(), BackupError> {
    // A deadline past what the clock can hold never comes.
    let deadline = Instant::now().checked_add(timeout);
    for name in segments {
        let key = layout::wal_file(stanza, db, &WalFileName::Segment(name));
        let mut delay = FIRST_DELAY;
        while repo.stored_content_id(&key).await?.is_none() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(BackupError::WalNotArchived {
                    segment: name,
                    waited: timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
    Ok(())
}

/// The segments on `tli` from the one holding `start` to the one holding `stop`: the WAL
/// that makes a backup taken between them consistent.
pub fn segments_between(
    tli: TimelineId,
    start: Lsn,
    stop: Lsn,
    seg: WalSegmentSize,
) -> impl Iterator<Item = SegmentName> {
    (start.segment_number(seg).0..=stop.segment_number(seg).0)
        .map(move |n| SegmentName::from_segno(tli, XLogSegNo(n), seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_from_start_to_stop() {
        // 16 MiB segments: 256 per xlog id, so the names wrap into the next one.
        let seg = WalSegmentSize::DEFAULT;
        let names: Vec<String> =
            segments_between(TimelineId(2), Lsn(0xFF00_0100), Lsn(0x1_0100_0000), seg)
                .map(|s| s.to_string())
                .collect();
        assert_eq!(
            names,
            [
                "0000000200000000000000FF",
                "000000020000000100000000",
                "000000020000000100000001"
            ]
        );
    }
}
