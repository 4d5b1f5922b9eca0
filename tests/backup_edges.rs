//! Base backups beyond the happy path (PostgreSQL 15): a tablespace outside the data
//! directory restored to its own path and relocated; a backup killed mid-stream is never
//! listed and the next run reuses what it stored; connection failures and WAL that never
//! reaches the archive are one clear line with a hint.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir, run_as_postgres, wait_until};
use support::{Cairn, RepoSpec, describe, start_archiving};

fn checksum(pg: &PgCluster) -> String {
    pg.psql("SELECT count(*) || ':' || md5(string_agg(md5(b), ',' ORDER BY g)) FROM big")
        .unwrap()
}

fn start_restored(dir: &TestDir, primary: &PgCluster, data: &Path) -> PgCluster {
    support::start_restored(dir, primary, data, false, support::Recovered::Consistent)
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let p = e.path();
        total += if p.is_dir() {
            du(&p)
        } else {
            e.metadata().map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

/// Bytes of the packs under `stanza` that have an index object.
fn indexed_packs(stanza: &Path) -> u64 {
    let indexed: Vec<String> = std::fs::read_dir(stanza.join("pack-index"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut total = 0;
    for shard in std::fs::read_dir(stanza.join("pack"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for pack in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if indexed.contains(&pack.file_name().to_string_lossy().into_owned()) {
                total += pack.metadata().unwrap().len();
            }
        }
    }
    total
}

#[test]
fn pg15_tablespaces_and_an_interrupted_backup() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut primary = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    let ts_dir = dir.subdir("ts1").unwrap();
    primary
        .psql(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}'",
            ts_dir.display()
        ))
        .unwrap();
    // ~80 MiB that does not compress, in the tablespace: more than one 32 MiB pack.
    primary
        .psql(
            "CREATE EXTENSION pgcrypto; \
             CREATE TABLE big TABLESPACE ts1 AS SELECT g, encode(gen_random_bytes(1000), 'base64') AS b FROM generate_series(1, 60000) g",
        )
        .unwrap();
    let oid = primary
        .psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
        .unwrap();
    let expected = checksum(&primary);

    // Kill a backup once it has stored its first pack.
    let mut child = Command::new(cairn.exe("cairn"));
    child
        .args(["backup", "--type", "full"])
        .env("CAIRN_CONFIG", &cairn.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as_postgres(&mut child).unwrap();
    let mut child = child.spawn().unwrap();
    let index_dir = cairn.repo_dir.join("stanza/main/pack-index");
    wait_until(
        "the first pack to be stored",
        Duration::from_secs(120),
        || {
            Ok::<_, std::io::Error>(
                std::fs::read_dir(&index_dir)
                    .ok()
                    .and_then(|mut d| {
                        // A pack index is staged as a `.tmp.*` file beside its final name.
                        d.find(|e| {
                            e.as_ref()
                                .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        })
                    })
                    .map(|_| ()),
            )
        },
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Only packs with an index are found again: what the killed run left reusable.
    let indexed_by_killed = indexed_packs(&cairn.repo_dir.join("stanza/main"));
    assert!(indexed_by_killed > 0);
    let info = cairn.info_json();
    assert_eq!(
        info["stanzas"][0]["backups"].as_array().unwrap().len(),
        0,
        "a killed backup is not listed: {info:#}"
    );

    // The next run succeeds and stores less than the whole backup: the killed run's
    // chunks are reused. repo_size is what this backup's chunks take, i.e. what a full of
    // the same data stores in an empty repository.
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let info = cairn.info_json();
    let b = &info["stanzas"][0]["backups"][0];
    let (added, size, reused) = (
        b["repo_added"].as_u64().unwrap(),
        b["repo_size"].as_u64().unwrap(),
        b["repo_reused"].as_u64().unwrap(),
    );
    eprintln!(
        "after the killed run: added {added}, reused {reused} of {size}; killed run's indexed packs {indexed_by_killed}"
    );
    assert_eq!(added + reused, size, "{b:#}");
    assert!(
        reused >= indexed_by_killed / 2 && added + indexed_by_killed / 2 <= size,
        "second run added {added} of {size}, reused {reused}; the killed run left {indexed_by_killed} in indexed packs"
    );
    // Every chunk it references is stored once: the packs hold at least that much.
    assert!(size <= du(&cairn.repo_dir.join("stanza/main/pack")));
    let label = b["label"].as_str().unwrap().to_string();

    // Relocated with --tablespace-map while the primary still uses the original.
    let moved = dir.path().join("ts1-moved");
    let data = dir.path().join("restore-moved");
    let map = format!("{oid}={}", moved.display());
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data.to_str().unwrap(),
            "--set",
            &label,
            "--target",
            "immediate",
            "--tablespace-map",
            &map,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        std::fs::read_link(data.join("pg_tblspc").join(&oid)).unwrap(),
        moved
    );
    let mut pg = start_restored(&dir, &primary, &data);
    assert_eq!(checksum(&pg), expected);
    pg.stop().unwrap();

    // Restoring to the original location is refused while it holds the primary's files...
    let data2 = dir.path().join("restore-original");
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data2.to_str().unwrap(),
            "--target",
            "immediate",
        ],
    );
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
    assert!(!data2.exists());
    // ...and works once the primary is gone.
    primary.stop().unwrap();
    std::fs::remove_dir_all(&ts_dir).unwrap();
    let out = cairn.run(
        "cairn",
        &[
            "restore",
            "--pg-data",
            data2.to_str().unwrap(),
            "--target",
            "immediate",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let mut pg = start_restored(&dir, &primary, &data2);
    assert_eq!(checksum(&pg), expected);
    pg.stop().unwrap();
}

#[test]
fn pg15_backup_connection_failures_are_one_clear_line() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut primary = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    primary.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE backup LOGIN REPLICATION PASSWORD 'right' IN ROLE pg_read_all_settings; CREATE ROLE plain LOGIN PASSWORD 'right'").unwrap();
    let hba = primary.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host replication backup 127.0.0.1/32 scram-sha-256\nhost replication plain 127.0.0.1/32 scram-sha-256\n{old}")).unwrap();
    primary.reload().unwrap();
    let tcp = [("CAIRN_STANZA_MAIN_PG_HOST", "127.0.0.1")];
    let one_line = |out: &std::process::Output, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("cairn: ERROR"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", describe(out));
        assert!(lines[0].contains(needle), "{}", describe(out));
        assert!(err.contains("HINT:"), "{}", describe(out));
    };

    let out = cairn.run_env(
        "cairn",
        &["backup"],
        &[
            tcp[0],
            ("CAIRN_STANZA_MAIN_PG_USER", "backup"),
            ("CAIRN_STANZA_MAIN_PG_PASSWORD", "wrong"),
        ],
    );
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    one_line(&out, "password authentication failed");

    let out = cairn.run_env(
        "cairn",
        &["backup"],
        &[
            tcp[0],
            ("CAIRN_STANZA_MAIN_PG_USER", "plain"),
            ("CAIRN_STANZA_MAIN_PG_PASSWORD", "right"),
        ],
    );
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    one_line(&out, "replication");

    let out = cairn.run_env(
        "cairn",
        &["backup"],
        &[
            tcp[0],
            ("CAIRN_STANZA_MAIN_PG_USER", "backup"),
            ("CAIRN_STANZA_MAIN_PG_PASSWORD", "right"),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));

    // archive_command failing (cairn-archive-push with a configuration that does not
    // exist): the backup's WAL never arrives, so after --archive-timeout it fails as
    // archive-timeout (16, decision 004) and is not listed.
    let broken = cairn.archive_command().replace(
        &format!("CAIRN_CONFIG={}", cairn.config.display()),
        "CAIRN_CONFIG=/nonexistent/cairn.toml",
    );
    assert_ne!(broken, cairn.archive_command());
    // One statement each: ALTER SYSTEM cannot run in a multi-statement transaction.
    primary
        .psql(&format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            broken.replace('\'', "''")
        ))
        .unwrap();
    primary.reload().unwrap();
    let failed = |pg: &PgCluster| {
        pg.psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = failed(&primary);
    wait_until("archive_command to fail", Duration::from_secs(60), || {
        // A new segment to archive each time, in case the archiver had not reloaded yet.
        primary.psql("SELECT pg_current_xact_id()")?;
        primary.psql("SELECT pg_switch_wal()")?;
        Ok::<_, cairn_testkit::Error>((failed(&primary) > before).then_some(()))
    })
    .unwrap();
    let out = cairn.run("cairn", &["backup", "--archive-timeout", "2"]);
    assert_eq!(out.status.code(), Some(16), "{}", describe(&out));
    one_line(&out, "was not archived within 2s");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HINT: check archive_command"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        cairn.info_json()["stanzas"][0]["backups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // cairn check fails with the same code, at once: pg_stat_archiver says the last
    // attempt failed (decision 021), so it does not wait out --archive-timeout.
    let out = cairn.run("cairn", &["check", "--archive-timeout", "300"]);
    assert_eq!(out.status.code(), Some(16), "{}", describe(&out));
    one_line(
        &out,
        "archive_command is failing: PostgreSQL could not archive ",
    );
    primary
        .psql(&format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            cairn.archive_command().replace('\'', "''")
        ))
        .unwrap();
    primary.reload().unwrap();

    primary.stop().unwrap();
    let out = cairn.run("cairn", &["backup"]);
    assert_eq!(out.status.code(), Some(10), "{}", describe(&out));
    one_line(&out, "cannot connect");
    // Nothing but the one good backup is listed.
    assert_eq!(
        cairn.info_json()["stanzas"][0]["backups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
