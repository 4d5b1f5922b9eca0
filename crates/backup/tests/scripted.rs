//! `run` against a scripted base backup stream and an in-memory repository: chunking,
//! reuse of stored chunks, the WAL wait and the manifest as the commit point.

use std::time::Duration;

use bytes::Bytes;
use cairn_backup::{
    BackupError, BackupPlan, BackupSource, EntryKind, RunOptions, SourceEvent, run, with_lock,
};
use cairn_exit::Classify;
use cairn_pgformat::{Lsn, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::lock::{LockOptions, LockTarget};
use cairn_repo::{BackupType, RepoError, Repository, StanzaInfo, StanzaName};

struct Script {
    events: std::vec::IntoIter<SourceEvent>,
    fail_after: Option<usize>,
    sent: usize,
}

impl BackupSource for Script {
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, BackupError> {
        if self.fail_after == Some(self.sent) {
            return Err(BackupError::Protocol("connection lost".into()));
        }
        self.sent += 1;
        Ok(self.events.next())
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
    // Data arrives in odd-sized pieces, as from the network.
    for piece in data.chunks(70_001) {
        ev.push(SourceEvent::Data(Bytes::copy_from_slice(piece)));
    }
    ev.push(SourceEvent::EntryEnd);
    ev
}

fn backup_events(relation: &[u8]) -> Vec<SourceEvent> {
    let mut ev = vec![
        SourceEvent::Started {
            start_lsn: Lsn(0x100_0028),
            timeline: TimelineId(1),
        },
        SourceEvent::Tablespaces(vec![]),
        SourceEvent::Archive { tablespace: None },
        SourceEvent::Entry {
            path: "base".into(),
            kind: EntryKind::Dir,
            mode: 0o700,
            size: 0,
            mtime: 1,
        },
    ];
    ev.extend(file(
        "backup_label",
        b"START WAL LOCATION: 0/1000028 (file 000000010000000000000001)\n",
    ));
    ev.extend(file("PG_VERSION", b"15\n"));
    ev.extend(file("base/5/16384", relation));
    ev.push(SourceEvent::Manifest(Bytes::from_static(
        b"{\"PostgreSQL-Backup-Manifest-Version\": 1}",
    )));
    ev.push(SourceEvent::Finished {
        stop_lsn: Lsn(0x100_0100),
        timeline: TimelineId(1),
    });
    ev
}

async fn setup() -> (Repository, StanzaInfo) {
    let repo = Repository::in_memory().await;
    let stanza = StanzaName::new("main").unwrap();
    repo.create_stanza(&stanza, 42, 15).await.unwrap();
    (repo.clone(), repo.require_stanza(&stanza).await.unwrap())
}

async fn archive_segment_1(repo: &Repository, info: &StanzaInfo) {
    let name = WalFileName::Segment(SegmentName::from_segno(
        TimelineId(1),
        XLogSegNo(1),
        WalSegmentSize::DEFAULT,
    ));
    let enc = repo
        .encode_wal(
            &info.name,
            info.current().db_id,
            &name,
            Bytes::from_static(b"stand-in for a segment"),
        )
        .await
        .unwrap();
    repo.put_encoded(
        &cairn_repo::layout::wal_file(&info.name, info.current().db_id, &name),
        &enc,
    )
    .await
    .unwrap();
}

fn relation(seed: u8) -> Vec<u8> {
    // 5 MiB of incompressible pages.
    let mut x = seed as u64 + 1;
    (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn opts() -> RunOptions {
    RunOptions {
        archive_timeout: Duration::from_secs(5),
        pack_target: 1 << 20,
        ..Default::default()
    }
}

#[tokio::test]
async fn full_then_incr_stores_only_changed_chunks() {
    let (repo, info) = setup().await;
    archive_segment_1(&repo, &info).await;
    let rel = relation(1);
    let now = time::OffsetDateTime::now_utc();
    let plan = BackupPlan::prepare(&repo, &info.name, None, info.current().db_id, now)
        .await
        .unwrap();
    assert_eq!(plan.backup_type, BackupType::Full);
    assert!(plan.promoted_to_full);
    let mut src = Script {
        events: backup_events(&rel).into_iter(),
        fail_after: None,
        sent: 0,
    };
    let full = run(&repo, &info, &plan, &mut src, &opts()).await.unwrap();
    assert_eq!(
        full.files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["base", "PG_VERSION", "base/5/16384"]
    );
    assert!(full.backup_label.starts_with("START WAL LOCATION"));
    assert_eq!(full.db_size, rel.len() as u64 + 3);
    assert!(
        full.repo_added as usize > rel.len(),
        "incompressible data is stored whole"
    );
    let stored: Vec<u8> = {
        let f = &full.files[2];
        let mut out = Vec::new();
        for c in &f.chunks {
            out.extend(
                repo.read_chunk(&info.name, &c.id, &full.location(c).unwrap())
                    .await
                    .unwrap(),
            );
        }
        out
    };
    assert_eq!(stored, rel);

    // One 8 KiB page changes: the incr stores about one chunk.
    let mut rel2 = rel.clone();
    rel2[3 << 20..(3 << 20) + 8192].fill(7);
    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        Some(BackupType::Incr),
        info.current().db_id,
        now,
    )
    .await
    .unwrap();
    assert_eq!(plan.backup_type, BackupType::Incr);
    assert_eq!(plan.parent.as_ref().unwrap().label, full.label);
    assert_ne!(plan.label, full.label);
    let mut src = Script {
        events: backup_events(&rel2).into_iter(),
        fail_after: None,
        sent: 0,
    };
    let incr = run(&repo, &info, &plan, &mut src, &opts()).await.unwrap();
    assert!(
        incr.repo_added < full.repo_added / 10,
        "incr added {} of full {}",
        incr.repo_added,
        full.repo_added
    );
    assert_eq!(repo.backups(&info.name).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_interrupted_backup_is_not_listed_and_its_chunks_are_reused() {
    let (repo, info) = setup().await;
    archive_segment_1(&repo, &info).await;
    let rel = relation(2);
    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        Some(BackupType::Full),
        info.current().db_id,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let events = backup_events(&rel);
    let cut = events.len() - 3; // in the middle of the relation file's data
    let mut src = Script {
        events: events.clone().into_iter(),
        fail_after: Some(cut),
        sent: 0,
    };
    // A huge pack target: only the flush on failure makes the received chunks durable.
    let no_flush = RunOptions {
        pack_target: 1 << 30,
        ..opts()
    };
    assert!(run(&repo, &info, &plan, &mut src, &no_flush).await.is_err());
    assert!(repo.backups(&info.name).await.unwrap().is_empty());
    let mut src = Script {
        events: events.into_iter(),
        fail_after: None,
        sent: 0,
    };
    let m = run(&repo, &info, &plan, &mut src, &opts()).await.unwrap();
    assert!(
        (m.repo_added as usize) < rel.len() / 2,
        "second attempt stored {} bytes",
        m.repo_added
    );
}

#[tokio::test]
async fn a_backup_waits_for_its_wal_and_gives_up_clearly() {
    let (repo, info) = setup().await;
    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        None,
        info.current().db_id,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let mut src = Script {
        events: backup_events(b"small").into_iter(),
        fail_after: None,
        sent: 0,
    };
    let o = RunOptions {
        archive_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let err = run(&repo, &info, &plan, &mut src, &o).await.unwrap_err();
    assert!(
        matches!(err, BackupError::WalNotArchived { ref segment, .. } if segment.to_string() == "000000010000000000000001"),
        "{err}"
    );
    assert!(repo.backups(&info.name).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_chunk_repeated_across_batches_in_flight_is_stored_once() {
    let (repo, info) = setup().await;
    archive_segment_1(&repo, &info).await;
    // 48 copies of one incompressible 256 KiB chunk: three batches hashed at the same time,
    // each of which sees the chunk as new.
    let one = &relation(3)[..cairn_backup::CHUNK_SIZE];
    let rel: Vec<u8> = one.repeat(48);
    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        Some(BackupType::Full),
        info.current().db_id,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let mut src = Script {
        events: backup_events(&rel).into_iter(),
        fail_after: None,
        sent: 0,
    };
    let m = run(&repo, &info, &plan, &mut src, &opts()).await.unwrap();
    let f = m.files.iter().find(|f| f.path == "base/5/16384").unwrap();
    assert_eq!(f.chunks.len(), 48);
    assert!(f.chunks.iter().all(|c| c.id == f.chunks[0].id));
    assert!(
        (m.repo_added as usize) < 2 * cairn_backup::CHUNK_SIZE,
        "stored {} bytes for one distinct chunk",
        m.repo_added
    );
    let back = repo
        .read_chunk(
            &info.name,
            &f.chunks[47].id,
            &m.location(&f.chunks[47]).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(back, one);
}

/// A backup whose lock was taken over meanwhile (the heartbeat has not noticed yet) checks
/// again before its commit point, and writes no manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_lost_its_lock_writes_no_manifest() {
    let (repo, info) = setup().await;
    archive_segment_1(&repo, &info).await;
    let target = LockTarget::Backup(info.name.clone());
    let guard = repo
        .lock(target.clone(), "backup", &LockOptions::default())
        .await
        .unwrap();
    // A contender for which any heartbeat is stale takes the lock over.
    let eager = LockOptions {
        heartbeat: Duration::from_secs(30),
        stale_after: Duration::ZERO,
    };
    let mut contender = None;
    for _ in 0..1000 {
        if let Ok(g) = repo.lock(target.clone(), "backup", &eager).await {
            contender = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let contender = contender.expect("the contender takes the lock over");
    assert_eq!(guard.watch().lost(), None, "the heartbeat has not run yet");

    let plan = BackupPlan::prepare(
        &repo,
        &info.name,
        None,
        info.current().db_id,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let mut src = Script {
        events: backup_events(&relation(3)).into_iter(),
        fail_after: None,
        sent: 0,
    };
    let opts = RunOptions {
        lock: Some(guard.watch()),
        ..opts()
    };
    let err = run(&repo, &info, &plan, &mut src, &opts).await.unwrap_err();
    assert!(
        matches!(err, BackupError::Repo(RepoError::LockLost { .. })),
        "{err}"
    );
    assert_eq!(err.kind().code(), 11);
    assert!(err.to_string().contains("taken over"), "{err}");
    assert!(repo.backups(&info.name).await.unwrap().is_empty());
    guard.release().await.unwrap();
    contender.release().await.unwrap();
}

/// `with_lock`: a second backup of the stanza fails at once without starting its work,
/// and the lock is given back when the work fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_is_refused_and_the_lock_is_released_on_failure() {
    let (repo, info) = setup().await;
    let stanza = info.name.clone();
    let opts = LockOptions::default();
    let first: Result<(), BackupError> = with_lock(
        &repo,
        &stanza,
        &opts,
        |w| panic!("{w}"),
        async |watch| {
            assert_eq!(watch.lost(), None);
            let second: Result<(), BackupError> = with_lock(
                &repo,
                &stanza,
                &opts,
                |w| panic!("{w}"),
                async |_| panic!("the second backup's work must not start"),
            )
            .await;
            let err = second.unwrap_err();
            assert_eq!(err.kind().code(), 11);
            assert!(
                err.to_string()
                    .contains(&format!("pid {}", std::process::id())),
                "{err}"
            );
            Err(BackupError::Protocol("the server went away".into()))
        },
    )
    .await;
    assert!(matches!(first, Err(BackupError::Protocol(_))));
    assert_eq!(
        repo.lock_holder(&LockTarget::Backup(stanza)).await.unwrap(),
        None,
        "released after the failure"
    );
}
