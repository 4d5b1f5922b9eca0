//! `[schedule] max-replay`: once more WAL than this has been archived since the newest
//! backup started, take an incr, so no point-in-time restore replays more than about
//! that much WAL. Checked every minute from the catalogs (never a listing of WAL).
//!
//! The WAL counted is every archived segment of the backup's generation at or after the
//! segment holding the backup's start LSN, on its timeline and later ones (a promotion
//! after the backup adds its WAL to the replay). With no backup at all every segment of
//! the current generation counts (the incr becomes the first full).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_pgformat::{TimelineId, WalFileName, WalSegmentSize};
use cairn_repo::{BackupSummary, BackupType, DbId, WalCatalog};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::context::Context;
use crate::job::{Job, JobKind, JobStatus, Origin};

/// How often the catalogs are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// After a backup this check started failed, wait this long before starting another.
pub const BACKOFF: Duration = Duration::from_secs(10 * 60);

/// Bytes of WAL a restore from the newest backup of generation `db` would replay. Segments
/// in pages of the WAL index that are not loaded count from the page's runs (a segment
/// file is always a whole segment).
pub fn replay_bytes(backups: &[BackupSummary], catalog: &WalCatalog, db: DbId) -> u64 {
    let newest = backups
        .iter()
        .filter(|b| b.db_id == db)
        .max_by_key(|b| b.start_lsn);
    // Whether segment `segno` of timeline `tli` is replayed, at this segment size.
    let counts = |tli: TimelineId, segno: u64, seg_size: WalSegmentSize| match newest {
        None => true,
        Some(b) => tli >= b.timeline && segno >= b.start_lsn.segment_number(seg_size).0,
    };
    let loaded: u64 = catalog
        .entries()
        .filter(|e| e.db_id == db)
        .filter_map(|e| match e.file_name()? {
            WalFileName::Segment(s) => Some((s, e.size)),
            _ => None,
        })
        .filter(|(seg, size)| match WalSegmentSize::new(*size as u32) {
            Ok(seg_size) => counts(seg.tli, seg.segno(seg_size).0, seg_size),
            Err(_) => true,
        })
        .map(|(_, size)| size)
        .sum();
    let paged: u64 = catalog
        .pages()
        .iter()
        .filter(|(id, _)| id.db_id == db)
        .flat_map(|(id, p)| {
            p.runs.iter().map(move |&(a, b)| {
                let tli = TimelineId(id.timeline);
                let from = (a..=b)
                    .find(|n| counts(tli, *n, p.seg_size))
                    .map_or(0, |first| b - first + 1);
                from * p.seg_size.as_u64()
            })
        })
        .sum();
    loaded + paged
}

/// Check every stanza each [`CHECK_EVERY`] until `stop`.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let Some(limit) = ctx.cfg.schedule.max_replay else {
        return;
    };
    let mut last_job: std::collections::HashMap<String, (String, Option<Instant>)> =
        Default::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for stanza in &ctx.stanzas {
            // The backup this check last started: still going, or failed a short while ago.
            if let Some((id, failed_at)) = last_job.get_mut(stanza.as_str()) {
                match ctx.jobs.get(id).map(|j| j.status) {
                    Some(JobStatus::Running) => continue,
                    Some(JobStatus::Failed) => {
                        let at = *failed_at.get_or_insert_with(Instant::now);
                        if at.elapsed() < BACKOFF {
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            let bytes = match measure(&ctx, stanza).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(stanza = %stanza, error = %e, "max-replay: cannot read the catalogs");
                    continue;
                }
            };
            if bytes <= limit.0 {
                continue;
            }
            tracing::info!(stanza = %stanza, bytes, limit = limit.0, "max-replay: WAL since the newest backup exceeds the limit; taking an incr");
            let job = Job::new(
                JobKind::Backup(BackupType::Incr),
                stanza.as_str(),
                Origin::MaxReplay,
                OffsetDateTime::now_utc(),
            );
            if let Some(job) = crate::schedule::queue(&ctx, job) {
                last_job.insert(stanza.to_string(), (job.id, None));
            }
        }
    }
}

