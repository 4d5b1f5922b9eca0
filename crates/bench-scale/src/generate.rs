//! A synthetic year of a busy cluster, written through the repository's own writers.
//!
//! Shape: `segments` WAL segments over 365 days on three timelines (half on 1, 30 % on 2,
//! the rest on 3, each switch with its `.history` file), `backups` backups spread evenly
//! (a full every 20th, incrs between, each on the timeline of its time), each adding
//! `packs / backups` packs of `chunks_per_pack` new 64-byte chunks. The database is 2,000
//! chunks in 200 files; each backup replaces a quarter of them, so a manifest references
//! chunks of its own and of the three backups before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use cairn_pgformat::{
    Lsn, PgTimestamp, SegmentName, SegmentSummary, TimelineId, WalFileName, WalSegmentSize,
    XLogSegNo,
};
use cairn_repo::manifest::MANIFEST_FORMAT;
use cairn_repo::{
    BackupLabel, BackupManifest, BackupType, ChunkLocation, ChunkRef, ContentId, DbId, FileKind,
    IncrementalMode, ManifestFile, PackId, PackWriter, Repository, StanzaName, WalDetail,
};
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::Failure;

const SYSTEM_ID: u64 = 7_400_000_000_000_000_001;
const PG_MAJOR: u32 = 15;
/// Chunks in the synthetic database, and per file.
const DB_CHUNKS: usize = 2_000;
const FILE_CHUNKS: usize = 10;
const CHUNK_BYTES: usize = 64;
const FULL_EVERY: u64 = 20;
/// WAL pushes in flight (an async archiver's parallelism).
const PUSHES: usize = 32;
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    pub segments: u64,
    pub backups: u64,
    pub packs: u64,
    pub chunks_per_pack: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            segments: 100_000,
            backups: 1_000,
            packs: 50_000,
            chunks_per_pack: 10,
        }
    }
}

/// Where segment `i` is: its timeline and segment number.
#[derive(Debug, Clone, Copy)]
struct Timelines {
    /// Segments on timeline 1 (segnos 1..=a) and on timeline 2 (starting at segno a).
    a: u64,
    b: u64,
}

