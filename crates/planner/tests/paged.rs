//! The planner over a WAL catalog read through its index (pages of summaries loaded only
//! when a walk needs them) answers exactly as over the whole catalog, and leaves pages it
//! does not need unread.

use cairn_pgformat::builder::WalBuilder;
use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_planner::{PageNotLoaded, PlanError, PlanRequest, plan};
use cairn_repo::{
    BackupLabel, BackupSummary, BackupType, DbId, IncrementalMode, Repository, StanzaName,
    WalCatalog, WalDetail,
};
use cairn_target::{RecoveryTarget as Target, RestorePointName, TargetTime, TimelineTarget};

const T0: i64 = 852_076_800; // 2027-01-01T00:00:00Z
const MIB: u64 = 1 << 20;
const SEGMENTS: u32 = 24;

fn at(secs: i64) -> PgTimestamp {
    PgTimestamp::from_offset_datetime(time::OffsetDateTime::from_unix_timestamp(T0 + secs).unwrap())
        .unwrap()
}

fn rfc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(T0 + secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn seg_size() -> WalSegmentSize {
    WalSegmentSize::new(MIB as u32).unwrap()
}

fn backup(label: &str, seg: u64, stop_secs: i64) -> BackupSummary {
    BackupSummary {
        label: BackupLabel::new(label).unwrap(),
        backup_type: BackupType::Full,
        parent: None,
        db_id: DbId(1),
        system_id: cairn_pgformat::builder::DEFAULT_SYSTEM_IDENTIFIER,
        pg_major: 15,
        timeline: TimelineId(1),
        start_lsn: Lsn(seg * MIB + 0x100),
        stop_lsn: Lsn(seg * MIB + 0x200),
        start_time: cairn_repo::BackupTime::parse(&rfc(stop_secs - 1)).unwrap(),
        stop_time: cairn_repo::BackupTime::parse(&rfc(stop_secs)).unwrap(),
        incremental_mode: IncrementalMode::Full,
        db_size: 1,
        bytes_received: 1,
        repo_added: 1,
        repo_size: 1,
        files: 1,
        annotations: Default::default(),
        pinned: false,
    }
}

/// Segments 1..=24 of timeline 1, segment k with a commit of xid 100+k at 10k s, a
/// restore point in segment 17, and segment 13 missing; 64 backup history files make the
/// next read write a snapshot, and with it the index (pages of 3 segments).
async fn archive() -> (Repository, StanzaName) {
    let repo = Repository::in_memory().await.with_wal_page_segments(3);
    let stanza = StanzaName::new("main").unwrap();
    repo.create_stanza(
        &stanza,
        cairn_pgformat::builder::DEFAULT_SYSTEM_IDENTIFIER,
        15,
    )
    .await
    .unwrap();
    let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg_size());
    for k in 1..=SEGMENTS {
        wal.append_commit(100 + k, at(10 * k as i64));
        if k == 17 {
            wal.append_restore_point(at(171), "rp-late");
        }
        wal.append_switch();
    }
    for i in 0..wal.segment_count() {
        if wal.segment_name(i).segno(seg_size()).0 == 13 {
            continue;
        }
        cairn_repo::test_util::push_built_segment(&repo, &stanza, &wal, i).await;
    }
    for off in 0..64u64 {
        let name =
            WalFileName::backup_history(TimelineId(1), Lsn(MIB + 0x28 + off * 8), seg_size());
        let text = format!("START WAL LOCATION: 0/{:X}\n", MIB + 0x28 + off * 8);
        let enc = repo
            .encode_wal(&stanza, DbId(1), &name, text.clone().into())
            .await
            .unwrap();
        repo.push_wal(
            &stanza,
            DbId(1),
            &name,
            &enc,
            WalDetail::BackupHistory { text },
        )
        .await
        .unwrap();
    }
    repo.wal_catalog(&stanza).await.unwrap();
    (repo, stanza)
}

fn backups() -> Vec<BackupSummary> {
    vec![
        backup("20270101-000020F", 2, 25),
        backup("20270101-000090F", 9, 95),
        backup("20270101-000150F", 15, 155),
    ]
}

fn req(target: Target) -> PlanRequest {
    PlanRequest {
        target,
        timeline: TimelineTarget::Latest,
        set: None,
        db_id: DbId(1),
    }
}

/// Plan over the paged catalog, loading pages as the planner asks; how many it loaded.
async fn plan_paged(
    repo: &Repository,
    stanza: &StanzaName,
    catalog: &mut WalCatalog,
    request: &PlanRequest,
) -> (Result<cairn_planner::Plan, PlanError>, usize) {
    let mut loaded = 0;
    loop {
        match plan(&backups(), catalog, request) {
            Err(PlanError::PageNotLoaded(PageNotLoaded(page))) => {
                repo.load_wal_pages(stanza, catalog, &[page]).await.unwrap();
                loaded += 1;
            }
            other => return (other, loaded),
        }
    }
}

