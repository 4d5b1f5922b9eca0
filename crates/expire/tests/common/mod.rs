//! A stanza in an in-memory repository with crafted WAL (1 MiB segments, one commit and a
//! switch each) on any timeline, and backups whose files are one chunk each, so expire's
//! decisions can be checked object by object.

#![allow(dead_code)]

use cairn_repo::test_util::RawBackend;
use std::collections::BTreeMap;
use std::time::Duration;

use cairn_expire::{ExpireOptions, Outcome};
use cairn_pgformat::builder::{DEFAULT_SYSTEM_IDENTIFIER, WalBuilder};
use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::{
    BackupLabel, BackupManifest, BackupType, ChunkRef, DbId, FileKind, IncrementalMode,
    ManifestFile, ObjectKey, ObjectKind, PackWriter, Repository, StanzaName, WalDetail, layout,
    manifest::MANIFEST_FORMAT,
};
use cairn_retention::RetentionRules;

pub const SEG: u32 = 1 << 20;

pub fn seg() -> WalSegmentSize {
    WalSegmentSize::new(SEG).unwrap()
}

/// The first LSN of segment `n`.
pub fn lsn(n: u64) -> Lsn {
    Lsn(n * u64::from(SEG))
}

pub fn label(s: &str) -> BackupLabel {
    BackupLabel::new(s).unwrap()
}

/// A file's content: 3000 bytes that differ for each `seed`.
pub fn data(seed: u32) -> Vec<u8> {
    (0..3000u32)
        .map(|j| (seed.wrapping_mul(2654435761) >> (j % 24)) as u8 ^ j as u8)
        .collect()
}

pub struct Fx {
    pub repo: Repository,
    pub stanza: StanzaName,
    /// Each backup's files, by label: what a restore must read back.
    pub files: BTreeMap<BackupLabel, Vec<Vec<u8>>>,
}

