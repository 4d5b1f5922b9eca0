//! An in-memory repository with WAL on timeline 1 and two backups sharing chunks, and the
//! ways to damage it.

use cairn_repo::test_util::RawBackend;
use std::collections::HashMap;

use bytes::Bytes;
use cairn_pgformat::builder::{DEFAULT_SYSTEM_IDENTIFIER, WalBuilder};
use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::manifest::MANIFEST_FORMAT;
use cairn_repo::{
    BackupLabel, BackupManifest, BackupType, ChunkLocation, ChunkRef, ContentId, DbId, FileKind,
    IncrementalMode, ManifestFile, ObjectKey, PackId, PackWriter, Repository, StanzaName, layout,
};

use crate::{VerifyOptions, VerifyReport, verify};

pub const SEGMENTS: usize = 8;

pub struct Fixture {
    pub repo: Repository,
    pub stanza: StanzaName,
    pub wal: WalBuilder,
    /// The full (needs segments 2..=3) and the incremental (needs segment 6).
    pub full: BackupManifest,
    pub incr: BackupManifest,
}

fn t(s: i64) -> PgTimestamp {
    PgTimestamp(800_000_000_000_000 + s * 1_000_000)
}

/// Chunks stored so far, by content, so a later backup reuses them as a real one does.
#[derive(Default)]
struct Stored {
    by_content: HashMap<Vec<u8>, (ContentId, ChunkLocation)>,
}

async fn file(
    repo: &Repository,
    stanza: &StanzaName,
    writer: &mut PackWriter,
    stored: &mut Stored,
    packs: &mut Vec<PackId>,
    path: &str,
    content: &[u8],
) -> ManifestFile {
    let mut f = ManifestFile {
        path: path.into(),
        kind: FileKind::File,
        mode: 0o600,
        size: content.len() as u64,
        mtime: 1_790_000_000,
        link: None,
        chunks: Vec::new(),
    };
    for piece in content.chunks(1000) {
        let (id, loc) = match stored.by_content.get(piece) {
            Some(got) => got.clone(),
            None => {
                let enc = repo.encode_chunk(stanza, piece).unwrap();
                let loc = writer.add(&enc).await.unwrap();
                stored
                    .by_content
                    .insert(piece.to_vec(), (enc.content_id, loc.clone()));
                (enc.content_id, loc)
            }
        };
        let pack = match packs.iter().position(|p| *p == loc.pack) {
            Some(i) => i,
            None => {
                packs.push(loc.pack.clone());
                packs.len() - 1
            }
        } as u32;
        f.chunks.push(ChunkRef {
            id,
            pack,
            offset: loc.offset,
            len: loc.len,
            size: loc.size,
        });
    }
    f
}

fn manifest(
    label: &str,
    hour: u32,
    kind: BackupType,
    start: Lsn,
    stop: Lsn,
    packs: Vec<PackId>,
    files: Vec<ManifestFile>,
) -> BackupManifest {
    BackupManifest {
        format: MANIFEST_FORMAT,
        label: BackupLabel::new(label).unwrap(),
        backup_type: kind,
        parent: (kind != BackupType::Full).then(|| BackupLabel::new("20261122-140500F").unwrap()),
        db_id: DbId(1),
        system_id: DEFAULT_SYSTEM_IDENTIFIER,
        pg_major: 15,
        timeline: TimelineId(1),
        start_lsn: start,
        stop_lsn: stop,
        start_time: cairn_repo::BackupTime::parse(&format!("2026-11-22T{hour}:00:00Z")).unwrap(),
        stop_time: cairn_repo::BackupTime::parse(&format!("2026-11-22T{hour}:00:09Z")).unwrap(),
        incremental_mode: IncrementalMode::Full,
        db_size: files.iter().map(|f| f.size).sum(),
        packs,
        files,
        tablespaces: Vec::new(),
        backup_label: String::new(),
        tablespace_map: None,
        pg_manifest: None,
        annotations: Default::default(),
        bytes_received: 0,
        repo_added: 0,
    }
}

