//! The planner on a synthetic but byte-exact archive (segments written by `WalBuilder`,
//! summarized by the same code archive-push runs): every target kind, and every refusal.

use cairn_pgformat::builder::WalBuilder;
use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalSegmentSize, XLogSegNo, summarize_segment};
use cairn_planner::{PlanError, PlanRequest, Target, TimelineTarget, parse_target_time, plan};
use cairn_repo::manifest::MANIFEST_FORMAT;
use cairn_repo::{
    BackupLabel, BackupManifest, BackupType, ContentId, DbId, IncrementalMode, WalCatalog,
    WalDetail, WalEntry,
};

const T0: i64 = 852_076_800; // 2027-01-01T00:00:00Z as Unix seconds
const MIB: u64 = 1 << 20;

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

fn target_time(secs: i64) -> Target {
    Target::Time(parse_target_time(&rfc(secs)).unwrap())
}

fn seg_size() -> WalSegmentSize {
    WalSegmentSize::new(MIB as u32).unwrap()
}

/// Timeline 1, segments 1..=8: segment k holds a commit of xid 100+k at T0+10k s; segment 5
/// also holds the restore point "rp-a".
fn timeline1() -> WalBuilder {
    let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg_size());
    for k in 1..=8u32 {
        wal.append_commit(100 + k, at(10 * k as i64));
        if k == 5 {
            wal.append_restore_point(at(51), "rp-a");
        }
        wal.append_switch();
    }
    wal
}

fn entry(db: u32, name: String, detail: WalDetail) -> (String, WalEntry) {
    let key = format!("{db}/{}/{name}", &name[..8]);
    (
        key,
        WalEntry {
            name,
            db_id: DbId(db),
            content_id: ContentId([0; 32]),
            size: MIB,
            archived_at: String::new(),
            detail,
        },
    )
}

fn segments(wal: &WalBuilder, skip: &[u64]) -> Vec<(String, WalEntry)> {
    (0..wal.segment_count())
        .filter(|i| !skip.contains(&(wal.segment_name(*i).segno(seg_size()).0)))
        .map(|i| {
            let summary = summarize_segment(&wal.segment(i)).unwrap();
            entry(
                1,
                wal.segment_name(i).to_string(),
                WalDetail::Segment {
                    summary: Box::new(summary),
                },
            )
        })
        .collect()
}

fn backup(label: &str, tli: u32, start: u64, stop: u64, stop_secs: i64) -> BackupManifest {
    BackupManifest {
        format: MANIFEST_FORMAT,
        label: BackupLabel::new(label).unwrap(),
        backup_type: BackupType::Full,
        parent: None,
        db_id: DbId(1),
        system_id: 1,
        pg_major: 15,
        timeline: TimelineId(tli),
        start_lsn: Lsn(start),
        stop_lsn: Lsn(stop),
        start_time: rfc(stop_secs - 1),
        stop_time: rfc(stop_secs),
        incremental_mode: IncrementalMode::Full,
        packs: vec![],
        files: vec![],
        tablespaces: vec![],
        backup_label: String::new(),
        tablespace_map: None,
        pg_manifest: None,
        db_size: 1000,
        bytes_received: 1000,
        repo_added: 1000,
    }
}

/// B1 lies in segment 2 (consistent at T0+25 s), B2 in segment 6 (T0+65 s).
fn backups() -> Vec<BackupManifest> {
    vec![
        backup("20270101-000020F", 1, 2 * MIB + 0x100, 2 * MIB + 0x200, 25),
        backup("20270101-000060F", 1, 6 * MIB + 0x100, 6 * MIB + 0x200, 65),
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

fn wal_names(p: &cairn_planner::Plan) -> Vec<(u32, String, String)> {
    p.wal
        .iter()
        .map(|r| {
            (
                r.timeline,
                r.first[16..].to_string(),
                r.last[16..].to_string(),
            )
        })
        .collect()
}

#[test]
fn time_targets_pick_the_newest_backup_before_them_and_stop_at_the_next_commit() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let p = plan(&backups(), &cat, &req(target_time(45))).unwrap();
    assert_eq!(p.backup, "20270101-000020F");
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000002".into(), "00000005".into())]
    );
    assert_eq!(
        p.settings[0],
        (
            "recovery_target_time".into(),
            format!(
                "{}.000000+00",
                rfc(45).replace('T', " ").trim_end_matches('Z')
            )
        )
    );
    assert_eq!(
        p.settings[1],
        ("recovery_target_timeline".into(), "1".into())
    );

    let p = plan(&backups(), &cat, &req(target_time(75))).unwrap();
    assert_eq!(p.backup, "20270101-000060F");
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000006".into(), "00000008".into())]
    );
}

