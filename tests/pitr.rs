//! Point-in-time recovery end to end (PostgreSQL 15): one row per transaction with its
//! commit timestamp; restores to times between commits (after the last backup, inside an
//! incr chain), to an LSN, an xid, a restore point and `immediate` land exactly: the
//! restored table has precisely the rows committed at or before the target.

mod support;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir};
use support::{Cairn, RepoSpec, describe, start_archiving};

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

/// A time strictly between the commits of rows k and k+1 (the midpoint, in UTC).
fn between(rows: &[(i64, u32, String)], k: usize) -> String {
    let parse = |s: &str| {
        time::PrimitiveDateTime::parse(
            s,
            time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"
            ),
        )
        .unwrap()
    };
    let a = parse(&rows[k - 1].2);
    let b = parse(&rows[k].2);
    assert!(
        b > a,
        "rows {k} and {} committed at the same microsecond",
        k + 1
    );
    let mid: time::PrimitiveDateTime = a + (b - a) / 2;
    format!(
        "{}+00",
        mid.format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
        ))
        .unwrap()
    )
}

#[test]
fn pg15_point_in_time_recovery_lands_exactly() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut primary = PgCluster::init(
        &install,
        &dir,
        ClusterOptions {
            wal_segsize_mb: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    primary.set_conf("track_commit_timestamp", "on").unwrap();
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    primary.psql("CREATE TABLE r (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())").unwrap();

    commit_rows(&primary, 120);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    commit_rows(&primary, 120);
    primary
        .psql("SELECT pg_create_restore_point('after-240')")
        .unwrap();
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    commit_rows(&primary, 120);
    let lsn_after_360 = {
        // The LSN right after row 360's commit is where an LSN target lands.
        let all = rows(&primary);
        assert_eq!(all.len(), 360);
        primary.psql("SELECT pg_current_wal_lsn()").unwrap()
    };
    commit_rows(&primary, 40);
    let last = primary
        .psql("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    support::wait_archived(&primary, &last);
    let all = rows(&primary);
    assert_eq!(all.len(), 400);

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

    // A time without an offset is refused, and nothing is written.
    let untouched = dir.path().join("pitr-refused");
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            untouched.to_str().unwrap(),
            "--target-time",
            "2026-11-22 14:05:00",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HINT"),
        "{}",
        describe(&out)
    );
    assert!(!untouched.exists());

    // A time after the last archived commit is refused with the last commit time.
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            untouched.to_str().unwrap(),
            "--target-time",
            "2099-01-01 00:00:00+00",
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last archived commit"),
        "{}",
        describe(&out)
    );
    assert!(!untouched.exists());

    // An unknown restore point is refused.
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            untouched.to_str().unwrap(),
            "--target-name",
            "no-such-point",
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
    assert!(!untouched.exists());
}