/// Bytes that do not compress, so each 1000-byte chunk stays about that size in its pack.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Fixture {
    /// Segments `0..SEGMENTS` archived except those in `skip`.
    pub async fn new(skip: &[usize]) -> Fixture {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, DEFAULT_SYSTEM_IDENTIFIER, 15)
            .await
            .unwrap();
        let seg = WalSegmentSize::new(1 << 20).unwrap();
        let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg);
        let mut commits = Vec::new();
        for i in 0..SEGMENTS {
            commits.push(wal.append_commit(700 + i as u32, t(i as i64)));
            wal.append_switch();
        }
        for i in (0..SEGMENTS).filter(|i| !skip.contains(i)) {
            cairn_repo::test_util::push_built_segment(&repo, &stanza, &wal, i).await;
        }
        // Each backup has its own pack writer, as real ones do.
        let mut writer = PackWriter::with_target(repo.clone(), stanza.clone(), 3000);
        let mut stored = Stored::default();
        let mut packs = Vec::new();
        let mut files = Vec::new();
        for (path, content) in [
            ("base/1/1", pattern(1, 5000)),
            ("global/pg_control", pattern(2, 2000)),
        ] {
            files.push(
                file(
                    &repo,
                    &stanza,
                    &mut writer,
                    &mut stored,
                    &mut packs,
                    path,
                    &content,
                )
                .await,
            );
        }
        let full = manifest(
            "20261122-140500F",
            14,
            BackupType::Full,
            commits[2],
            commits[3],
            packs,
            files,
        );
        writer.flush().await.unwrap();
        let mut writer = PackWriter::with_target(repo.clone(), stanza.clone(), 3000);
        let mut packs = Vec::new();
        let mut files = Vec::new();
        // The control file is shared with the full; the relation changed.
        for (path, content) in [
            ("base/1/1", pattern(3, 4000)),
            ("global/pg_control", pattern(2, 2000)),
        ] {
            files.push(
                file(
                    &repo,
                    &stanza,
                    &mut writer,
                    &mut stored,
                    &mut packs,
                    path,
                    &content,
                )
                .await,
            );
        }
        let incr = manifest(
            "20261122-140500F_20261122-150000I",
            15,
            BackupType::Incr,
            commits[6],
            commits[6],
            packs,
            files,
        );
        writer.flush().await.unwrap();
        repo.put_manifest(&stanza, &full).await.unwrap();
        repo.put_manifest(&stanza, &incr).await.unwrap();
        Fixture {
            repo,
            stanza,
            wal,
            full,
            incr,
        }
    }

    pub async fn verify(&self) -> VerifyReport {
        self.verify_with(VerifyOptions::default()).await
    }

    pub async fn verify_with(&self, opts: VerifyOptions) -> VerifyReport {
        let report = verify(&self.repo, &self.stanza, &opts).await.unwrap();
        // Whatever it found, the report is JSON that reads back the same.
        let json = serde_json::to_string(&report).unwrap();
        let back: VerifyReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        report
    }

    pub fn wal_key(&self, i: usize) -> ObjectKey {
        layout::wal_file(
            &self.stanza,
            DbId(1),
            &WalFileName::Segment(self.wal.segment_name(i)),
        )
    }

    pub fn wal_name(&self, i: usize) -> String {
        self.wal.segment_name(i).to_string()
    }

    /// The key of the pack holding the first chunk of `m`'s first file.
    pub fn first_pack(&self, m: &BackupManifest) -> (ObjectKey, ChunkRef) {
        let c = m.files[0].chunks[0].clone();
        let pack = &m.packs[c.pack as usize];
        (layout::pack(&self.stanza, pack.as_str()), c)
    }

    pub async fn bytes(&self, key: &ObjectKey) -> Vec<u8> {
        RawBackend::of(&self.repo)
            .get(key)
            .await
            .unwrap()
            .unwrap()
            .to_vec()
    }

    /// Replace whatever is under `key` with `bytes`.
    pub async fn replace(&self, key: &ObjectKey, bytes: Vec<u8>) {
        RawBackend::of(&self.repo).delete(key).await.unwrap();
        RawBackend::of(&self.repo)
            .put_if_absent(key, Bytes::from(bytes))
            .await
            .unwrap();
    }

    pub async fn flip(&self, key: &ObjectKey, at: usize) {
        let mut b = self.bytes(key).await;
        b[at] ^= 0x20;
        self.replace(key, b).await;
    }

    pub async fn truncate(&self, key: &ObjectKey, keep: usize) {
        let b = self.bytes(key).await;
        self.replace(key, b[..keep].to_vec()).await;
    }

    pub async fn delete(&self, key: &ObjectKey) {
        RawBackend::of(&self.repo).delete(key).await.unwrap();
    }
}
