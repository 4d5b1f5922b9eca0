//! The planner on a synthetic but byte-exact archive (segments written by `WalBuilder`,
//! summarized by the same code archive-push runs): every target kind, and every refusal.

use cairn_exit::Classify;
use cairn_pgformat::builder::WalBuilder;
use cairn_pgformat::{Lsn, PgTimestamp, TimelineId, WalSegmentSize, XLogSegNo, summarize_segment};
use cairn_planner::{PlanError, PlanRequest, plan};
use cairn_repo::{
    BackupLabel, BackupSummary, BackupType, ContentId, DbId, IncrementalMode, WalCatalog,
    WalDetail, WalEntry,
};
use cairn_target::{RecoveryTarget as Target, RestorePointName, TargetTime, TimelineTarget};

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
    Target::Time(TargetTime::parse(&rfc(secs)).unwrap())
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

fn backup(label: &str, tli: u32, start: u64, stop: u64, stop_secs: i64) -> BackupSummary {
    BackupSummary {
        label: BackupLabel::new(label).unwrap(),
        backup_type: BackupType::Full,
        parent: None,
        db_id: DbId(1),
        system_id: 1,
        pg_major: 15,
        timeline: TimelineId(tli),
        start_lsn: Lsn(start),
        stop_lsn: Lsn(stop),
        start_time: cairn_repo::BackupTime::parse(&rfc(stop_secs - 1)).unwrap(),
        stop_time: cairn_repo::BackupTime::parse(&rfc(stop_secs)).unwrap(),
        incremental_mode: IncrementalMode::Full,
        db_size: 1000,
        bytes_received: 1000,
        repo_added: 1000,
        repo_size: 1000,
        files: 0,
        annotations: Default::default(),
        pinned: false,
    }
}

/// B1 lies in segment 2 (consistent at T0+25 s), B2 in segment 6 (T0+65 s).
fn backups() -> Vec<BackupSummary> {
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
                r.timeline.0,
                r.first.to_string()[16..].to_string(),
                r.last.to_string()[16..].to_string(),
            )
        })
        .collect()
}

fn label(s: &str) -> BackupLabel {
    BackupLabel::new(s).unwrap()
}

fn name(s: &str) -> Target {
    Target::Name(RestorePointName::new(s).unwrap())
}

#[test]
fn time_targets_pick_the_newest_backup_before_them_and_stop_at_the_next_commit() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let p = plan(&backups(), &cat, &req(target_time(45))).unwrap();
    assert_eq!(p.backup, label("20270101-000020F"));
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000002".into(), "00000005".into())]
    );
    assert_eq!(p.target, target_time(45));
    assert_eq!(p.target_description(), format!("time {}", rfc(45)));
    assert_eq!(p.timeline, TimelineId(1));

    let p = plan(&backups(), &cat, &req(target_time(75))).unwrap();
    assert_eq!(p.backup, label("20270101-000060F"));
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000006".into(), "00000008".into())]
    );
}

fn hint(e: &PlanError) -> String {
    e.hint().unwrap_or_else(|| panic!("no hint for {e:?}"))
}