impl Fx {
    pub async fn new() -> Fx {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, DEFAULT_SYSTEM_IDENTIFIER, 15)
            .await
            .unwrap();
        Fx {
            repo,
            stanza,
            files: BTreeMap::new(),
        }
    }

    /// Archive segments `from..=to` of timeline `tli`.
    pub async fn push_segments(&self, tli: u32, from: u64, to: u64) {
        let mut wal = WalBuilder::new(XLogSegNo(from))
            .segment_size(seg())
            .timeline(TimelineId(tli));
        for i in from..=to {
            wal.append_commit(1000 + i as u32, PgTimestamp(800_000_000_000_000 + i as i64));
            wal.append_switch();
        }
        for (i, _) in (from..=to).enumerate() {
            let bytes = wal.segment(i);
            let summary = cairn_pgformat::summarize_segment(&bytes).unwrap();
            let name = WalFileName::Segment(wal.segment_name(i));
            self.push(
                name,
                bytes,
                WalDetail::Segment {
                    summary: Box::new(summary),
                },
            )
            .await;
        }
    }

    /// Archive segment `n` of `tli` again, as stored (PostgreSQL retrying a push).
    pub async fn repush(&self, tli: u32, n: u64) {
        let name: WalFileName = segs(tli, n, n)[0].parse().unwrap();
        let key = layout::wal_file(&self.stanza, DbId(1), &name);
        let bytes = self
            .repo
            .get(&key, ObjectKind::WalFile)
            .await
            .unwrap()
            .expect("stored");
        let summary = cairn_pgformat::summarize_segment(&bytes).unwrap();
        self.push(
            name,
            bytes,
            WalDetail::Segment {
                summary: Box::new(summary),
            },
        )
        .await;
    }

    /// Archive `tli`'s history: it branched from `parent` at the start of segment `at`.
    pub async fn push_history(&self, tli: u32, parents: &[(u32, u64)]) {
        let text: String = parents
            .iter()
            .map(|(p, at)| format!("{p}\t{}\tno recovery target specified\n", lsn(*at)))
            .collect();
        let name = WalFileName::History(TimelineId(tli));
        self.push(name, text.clone().into_bytes(), WalDetail::History { text })
            .await;
    }

    /// Archive a backup history file for a backup starting in segment `n` of `tli`.
    pub async fn push_backup_history(&self, tli: u32, n: u64) {
        let start = Lsn(lsn(n).0 + 0x28);
        let name = WalFileName::backup_history(TimelineId(tli), start, seg());
        let text = format!("START WAL LOCATION: {start}\n");
        self.push(
            name,
            text.clone().into_bytes(),
            WalDetail::BackupHistory { text },
        )
        .await;
    }

    async fn push(&self, name: WalFileName, bytes: Vec<u8>, detail: WalDetail) {
        let enc = self
            .repo
            .encode_wal(&self.stanza, DbId(1), &name, bytes.into())
            .await
            .unwrap();
        self.repo
            .push_wal(&self.stanza, DbId(1), &name, &enc, detail)
            .await
            .unwrap();
    }

    /// Store a backup of timeline `tli` from segment `start` to `stop` whose files hold
    /// `seeds`' data, chunks deduplicated against the stanza as a backup does.
    pub async fn backup(
        &mut self,
        name: &str,
        parent: Option<&str>,
        tli: u32,
        start: u64,
        stop: u64,
        seeds: &[u32],
    ) -> BackupManifest {
        let label = label(name);
        let backup_type = match name.as_bytes().last() {
            Some(b'D') => BackupType::Diff,
            Some(b'I') => BackupType::Incr,
            _ => BackupType::Full,
        };
        let index = self.repo.backup_chunk_index(&self.stanza).await.unwrap();
        let mut writer = PackWriter::with_target(self.repo.clone(), self.stanza.clone(), 1 << 20);
        let mut packs: Vec<cairn_repo::PackId> = Vec::new();
        let mut files = Vec::new();
        let mut contents = Vec::new();
        for (i, seed) in seeds.iter().enumerate() {
            let bytes = data(*seed);
            let enc = self.repo.encode_chunk(&self.stanza, &bytes).unwrap();
            let loc = match index.get(&enc.content_id) {
                Some(loc) => loc,
                None => writer.add(&enc).await.unwrap(),
            };
            let pack = match packs.iter().position(|p| *p == loc.pack) {
                Some(p) => p,
                None => {
                    packs.push(loc.pack.clone());
                    packs.len() - 1
                }
            };
            files.push(ManifestFile {
                path: format!("base/1/{i}"),
                kind: FileKind::File,
                mode: 0o600,
                size: bytes.len() as u64,
                mtime: 0,
                link: None,
                chunks: vec![ChunkRef {
                    id: enc.content_id,
                    pack: pack as u32,
                    offset: loc.offset,
                    len: loc.len,
                    size: loc.size,
                }],
            });
            contents.push(bytes);
        }
        writer.flush().await.unwrap();
        // The label's own part names the start time.
        let own = name.rsplit('_').next().unwrap();
        let time = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &own[0..4],
            &own[4..6],
            &own[6..8],
            &own[9..11],
            &own[11..13],
            &own[13..15]
        );
        let m = BackupManifest {
            format: MANIFEST_FORMAT,
            label: label.clone(),
            backup_type,
            parent: parent.map(self::label),
            db_id: DbId(1),
            system_id: DEFAULT_SYSTEM_IDENTIFIER,
            pg_major: 15,
            timeline: TimelineId(tli),
            start_lsn: Lsn(lsn(start).0 + 0x28),
            stop_lsn: Lsn(lsn(stop).0 + 0x100),
            start_time: cairn_repo::BackupTime::parse(&time).unwrap(),
            stop_time: cairn_repo::BackupTime::parse(&time).unwrap(),
            incremental_mode: IncrementalMode::Full,
            packs,
            files,
            tablespaces: vec![],
            backup_label: String::new(),
            tablespace_map: None,
            pg_manifest: None,
            db_size: 0,
            bytes_received: 0,
            repo_added: 0,
            annotations: Default::default(),
        };
        self.repo.put_manifest(&self.stanza, &m).await.unwrap();
        self.files.insert(label, contents);
        m
    }

    pub async fn expire(&self, rules: &RetentionRules, opts: &ExpireOptions) -> Outcome {
        cairn_expire::expire(&self.repo, &self.stanza, rules, opts, &|_| {})
            .await
            .unwrap()
    }

    /// Every key of the repository with its size (to show a dry run changed nothing).
    pub async fn everything(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = Vec::new();
        for prefix in ["stanza/", "keyring/"] {
            for l in RawBackend::of(&self.repo).list(prefix, None).await.unwrap() {
                all.push((l.key, l.size));
            }
        }
        all.sort();
        all
    }

    pub async fn labels(&self) -> Vec<String> {
        self.repo
            .backup_catalog(&self.stanza)
            .await
            .unwrap()
            .usable
            .iter()
            .map(|b| b.label.to_string())
            .collect()
    }

    /// The names of the archived files the catalog lists.
    pub async fn wal_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .repo
            .wal_catalog(&self.stanza)
            .await
            .unwrap()
            .entries()
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The names of the WAL objects stored (a listing, for checking deletes).
    pub async fn wal_objects(&self) -> Vec<String> {
        let mut v: Vec<String> = RawBackend::of(&self.repo)
            .list(&format!("stanza/{}/wal/", self.stanza), None)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.key.rsplit('/').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    /// Every listed backup reads back whole, every listed WAL file decodes, and every
    /// pack index names a stored pack: what a killed expire must never break.
    pub async fn assert_consistent(&self) {
        let (repo, s) = (&self.repo, &self.stanza);
        let catalog = repo.backup_catalog(s).await.unwrap();
        assert!(catalog.damaged.is_empty(), "{:?}", catalog.damaged);
        for b in &catalog.usable {
            let m = repo.manifest(s, &b.label).await.unwrap();
            let want = &self.files[&b.label];
            for (f, bytes) in m.files.iter().zip(want) {
                let c = &f.chunks[0];
                let got = repo
                    .read_chunk(s, &c.id, &m.location(c).unwrap())
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", b.label));
                assert_eq!(&got, bytes, "{} {}", b.label, f.path);
            }
        }
        let wal = repo.wal_catalog(s).await.unwrap();
        for e in wal.entries() {
            let key = layout::wal_file(s, e.db_id, &e.file_name().unwrap());
            assert!(
                repo.get(&key, ObjectKind::WalFile).await.unwrap().is_some(),
                "{key} is listed but not stored"
            );
        }
        let listing = repo.pack_listing(s).await.unwrap();
        for p in &listing.indexes {
            assert!(
                listing.packs.contains_key(p),
                "index of {p} without its pack"
            );
        }
    }

    pub async fn stored_packs(&self) -> usize {
        self.repo
            .pack_listing(&self.stanza)
            .await
            .unwrap()
            .packs
            .len()
    }

    pub fn key(&self, s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }
}

pub fn grace0() -> ExpireOptions {
    ExpireOptions {
        gc_grace: Duration::ZERO,
        ..Default::default()
    }
}

pub fn full(n: u32) -> RetentionRules {
    RetentionRules {
        full: Some(n),
        ..Default::default()
    }
}

/// Segment names `from..=to` of timeline `tli`.
pub fn segs(tli: u32, from: u64, to: u64) -> Vec<String> {
    (from..=to)
        .map(|n| format!("{tli:08X}{:08X}{:08X}", n >> 12, n & 0xfff))
        .collect()
}