#[test]
fn refusals_say_what_is_reachable() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    match plan(&backups(), &cat, &req(target_time(95))) {
        Err(PlanError::AfterLastCommit { last_commit, .. }) => {
            assert_eq!(last_commit, at(80).to_string())
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan(&backups(), &cat, &req(target_time(5))),
        Err(PlanError::BeforeEarliestBackup { .. })
    ));
    match plan(&backups(), &cat, &req(Target::Name("nope".into()))) {
        Err(PlanError::UnknownRestorePoint { known, .. }) => {
            assert_eq!(known, vec!["rp-a".to_string()])
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan(&backups(), &cat, &req(Target::Xid(999))),
        Err(PlanError::UnknownXid { xid: 999 })
    ));
    assert!(matches!(
        plan(&[], &cat, &req(Target::Immediate)),
        Err(PlanError::NoBackups)
    ));
    let mut r = req(target_time(45));
    r.set = Some("20270101-000060F".into());
    assert!(matches!(
        plan(&backups(), &cat, &r),
        Err(PlanError::SetCannotReach { .. })
    ));
    assert!(matches!(
        plan(
            &backups(),
            &WalCatalog::from_entries(segments(&timeline1(), &[])),
            &req(Target::Lsn(Lsn(20 * MIB)))
        ),
        Err(PlanError::AfterArchiveEnd { .. })
    ));
}

#[test]
fn a_gap_is_refused_with_the_last_reachable_time() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    match plan(&backups(), &cat, &req(target_time(45))) {
        Err(PlanError::Gap { missing, reachable }) => {
            assert_eq!(missing, "000000010000000000000004");
            assert_eq!(reachable, Some(at(30).to_string()));
        }
        other => panic!("{other:?}"),
    }
    // A target past the gap but reachable from the newer backup is still fine.
    assert_eq!(
        plan(&backups(), &cat, &req(target_time(75)))
            .unwrap()
            .backup,
        "20270101-000060F"
    );
}

#[test]
fn lsn_name_xid_immediate_and_end_of_archive() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let p = plan(&backups(), &cat, &req(Target::Lsn(Lsn(7 * MIB + 0x40)))).unwrap();
    assert_eq!(
        (p.backup.as_str(), wal_names(&p)),
        (
            "20270101-000060F",
            vec![(1, "00000006".into(), "00000007".into())]
        )
    );
    let p = plan(&backups(), &cat, &req(Target::Name("rp-a".into()))).unwrap();
    assert_eq!(
        (p.backup.as_str(), wal_names(&p)),
        (
            "20270101-000020F",
            vec![(1, "00000002".into(), "00000005".into())]
        )
    );
    assert_eq!(
        p.settings[0],
        ("recovery_target_name".into(), "rp-a".into())
    );
    let p = plan(&backups(), &cat, &req(Target::Xid(104))).unwrap();
    assert_eq!(
        (p.backup.as_str(), wal_names(&p)),
        (
            "20270101-000020F",
            vec![(1, "00000002".into(), "00000004".into())]
        )
    );
    let p = plan(&backups(), &cat, &req(Target::Immediate)).unwrap();
    assert_eq!(
        (p.backup.as_str(), wal_names(&p)),
        (
            "20270101-000060F",
            vec![(1, "00000006".into(), "00000006".into())]
        )
    );
    let p = plan(&backups(), &cat, &req(Target::EndOfArchive)).unwrap();
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000006".into(), "00000008".into())]
    );
}

#[test]
fn timelines_are_followed_through_their_history() {
    // Timeline 2 branches off in segment 5 and has its own segments 5 and 6.
    let switch = Lsn(5 * MIB + 0x1000);
    let mut tl2 = WalBuilder::new(XLogSegNo(5))
        .segment_size(seg_size())
        .timeline(TimelineId(2));
    tl2.append_commit(300, at(52));
    tl2.append_switch();
    tl2.append_commit(301, at(62));
    tl2.append_switch();
    let mut entries = segments(&timeline1(), &[]);
    entries.extend(segments(&tl2, &[]));
    let history = format!("1\t{switch}\tno recovery target specified\n");
    entries.push(entry(
        1,
        "00000002.history".into(),
        WalDetail::History { text: history },
    ));
    let cat = WalCatalog::from_entries(entries);

    let p = plan(&backups(), &cat, &req(target_time(55))).unwrap();
    assert_eq!(
        p.backup, "20270101-000020F",
        "B2 ends after timeline 1 branched off"
    );
    assert_eq!(p.timeline, 2);
    assert_eq!(
        wal_names(&p),
        vec![
            (1, "00000002".into(), "00000004".into()),
            (2, "00000005".into(), "00000006".into())
        ]
    );

    let mut r = req(target_time(55));
    r.timeline = TimelineTarget::Id(TimelineId(1));
    let p = plan(&backups(), &cat, &r).unwrap();
    assert_eq!(p.timeline, 1);
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000002".into(), "00000006".into())]
    );
    assert_eq!(
        p.settings[1],
        ("recovery_target_timeline".into(), "1".into())
    );
}

#[test]
fn recoverable_windows_per_timeline() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].backup, "20270101-000020F");
    assert_eq!(w[0].from, rfc(25));
    assert_eq!(w[0].to, Some(at(80).to_string()));
    assert_eq!(w[0].gap, None);
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1));
    assert_eq!(w[0].to, Some(at(30).to_string()));
    assert_eq!(w[0].gap.as_deref(), Some("000000010000000000000004"));
}
