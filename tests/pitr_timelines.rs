//! Timelines and --delta (PostgreSQL 15): restore to a point, promote, write more and
//! archive it as timeline 2; then restore to a time on timeline 2, and to a time on
//! timeline 1 after the branch point with --target-timeline 1. Both land exactly. Then a
//! modified data directory is repaired with --delta, rewriting less than a full restore.

mod support;

use std::time::Duration;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir, wait_until};
use support::{Cairn, RepoSpec, describe, start_archiving};

fn insert(pg: &PgCluster, tag: &str, n: usize) {
    pg.psql(&format!("DO $$ BEGIN FOR i IN 1..{n} LOOP INSERT INTO r (tag) VALUES ('{tag}'); COMMIT; END LOOP; END $$")).unwrap();
}

fn now_utc(pg: &PgCluster) -> String {
    pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .unwrap()
}

fn contents(pg: &PgCluster) -> String {
    pg.psql("SELECT tag || ':' || count(*) FROM r GROUP BY tag ORDER BY tag")
        .unwrap()
        .replace('\n', ",")
}

fn restore_and_start(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    name: &str,
    args: &[&str],
    archive: bool,
) -> PgCluster {
    let data = dir.path().join(name);
    let mut all = vec!["--target-action", "promote"];
    all.extend_from_slice(args);
    support::restore(cairn, &data, &all);
    support::start_restored(dir, primary, &data, archive, support::Recovered::Promoted)
}

/// Wait until the archiver pushed everything before the switch (by name, any timeline).
fn switch_and_wait(pg: &PgCluster) {
    let seg = pg.psql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    support::wait_archived(pg, &seg);
}

#[test]
fn pg15_timelines_and_delta() {
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
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    primary
        .psql("CREATE TABLE r (id bigserial PRIMARY KEY, tag text NOT NULL)")
        .unwrap();
    insert(&primary, "a", 50);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    insert(&primary, "b", 50);
    let t_branch = now_utc(&primary);
    insert(&primary, "c", 50);
    let t_after_branch_on_1 = now_utc(&primary);
    insert(&primary, "d", 50);
    switch_and_wait(&primary);

    // Timeline 2: back to t_branch, promote, write and archive more.
    let mut tl2 = restore_and_start(
        &dir,
        &primary,
        &cairn,
        "tl2",
        &["--target-time", &t_branch],
        true,
    );
    assert_eq!(
        tl2.psql("SELECT timeline_id FROM pg_control_checkpoint()")
            .unwrap(),
        "2"
    );
    assert_eq!(contents(&tl2), "a:50,b:50");
    insert(&tl2, "x", 30);
    let t_on_2 = now_utc(&tl2);
    insert(&tl2, "y", 30);
    switch_and_wait(&tl2);
    tl2.stop().unwrap();
    let info = cairn.info_json();
    let tls: Vec<u64> = info["stanzas"][0]["archive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert!(tls.contains(&1) && tls.contains(&2), "{info:#}");

    // A time on timeline 2 (the latest): the branch's rows plus timeline 2's up to then.
    let mut pg = restore_and_start(
        &dir,
        &primary,
        &cairn,
        "on-tl2",
        &["--target-time", &t_on_2],
        false,
    );
    assert_eq!(contents(&pg), "a:50,b:50,x:30");
    pg.stop().unwrap();
    // A time on timeline 1 after the branch point.
    let mut pg = restore_and_start(
        &dir,
        &primary,
        &cairn,
        "on-tl1",
        &[
            "--target-time",
            &t_after_branch_on_1,
            "--target-timeline",
            "1",
        ],
        false,
    );
    assert_eq!(contents(&pg), "a:50,b:50,c:50");
    pg.stop().unwrap();

    // --delta: a restored directory modified in three ways is repaired.
    let data = dir.path().join("delta");
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data.to_str().unwrap(),
            "--target",
            "immediate",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let full_written = written_mib(&String::from_utf8_lossy(&out.stdout));
    let rel = primary.psql("SELECT pg_relation_filepath('r')").unwrap();
    let mut f = std::fs::read(data.join(&rel)).unwrap();
    f[100] ^= 0xff;
    std::fs::write(data.join(&rel), f).unwrap();
    std::fs::write(data.join("base/extra_file"), b"not from the backup").unwrap();
    cairn_testkit::chown_to_postgres(&data.join("base/extra_file")).unwrap();
    std::fs::remove_file(data.join("PG_VERSION")).unwrap();
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data.to_str().unwrap(),
            "--target",
            "immediate",
            "--delta",
        ],
    );
    // PG_VERSION is what tells a data directory: without it delta refuses, writing nothing.
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
    assert!(data.join("base/extra_file").exists());
    std::fs::write(data.join("PG_VERSION"), b"15\n").unwrap();
    cairn_testkit::chown_to_postgres(&data.join("PG_VERSION")).unwrap();
    std::fs::remove_file(data.join("global/pg_filenode.map")).unwrap();
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data.to_str().unwrap(),
            "--target",
            "immediate",
            "--delta",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let delta_written = written_mib(&String::from_utf8_lossy(&out.stdout));
    assert!(
        delta_written < full_written,
        "delta wrote {delta_written} MiB, full {full_written} MiB"
    );
    assert!(!data.join("base/extra_file").exists());
    assert!(data.join("global/pg_filenode.map").exists());
    let mut pg = PgCluster::from_existing_data_dir(primary.install(), &dir, &data).unwrap();
    pg.set_conf("archive_mode", "off").unwrap();
    pg.start().unwrap();
    wait_until(
        "delta-restored cluster to be consistent",
        Duration::from_secs(120),
        || {
            Ok::<_, cairn_testkit::Error>(
                pg.psql("SELECT pg_is_wal_replay_paused() OR NOT pg_is_in_recovery()")
                    .ok()
                    .filter(|r| r == "t"),
            )
        },
    )
    .unwrap();
    assert_eq!(contents(&pg), "a:50");
    pg.stop().unwrap();
}

fn written_mib(stdout: &str) -> f64 {
    let i = stdout
        .find(" MiB written")
        .unwrap_or_else(|| panic!("no 'MiB written' in {stdout}"));
    stdout[..i].rsplit(' ').next().unwrap().parse().unwrap()
}
