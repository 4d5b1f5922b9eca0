//! Base backups end to end against PostgreSQL 15: full, diff and incr while a pgbench-like
//! workload runs; each restored into a fresh directory starts, reaches consistency and has
//! exactly the data the primary had when that backup stopped.

mod support;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir};
use support::{Cairn, RepoSpec, describe, start_archiving};

/// The workload's tables: a checksum over all of them.
fn checksum(pg: &PgCluster) -> String {
    pg.psql("SELECT (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM accounts) || '/' || \
             (SELECT count(*) FROM history)")
        .unwrap()
}

fn setup_schema(pg: &PgCluster) {
    pg.psql(
        "CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL, filler char(84) NOT NULL DEFAULT '');
         INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 200000) g;
         CREATE TABLE history (aid int, delta int, at timestamptz DEFAULT clock_timestamp());",
    )
    .unwrap();
}

/// Touch 300 neighbouring accounts and append history (well under 5% of pages; random
/// single-page changes all over a table are what PostgreSQL 17's WAL summaries are for).
fn workload(pg: &PgCluster, round: i32) {
    pg.psql(&format!(
        "UPDATE accounts SET abalance = abalance + {round} WHERE aid BETWEEN {lo} AND {lo} + 299;
         INSERT INTO history (aid, delta) SELECT (random() * 199999)::int + 1, {round} FROM generate_series(1, 500);",
        lo = 50_000 * round
    ))
    .unwrap();
}

fn backup(cairn: &Cairn, kind: &str) -> serde_json::Value {
    let out = cairn.run("cairn", &["backup", "--type", kind]);
    assert!(
        out.status.success(),
        "backup --type {kind}: {}",
        describe(&out)
    );
    // Not a terminal: progress comes as plain log lines, a last one when the stream ends.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("cairn: backup ") && l.contains("MiB/s")),
        "{err}"
    );
    let info = cairn.info_json();
    info["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// `info`'s start/stop of backup `b` against the `backup_label` PostgreSQL sent with it
/// (restored into `data`): the same start LSN and timeline, and times in order.
fn check_points(b: &serde_json::Value, data: &std::path::Path) {
    let label = std::fs::read_to_string(data.join("backup_label")).unwrap();
    let field = |name: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {label}"))
            .to_string()
    };
    // START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
    let start_wal = field("START WAL LOCATION: ");
    assert_eq!(
        b["start"]["lsn"].as_str(),
        start_wal.split(' ').next(),
        "{b:#}\n{label}"
    );
    assert_eq!(field("START TIMELINE: "), "1");
    assert_eq!(b["timeline"], 1);
    let (start, stop) = (
        b["start"]["lsn"].as_str().unwrap(),
        b["stop"]["lsn"].as_str().unwrap(),
    );
    assert!(lsn(stop) >= lsn(start), "stop {stop} before start {start}");
    let (t0, t1) = (
        rfc3339(b["start"]["time"].as_str().unwrap()),
        rfc3339(b["stop"]["time"].as_str().unwrap()),
    );
    assert!(t1 >= t0, "{b:#}");
    // START TIME: 2026-11-22 14:05:00 UTC (whole seconds). cairn's start is its clock as it
    // begins reading the stream, moments from the server's; its stop (after the WAL wait)
    // is later.
    let server_start = time::PrimitiveDateTime::parse(
        field("START TIME: ").trim_end_matches(" UTC"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .unwrap()
    .assume_utc();
    let near = time::Duration::seconds(5);
    assert!(
        (t0 - server_start).abs() < near && server_start <= t1,
        "cairn {t0} .. {t1}, server started at {server_start}"
    );
}

fn restore_and_check(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    b: &serde_json::Value,
    expected: &str,
) {
    let label = b["label"].as_str().unwrap();
    let target = dir.path().join(format!("restore-{label}"));
    support::restore(cairn, &target, &["--set", label, "--target", "immediate"]);
    check_points(b, &target);
    // PostgreSQL's own tool agrees: every file the server sent is there with its size and
    // CRC-32C, by the backup_manifest the server wrote (left in the directory, as
    // pg_basebackup leaves it). cairn makes tablespace links itself rather than leave
    // tablespace_map for PostgreSQL (decision 006), so that one file is not there.
    let tools = cairn_testkit::PgClientTools::find().unwrap();
    let out = std::process::Command::new(tools.bin("pg_verifybackup"))
        .args(["--no-parse-wal", "--ignore", "tablespace_map"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_verifybackup on backup {label}: {}",
        support::describe(&out)
    );
    // recovery_target = immediate with the default action (pause): consistent and paused.
    let mut pg =
        support::start_restored(dir, primary, &target, false, support::Recovered::Consistent);
    assert_eq!(checksum(&pg), expected, "backup {label}");
    pg.stop().unwrap();
}

#[test]
fn pg15_full_diff_incr_restore_to_identical_data() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut primary = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    setup_schema(&primary);

    // With no full, an incr is a full, and says so.
    let full = backup(&cairn, "incr");
    assert_eq!(full["type"], "full", "{full:#}");
    let full_sum = checksum(&primary);
    workload(&primary, 1);
    let diff = backup(&cairn, "diff");
    assert_eq!(diff["type"], "diff");
    assert_eq!(diff["parent"], full["label"]);
    let diff_sum = checksum(&primary);
    workload(&primary, 2);
    let incr = backup(&cairn, "incr");
    assert_eq!(incr["type"], "incr");
    assert_eq!(incr["parent"], diff["label"]);
    let incr_sum = checksum(&primary);
    assert!(full_sum != diff_sum && diff_sum != incr_sum);

    let full_added = full["repo_added"].as_u64().unwrap();
    let incr_added = incr["repo_added"].as_u64().unwrap();
    assert!(
        incr_added * 5 < full_added,
        "incr added {incr_added} bytes, full {full_added}"
    );
    // The first full reuses nothing; the incr references about as much as the full and
    // reuses nearly all of it.
    assert_eq!(full["repo_reused"], 0, "{full:#}");
    let incr_size = incr["repo_size"].as_u64().unwrap();
    assert!(
        incr_size * 10 >= full["repo_size"].as_u64().unwrap() * 9,
        "{incr:#}"
    );
    assert!(
        incr["repo_reused"].as_u64().unwrap() * 5 >= incr_size * 4,
        "{incr:#}"
    );

    // No writes happen between a backup's stop and the checksum above, so restoring each
    // backup to its consistency point shows exactly that data.
    for (b, sum) in [(&full, &full_sum), (&diff, &diff_sum), (&incr, &incr_sum)] {
        restore_and_check(&dir, &primary, &cairn, b, sum);
    }

    // A restore into a non-empty directory is refused and writes nothing.
    let busy = dir.subdir("busy").unwrap();
    std::fs::write(busy.join("keep"), b"x").unwrap();
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            busy.to_str().unwrap(),
            "--target",
            "immediate",
        ],
    );
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
}
