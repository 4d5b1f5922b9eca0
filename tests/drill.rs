//! `cairn drill` end to end against PostgreSQL 15 (and a healthy drill on 17), run as the
//! `postgres` user with `pg-bin` pointing at the test's server binaries:
//! - to the end of the archive it passes, runs `--sql`, records the outcome (`info` shows
//!   it, text and JSON), leaves no PostgreSQL running, no scratch directory and no new
//!   timeline in the repository; `--keep --scratch DIR` keeps the stopped copy;
//! - `--sql` returning no row fails (exit 19) naming the query;
//! - `--random` pauses at a moment inside a recoverable window, and the last commit it
//!   replayed lies inside that window;
//! - with a WAL segment deleted from the repository it fails naming that segment.

mod support;

use std::path::{Path, PathBuf};

use cairn_pgformat::PgTimestamp;
use cairn_testkit::{PgCluster, TestDir};
use serde_json::Value;
use support::{
    Cairn, RepoSpec, describe, next_segment, segment_of, small_wal_cluster, start_archiving,
    wait_archived, workload,
};

const SEG: u64 = 1 << 20;
/// `ErrorKind::DrillFailed`.
const DRILL_FAILED: i32 = 19;

/// A primary archiving into a fresh repository, with a full backup and WAL after it;
/// `pg-bin` set to the cluster's binaries (the postgres user's PATH has none).
fn setup(major: u32, dir: &TestDir) -> (PgCluster, Cairn) {
    let mut primary = small_wal_cluster(major, dir);
    let cairn = Cairn::new(dir, &primary, RepoSpec::Local);
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let text = text.replacen(
        "[stanza.main]\n",
        &format!(
            "[stanza.main]\npg-bin = \"{}\"\n",
            primary.install().bin_dir().display()
        ),
        1,
    );
    std::fs::write(&cairn.config, text).unwrap();
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    workload(&primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let last = workload(&primary, 3);
    wait_archived(&primary, &last);
    (primary, cairn)
}

fn spool_drills(dir: &TestDir) -> PathBuf {
    dir.path().join("spool").join("drill")
}

/// Entries left under `<spool>/drill` (the directory itself may stay).
fn scratch_left(dir: &TestDir) -> Vec<PathBuf> {
    match std::fs::read_dir(spool_drills(dir)) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Processes whose command line mentions `path` (a drill's postmaster has `-D <path>/...`).
fn processes_under(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

/// Timeline directories and history files under the repository's WAL of stanza main.
fn wal_timelines(repo: &Path) -> (Vec<String>, Vec<String>) {
    let mut tlis = Vec::new();
    let mut history = Vec::new();
    let wal = repo.join("stanza/main/wal");
    for db in std::fs::read_dir(&wal).unwrap().flatten() {
        for tli in std::fs::read_dir(db.path()).unwrap().flatten() {
            tlis.push(tli.file_name().to_string_lossy().into_owned());
            for f in std::fs::read_dir(tli.path()).unwrap().flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.contains(".history") {
                    history.push(n);
                }
            }
        }
    }
    tlis.sort();
    tlis.dedup();
    (tlis, history)
}

fn drill(cairn: &Cairn, args: &[&str]) -> std::process::Output {
    let mut all = vec!["drill"];
    all.extend_from_slice(args);
    cairn.run("cairn", &all)
}

fn drill_json(cairn: &Cairn, args: &[&str]) -> (std::process::Output, Value) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let out = drill(cairn, &all);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("drill JSON does not parse ({e}): {}", describe(&out)));
    (out, doc)
}

fn ts(v: &Value) -> PgTimestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e:?}"))
}

/// No PostgreSQL left running from the spool, no scratch directory left.
fn assert_cleaned_up(dir: &TestDir) {
    let procs = processes_under(&spool_drills(dir));
    assert!(procs.is_empty(), "a drill server still runs: {procs:?}");
    assert_eq!(scratch_left(dir), Vec::<PathBuf>::new(), "scratch left");
}

