//! PostgreSQL 17 incremental backups from WAL summaries, end to end: with `summarize_wal =
//! on`, a chain full, incr, incr, diff (on the full) after workloads touching few pages
//! receives only the changed blocks (far less than the database), says `wal-summaries` in
//! `info`, and each backup restored on its own starts with exactly the data the primary had. Without summaries for the range
//! (summarize_wal turned on after the full), the server refuses and cairn falls back to
//! the server sending every file.

mod support;

use std::time::Duration;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir, wait_until};
use support::{Cairn, RepoSpec, describe, start_archiving};

fn checksum(pg: &PgCluster) -> String {
    pg.psql(
        "SELECT (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM accounts) || '/' || \
         (SELECT count(*) FROM history)",
    )
    .unwrap()
}

/// About 25 MiB of accounts, so a few hundred changed rows are a small part of it.
fn setup_schema(pg: &PgCluster) {
    pg.psql(
        "CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL, filler char(84) NOT NULL DEFAULT '');
         INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 200000) g;
         CREATE TABLE history (aid int, delta int, at timestamptz DEFAULT clock_timestamp());
         CHECKPOINT;",
    )
    .unwrap();
}

/// 300 neighbouring accounts, 200 random ones and 500 history rows: a few hundred pages.
fn workload(pg: &PgCluster, round: i32) {
    pg.psql(&format!(
        "UPDATE accounts SET abalance = abalance + {round} WHERE aid BETWEEN {lo} AND {lo} + 299;
         UPDATE accounts SET abalance = abalance - {round}
           WHERE aid IN (SELECT (random() * 199999)::int + 1 FROM generate_series(1, 200));
         INSERT INTO history (aid, delta) SELECT (random() * 199999)::int + 1, {round} FROM generate_series(1, 500);",
        lo = 50_000 * round
    ))
    .unwrap();
}

/// Wait until the WAL summarizer runs. The server itself waits, at the start of an
/// incremental backup, until the summaries reach the backup's checkpoint
/// (`WaitForWalSummarization()`), but only when a summarizer is running.
fn wait_for_summarizer(pg: &PgCluster) {
    wait_until("the WAL summarizer to run", Duration::from_secs(60), || {
        pg.psql("SELECT summarizer_pid IS NOT NULL FROM pg_get_wal_summarizer_state()")
            .map(|r| (r == "t").then_some(()))
    })
    .unwrap();
}

