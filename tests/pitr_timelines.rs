//! Timelines and --delta (PostgreSQL 15): restore to a point, promote, write more and
//! archive it as timeline 2; then restore to a time on timeline 2, and to a time on
//! timeline 1 after the branch point with --target-timeline 1. Both land exactly. A
//! timeline that does not descend from the backup is refused, naming one that does. Then a
//! modified data directory is repaired with --delta to exactly the files of a fresh
//! restore, rewriting less than it; and --delta refuses a directory a server runs on.

mod support;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use cairn_testkit::{PgCluster, TestDir, wait_until};
use support::{Cairn, RepoSpec, describe, refused, start_archiving};

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
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
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
    // A backup of the promoted cluster, on timeline 2.
    let (port, socket, data) = (
        tl2.port().to_string(),
        tl2.socket_dir().display().to_string(),
        tl2.data_dir().display().to_string(),
    );
    let out = cairn.run_env(
        "cairn",
        &["backup", "--type", "full"],
        &[
            ("CAIRN_STANZA_MAIN_PG_HOST", &socket),
            ("CAIRN_STANZA_MAIN_PG_PORT", &port),
            ("CAIRN_STANZA_MAIN_PG_DATA", &data),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    tl2.stop().unwrap();
    let info = cairn.info_json();
    let tls: Vec<u64> = info["stanzas"][0]["archive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert!(tls.contains(&1) && tls.contains(&2), "{info:#}");
    let backups = info["stanzas"][0]["backups"].as_array().unwrap();
    let (b1, b2) = (
        backups[0]["label"].as_str().unwrap().to_string(),
        backups[1]["label"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        (
            backups[0]["timeline"].as_u64(),
            backups[1]["timeline"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Timeline 1 does not descend from the timeline-2 backup: refused, naming its own.
    let (error, hint) = refused(
        &cairn,
        &dir,
        &[
            "--set",
            &b2,
            "--target-timeline",
            "1",
            "--target",
            "immediate",
        ],
        12,
    );
    assert!(
        error.contains(&format!("timeline 1 does not descend from backup {b2}")),
        "{error}"
    );
    assert_eq!(
        hint,
        format!("HINT: backup {b2} can reach timeline 2: e.g. --target-timeline 2")
    );
    // A timeline nothing descends to (none was archived): the ones a backup reaches.
    let (error, hint) = refused(&cairn, &dir, &["--target-timeline", "3"], 12);
    assert!(error.contains("no backup is on timeline 3"), "{error}");
    assert_eq!(
        hint,
        "HINT: a backup can reach timelines 1, 2: e.g. --target-timeline 2"
    );

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
    let delta_args = ["--set", b1.as_str(), "--target", "immediate"];
    let out = support::restore(&cairn, &data, &delta_args);
    let full_written = written_mib(&String::from_utf8_lossy(&out.stdout));
    let fresh = fingerprint(&data);
    let rel = primary.psql("SELECT pg_relation_filepath('r')").unwrap();
    let mut f = std::fs::read(data.join(&rel)).unwrap();
    f[100] ^= 0xff;
    std::fs::write(data.join(&rel), f).unwrap();
    std::fs::write(data.join("base/extra_file"), b"not from the backup").unwrap();
    cairn_testkit::chown_to_postgres(&data.join("base/extra_file")).unwrap();
    std::fs::remove_file(data.join("PG_VERSION")).unwrap();
    let mut with_delta = delta_args.to_vec();
    with_delta.push("--delta");
    let mut args = vec!["restore", "--pg-data", data.to_str().unwrap()];
    args.extend_from_slice(&with_delta);
    let out = cairn.run("cairn", &args);
    // PG_VERSION is what tells a data directory: without it delta refuses, writing nothing.
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
    assert!(data.join("base/extra_file").exists());
    std::fs::write(data.join("PG_VERSION"), b"15\n").unwrap();
    cairn_testkit::chown_to_postgres(&data.join("PG_VERSION")).unwrap();
    std::fs::remove_file(data.join("global/pg_filenode.map")).unwrap();
    assert_ne!(fingerprint(&data), fresh);
    let out = support::restore(&cairn, &data, &with_delta);
    let delta_written = written_mib(&String::from_utf8_lossy(&out.stdout));
    assert!(
        delta_written < full_written,
        "delta wrote {delta_written} MiB, full {full_written} MiB"
    );
    // Every file and directory, with its mode and content, as the fresh restore left it.
    let repaired = fingerprint(&data);
    assert_eq!(repaired.len(), fresh.len());
    for (path, print) in &fresh {
        assert_eq!(repaired.get(path), Some(print), "{path}");
    }
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

    // While that server runs on the directory, --delta refuses, touching nothing.
    let pid = pg.postmaster_pid().unwrap();
    let out = cairn.run("cairn", &args);
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    assert!(
        lines[0].starts_with("cairn: ERROR: ") && lines[0].contains("postmaster.pid"),
        "{}",
        describe(&out)
    );
    assert!(
        lines[1].starts_with(&format!(
            "HINT: stop the server (pg_ctl -D {} stop)",
            data.display()
        )),
        "{}",
        describe(&out)
    );
    assert!(!data.join(cairn_restore_marker()).exists());
    assert_eq!(pg.postmaster_pid(), Some(pid));
    assert_eq!(contents(&pg), "a:50");
    pg.stop().unwrap();
}

/// What `cairn restore` leaves in a directory while it writes (cairn_restore::INCOMPLETE_MARKER).
fn cairn_restore_marker() -> &'static str {
    "cairn-restore.incomplete"
}

/// Every entry under `root`: relative path -> (kind, mode, size, content hash).
fn fingerprint(root: &Path) -> BTreeMap<String, (char, u32, u64, u64)> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, u64, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let mode = md.permissions().mode() & 0o7777;
        if md.is_dir() {
            out.insert(rel, ('d', mode, 0, 0));
            walk(root, &p, out);
        } else if md.is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            out.insert(
                rel,
                ('l', 0, 0, hash(target.as_os_str().as_encoded_bytes())),
            );
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.insert(rel, ('f', mode, bytes.len() as u64, hash(&bytes)));
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The size a restore reports as written, in MiB (`12.3 MiB written`, `8.5 KiB written`).
fn written_mib(stdout: &str) -> f64 {
    let i = stdout
        .find(" written from")
        .unwrap_or_else(|| panic!("no 'written from' in {stdout}"));
    let mut words = stdout[..i].rsplit(' ');
    let unit = words.next().unwrap();
    let value: f64 = words.next().unwrap().parse().unwrap();
    let scale = match unit {
        "byte" | "bytes" => 1.0 / 1024.0 / 1024.0,
        "KiB" => 1.0 / 1024.0,
        "MiB" => 1.0,
        "GiB" => 1024.0,
        other => panic!("unit {other} in {stdout}"),
    };
    value * scale
}
