//! WAL written by real servers, read by `cairn-pgformat`: the commit and abort records
//! (plain and two-phase, with the release-specific body layouts), their xids and
//! timestamps, restore points and record LSNs agree with what the server reports in SQL
//! and with `pg_waldump`. One test per supported major release.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_pgformat::control::{ControlFilePrefix, parse_pg_version_file};
use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::page::wal_magic_for_pg_major;
use cairn_pgformat::record::rmgr;
use cairn_pgformat::xlog::{parse_checkpoint, parse_end_of_recovery};
use cairn_pgformat::{
    Lsn, PgTimestamp, SegmentName, TimelineId, WalRecord, WalSegmentReader, WalSegmentSize,
    XactCompletion, XactKind, parse_xact_completion, summarize_segment,
};
use cairn_testkit::{ClusterOptions, PgClientTools, PgCluster, PgInstall, TestDir, wait_until};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn sql(pg: &PgCluster, query: &str) -> String {
    pg.psql(query).unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// The 32-bit xid of the transaction that runs `body`, then ends with `end`.
fn xact(pg: &PgCluster, body: &str, end: &str) -> u32 {
    let out = sql(
        pg,
        &format!("BEGIN; {body}; SELECT txid_current() % 4294967296; {end};"),
    );
    out.parse().unwrap_or_else(|_| panic!("xid from {out:?}"))
}

/// `pg_xact_commit_timestamp(xid)` as a `PgTimestamp`, exactly (extract() is numeric).
fn commit_timestamp(pg: &PgCluster, xid: u32) -> PgTimestamp {
    let micros: i64 = sql(
        pg,
        &format!(
            "SELECT (extract(epoch FROM pg_xact_commit_timestamp('{xid}'::xid)) * 1000000)::bigint"
        ),
    )
    .parse()
    .unwrap();
    PgTimestamp(micros - PG_EPOCH_UNIX_MICROS)
}

fn lsn(text: &str) -> Lsn {
    text.parse()
        .unwrap_or_else(|e| panic!("LSN from {text:?}: {e}"))
}

/// Copies `name` out of pg_wal into `dest_dir` (the file keeps its name for pg_waldump).
fn copy_segment(pg: &PgCluster, name: &str, dest_dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = std::fs::read(pg.data_dir().join("pg_wal").join(name)).unwrap();
    let path = dest_dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// pg_waldump of the same major release, if this machine has one.
fn waldump_for(major: u32) -> Option<PathBuf> {
    let path = match major {
        15 => PathBuf::from("/usr/lib/postgresql/15/bin/pg_waldump"),
        PgClientTools::MAJOR => PgClientTools::find().ok()?.bin("pg_waldump"),
        _ => return None,
    };
    path.is_file().then_some(path)
}

/// (LSN, resource manager name) of every record pg_waldump prints for `segment`.
fn waldump_records(waldump: &Path, segment: &Path) -> Vec<(Lsn, String)> {
    let out = Command::new(waldump).arg(segment).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<(Lsn, String)> = stdout
        .lines()
        .filter_map(|line| {
            let rmgr = line.strip_prefix("rmgr: ")?.split_whitespace().next()?;
            let at = line.split("lsn: ").nth(1)?.split(',').next()?;
            Some((lsn(at.trim()), rmgr.to_string()))
        })
        .collect();
    assert!(
        !records.is_empty(),
        "pg_waldump printed no records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    records
}

fn completions(records: &[WalRecord]) -> Vec<(Lsn, XactCompletion)> {
    records
        .iter()
        .filter_map(|r| parse_xact_completion(r).map(|c| (r.lsn, c)))
        .collect()
}

fn find(done: &[(Lsn, XactCompletion)], xid: u32) -> XactCompletion {
    let found: Vec<_> = done.iter().filter(|(_, c)| c.xid == xid).collect();
    assert_eq!(found.len(), 1, "completions of xid {xid}: {found:?}");
    found[0].1
}

fn check_release(major: u32) {
    let install = PgInstall::find(major).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::start_new(
        &install,
        &dir,
        ClusterOptions::new()
            .name(format!("wal{major}"))
            .wal_segsize_mb(1)
            .conf("track_commit_timestamp", "on")
            .conf("max_prepared_transactions", "4")
            .conf("wal_keep_size", "'64MB'"),
    )
    .unwrap();
    let seg_size = WalSegmentSize::new(1 << 20).unwrap();
    let out_dir = dir.subdir("segments").unwrap();
    let system_identifier: u64 = sql(&pg, "SELECT system_identifier FROM pg_control_system()")
        .parse()
        .unwrap();

    // Start on a fresh segment so that everything below lands in one.
    sql(&pg, "SELECT pg_switch_wal()");
    sql(&pg, "CREATE TABLE t(x int); CREATE TABLE doomed(x int)");
    let commits: Vec<u32> = (0..3)
        .map(|i| xact(&pg, &format!("INSERT INTO t VALUES ({i})"), "COMMIT"))
        .collect();
    let aborted = xact(&pg, "INSERT INTO t VALUES (-1)", "ROLLBACK");
    let prepared = xact(&pg, "INSERT INTO t VALUES (10)", "PREPARE TRANSACTION 'p1'");
    sql(&pg, "COMMIT PREPARED 'p1'");
    // Dropping a table in a prepared transaction puts dropped relations, dropped
    // statistics and invalidations before the two-phase xid: the layouts that differ by release.
    let prepared_drop = xact(&pg, "DROP TABLE doomed", "PREPARE TRANSACTION 'p2'");
    sql(&pg, "COMMIT PREPARED 'p2'");
    let rolled_back = xact(&pg, "INSERT INTO t VALUES (11)", "PREPARE TRANSACTION 'p3'");
    sql(&pg, "ROLLBACK PREPARED 'p3'");
    let rp_end = lsn(&sql(&pg, "SELECT pg_create_restore_point('cairn-e2e')"));
    let name = pg.switch_wal().unwrap();
    let segment: SegmentName = name.parse().unwrap();

    // The switch is flushed by the time the segment has its end; wait for it, no sleeping.
    let (path, bytes) = wait_until(
        "the switched segment to be complete in pg_wal",
        Duration::from_secs(30),
        || {
            let (path, bytes) = copy_segment(&pg, &name, &out_dir);
            let mut reader = WalSegmentReader::new(&bytes).map_err(|e| e.to_string())?;
            let count = reader.by_ref().count();
            if reader.switched() {
                Ok(Some((path, bytes)))
            } else {
                Err(format!("{count} records, then {:?}", reader.end()))
            }
        },
    )
    .unwrap();

    let summary = summarize_segment(&bytes).unwrap();
    assert_eq!(summary.system_identifier, system_identifier);
    assert_eq!(Some(summary.magic), wal_magic_for_pg_major(major));
    assert_eq!(summary.seg_size, seg_size);
    assert_eq!(summary.xlog_blcksz, 8192);
    assert_eq!(summary.timeline, TimelineId(1));
    assert_eq!(summary.start_lsn, segment.start_lsn(seg_size));
    assert!(summary.switch && summary.is_complete(), "{summary:?}");
    assert!(summary.head_fragment.is_none() && summary.tail_fragment.is_none());

    let mut reader = WalSegmentReader::new(&bytes).unwrap();
    let records: Vec<WalRecord> = reader.by_ref().collect();
    assert!(reader.switched());
    let done = completions(&records);

    // Every commit: right xid, and the timestamp the server keeps for it.
    let committed: Vec<u32> = commits
        .iter()
        .copied()
        .chain([prepared, prepared_drop])
        .collect();
    for &xid in &committed {
        let c = find(&done, xid);
        assert_eq!(c.kind, XactKind::Commit, "xid {xid}");
        assert_eq!(
            c.time,
            commit_timestamp(&pg, xid),
            "commit time of xid {xid}"
        );
        assert_eq!(c.prepared, xid == prepared || xid == prepared_drop);
    }
    let a = find(&done, aborted);
    assert_eq!((a.kind, a.prepared), (XactKind::Abort, false));
    let r = find(&done, rolled_back);
    assert_eq!((r.kind, r.prepared), (XactKind::Abort, true));
    // Completion order is WAL order, so the abort's time sits between its neighbours'.
    assert!(find(&done, commits[2]).time <= a.time && a.time <= find(&done, prepared).time);

    let all_xids: Vec<u32> = committed
        .iter()
        .copied()
        .chain([aborted, rolled_back])
        .collect();
    assert!(summary.commit_count >= committed.len() as u64);
    assert!(summary.abort_count >= 2);
    assert!(summary.min_xid.unwrap() <= *all_xids.iter().min().unwrap());
    assert!(summary.max_xid.unwrap() >= *all_xids.iter().max().unwrap());
    assert!(summary.first_commit_time.unwrap() <= find(&done, commits[0]).time);
    assert!(summary.last_commit_time.unwrap() >= r.time);

    // The restore point: the name, and the LSN pg_create_restore_point() returned.
    let rps = &summary.restore_points;
    assert_eq!(rps.len(), 1, "{rps:?}");
    assert_eq!(rps[0].name, "cairn-e2e");
    assert_eq!(rps[0].end_lsn, rp_end);
    assert!(rps[0].lsn < rp_end);
    assert!(rps[0].time >= r.time);

    // pg_waldump of the same release sees exactly the same records.
    if let Some(waldump) = waldump_for(major) {
        let theirs = waldump_records(&waldump, &path);
        let ours: Vec<(Lsn, String)> = records
            .iter()
            .map(|r| (r.lsn, rmgr::name(r.rmid).unwrap_or("?").to_string()))
            .collect();
        assert_eq!(ours, theirs);
        let commit_lsns: BTreeSet<Lsn> = done.iter().map(|(l, _)| *l).collect();
        let their_xact: BTreeSet<Lsn> = theirs
            .iter()
            .filter(|(_, rm)| rm == "Transaction")
            .map(|(l, _)| *l)
            .collect();
        assert!(commit_lsns.is_subset(&their_xact));
    }

    // The segment being written is summarised up to where its WAL ends.
    let last = xact(&pg, "INSERT INTO t VALUES (99)", "COMMIT");
    let flushed = lsn(&sql(&pg, "SELECT pg_current_wal_flush_lsn()"));
    let current = SegmentName::containing(TimelineId(1), Lsn(flushed.0 - 1), seg_size).to_string();
    let (_, live) = copy_segment(&pg, &current, &out_dir);
    let partial = summarize_segment(&live).unwrap();
    assert!(!partial.is_complete() && !partial.switch);
    assert!(
        partial.end_of_wal >= flushed.min(partial.end_lsn()),
        "{partial:?}"
    );
    let mut reader = WalSegmentReader::new(&live).unwrap();
    let live_records: Vec<WalRecord> = reader.by_ref().collect();
    assert_eq!(
        find(&completions(&live_records), last).kind,
        XactKind::Commit
    );

    check_checkpoint_and_control(&pg, major, seg_size, &out_dir);
    check_promotion(&mut pg, seg_size, &out_dir);
}

/// An online checkpoint's record names the redo point pg_control reports, and the
/// identity files say what SQL says.
fn check_checkpoint_and_control(pg: &PgCluster, major: u32, seg_size: WalSegmentSize, out: &Path) {
    sql(pg, "CHECKPOINT");
    let row = sql(
        pg,
        "SELECT redo_lsn, checkpoint_lsn FROM pg_control_checkpoint()",
    );
    let (redo, at) = row.split_once('|').unwrap();
    let (redo, at) = (lsn(redo), lsn(at));
    let name = SegmentName::containing(TimelineId(1), at, seg_size).to_string();
    let (_, bytes) = copy_segment(pg, &name, out);
    let records: Vec<WalRecord> = WalSegmentReader::new(&bytes).unwrap().collect();
    let record = records
        .iter()
        .find(|r| r.lsn == at)
        .expect("checkpoint record");
    let checkpoint = parse_checkpoint(record).expect("a checkpoint");
    assert!(!checkpoint.shutdown);
    assert_eq!(checkpoint.redo, redo);
    assert_eq!(
        (checkpoint.tli, checkpoint.prev_tli),
        (TimelineId(1), TimelineId(1))
    );

    let control = std::fs::read(pg.data_dir().join("global/pg_control")).unwrap();
    let prefix = ControlFilePrefix::parse(&control).unwrap();
    let row = sql(
        pg,
        "SELECT system_identifier, pg_control_version, catalog_version_no FROM pg_control_system()",
    );
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(prefix.system_identifier.to_string(), fields[0]);
    assert_eq!(prefix.pg_control_version.to_string(), fields[1]);
    assert_eq!(prefix.catalog_version_no.to_string(), fields[2]);
    let version = std::fs::read(pg.data_dir().join("PG_VERSION")).unwrap();
    assert_eq!(parse_pg_version_file(&version).unwrap(), major);
}

/// Promoting a standby starts timeline 2: its history file parses to what happened, and
/// the new timeline's WAL begins with the end of recovery.
fn check_promotion(pg: &mut PgCluster, seg_size: WalSegmentSize, out: &Path) {
    pg.stop().unwrap();
    let signal = pg.data_dir().join("standby.signal");
    std::fs::write(&signal, "").unwrap();
    cairn_testkit::chown_to_postgres(&signal).unwrap();
    pg.start().unwrap();
    assert!(pg.is_in_recovery().unwrap());
    pg.promote().unwrap();
    wait_until("promotion to finish", Duration::from_secs(30), || {
        pg.is_in_recovery().map(|r| (!r).then_some(()))
    })
    .unwrap();

    let text = std::fs::read(pg.data_dir().join("pg_wal/00000002.history")).unwrap();
    let history = TimelineHistory::parse(TimelineId(2), &text).unwrap();
    assert_eq!(history.entries.len(), 1, "{history:?}");
    assert_eq!(history.parent(), Some(TimelineId(1)));
    let switchpoint = history.switchpoint_of(TimelineId(1)).unwrap();
    assert_eq!(history.to_bytes(), text);

    let now = lsn(&sql(pg, "SELECT pg_current_wal_lsn()"));
    assert_eq!(history.timeline_at(now), TimelineId(2));
    let name = SegmentName::containing(TimelineId(2), switchpoint, seg_size);
    let (_, bytes) = copy_segment(pg, &name.to_string(), out);
    let summary = summarize_segment(&bytes).unwrap();
    let records: Vec<WalRecord> = WalSegmentReader::new(&bytes).unwrap().collect();
    let first_on_2 = records
        .iter()
        .find(|r| r.lsn >= switchpoint)
        .expect("a record on timeline 2");
    let (tli, prev_tli) = match parse_end_of_recovery(first_on_2) {
        Some(e) => (e.tli, e.prev_tli),
        None => {
            let c = parse_checkpoint(first_on_2).expect("end of recovery or checkpoint");
            (c.tli, c.prev_tli)
        }
    };
    assert_eq!((tli, prev_tli), (TimelineId(2), TimelineId(1)));
    // The new timeline's first segment begins with a copy of the parent's, page headers
    // and all: only its name says timeline 2.
    assert_eq!(summary.timeline, TimelineId(1));
    assert!(summary.last_timeline <= TimelineId(2));
}

#[test]
fn pg15_wal_records() {
    check_release(15);
}

#[test]
fn pg16_wal_records() {
    check_release(16);
}

#[test]
fn pg17_wal_records() {
    check_release(17);
}

#[test]
fn pg18_wal_records() {
    check_release(18);
}