#[test]
fn drill_pg15() {
    let dir = TestDir::new().unwrap();
    let (primary, cairn) = setup(15, &dir);

    // PostgreSQL will not run as root, so neither does a drill (the tests run as root, and
    // cairn as postgres, wherever they can).
    if cairn_testkit::is_root() {
        let out = std::process::Command::new(cairn.exe("cairn"))
            .arg("drill")
            .env("CAIRN_CONFIG", &cairn.config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refuses to run as root") && err.contains("HINT: run it as the user"),
            "{err}"
        );
        assert_eq!(scratch_left(&dir), Vec::<PathBuf>::new());
    }

    let info = cairn.info_json();
    assert_eq!(
        info["stanzas"][0]["last_drill"],
        Value::Null,
        "a refusal is not recorded"
    );
    assert!(cairn.cairn_ok(&["info"]).contains("last drill: never"));

    // Healthy, to the end of the archive, with a query that finds the workload's rows.
    let sql = "SELECT id FROM t LIMIT 3";
    let out = drill(&cairn, &["--sql", sql]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("drill of stanza main: succeeded"), "{text}");
    assert!(
        text.contains("ended at the end of the archive and promoted"),
        "{text}"
    );
    assert!(
        text.contains(&format!("--sql returned 3 row(s): {sql}")),
        "{text}"
    );
    assert_cleaned_up(&dir);
    let d = &cairn.info_json()["stanzas"][0]["last_drill"];
    assert_eq!(d["status"], "succeeded", "{d:#}");
    assert_eq!(d["target"], "end-of-archive", "{d:#}");
    assert_eq!(d["reached"]["end"], "promoted", "{d:#}");
    assert_eq!(d["pg_version"], 15);
    assert_eq!(d["sql_rows"], 3);
    assert!(d["relations"].as_i64().unwrap() > 100, "{d:#}");
    assert_eq!(d["kept"], Value::Null);
    // It replayed the primary's last commit (the workload's last insert).
    let last_commit = primary
        .psql("SELECT to_char(max(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM t")
        .unwrap();
    assert!(
        ts(&d["reached"]["last_commit"]) >= last_commit.parse::<PgTimestamp>().unwrap(),
        "{d:#} vs the primary's last row at {last_commit}"
    );
    let info_text = cairn.cairn_ok(&["info"]);
    assert!(
        info_text.contains("last drill: succeeded at ") && info_text.contains("end of the archive"),
        "{info_text}"
    );

    // --keep with --scratch: the stopped copy stays, with instructions to start it.
    let kept = dir.path().join("kept");
    let out = drill(&cairn, &["--keep", "--scratch", kept.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connect: psql -h "), "{text}");
    assert!(kept.join("data/PG_VERSION").is_file());
    assert!(kept.join("server.log").is_file());
    assert!(
        !kept.join("data/postmaster.pid").exists(),
        "the kept copy is stopped"
    );
    assert!(processes_under(&kept).is_empty());
    assert_eq!(
        cairn.info_json()["stanzas"][0]["last_drill"]["kept"],
        kept.to_str().unwrap()
    );
    std::fs::remove_dir_all(&kept).unwrap();

    // A --sql query that returns nothing fails the drill and is named.
    let empty = "SELECT id FROM t WHERE id < 0";
    let out = drill(&cairn, &["--sql", empty]);
    assert_eq!(out.status.code(), Some(DRILL_FAILED), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cairn: ERROR: the --sql query returned no row: {empty}"
        )),
        "{err}"
    );
    assert_cleaned_up(&dir);
    let d = &cairn.info_json()["stanzas"][0]["last_drill"];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["error_kind"], "drill-failed", "{d:#}");
    assert!(d["error"].as_str().unwrap().contains(empty), "{d:#}");
    assert!(cairn.cairn_ok(&["info"]).contains("last drill: FAILED at "));

    // --random: paused at a drawn moment inside a window; the last commit replayed is in it.
    let (out, d) = drill_json(&cairn, &["--random", "--sql", "SELECT 1 FROM t LIMIT 1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(d["random"], true, "{d:#}");
    assert_eq!(d["target"], "time", "{d:#}");
    assert_eq!(d["reached"]["end"], "paused", "{d:#}");
    let w = &d["window"];
    let (from, to, target) = (ts(&w["from"]), ts(&w["to"]), ts(&d["target_time"]));
    let reached = ts(&d["reached"]["last_commit"]);
    assert!(from < target && target <= to, "{d:#}");
    assert!(
        from < reached && reached <= target,
        "the last commit replayed is inside the window, not after the target: {d:#}"
    );
    let windows = cairn.info_json()["stanzas"][0]["recovery_windows"].clone();
    assert!(
        windows
            .as_array()
            .unwrap()
            .iter()
            .any(|iw| iw["backup"] == w["backup"] && ts(&iw["from"]) == from),
        "the window is one info lists: {windows:#} {w:#}"
    );
    assert_cleaned_up(&dir);

    // The drills made no timeline in the repository: each promoted copy kept archive_mode off.
    let (tlis, history) = wal_timelines(&cairn.repo_dir);
    assert_eq!(tlis, vec!["00000001".to_string()], "{history:?}");
    assert!(history.is_empty(), "{history:?}");
    let archive = &cairn.info_json()["stanzas"][0]["archive"];
    assert_eq!(archive.as_array().unwrap().len(), 1, "{archive:#}");

    // A WAL segment deleted after the backup: the drill fails naming it.
    let backup = &cairn.info_json()["stanzas"][0]["backups"][0];
    let stop = segment_of(backup["stop"]["lsn"].as_str().unwrap(), 1, SEG);
    let gone = next_segment(&stop, SEG);
    let key = support::find_file(&cairn.repo_dir.join("stanza/main/wal"), &gone)
        .unwrap_or_else(|| panic!("{gone} is not in the repository"));
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let out = drill(&cairn, &[]);
    assert_eq!(out.status.code(), Some(DRILL_FAILED), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("cairn: ERROR: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&gone), "names the missing segment: {err}");
    assert!(err.contains("HINT: "), "{err}");
    assert_cleaned_up(&dir);
    let d = &cairn.info_json()["stanzas"][0]["last_drill"];
    assert_eq!(d["status"], "failed");
    assert!(d["error"].as_str().unwrap().contains(&gone), "{d:#}");
    std::fs::write(&key, saved).unwrap();
    cairn_testkit::chown_to_postgres(&key).unwrap();

    // And with it back, the drill passes again.
    let out = drill(&cairn, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_cleaned_up(&dir);
}

#[test]
fn drill_pg17() {
    let dir = TestDir::new().unwrap();
    let (_primary, cairn) = setup(17, &dir);
    let (out, d) = drill_json(&cairn, &["--sql", "SELECT 1 FROM t LIMIT 1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["pg_version"], 17);
    assert_eq!(d["reached"]["end"], "promoted");
    assert_cleaned_up(&dir);
    let (tlis, _) = wal_timelines(&cairn.repo_dir);
    assert_eq!(tlis, vec!["00000001".to_string()]);
}