impl Timelines {
    fn new(segments: u64) -> Timelines {
        let a = (segments / 2).max(1);
        let b = (segments * 3 / 10).max(1);
        Timelines { a, b }
    }
    fn place(&self, i: u64) -> (u32, u64) {
        if i < self.a {
            (1, i + 1)
        } else if i < self.a + self.b {
            // The new timeline's first segment has the number of its parent's last.
            (2, self.a + (i - self.a))
        } else {
            (3, self.a + self.b - 1 + (i - self.a - self.b))
        }
    }
    /// The switch to timeline `tli` (2 or 3): index of its first segment, and the LSN.
    fn switch(&self, tli: u32, seg: WalSegmentSize) -> (u64, Lsn) {
        let first = if tli == 2 { self.a } else { self.a + self.b };
        let (_, segno) = self.place(first);
        let start = XLogSegNo(segno).start_lsn(seg).expect("a valid segment");
        (first, Lsn(start.0 + u64::from(seg.bytes()) / 2))
    }
    fn history(&self, tli: u32, seg: WalSegmentSize) -> String {
        (2..=tli)
            .map(|t| {
                let (_, lsn) = self.switch(t, seg);
                format!("{}\t{lsn}\tno recovery target specified\n", t - 1)
            })
            .collect()
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn pg_time(t: OffsetDateTime) -> PgTimestamp {
    PgTimestamp::from_offset_datetime(t).expect("a time in PostgreSQL's range")
}

struct Generator {
    repo: Repository,
    stanza: StanzaName,
    db_id: DbId,
    seg: WalSegmentSize,
    tls: Timelines,
    shape: Shape,
    /// The synthetic now, in unix microseconds: journal keys take it.
    now: Arc<AtomicI64>,
    t0: OffsetDateTime,
    /// The database: a chunk per slot, where it is stored.
    slots: Vec<(ContentId, ChunkLocation)>,
    next_slot: usize,
    full: Option<BackupLabel>,
    previous: Option<BackupLabel>,
    packs_written: u64,
    chunks_written: u64,
}

/// Generate the repository; returns what was written, as JSON.
pub async fn generate(
    repo: Repository,
    stanza: &StanzaName,
    shape: &Shape,
) -> Result<serde_json::Value, Failure> {
    let started = Instant::now();
    let t0 = OffsetDateTime::now_utc() - YEAR - Duration::from_secs(24 * 3600);
    let now = Arc::new(AtomicI64::new(micros(t0)));
    let clock = Arc::clone(&now);
    let repo = repo.with_clock(Arc::new(move || {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(clock.load(Ordering::SeqCst)) * 1000)
            .expect("a valid time")
    }));
    let info = match repo.stanza_info(stanza).await? {
        Some(i) => i,
        None => {
            repo.create_stanza(stanza, SYSTEM_ID, PG_MAJOR).await?;
            repo.require_stanza(stanza).await?
        }
    };
    if !repo.wal_catalog(stanza).await?.is_empty() {
        return Err(
            format!("stanza {stanza} already has WAL: generate into an empty repository").into(),
        );
    }
    let mut g = Generator {
        repo,
        stanza: stanza.clone(),
        db_id: info.current().db_id,
        seg: WalSegmentSize::DEFAULT,
        tls: Timelines::new(shape.segments),
        shape: shape.clone(),
        now,
        t0,
        slots: Vec::new(),
        next_slot: 0,
        full: None,
        previous: None,
        packs_written: 0,
        chunks_written: 0,
    };
    g.run().await?;
    Ok(serde_json::json!({
        "segments": shape.segments,
        "timelines": 3,
        "backups": shape.backups,
        "packs": g.packs_written,
        "chunks": g.chunks_written,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

impl Generator {
    fn time_of(&self, i: u64) -> OffsetDateTime {
        let step = YEAR.as_micros() as f64 / self.shape.segments as f64;
        self.t0 + Duration::from_micros((i as f64 * step) as u64)
    }

    fn set_now(&self, t: OffsetDateTime) {
        self.now.store(micros(t), Ordering::SeqCst);
    }

    async fn run(&mut self) -> Result<(), Failure> {
        let n = self.shape.segments;
        let backup_at: Vec<u64> = (0..self.shape.backups)
            .map(|j| ((j as f64 + 0.5) * n as f64 / self.shape.backups as f64) as u64)
            .collect();
        let fold_every = (n / 100).max(1_000);
        let switches = [
            self.tls.switch(2, self.seg).0,
            self.tls.switch(3, self.seg).0,
        ];
        let mut next_backup = 0usize;
        let mut last_report = Instant::now();
        let mut i = 0;
        while i < n {
            let mut end = (i + PUSHES as u64).min(n);
            // A window never spans a timeline switch: the history file goes first.
            for s in switches {
                if s > i && s < end {
                    end = s;
                }
            }
            for (t, s) in [2u32, 3].into_iter().zip(switches) {
                if s == i {
                    self.push_history(t, i).await?;
                }
            }
            self.set_now(self.time_of(i));
            futures::stream::iter(i..end)
                .map(|k| self.push_segment(k))
                .buffer_unordered(PUSHES)
                .try_collect::<Vec<()>>()
                .await?;
            if end / fold_every != i / fold_every {
                // Readers (info, backup, expire) fold the catalog and write its snapshots.
                self.repo.wal_catalog(&self.stanza).await?;
            }
            while next_backup < backup_at.len() && backup_at[next_backup] < end {
                self.backup(next_backup as u64, backup_at[next_backup])
                    .await?;
                next_backup += 1;
            }
            i = end;
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "cairn-bench-scale: {i}/{n} segments, {next_backup} backups, {} packs",
                    self.packs_written
                );
                last_report = Instant::now();
            }
        }
        self.repo.wal_catalog(&self.stanza).await?;
        self.repo.backup_catalog(&self.stanza).await?;
        Ok(())
    }

    async fn push_history(&self, tli: u32, first: u64) -> Result<(), Failure> {
        self.set_now(self.time_of(first));
        let text = self.tls.history(tli, self.seg);
        let name = WalFileName::History(TimelineId(tli));
        let enc = self
            .repo
            .encode_wal(
                &self.stanza,
                self.db_id,
                &name,
                text.clone().into_bytes().into(),
            )
            .await?;
        self.repo
            .push_wal(
                &self.stanza,
                self.db_id,
                &name,
                &enc,
                WalDetail::History { text },
            )
            .await?;
        Ok(())
    }

    async fn push_segment(&self, i: u64) -> Result<(), Failure> {
        let (tli, segno) = self.tls.place(i);
        let at = Place {
            db_id: self.db_id,
            seg: self.seg,
            tli,
            segno,
        };
        push_segment(&self.repo, &self.stanza, at, self.time_of(i), i).await
    }
    /// Backup `j`, taken while segment `at` was being written.
    async fn backup(&mut self, j: u64, at: u64) -> Result<(), Failure> {
        let start_time = self.time_of(at);
        self.set_now(start_time);
        let (tli, segno) = self.tls.place(at);
        let seg_start = XLogSegNo(segno)
            .start_lsn(self.seg)
            .expect("a valid segment");
        // Past the middle of the segment, where a timeline switch falls.
        let start_lsn = Lsn(seg_start.0 + u64::from(self.seg.bytes()) * 3 / 4);
        let stop_lsn = Lsn(start_lsn.0 + 0x10_0000);
        let stop_time = start_time + Duration::from_secs(600);

        // New chunks, in packs of `chunks_per_pack`.
        let per_backup = (self.shape.packs / self.shape.backups.max(1)).max(1);
        let cpp = self.shape.chunks_per_pack.max(1) as usize;
        let probe = self
            .repo
            .encode_chunk(&self.stanza, &rand::random::<[u8; CHUNK_BYTES]>())?
            .bytes()
            .len();
        let target = probe * cpp - probe / 2;
        let mut writer = PackWriter::with_target(self.repo.clone(), self.stanza.clone(), target);
        let mut added = 0u64;
        for _ in 0..per_backup as usize * cpp {
            let data = rand::random::<[u8; CHUNK_BYTES]>();
            let enc = self.repo.encode_chunk(&self.stanza, &data)?;
            let loc = writer.add(&enc).await?;
            added += u64::from(loc.len);
            let slot = (enc.content_id, loc);
            if self.slots.len() < DB_CHUNKS {
                self.slots.push(slot);
            } else {
                self.slots[self.next_slot] = slot;
                self.next_slot = (self.next_slot + 1) % DB_CHUNKS;
            }
        }
        writer.flush().await?;
        self.packs_written += per_backup;
        self.chunks_written += per_backup * cpp as u64;

        let full = j.is_multiple_of(FULL_EVERY) || self.full.is_none();
        let (backup_type, parent, mode) = if full {
            (BackupType::Full, None, IncrementalMode::Full)
        } else {
            (
                BackupType::Incr,
                self.previous.clone(),
                IncrementalMode::ContentAddressed,
            )
        };
        let label = BackupLabel::generate(start_time, backup_type, self.full.as_ref());
        let mut packs: Vec<PackId> = Vec::new();
        let mut positions: HashMap<PackId, u32> = HashMap::new();
        let mut files: Vec<ManifestFile> = ["base", "base/16384", "global", "pg_wal"]
            .into_iter()
            .map(|d| ManifestFile {
                path: d.to_string(),
                kind: FileKind::Dir,
                mode: 0o700,
                size: 0,
                mtime: start_time.unix_timestamp(),
                link: None,
                chunks: Vec::new(),
            })
            .collect();
        let mut db_size = 0;
        for (f, group) in self.slots.chunks(FILE_CHUNKS).enumerate() {
            let chunks: Vec<ChunkRef> = group
                .iter()
                .map(|(id, loc)| {
                    let pack = *positions.entry(loc.pack.clone()).or_insert_with(|| {
                        packs.push(loc.pack.clone());
                        packs.len() as u32 - 1
                    });
                    ChunkRef {
                        id: *id,
                        pack,
                        offset: loc.offset,
                        len: loc.len,
                        size: loc.size,
                    }
                })
                .collect();
            let size: u64 = chunks.iter().map(|c| u64::from(c.size)).sum();
            db_size += size;
            // The first file stands for the control file, which a restore requires.
            let path = match f {
                0 => "global/pg_control".to_string(),
                _ => format!("base/16384/{}", 16_400 + f),
            };
            files.push(ManifestFile {
                path,
                kind: FileKind::File,
                mode: 0o600,
                size,
                mtime: start_time.unix_timestamp(),
                link: None,
                chunks,
            });
        }
        let start_seg = SegmentName::from_segno(TimelineId(tli), XLogSegNo(segno), self.seg);
        let backup_label = format!(
            "START WAL LOCATION: {start_lsn} (file {start_seg})\nCHECKPOINT LOCATION: {}\n\
             BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: {} UTC\n\
             LABEL: cairn {label}\nSTART TIMELINE: {tli}\n",
            Lsn(start_lsn.0 + 0x60),
            start_time
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second]"
                ))
                .unwrap_or_default(),
        );
        let m = BackupManifest {
            format: MANIFEST_FORMAT,
            label: label.clone(),
            backup_type,
            parent,
            db_id: self.db_id,
            system_id: SYSTEM_ID,
            pg_major: PG_MAJOR,
            timeline: TimelineId(tli),
            start_lsn,
            stop_lsn,
            start_time: cairn_repo::BackupTime(start_time),
            stop_time: cairn_repo::BackupTime(stop_time),
            incremental_mode: mode,
            packs,
            files,
            tablespaces: Vec::new(),
            backup_label,
            tablespace_map: None,
            pg_manifest: None,
            db_size,
            bytes_received: db_size,
            repo_added: added,
            annotations: Default::default(),
        };
        self.set_now(stop_time);
        self.repo.put_manifest(&self.stanza, &m).await?;
        // As `cairn backup` does after its manifest.
        self.repo.update_chunk_snapshot(&self.stanza).await?;
        // The next reader (info, the next backup) folds the catalog.
        self.repo.backup_catalog(&self.stanza).await?;
        if full {
            self.full = Some(label.clone());
        }
        self.previous = Some(label);
        Ok(())
    }
}