#[test]
fn refusals_say_what_is_reachable() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    match plan(&backups(), &cat, &req(target_time(95))) {
        Err(e @ PlanError::AfterLastCommit { .. }) => {
            let PlanError::AfterLastCommit { last_commit, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*last_commit, Some(at(80)));
            assert!(hint(&e).contains(&at(80).to_string()), "{}", hint(&e));
        }
        other => panic!("{other:?}"),
    }
    match plan(&backups(), &cat, &req(target_time(5))) {
        Err(e @ PlanError::BeforeEarliestBackup { .. }) => {
            // B1, the earliest backup, became consistent at 0/200200, T0+25 s.
            let h = hint(&e);
            assert!(h.contains("0/200200") && h.contains(&rfc(25)), "{h}");
        }
        other => panic!("{other:?}"),
    }
    match plan(&backups(), &cat, &req(name("nope"))) {
        Err(e @ PlanError::UnknownRestorePoint { .. }) => {
            let PlanError::UnknownRestorePoint { known, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*known, vec![RestorePointName::new("rp-a").unwrap()]);
            assert_eq!(hint(&e), "archived restore points: rp-a");
        }
        other => panic!("{other:?}"),
    }
    match plan(&backups(), &cat, &req(Target::Xid(999))) {
        Err(e @ PlanError::UnknownXid { xid: 999, .. }) => {
            // Segments 2..=8 (from B1's stop on) hold the commits of xids 102..=108.
            assert!(matches!(
                e,
                PlanError::UnknownXid {
                    archived: Some((102, 108)),
                    ..
                }
            ));
            assert!(
                hint(&e).starts_with("transactions 102 to 108 "),
                "{}",
                hint(&e)
            );
        }
        other => panic!("{other:?}"),
    }
    match plan(&[], &cat, &req(Target::Immediate)) {
        Err(e @ PlanError::NoBackups) => assert!(hint(&e).contains("cairn backup")),
        other => panic!("{other:?}"),
    }
    let mut r = req(target_time(45));
    r.set = Some(label("20270101-000060F"));
    match plan(&backups(), &cat, &r) {
        Err(e @ PlanError::SetCannotReach { .. }) => {
            assert!(e.to_string().contains("not before the target"), "{e}");
            assert!(hint(&e).contains("omit --set"));
        }
        other => panic!("{other:?}"),
    }
    match plan(&backups(), &cat, &req(Target::Lsn(Lsn(20 * MIB)))) {
        Err(e @ PlanError::AfterArchiveEnd { .. }) => {
            let PlanError::AfterArchiveEnd { end, .. } = &e else {
                unreachable!()
            };
            assert!(hint(&e).contains(&end.to_string()), "{}", hint(&e));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gap_is_refused_with_the_last_reachable_time() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    match plan(&backups(), &cat, &req(target_time(45))) {
        Err(e @ PlanError::Gap { .. }) => {
            let PlanError::Gap { missing, reachable } = &e else {
                unreachable!()
            };
            assert_eq!(missing.to_string(), "000000010000000000000004");
            assert_eq!(*reachable, Some(at(30)));
            assert_eq!(
                hint(&e),
                format!("the latest point reachable before the gap is {}", at(30))
            );
        }
        other => panic!("{other:?}"),
    }
    // A target past the gap but reachable from the newer backup is still fine.
    assert_eq!(
        plan(&backups(), &cat, &req(target_time(75)))
            .unwrap()
            .backup,
        label("20270101-000060F")
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
    let p = plan(&backups(), &cat, &req(name("rp-a"))).unwrap();
    assert_eq!(
        (p.backup.as_str(), wal_names(&p)),
        (
            "20270101-000020F",
            vec![(1, "00000002".into(), "00000005".into())]
        )
    );
    assert_eq!(p.target_description(), "restore point 'rp-a'");
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
    assert_eq!(
        p.target_description(),
        "consistency of backup 20270101-000060F (0/600200)"
    );
    let p = plan(&backups(), &cat, &req(Target::EndOfArchive)).unwrap();
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000006".into(), "00000008".into())]
    );
}

/// Timeline 1 plus timeline 2, which branches off in segment 5 (after B1, before B2's
/// stop) and has its own segments 5 and 6.
fn two_timelines() -> WalCatalog {
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
    WalCatalog::from_entries(entries)
}

#[test]
fn timelines_are_followed_through_their_history() {
    let cat = two_timelines();
    let p = plan(&backups(), &cat, &req(target_time(55))).unwrap();
    assert_eq!(
        p.backup,
        label("20270101-000020F"),
        "B2 ends after timeline 1 branched off"
    );
    assert!(
        p.why
            .contains("20270101-000060F: it ends after timeline 1 branched off"),
        "{}",
        p.why
    );
    assert_eq!(p.timeline, TimelineId(2));
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
    assert_eq!(p.timeline, TimelineId(1));
    assert_eq!(
        wal_names(&p),
        vec![(1, "00000002".into(), "00000006".into())]
    );
}

#[test]
fn a_timeline_that_does_not_descend_from_the_backup_is_refused_naming_one_that_does() {
    let cat = two_timelines();
    let b2 = "20270101-000060F";
    // B2 ended on timeline 1 after timeline 2 branched off: forced, it cannot go there.
    let mut r = req(target_time(75));
    r.set = Some(label(b2));
    r.timeline = TimelineTarget::Id(TimelineId(2));
    match plan(&backups(), &cat, &r) {
        Err(e @ PlanError::TimelineNotDescendant { .. }) => {
            assert_eq!(
                e,
                PlanError::TimelineNotDescendant {
                    timeline: TimelineId(2),
                    backup: Some(label(b2)),
                    reachable: vec![TimelineId(1)],
                }
            );
            assert!(e.to_string().contains(b2), "{e}");
            assert_eq!(
                hint(&e),
                format!("backup {b2} can reach timeline 1: e.g. --target-timeline 1")
            );
        }
        other => panic!("{other:?}"),
    }
    // With B2 the only backup, no backup reaches timeline 2 (latest): the default fails.
    let only_b2 = vec![backups().remove(1)];
    match plan(&only_b2, &cat, &req(Target::EndOfArchive)) {
        Err(e @ PlanError::TimelineNotDescendant { backup: None, .. }) => {
            assert!(
                matches!(&e, PlanError::TimelineNotDescendant { timeline: TimelineId(2), reachable, .. } if *reachable == vec![TimelineId(1)])
            );
            assert!(hint(&e).ends_with("--target-timeline 1"), "{}", hint(&e));
        }
        other => panic!("{other:?}"),
    }
    // A timeline nobody archived: both backups' timelines are named.
    let mut r = req(Target::Immediate);
    r.timeline = TimelineTarget::Id(TimelineId(7));
    match plan(&backups(), &cat, &r) {
        Err(e @ PlanError::TimelineNotDescendant { .. }) => {
            assert_eq!(
                hint(&e),
                "a backup can reach timelines 1, 2: e.g. --target-timeline 2"
            );
        }
        other => panic!("{other:?}"),
    }
    // On timeline 2 B1 qualifies: a time before it is "before the earliest backup",
    // not a timeline problem, although B2 was passed over for its timeline.
    let mut r = req(target_time(5));
    r.timeline = TimelineTarget::Id(TimelineId(2));
    match plan(&backups(), &cat, &r) {
        Err(e @ PlanError::BeforeEarliestBackup { .. }) => {
            assert!(hint(&e).contains(&rfc(25)), "{}", hint(&e))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn recoverable_windows_per_timeline() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].backup.as_str(), "20270101-000020F");
    assert_eq!(w[0].from.to_string(), rfc(25));
    assert_eq!(w[0].to, Some(at(80)));
    assert_eq!(w[0].gap, None);
}

#[test]
fn a_gap_ends_a_window_and_a_newer_backup_after_it_starts_the_next() {
    // Segment 4 is missing: B1 (segment 2) reaches T0+30 s; B2 (segment 6) continues.
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        (
            w[0].backup.as_str(),
            w[0].to,
            w[0].gap.map(|g| g.to_string())
        ),
        (
            "20270101-000020F",
            Some(at(30)),
            Some("000000010000000000000004".to_string())
        )
    );
    assert_eq!(
        (
            w[1].backup.as_str(),
            w[1].from.to_string(),
            w[1].to,
            w[1].gap
        ),
        ("20270101-000060F", rfc(65), Some(at(80)), None)
    );
    // A gap inside B1's own WAL (its stop segment): only B2 starts a window.
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[2]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].backup.as_str(), "20270101-000060F");
    // A gap after the last backup ends the only window there is: no backup follows it.
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[7]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].backup.as_str(), "20270101-000020F");
    assert_eq!(w[0].to, Some(at(60)));
    assert_eq!(
        w[0].gap.map(|g| g.to_string()).as_deref(),
        Some("000000010000000000000007")
    );
}