#[tokio::test]
async fn plans_windows_and_info_match_the_whole_catalog() {
    let (repo, stanza) = archive().await;
    let full = repo.wal_catalog(&stanza).await.unwrap();
    let paged = repo.wal_catalog_paged(&stanza).await.unwrap();
    assert!(full.pages().is_empty());
    // Segments 1..=24 in blocks of 3 (0-2, 3-5, ..., 24-26; 13 missing): 9 pages, none
    // loaded yet.
    assert_eq!(paged.pages().len(), 9, "{:?}", paged.pages().keys());
    assert_eq!(paged.len(), full.len());
    assert_eq!(
        paged.timelines(),
        full.timelines(),
        "info's archive section"
    );
    assert!(paged.warnings().is_empty(), "{:?}", paged.warnings());

    let time = |s: i64| Target::Time(TargetTime::parse(&rfc(s)).unwrap());
    let targets = vec![
        Target::EndOfArchive,
        Target::Immediate,
        time(40),
        time(105),
        time(160),
        time(300),
        time(10),
        Target::Lsn(Lsn(11 * MIB + 0x40)),
        Target::Lsn(Lsn(30 * MIB)),
        Target::Name(RestorePointName::new("rp-late").unwrap()),
        Target::Name(RestorePointName::new("nowhere").unwrap()),
        Target::Xid(119),
        Target::Xid(104),
        Target::Xid(5000),
    ];
    for target in targets {
        let want = plan(&backups(), &full, &req(target.clone()));
        let mut catalog = paged.clone();
        let (got, _) = plan_paged(&repo, &stanza, &mut catalog, &req(target.clone())).await;
        assert_eq!(got, want, "target {target}");
    }
    // Reaching the newest backup's consistency point reads only the pages around it.
    let mut catalog = paged.clone();
    let (got, loaded) = plan_paged(&repo, &stanza, &mut catalog, &req(Target::Immediate)).await;
    assert_eq!(got.unwrap().backup.as_str(), "20270101-000150F");
    assert!(loaded <= 2, "loaded {loaded} pages");
    assert!(
        catalog.pages().len() >= 6,
        "{} pages left",
        catalog.pages().len()
    );

    let want = cairn_planner::recoverable_windows(&backups(), &full, DbId(1)).unwrap();
    let mut catalog = paged.clone();
    let got = loop {
        match cairn_planner::recoverable_windows(&backups(), &catalog, DbId(1)) {
            Ok(w) => break w,
            Err(PageNotLoaded(page)) => repo
                .load_wal_pages(&stanza, &mut catalog, &[page])
                .await
                .unwrap(),
        }
    };
    assert_eq!(got, want);
    assert_eq!(
        want.len(),
        2,
        "the gap at segment 13 splits the window: {want:?}"
    );
    assert!(
        catalog.pages().len() >= 3,
        "whole pages after the consistency points are not read: {} left",
        catalog.pages().len()
    );
}

#[tokio::test]
async fn a_damaged_or_missing_page_costs_the_index_not_the_answer() {
    let (repo, stanza) = archive().await;
    let full = repo.wal_catalog(&stanza).await.unwrap();
    let raw = cairn_repo::test_util::RawBackend::of(&repo);
    let mut paged = repo.wal_catalog_paged(&stanza).await.unwrap();
    let (first, page) = paged
        .pages()
        .iter()
        .next()
        .map(|(i, p)| (*i, p.clone()))
        .unwrap();
    raw.delete(&cairn_repo::ObjectKey::new(page.key.clone()).unwrap())
        .await
        .unwrap();
    repo.load_wal_pages(&stanza, &mut paged, &[first])
        .await
        .unwrap();
    assert!(
        paged.pages().is_empty(),
        "the whole catalog was read instead"
    );
    assert_eq!(paged.timelines(), full.timelines());
    assert!(
        paged.warnings().iter().any(|w| w.contains(&page.key)),
        "{:?}",
        paged.warnings()
    );
    let want = plan(&backups(), &full, &req(Target::EndOfArchive));
    assert_eq!(plan(&backups(), &paged, &req(Target::EndOfArchive)), want);
    // Repaired on the way: the next reader finds the page again, under a new index.
    let mut again = repo.wal_catalog_paged(&stanza).await.unwrap();
    assert!(again.warnings().is_empty(), "{:?}", again.warnings());
    let (id, repaired) = again
        .pages()
        .iter()
        .next()
        .map(|(i, p)| (*i, p.clone()))
        .unwrap();
    assert_eq!(
        (id, &repaired.key),
        (first, &page.key),
        "the same content, the same page"
    );
    repo.load_wal_pages(&stanza, &mut again, &[id])
        .await
        .unwrap();
    assert!(again.warnings().is_empty(), "{:?}", again.warnings());
    assert!(!again.pages().contains_key(&id), "loaded");
}