/// `None` when the stanza does not exist yet.
async fn measure(
    ctx: &Context,
    stanza: &cairn_repo::StanzaName,
) -> Result<Option<u64>, cairn_repo::RepoError> {
    let Some(info) = ctx.repo.stanza_info(stanza).await? else {
        return Ok(None);
    };
    let backups = ctx.repo.backup_catalog(stanza).await?.usable;
    let catalog = ctx.repo.wal_catalog_paged(stanza).await?;
    Ok(Some(replay_bytes(&backups, &catalog, info.current().db_id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_pgformat::Lsn;
    use cairn_repo::manifest::MANIFEST_FORMAT;
    use cairn_repo::{
        BackupLabel, BackupManifest, ContentId, IncrementalMode, WalDetail, WalEntry,
    };

    const MIB: u64 = 1 << 20;

    fn segment(tli: u32, n: u32, db: u32) -> (String, WalEntry) {
        let name = format!("{tli:08X}{:08X}{n:08X}", 0);
        let entry = WalEntry {
            name: name.clone(),
            db_id: DbId(db),
            content_id: ContentId([n as u8; 32]),
            size: MIB,
            archived_at: "2026-12-02T00:00:00Z".into(),
            detail: WalDetail::History {
                text: String::new(),
            },
        };
        (format!("log/{tli}-{n}-{db}"), entry)
    }

    fn backup(start_seg: u32, tli: u32) -> BackupSummary {
        BackupSummary::of(&BackupManifest {
            format: MANIFEST_FORMAT,
            label: BackupLabel::new("20261202-010000F").unwrap(),
            backup_type: BackupType::Full,
            parent: None,
            db_id: DbId(1),
            system_id: 1,
            pg_major: 15,
            timeline: TimelineId(tli),
            start_lsn: Lsn(start_seg as u64 * MIB + 0x28),
            stop_lsn: Lsn(start_seg as u64 * MIB + 0x100),
            start_time: cairn_repo::BackupTime::parse("2026-12-02T01:00:00Z").unwrap(),
            stop_time: cairn_repo::BackupTime::parse("2026-12-02T01:00:01Z").unwrap(),
            incremental_mode: IncrementalMode::Full,
            packs: vec![],
            files: vec![],
            tablespaces: vec![],
            backup_label: String::new(),
            tablespace_map: None,
            pg_manifest: None,
            db_size: 0,
            bytes_received: 0,
            repo_added: 0,
            annotations: Default::default(),
        })
    }

    #[test]
    fn wal_from_the_newest_backups_start_segment_on_counts() {
        let mut entries: Vec<(String, WalEntry)> = (1..=10).map(|n| segment(1, n, 1)).collect();
        // A promotion to timeline 2 at segment 8, and another generation's WAL.
        entries.extend((8..=9).map(|n| segment(2, n, 1)));
        entries.extend((1..=50).map(|n| segment(1, n, 2)));
        let catalog = WalCatalog::from_entries(entries);
        // No backup: every segment of the generation.
        assert_eq!(replay_bytes(&[], &catalog, DbId(1)), 12 * MIB);
        // A backup starting in segment 6 of timeline 1: 6..=10 on 1 and 8..=9 on 2.
        assert_eq!(replay_bytes(&[backup(6, 1)], &catalog, DbId(1)), 7 * MIB);
        // The newest backup wins; one on timeline 2 leaves timeline 1 out.
        assert_eq!(
            replay_bytes(&[backup(2, 1), backup(9, 2)], &catalog, DbId(1)),
            MIB
        );
    }

    /// Over the WAL index (pages of 4 segments, most not loaded) the count is the count
    /// over the whole catalog, for a backup starting inside a page and without a backup.
    #[tokio::test]
    async fn pages_not_loaded_count_as_their_segments() {
        use cairn_pgformat::XLogSegNo;
        use cairn_pgformat::builder::{DEFAULT_SYSTEM_IDENTIFIER, WalBuilder};
        let repo = cairn_repo::Repository::in_memory()
            .await
            .with_wal_page_segments(4);
        let stanza = cairn_repo::StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, DEFAULT_SYSTEM_IDENTIFIER, 15)
            .await
            .unwrap();
        let seg = WalSegmentSize::new(MIB as u32).unwrap();
        let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg);
        for i in 0..30 {
            wal.append_commit(100 + i, cairn_pgformat::PgTimestamp(800_000_000_000_000));
            wal.append_switch();
        }
        for i in 0..wal.segment_count() {
            cairn_repo::test_util::push_built_segment(&repo, &stanza, &wal, i).await;
        }
        repo.refresh_wal_index(&stanza).await.unwrap();
        let paged = repo.wal_catalog_paged(&stanza).await.unwrap();
        assert!(paged.pages().len() >= 7, "{}", paged.pages().len());
        let whole = repo.wal_catalog(&stanza).await.unwrap();
        for backups in [vec![], vec![backup(6, 1)], vec![backup(13, 1)]] {
            let want = replay_bytes(&backups, &whole, DbId(1));
            assert!(want > 0);
            assert_eq!(replay_bytes(&backups, &paged, DbId(1)), want);
        }
        assert_eq!(
            replay_bytes(&[backup(13, 1)], &paged, DbId(1)),
            (wal.segment_count() as u64 + 1 - 13) * MIB
        );
    }
}