#[test]
fn a_plan_says_where_the_wal_ends_and_its_last_commit_after_the_backup_began() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    // B2 starts in segment 6; segments 7 and 8 (commits at 70 s, 80 s) lie wholly after it.
    let p = plan(&backups(), &cat, &req(Target::EndOfArchive)).unwrap();
    assert_eq!(p.last_commit, Some(at(80)));
    assert_eq!(p.wal_end, Lsn(9 * MIB), "segment 8 ends with a switch");
    // Immediate reads only segment 6, whose commit (60 s) may precede the backup's start.
    let p = plan(&backups(), &cat, &req(Target::Immediate)).unwrap();
    assert_eq!(p.last_commit, None);
    assert_eq!(p.wal_end, Lsn(7 * MIB));
}

#[test]
fn commit_spans_start_at_the_first_commit_after_a_window_opens() {
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[]));
    let spans = cairn_planner::commit_spans(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(spans.len(), 1, "{spans:?}");
    // B1 is consistent at 25 s: the commit at 20 s in its stop segment is before the window.
    assert_eq!((spans[0].first, spans[0].last), (at(30), at(80)));
    assert_eq!(spans[0].window.backup.as_str(), "20270101-000020F");
    // A gap in segment 4: two windows, each with its own span.
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    let spans = cairn_planner::commit_spans(&backups(), &cat, DbId(1)).unwrap();
    let got: Vec<_> = spans.iter().map(|s| (s.first, s.last)).collect();
    assert_eq!(got, vec![(at(30), at(30)), (at(70), at(80))]);
    // A window with no commit after its start has no span: B2 alone, WAL up to segment 6.
    let cat = WalCatalog::from_entries(
        segments(&timeline1(), &[])
            .into_iter()
            .filter(|(_, e)| e.name.as_str() <= "000000010000000000000006"),
    );
    let only_b2 = &backups()[1..];
    assert_eq!(
        cairn_planner::recoverable_windows(only_b2, &cat, DbId(1))
            .unwrap()
            .len(),
        1
    );
    assert!(
        cairn_planner::commit_spans(only_b2, &cat, DbId(1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn windows_serialize_as_info_json_shows_them() {
    // docs/info-json.md: the timeline a number, times and names as text, `to` with six
    // fractional digits, `from` exactly as the backup recorded its stop time.
    let cat = WalCatalog::from_entries(segments(&timeline1(), &[4]));
    let w = cairn_planner::recoverable_windows(&backups(), &cat, DbId(1)).unwrap();
    assert_eq!(
        serde_json::to_value(&w).unwrap(),
        serde_json::json!([
            { "timeline": 1, "backup": "20270101-000020F", "from": rfc(25),
              "to": at(30).to_string(), "gap": "000000010000000000000004" },
            { "timeline": 1, "backup": "20270101-000060F", "from": rfc(65),
              "to": at(80).to_string(), "gap": null },
        ])
    );
    assert!(at(30).to_string().ends_with(":30.000000Z"));
    for stop in [
        "2026-11-22T14:05:09Z",
        "2026-11-22T14:05:09.5Z",
        "2026-11-22T14:05:09.123456789Z",
    ] {
        let t = cairn_planner::BackupTime::parse(stop).unwrap();
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(stop));
    }
}
