//! Point-in-time recovery end to end (PostgreSQL 15): one row per transaction with its
//! commit timestamp; restores to times between commits (after the last backup, inside an
//! incr chain), to an LSN, an xid, a restore point and `immediate` land exactly: the
//! restored table has precisely the rows committed at or before the target. Then the same
//! archive shows the dry-run plan, every refusal (with its hint, writing nothing), a
//! standby replaying from the archive, and a WAL gap: refused, and in `info` a window that
//! ends at the gap and another that starts from the newer backup past it.

mod support;

use std::time::Duration;

use cairn_testkit::{PgCluster, TestDir, wait_until};
use support::{Cairn, refused, segment_of};

const SEG: u64 = 1 << 20;

/// Commit `n` rows, one transaction each, switching WAL every 40 rows.
fn commit_rows(pg: &PgCluster, n: usize) {
    pg.psql(&format!(
        "DO $$ BEGIN FOR i IN 1..{n} LOOP INSERT INTO r DEFAULT VALUES; COMMIT; \
         IF i % 40 = 0 THEN PERFORM pg_switch_wal(); END IF; END LOOP; END $$"
    ))
    .unwrap();
}

/// (id, xid, commit time as text with microseconds in UTC, commit LSN unknown) of every row.
fn rows(pg: &PgCluster) -> Vec<(i64, u32, String)> {
    pg.psql("SELECT id || '|' || xmin || '|' || to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM r ORDER BY id")
        .unwrap()
        .lines()
        .map(|l| {
            let mut p = l.split('|');
            (p.next().unwrap().parse().unwrap(), p.next().unwrap().parse().unwrap(), p.next().unwrap().to_string())
        })
        .collect()
}

/// Restore with `args`, start, wait for recovery to end (promote), return the ids present.
fn restore_ids(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    name: &str,
    args: &[&str],
) -> Vec<i64> {
    let target = dir.path().join(format!("pitr-{name}"));
    let mut all = vec!["--target-action", "promote"];
    all.extend_from_slice(args);
    support::restore(cairn, &target, &all);
    let mut pg =
        support::start_restored(dir, primary, &target, false, support::Recovered::Promoted);
    let ids = pg
        .psql("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM r")
        .unwrap();
    pg.stop().unwrap();
    ids.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

fn parse_utc(s: &str) -> time::OffsetDateTime {
    time::PrimitiveDateTime::parse(
        s,
        time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"
        ),
    )
    .unwrap()
    .assume_utc()
}

/// The instant strictly between the commits of rows k and k+1 (the midpoint).
fn midpoint(rows: &[(i64, u32, String)], k: usize) -> time::OffsetDateTime {
    let a = parse_utc(&rows[k - 1].2);
    let b = parse_utc(&rows[k].2);
    assert!(
        b > a,
        "rows {k} and {} committed at the same microsecond",
        k + 1
    );
    // Whole microseconds, as the target is written with six digits.
    let mid: time::OffsetDateTime = a + (b - a) / 2;
    mid.replace_nanosecond(mid.nanosecond() / 1000 * 1000)
        .unwrap()
}

/// `at` as `--target-time` takes it, in the given offset: `2026-11-22 19:35:00.250000+05:30`.
fn written_in(at: time::OffsetDateTime, offset: time::UtcOffset) -> String {
    let local = at.to_offset(offset);
    let (h, m, _) = offset.as_hms();
    format!(
        "{}{}{:02}:{:02}",
        local
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
            ))
            .unwrap(),
        if offset.is_negative() { '-' } else { '+' },
        h.abs(),
        m.abs()
    )
}

/// A time strictly between the commits of rows k and k+1, in UTC.
fn between(rows: &[(i64, u32, String)], k: usize) -> String {
    written_in(midpoint(rows, k), time::UtcOffset::UTC).replace("+00:00", "+00")
}