/// `cairn backup --type KIND`; returns the backup's `info` entry and the command's stderr.
fn backup(cairn: &Cairn, kind: &str) -> (serde_json::Value, String) {
    let out = cairn.run("cairn", &["backup", "--type", kind]);
    assert!(
        out.status.success(),
        "backup --type {kind}: {}",
        describe(&out)
    );
    let info = cairn.info_json();
    let last = info["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    (last, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn restore_and_check(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    label: &str,
    expected: &str,
) {
    let target = dir.path().join(format!("restore-{label}"));
    support::restore(cairn, &target, &["--set", label, "--target", "immediate"]);
    let mut pg =
        support::start_restored(dir, primary, &target, false, support::Recovered::Consistent);
    assert_eq!(checksum(&pg), expected, "backup {label}");
    pg.stop().unwrap();
}

fn primary(dir: &TestDir, summarize: &str) -> (PgCluster, Cairn) {
    let install = PgInstall::find(17).unwrap();
    let mut pg = PgCluster::init(
        &install,
        dir,
        ClusterOptions::default().conf("summarize_wal", summarize),
    )
    .unwrap();
    let cairn = Cairn::new(dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    setup_schema(&pg);
    (pg, cairn)
}

#[test]
fn pg17_incr_from_wal_summaries_receives_only_changed_blocks_and_restores() {
    let dir = TestDir::new().unwrap();
    let (primary, cairn) = primary(&dir, "on");

    let (full, _) = backup(&cairn, "full");
    assert_eq!(full["incremental_mode"], "full", "{full:#}");
    let full_sum = checksum(&primary);

    let mut chain = vec![(full.clone(), full_sum)];
    for round in 1..=2 {
        workload(&primary, round);
        wait_for_summarizer(&primary);
        let (incr, err) = backup(&cairn, "incr");
        assert_eq!(incr["type"], "incr");
        assert_eq!(incr["parent"], chain.last().unwrap().0["label"]);
        assert_eq!(incr["incremental_mode"], "wal-summaries", "{incr:#}\n{err}");
        assert!(err.contains("WAL summaries"), "{err}");
        let received = incr["bytes_received"].as_u64().unwrap();
        let db_size = incr["db_size"].as_u64().unwrap();
        eprintln!(
            "incr {round}: received {received} bytes of a {db_size}-byte database ({:.1}%), added {} bytes",
            received as f64 * 100.0 / db_size as f64,
            incr["repo_added"]
        );
        assert!(
            received * 5 < db_size,
            "incr {round} received {received} bytes of a {db_size}-byte database"
        );
        // Every manifest is complete: the incr lists the database at full size.
        assert!(db_size >= full["db_size"].as_u64().unwrap());
        chain.push((incr, checksum(&primary)));
    }
    assert!(chain[0].1 != chain[1].1 && chain[1].1 != chain[2].1);

    // A diff on top of the full: the changed blocks of all three rounds, from the summaries.
    workload(&primary, 3);
    wait_for_summarizer(&primary);
    let (diff, err) = backup(&cairn, "diff");
    assert_eq!(diff["type"], "diff");
    assert_eq!(diff["parent"], full["label"]);
    assert_eq!(diff["incremental_mode"], "wal-summaries", "{diff:#}\n{err}");
    let (received, db_size) = (
        diff["bytes_received"].as_u64().unwrap(),
        diff["db_size"].as_u64().unwrap(),
    );
    // Three rounds of a few hundred pages each, FSM forks whole: about 20%, where the
    // server sending every file would be all of it.
    assert!(
        received * 3 < db_size,
        "diff received {received} bytes of a {db_size}-byte database"
    );
    // It spans three rounds of changes, so it receives more than the last incr did.
    assert!(received > chain[2].0["bytes_received"].as_u64().unwrap());
    let diff_sum = checksum(&primary);
    assert!(diff_sum != chain[2].1);
    chain.push((diff, diff_sum));

    // No writes happen between a backup's stop and its checksum, so each backup restored
    // to its consistency point has exactly that data.
    for (b, sum) in &chain {
        restore_and_check(&dir, &primary, &cairn, b["label"].as_str().unwrap(), sum);
    }
}

#[test]
fn pg17_without_summaries_for_the_range_falls_back_to_a_full_stream() {
    let dir = TestDir::new().unwrap();
    let (primary, cairn) = primary(&dir, "off");

    // summarize_wal off: content addressing, and the log says why.
    let (full, _) = backup(&cairn, "full");
    workload(&primary, 1);
    let (diff, err) = backup(&cairn, "diff");
    assert_eq!(diff["incremental_mode"], "content-addressed", "{diff:#}");
    assert!(err.contains("summarize_wal is off"), "{err}");
    let diff_sum = checksum(&primary);

    // Turned on now, the summaries start after the full: the server refuses the
    // incremental, and the backup is taken with every file sent instead.
    primary.psql("ALTER SYSTEM SET summarize_wal = on").unwrap();
    primary.reload().unwrap();
    workload(&primary, 2);
    wait_for_summarizer(&primary);
    let (diff2, err) = backup(&cairn, "diff");
    assert_eq!(diff2["parent"], full["label"]);
    assert_eq!(
        diff2["incremental_mode"], "content-addressed",
        "{diff2:#}\n{err}"
    );
    assert!(err.contains("refused an incremental backup"), "{err}");
    let diff2_sum = checksum(&primary);

    for (b, sum) in [(&diff, &diff_sum), (&diff2, &diff2_sum)] {
        restore_and_check(&dir, &primary, &cairn, b["label"].as_str().unwrap(), sum);
    }
}
