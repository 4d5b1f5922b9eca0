//! PostgreSQL 17+ incremental streams against a scripted source: `INCREMENTAL.` files are
//! rebuilt on the parent's chunks into complete files (changed blocks applied, truncated
//! and extended files), an unchanged chunk is reused without being read, and a file the
//! parent lacks is refused.

use cairn_repo::test_util::RawBackend;
use std::time::Duration;

use bytes::Bytes;
use cairn_backup::{
    BackupError, BackupPlan, BackupSource, CHUNK_SIZE, EntryKind, RunOptions, SourceEvent, run,
};
use cairn_pgformat::incremental::{BLCKSZ, BlockNumber, encode_file};
use cairn_pgformat::{Lsn, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::{
    BackupManifest, BackupType, IncrementalMode, Repository, StanzaInfo, StanzaName, layout,
};

const REL: &str = "base/5/16384";
/// The parent's relation: three whole chunks and a partial one.
const PARENT_BLOCKS: u32 = 100;
const BLOCKS_PER_CHUNK: u32 = (CHUNK_SIZE / BLCKSZ) as u32;

struct Script(std::vec::IntoIter<SourceEvent>);

impl BackupSource for Script {
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, BackupError> {
        Ok(self.0.next())
    }
}

fn file(path: &str, data: &[u8]) -> Vec<SourceEvent> {
    let mut ev = vec![SourceEvent::Entry {
        path: path.into(),
        kind: EntryKind::File,
        mode: 0o600,
        size: data.len() as u64,
        mtime: 1,
    }];
    // Odd-sized pieces, as from the network: blocks and the header arrive split.
    for piece in data.chunks(5_001) {
        ev.push(SourceEvent::Data(Bytes::copy_from_slice(piece)));
    }
    ev.push(SourceEvent::EntryEnd);
    ev
}

fn stream(label: &str, files: Vec<(&str, Vec<u8>)>) -> Script {
    let mut ev = vec![
        SourceEvent::Started {
            start_lsn: Lsn(0x100_0028),
            timeline: TimelineId(1),
        },
        SourceEvent::Tablespaces(vec![]),
        SourceEvent::Archive { tablespace: None },
    ];
    ev.extend(file("backup_label", label.as_bytes()));
    for (path, data) in files {
        ev.extend(file(path, &data));
    }
    ev.push(SourceEvent::Manifest(Bytes::from_static(
        b"{\"PostgreSQL-Backup-Manifest-Version\": 2}",
    )));
    ev.push(SourceEvent::Finished {
        stop_lsn: Lsn(0x100_0100),
        timeline: TimelineId(1),
    });
    Script(ev.into_iter())
}

const FULL_LABEL: &str =
    "START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\nSTART TIMELINE: 1\n";
const INCR_LABEL: &str = "START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\nSTART TIMELINE: 1\nINCREMENTAL FROM LSN: 0/1000028\nINCREMENTAL FROM TLI: 1\n";

/// Block `n` of version `gen`: incompressible and unlike any other block.
fn block(n: u32, generation: u32) -> Vec<u8> {
    let mut x = (u64::from(n) << 32 | u64::from(generation)) ^ 0x9e37_79b9_7f4a_7c15;
    (0..BLCKSZ)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn relation(blocks: u32) -> Vec<u8> {
    (0..blocks).flat_map(|n| block(n, 0)).collect()
}

fn opts(mode: Option<IncrementalMode>) -> RunOptions {
    RunOptions {
        archive_timeout: Duration::from_secs(5),
        // One chunk per pack, so a test can take one chunk away.
        pack_target: 1,
        incremental_mode: mode,
        ..Default::default()
    }
}

async fn setup() -> (Repository, StanzaInfo) {
    let repo = Repository::in_memory().await;
    let stanza = StanzaName::new("main").unwrap();
    repo.create_stanza(&stanza, 42, 17).await.unwrap();
    let info = repo.require_stanza(&stanza).await.unwrap();
    let name = WalFileName::Segment(SegmentName::from_segno(
        TimelineId(1),
        XLogSegNo(1),
        WalSegmentSize::DEFAULT,
    ));
    let enc = repo
        .encode_wal(
            &stanza,
            info.current().db_id,
            &name,
            Bytes::from_static(b"a segment"),
        )
        .await
        .unwrap();
    repo.put_encoded(
        &layout::wal_file(&stanza, info.current().db_id, &name),
        &enc,
    )
    .await
    .unwrap();
    (repo, info)
}

async fn full(repo: &Repository, info: &StanzaInfo) -> BackupManifest {
    let plan = BackupPlan::prepare(
        repo,
        &info.name,
        Some(BackupType::Full),
        info.current().db_id,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let mut src = stream(
        FULL_LABEL,
        vec![
            ("PG_VERSION", b"17\n".to_vec()),
            (REL, relation(PARENT_BLOCKS)),
        ],
    );
    run(repo, info, &plan, &mut src, &opts(None)).await.unwrap()
}

async fn incremental(
    repo: &Repository,
    info: &StanzaInfo,
    files: Vec<(&str, Vec<u8>)>,
) -> Result<BackupManifest, BackupError> {
    let existing = repo.backups(&info.name).await.unwrap();
    let plan = BackupPlan::prepare(
        repo,
        &info.name,
        Some(BackupType::Incr),
        info.current().db_id,
        time::OffsetDateTime::now_utc() + time::Duration::seconds(existing.len() as i64),
    )
    .await
    .unwrap();
    let mut src = stream(INCR_LABEL, files);
    run(
        repo,
        info,
        &plan,
        &mut src,
        &opts(Some(IncrementalMode::WalSummaries)),
    )
    .await
}

async fn contents(repo: &Repository, info: &StanzaInfo, m: &BackupManifest, path: &str) -> Vec<u8> {
    let f = m.files.iter().find(|f| f.path == path).unwrap();
    let mut out = Vec::new();
    for c in &f.chunks {
        out.extend(
            repo.read_chunk(&info.name, &c.id, &m.location(c).unwrap())
                .await
                .unwrap(),
        );
    }
    assert_eq!(out.len() as u64, f.size, "{path}");
    out
}

fn incremental_file(truncation: u32, changed: &[u32]) -> Vec<u8> {
    let pages: Vec<(BlockNumber, Vec<u8>)> = changed
        .iter()
        .map(|&n| (BlockNumber(n), block(n, 1)))
        .collect();
    let refs: Vec<(BlockNumber, &[u8])> = pages.iter().map(|(n, d)| (*n, &d[..])).collect();
    encode_file(truncation, &refs)
}

/// The parent's blocks, `changed` replaced by their new version, `zero` zeroes, `len` long.
fn expected(len: u32, changed: &[u32], zero: impl Fn(u32) -> bool) -> Vec<u8> {
    (0..len)
        .flat_map(|n| {
            if changed.contains(&n) {
                block(n, 1)
            } else if zero(n) {
                vec![0; BLCKSZ]
            } else {
                block(n, 0)
            }
        })
        .collect()
}

#[tokio::test]
async fn changed_blocks_are_applied_and_an_unchanged_chunk_is_reused_unread() {
    let (repo, info) = setup().await;
    let parent = full(&repo, &info).await;
    let parent_rel = parent.files.iter().find(|f| f.path == REL).unwrap();
    assert_eq!(parent_rel.chunks.len(), 4);

    // Take the pack of the third chunk away: reading it now fails, so the incremental can
    // only succeed by reusing its reference unread.
    let unchanged = &parent_rel.chunks[2];
    let pack_key = layout::pack(
        &info.name,
        parent.location(unchanged).unwrap().pack.as_str(),
    );
    let pack = RawBackend::of(&repo).get(&pack_key).await.unwrap().unwrap();
    RawBackend::of(&repo).delete(&pack_key).await.unwrap();

    let changed = [5, 40, 41, 99];
    let inc = incremental_file(PARENT_BLOCKS, &changed);
    let m = incremental(
        &repo,
        &info,
        vec![
            ("PG_VERSION", b"17\n".to_vec()),
            ("base/5/INCREMENTAL.16384", inc.clone()),
        ],
    )
    .await
    .unwrap();

    assert_eq!(m.incremental_mode, IncrementalMode::WalSummaries);
    assert_eq!(m.parent.as_ref(), Some(&parent.label));
    let rel = m.files.iter().find(|f| f.path == REL).unwrap();
    assert_eq!(rel.size, u64::from(PARENT_BLOCKS) * BLCKSZ as u64);
    assert_eq!(rel.chunks[2].id, unchanged.id);
    assert_eq!(m.location(&rel.chunks[2]), parent.location(unchanged));
    assert!(!m.files.iter().any(|f| f.path.contains("INCREMENTAL")));
    assert_eq!(m.db_size, rel.size + 3);
    // Only the incremental file's bytes crossed the wire, not the relation.
    assert_eq!(m.bytes_received, (inc.len() + 3 + INCR_LABEL.len()) as u64);
    // A complete backup's label: PostgreSQL would refuse to start from the other.
    assert_eq!(m.backup_label, FULL_LABEL);

    RawBackend::of(&repo)
        .put_if_absent(&pack_key, pack)
        .await
        .unwrap();
    assert_eq!(
        contents(&repo, &info, &m, REL).await,
        expected(PARENT_BLOCKS, &changed, |_| false)
    );
}

#[tokio::test]
async fn a_truncated_relation_keeps_only_its_first_blocks() {
    let (repo, info) = setup().await;
    let parent = full(&repo, &info).await;
    let parent_rel = parent.files.iter().find(|f| f.path == REL).unwrap();
    // 40 blocks: the first chunk whole (reused), the second cut short (read back).
    let m = incremental(
        &repo,
        &info,
        vec![("base/5/INCREMENTAL.16384", incremental_file(40, &[]))],
    )
    .await
    .unwrap();
    let rel = m.files.iter().find(|f| f.path == REL).unwrap();
    assert_eq!(rel.size, 40 * BLCKSZ as u64);
    assert_eq!(rel.chunks.len(), 2);
    assert_eq!(rel.chunks[0].id, parent_rel.chunks[0].id);
    assert_eq!(rel.chunks[1].size as usize, 8 * BLCKSZ);
    assert_eq!(
        contents(&repo, &info, &m, REL).await,
        expected(40, &[], |_| false)
    );
}

#[tokio::test]
async fn an_extended_relation_gets_new_blocks_and_zeroes() {
    let (repo, info) = setup().await;
    full(&repo, &info).await;
    // Truncation length 110 is beyond the parent's 100 blocks: 100 and 102..110 exist in
    // neither and are zeroes, as are 110..130 (not sent, above the truncation length).
    let changed = [3, 101, 130];
    let m = incremental(
        &repo,
        &info,
        vec![("base/5/INCREMENTAL.16384", incremental_file(110, &changed))],
    )
    .await
    .unwrap();
    let rel = m.files.iter().find(|f| f.path == REL).unwrap();
    assert_eq!(rel.size, 131 * BLCKSZ as u64);
    assert_eq!(
        contents(&repo, &info, &m, REL).await,
        expected(131, &changed, |n| n >= PARENT_BLOCKS)
    );
    assert_eq!(
        rel.chunks.len(),
        131usize.div_ceil(BLOCKS_PER_CHUNK as usize)
    );
}

#[tokio::test]
async fn an_incremental_chain_builds_on_a_rebuilt_parent() {
    let (repo, info) = setup().await;
    full(&repo, &info).await;
    let first = [1, 70];
    incremental(
        &repo,
        &info,
        vec![(
            "base/5/INCREMENTAL.16384",
            incremental_file(PARENT_BLOCKS, &first),
        )],
    )
    .await
    .unwrap();
    // The second incr's parent is the first: its block 70 stays, block 1 changes again
    // (to the same new version here), block 2 is new.
    let m = incremental(
        &repo,
        &info,
        vec![(
            "base/5/INCREMENTAL.16384",
            incremental_file(PARENT_BLOCKS, &[2]),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        contents(&repo, &info, &m, REL).await,
        expected(PARENT_BLOCKS, &[1, 2, 70], |_| false)
    );
}

#[tokio::test]
async fn a_file_the_parent_lacks_is_refused_and_nothing_is_listed() {
    let (repo, info) = setup().await;
    full(&repo, &info).await;
    let err = incremental(
        &repo,
        &info,
        vec![("base/5/INCREMENTAL.99999", incremental_file(1, &[0]))],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, BackupError::NotInParent { path, .. } if path == "base/5/99999"),
        "{err}"
    );
    assert_eq!(repo.backups(&info.name).await.unwrap().len(), 1);

    let mut bad = incremental_file(1, &[0]);
    bad[0] ^= 0xff;
    let err = incremental(&repo, &info, vec![("base/5/INCREMENTAL.16384", bad)])
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Incremental { .. }), "{err}");
}

#[tokio::test]
async fn without_wal_summaries_an_incremental_name_is_an_ordinary_file() {
    let (repo, info) = setup().await;
    full(&repo, &info).await;
    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        Some(BackupType::Incr),
        info.current().db_id,
        time::OffsetDateTime::now_utc() + time::Duration::seconds(5),
    )
    .await
    .unwrap();
    let mut src = stream(FULL_LABEL, vec![("base/5/INCREMENTAL.x", b"data".to_vec())]);
    let m = run(&repo, &info, &plan, &mut src, &opts(None))
        .await
        .unwrap();
    assert_eq!(m.incremental_mode, IncrementalMode::ContentAddressed);
    assert!(
        m.files
            .iter()
            .any(|f| f.path == "base/5/INCREMENTAL.x" && f.size == 4)
    );
}
