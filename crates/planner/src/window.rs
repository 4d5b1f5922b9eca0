//! The recoverable window per timeline, for `cairn info`: from the earliest backup's
//! consistency point to the last archived commit reachable from it without a gap.

use cairn_pgformat::{PgTimestamp, TimelineId};
use cairn_repo::{BackupManifest, DbId, WalCatalog};
use serde::Serialize;

use crate::plan::Archive;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryWindow {
    pub timeline: u32,
    /// The earliest backup that can start recovery on this timeline.
    pub backup: String,
    /// Its consistency point: the earliest time a restore can land on.
    pub from: String,
    /// The last commit reachable from it without a gap (`None`: none after the backup).
    pub to: Option<String>,
    /// The first missing segment that ends the window early, when WAL exists after it.
    pub gap: Option<String>,
}

/// One window per timeline that has WAL or backups.
pub fn recoverable_windows(
    backups: &[BackupManifest],
    catalog: &WalCatalog,
    db: DbId,
) -> Vec<RecoveryWindow> {
    let archive = Archive::new(catalog, db);
    let mine: Vec<&BackupManifest> = backups.iter().filter(|b| b.db_id == db).collect();
    let mut tlis: Vec<u32> = archive.timelines();
    tlis.extend(mine.iter().map(|b| b.timeline.0));
    tlis.sort_unstable();
    tlis.dedup();
    let mut out = Vec::new();
    for t in tlis {
        let hist = archive.history(TimelineId(t));
        let usable = mine.iter().find(|b| {
            hist.contains(b.timeline)
                && hist
                    .switchpoint_of(b.timeline)
                    .is_none_or(|sp| b.stop_lsn <= sp)
        });
        let Some(b) = usable else { continue };
        let stop_seg = b.stop_lsn.segment_number(archive.seg).0;
        let mut last: Option<PgTimestamp> = None;
        let mut gap = None;
        for (tli, n) in archive.walk(&hist, b.start_lsn) {
            match archive.get(tli, n) {
                Some(s) => {
                    if n >= stop_seg
                        && let Some(c) = s.last_commit_time
                    {
                        last = Some(last.map_or(c, |l: PgTimestamp| l.max(c)));
                    }
                }
                None => {
                    if archive.any_after(&hist, n) {
                        gap = Some(archive.name(tli, n));
                    }
                    break;
                }
            }
        }
        out.push(RecoveryWindow {
            timeline: t,
            backup: b.label.to_string(),
            from: b.stop_time.clone(),
            to: last.map(|l| l.to_string()),
            gap,
        });
    }
    out
}