/// Where a synthetic segment goes.
#[derive(Debug, Clone, Copy)]
struct Place {
    db_id: DbId,
    seg: WalSegmentSize,
    tli: u32,
    segno: u64,
}

/// Archive synthetic segment `i` (its content and xids derive from it) at `at`, written
/// at time `t`.
async fn push_segment(
    repo: &Repository,
    stanza: &StanzaName,
    at: Place,
    t: OffsetDateTime,
    i: u64,
) -> Result<(), Failure> {
    let (tli, segno) = (at.tli, at.segno);
    let seg_bytes = u64::from(at.seg.bytes());
    let start = XLogSegNo(segno).start_lsn(at.seg).expect("a valid segment");
    let name = WalFileName::Segment(SegmentName::from_segno(
        TimelineId(tli),
        XLogSegNo(segno),
        at.seg,
    ));
    let xid = 1_000 + (i as u32).wrapping_mul(50);
    let summary = SegmentSummary {
        system_identifier: SYSTEM_ID,
        seg_size: at.seg,
        xlog_blcksz: 8192,
        timeline: TimelineId(tli),
        last_timeline: TimelineId(tli),
        start_lsn: start,
        magic: cairn_pgformat::page::wal_magic_for_pg_major(PG_MAJOR).expect("PG 15's magic"),
        first_record: Some(Lsn(start.0 + 40)),
        last_record: Some(Lsn(start.0 + seg_bytes - 256)),
        end_of_wal: Lsn(start.0 + seg_bytes),
        record_count: 1_000,
        commit_count: 50,
        abort_count: 0,
        first_commit_time: Some(pg_time(t)),
        last_commit_time: Some(pg_time(t + Duration::from_millis(100))),
        min_xid: Some(xid),
        max_xid: Some(xid + 49),
        restore_points: Vec::new(),
        switch: false,
        head_len: 0,
        head_fragment: None,
        tail_fragment: None,
    };
    // Tiny content, unique per segment: the object format is real, the WAL is not.
    let mut body = i.to_le_bytes().to_vec();
    body.extend_from_slice(&rand::random::<[u8; 24]>());
    let enc = repo
        .encode_wal(stanza, at.db_id, &name, body.into())
        .await?;
    repo.push_wal(
        stanza,
        at.db_id,
        &name,
        &enc,
        WalDetail::Segment {
            summary: Box::new(summary),
        },
    )
    .await?;
    Ok(())
}

/// Archive `count` more segments after the newest one of the newest timeline, stamped
/// now: what a busy cluster adds between two reads of the catalog.
pub async fn append(
    repo: Repository,
    stanza: &StanzaName,
    count: u64,
) -> Result<serde_json::Value, Failure> {
    let started = Instant::now();
    let info = repo.require_stanza(stanza).await?;
    let catalog = repo.wal_catalog_paged(stanza).await?;
    let newest = catalog
        .timelines()
        .into_iter()
        .filter(|t| t.db_id == info.current().db_id)
        .max_by_key(|t| t.timeline)
        .and_then(|t| t.ranges.last().map(|r| r.last.clone()))
        .ok_or("no WAL archived yet: generate first")?;
    let last: SegmentName = newest.parse()?;
    let seg = WalSegmentSize::DEFAULT;
    let first = last.segno(seg).0 + 1;
    let now = OffsetDateTime::now_utc();
    futures::stream::iter(0..count)
        .map(|k| {
            let at = Place {
                db_id: info.current().db_id,
                seg,
                tli: last.tli.0,
                segno: first + k,
            };
            push_segment(&repo, stanza, at, now, first + k)
        })
        .buffer_unordered(PUSHES)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(serde_json::json!({
        "appended": count,
        "after": newest,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