/// A commit time as the planner and `info` print it (RFC 3339, six digits, `Z`).
fn commit_time(rows: &[(i64, u32, String)], id: usize) -> String {
    format!("{}Z", rows[id - 1].2.replace(' ', "T"))
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn walfile_at_insert(pg: &PgCluster) -> String {
    pg.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
        .unwrap()
}

fn switch_and_wait(pg: &PgCluster) {
    let last = pg.psql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    support::wait_archived(pg, &last);
}

#[test]
fn pg15_point_in_time_recovery_lands_exactly() {
    let dir = TestDir::new().unwrap();
    // No autovacuum commits: the workload's last row is the last commit there is.
    let (primary, cairn) = support::commit_log_cluster(&dir);

    commit_rows(&primary, 120);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    commit_rows(&primary, 40);
    // Every batch of 40 ends with a switch: rows 161-200 go into this segment.
    let seg_161 = walfile_at_insert(&primary);
    commit_rows(&primary, 80);
    primary
        .psql("SELECT pg_create_restore_point('after-240')")
        .unwrap();
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    // The incr's stop switched WAL: rows 241-280 go into this segment.
    let seg_241 = walfile_at_insert(&primary);
    commit_rows(&primary, 120);
    let lsn_after_360 = {
        // The LSN right after row 360's commit is where an LSN target lands.
        let all = rows(&primary);
        assert_eq!(all.len(), 360);
        primary.psql("SELECT pg_current_wal_lsn()").unwrap()
    };
    commit_rows(&primary, 40);
    switch_and_wait(&primary);
    let all = rows(&primary);
    assert_eq!(all.len(), 400);
    let info = cairn.info_json();
    let backups = info["stanzas"][0]["backups"].as_array().unwrap().clone();
    let (full, incr) = (&backups[0], &backups[1]);
    assert_eq!(
        (full["type"].as_str(), incr["type"].as_str()),
        (Some("full"), Some("incr"))
    );

    // Times: inside the WAL after the full, in the incr chain, after the last backup.
    for k in [150usize, 250, 330, 399] {
        let t = between(&all, k);
        let ids = restore_ids(
            &dir,
            &primary,
            &cairn,
            &format!("time-{k}"),
            &["--target-time", &t],
        );
        assert_eq!(
            ids,
            (1..=k as i64).collect::<Vec<_>>(),
            "target time {t} (between rows {k} and {})",
            k + 1
        );
    }

    // An xid target includes that transaction (recovery_target_inclusive defaults to on).
    let xid = all[199].1.to_string();
    assert_eq!(
        restore_ids(&dir, &primary, &cairn, "xid", &["--target-xid", &xid]),
        (1..=200).collect::<Vec<_>>()
    );

    // A restore point made after row 240.
    assert_eq!(
        restore_ids(
            &dir,
            &primary,
            &cairn,
            "name",
            &["--target-name", "after-240"]
        ),
        (1..=240).collect::<Vec<_>>()
    );

    // An LSN taken after row 360's commit and before row 361's.
    assert_eq!(
        restore_ids(
            &dir,
            &primary,
            &cairn,
            "lsn",
            &["--target-lsn", &lsn_after_360]
        ),
        (1..=360).collect::<Vec<_>>()
    );

    dry_runs(&dir, &cairn, &all, incr, &seg_241);
    refusals(&dir, &primary, &cairn, &all, full);
    standby(&dir, &primary, &cairn);
    wal_gap(&dir, &primary, &cairn, &seg_161, incr);
}

/// `--dry-run` prints the plan (backup and why, WAL per timeline, bytes, settings, signal
/// file), shows a time written in +05:30 in UTC and as given, and writes nothing.
fn dry_runs(
    dir: &TestDir,
    cairn: &Cairn,
    all: &[(i64, u32, String)],
    incr: &serde_json::Value,
    seg_241: &str,
) {
    let at = midpoint(all, 249);
    let given = written_in(at, time::macros::offset!(+5:30));
    assert!(given.ends_with("+05:30"), "{given}");
    let (utc, local) = (
        rfc3339(at),
        rfc3339(at.to_offset(time::macros::offset!(+5:30))),
    );
    let empty = dir.subdir("dry-run").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--pg-data",
            empty.to_str().unwrap(),
            "--target-time",
            &given,
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        let out = cairn.cairn_ok(&args);
        assert_eq!(
            std::fs::read_dir(&empty).unwrap().count(),
            0,
            "dry run wrote"
        );
        out
    };
    let label = incr["label"].as_str().unwrap();
    let first = segment_of(incr["start"]["lsn"].as_str().unwrap(), 1, SEG);
    let segments = u64::from_str_radix(&seg_241[16..], 16).unwrap()
        - u64::from_str_radix(&first[16..], 16).unwrap()
        + 1;
    let setting = written_in(at, time::UtcOffset::UTC).replace("+00:00", "+00");
    let db_size = incr["db_size"].as_u64().unwrap();

    let text = run(&[]);
    for needle in [
        format!("backup:  {label} (the newest backup that can reach the target)"),
        format!("target:  time {utc} ({local}) on timeline 1"),
        format!("WAL:     timeline 1: {first} .. {seg_241} ({segments} segments)"),
        format!(
            "write:   {:.1} MiB into {}",
            db_size as f64 / 1048576.0,
            empty.display()
        ),
        format!("recovery_target_time = '{setting}'"),
        "recovery_target_timeline = '1'".to_string(),
        // PostgreSQL's default, written out so the plan says what recovery will do.
        "recovery_target_action = 'pause'".to_string(),
        "signal:  recovery.signal".to_string(),
    ] {
        assert!(text.contains(&needle), "no {needle:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("restore_command = '") && l.contains("cairn-archive-get --config")),
        "{text}"
    );

    let doc: serde_json::Value = serde_json::from_str(&run(&["--output", "json"])).unwrap();
    let plan = &doc["plan"];
    assert_eq!(plan["backup"], label, "{doc:#}");
    assert_eq!(plan["why"], "the newest backup that can reach the target");
    assert_eq!(
        plan["wal"],
        serde_json::json!([{"timeline": 1, "first": first, "last": seg_241, "segments": segments}])
    );
    assert_eq!(plan["bytes_to_write"].as_u64(), Some(db_size));
    assert_eq!(
        plan["settings"],
        serde_json::json!([
            ["recovery_target_time", setting],
            ["recovery_target_timeline", "1"]
        ])
    );
    assert_eq!(
        doc["target_time"],
        serde_json::json!({"utc": utc, "given": local})
    );
    assert_eq!(doc["target_action"], "pause");
    assert_eq!(doc["signal"], "recovery.signal");
    assert!(
        doc["restore_command"]
            .as_str()
            .unwrap()
            .contains("cairn-archive-get")
    );

    // A time before the incr: the full, and why the incr was passed over.
    let t150 = between(all, 150);
    let out = cairn.cairn_ok(&[
        "restore",
        "--pg-data",
        empty.to_str().unwrap(),
        "--target-time",
        &t150,
        "--dry-run",
        "--output",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let why = doc["plan"]["why"].as_str().unwrap();
    assert!(
        why.contains(label) && why.contains("not before the target"),
        "{why}"
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

/// Each refusal of an unreachable target: exit code, one line, a hint naming what can be
/// reached (checked against the server and `info`), nothing written.
fn refusals(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    all: &[(i64, u32, String)],
    full: &serde_json::Value,
) {
    // A time without an offset is a usage error.
    let (_, hint) = refused(cairn, dir, &["--target-time", "2026-11-22 14:05:00"], 2);
    assert!(hint.contains("'2026-11-22 14:05:00+00'"), "{hint}");

    // After the last archived commit: the hint names it, as the server reports it.
    let server_last = primary
        .psql("SELECT to_char((pg_last_committed_xact()).timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        .unwrap();
    assert_eq!(server_last, commit_time(all, 400));
    let (error, hint) = refused(cairn, dir, &["--target-time", "2099-01-01 00:00:00+00"], 12);
    assert!(
        error.contains(&format!("last archived commit ({server_last})")),
        "{error}"
    );
    assert!(
        hint.starts_with(&format!(
            "HINT: the latest time that can be reached is {server_last};"
        )),
        "{hint}"
    );

    // An unknown restore point: the hint lists the archived one.
    let (_, hint) = refused(cairn, dir, &["--target-name", "no-such-point"], 12);
    assert_eq!(hint, "HINT: archived restore points: after-240");

    // A transaction no archived WAL holds: the hint gives the range that is there, from
    // the first commit after the full (row 121) to the last (row 400).
    let (_, hint) = refused(cairn, dir, &["--target-xid", "4000000000"], 12);
    assert!(
        hint.starts_with(&format!(
            "HINT: transactions {} to {} ended in the archived WAL after the earliest backup;",
            all[120].1, all[399].1
        )),
        "{hint}"
    );

    // Before the full's consistency point: the hint names it as `info` shows it.
    let t50 = between(all, 50);
    let (error, hint) = refused(cairn, dir, &["--target-time", &t50], 12);
    let earliest = format!(
        "{} at {}",
        full["stop"]["lsn"].as_str().unwrap(),
        full["stop"]["time"].as_str().unwrap()
    );
    assert!(
        error.contains("before the earliest backup's consistency point"),
        "{error}"
    );
    assert_eq!(
        hint,
        format!("HINT: the earliest reachable point is {earliest}")
    );
}

/// `--standby`: PostgreSQL starts as a standby (in recovery, standby.signal) and keeps
/// replaying from the archive, rows committed on the primary after the restore included.
fn standby(dir: &TestDir, primary: &PgCluster, cairn: &Cairn) {
    let data = dir.path().join("standby");
    support::restore(cairn, &data, &["--standby"]);
    assert!(data.join("standby.signal").exists());
    assert!(!data.join("recovery.signal").exists());
    let mut pg = PgCluster::from_existing_data_dir(primary.install(), dir, &data).unwrap();
    pg.set_conf("archive_mode", "off").unwrap();
    pg.start().unwrap();
    let count = |pg: &PgCluster, n: &str| {
        wait_until(
            "the standby to replay the archive",
            Duration::from_secs(120),
            || {
                Ok::<_, cairn_testkit::Error>(
                    pg.psql("SELECT count(*) FROM r").ok().filter(|c| c == n),
                )
            },
        )
        .unwrap();
    };
    count(&pg, "400");
    assert!(pg.is_in_recovery().unwrap());
    commit_rows(primary, 10);
    switch_and_wait(primary);
    count(&pg, "410");
    assert!(pg.is_in_recovery().unwrap(), "a standby stays in recovery");
    pg.stop().unwrap();
}

/// A segment lost from the repository (its object and its journal entry, which holds its
/// summary; the journal's snapshots are a cache of the entries): a target past it from the full is refused naming the last commit
/// before it, and `info` shows the full's window ending at the gap and the incr's after it.
fn wal_gap(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    seg_161: &str,
    incr: &serde_json::Value,
) {
    let all = rows(primary);
    assert_eq!(all.len(), 410);
    let mut removed = Vec::new();
    remove_named(&cairn.repo_dir, seg_161, &mut removed);
    assert!(
        removed.iter().any(|p| p.contains("/wal/"))
            && removed.iter().any(|p| p.contains("/journal/wal/log/")),
        "{removed:?}"
    );
    let _ = std::fs::remove_dir_all(cairn.repo_dir.join("stanza/main/journal/wal/snap"));

    let t170 = between(&all, 170);
    let (error, hint) = refused(cairn, dir, &["--target-time", &t170], 12);
    assert!(
        error.contains(&format!("WAL segment {seg_161} is missing")),
        "{error}"
    );
    assert_eq!(
        hint,
        format!(
            "HINT: the latest point reachable before the gap is {}",
            commit_time(&all, 160)
        )
    );
    // Past the gap, the incr still serves.
    let t330 = between(&all, 330);
    let missing = dir.path().join("gap-dry-run");
    let plan = cairn.cairn_ok(&[
        "restore",
        "--pg-data",
        missing.to_str().unwrap(),
        "--target-time",
        &t330,
        "--dry-run",
    ]);
    assert!(plan.contains(incr["label"].as_str().unwrap()), "{plan}");

    let info = cairn.info_json();
    let windows = &info["stanzas"][0]["recovery_windows"];
    let full = &info["stanzas"][0]["backups"][0];
    assert_eq!(
        *windows,
        serde_json::json!([
            {"timeline": 1, "backup": full["label"], "from": full["stop"]["time"],
             "to": commit_time(&all, 160), "gap": seg_161},
            {"timeline": 1, "backup": incr["label"], "from": incr["stop"]["time"],
             "to": commit_time(&all, 410), "gap": null},
        ]),
        "{info:#}"
    );
}

fn remove_named(root: &std::path::Path, name: &str, removed: &mut Vec<String>) {
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            remove_named(&p, name, removed);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == name || n.ends_with(&format!("-{name}")))
        {
            std::fs::remove_file(&p).unwrap();
            removed.push(p.display().to_string());
        }
    }
}
