//! A stanza's life across a major version: a PostgreSQL 15 cluster archives and backs up,
//! then a new PostgreSQL 17 cluster takes the stanza over with `stanza-upgrade`. Backups of
//! both generations restore (each with its own version's server, each with only its own
//! generation's WAL, although segment names repeat), `info` shows both generations, and
//! `stanza-delete` refuses a running cluster, then removes exactly the stanza's objects.

mod support;

use std::path::Path;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir};
use support::{
    Cairn, Recovered, RepoSpec, describe, restore, small_wal_cluster, start_archiving,
    start_restored, table_checksum, wait_archived, workload,
};

const STANZA: i32 = 9;
const REFUSED: i32 = 13;

/// Point the configuration's `[stanza.main]` at `to` instead of `from`.
fn repoint(cairn: &Cairn, from: &PgCluster, to: &PgCluster) {
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let text = text
        .replace(
            &format!("pg-data = \"{}\"", from.data_dir().display()),
            &format!("pg-data = \"{}\"", to.data_dir().display()),
        )
        .replace(
            &format!("pg-host = \"{}\"", from.socket_dir().display()),
            &format!("pg-host = \"{}\"", to.socket_dir().display()),
        )
        .replace(
            &format!("pg-port = {}", from.port()),
            &format!("pg-port = {}", to.port()),
        );
    std::fs::write(&cairn.config, text).unwrap();
}

fn objects(root: &Path, under: &str) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(&root.join(under), root, &mut out);
    out.sort();
    out
}

#[test]
fn a_stanza_outlives_a_major_version_and_is_deleted_whole() {
    let dir = TestDir::new().unwrap();
    let mut old = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &old, RepoSpec::Local);
    cairn.cairn_ok(&["stanza-create"]);
    start_archiving(&mut old, &cairn);
    workload(&old, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let last = workload(&old, 3);
    wait_archived(&old, &last);
    let old_sum = table_checksum(&old);
    old.stop().unwrap();

    // A second stanza in the same repository, which stanza-delete must leave alone.
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    std::fs::write(
        &cairn.config,
        format!(
            "{text}\n[stanza.other]\npg-data = \"{}\"\n",
            old.data_dir().display()
        ),
    )
    .unwrap();
    cairn.cairn_ok(&["--stanza", "other", "stanza-create"]);

    // PostgreSQL 17 takes the stanza over: create refuses it, upgrade records generation 2.
    let mut new = PgCluster::init(
        &PgInstall::find(17).unwrap(),
        &dir,
        ClusterOptions {
            wal_segsize_mb: Some(1),
            ..ClusterOptions::new().name("pg17")
        },
    )
    .unwrap();
    repoint(&cairn, &old, &new);
    new.start().unwrap();
    let out = cairn.run("cairn", &["--stanza", "main", "stanza-create"]);
    assert_eq!(out.status.code(), Some(STANZA), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stanza-upgrade"));
    new.stop().unwrap();
    cairn.cairn_ok(&["--stanza", "main", "stanza-upgrade"]);
    // Two stanzas configured now: archive_command names its own.
    new.set_conf("archive_mode", "on").unwrap();
    new.set_conf(
        "archive_command",
        &format!(
            "'CAIRN_STANZA=main {}'",
            cairn.archive_command().replace('\'', "''")
        ),
    )
    .unwrap();
    new.start().unwrap();
    workload(&new, 1);
    cairn.cairn_ok(&["--stanza", "main", "backup", "--type", "full"]);
    let last = workload(&new, 2);
    wait_archived(&new, &last);
    let new_sum = table_checksum(&new);

    let info = cairn.info_json();
    let main = info["stanzas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "main")
        .unwrap()
        .clone();
    let dbs = main["db"].as_array().unwrap();
    assert_eq!(dbs.len(), 2, "{main:#}");
    assert_eq!(
        (dbs[0]["pg_version"].as_u64(), dbs[0]["current"].as_bool()),
        (Some(15), Some(false))
    );
    assert_eq!(
        (dbs[1]["pg_version"].as_u64(), dbs[1]["current"].as_bool()),
        (Some(17), Some(true))
    );
    let backups = main["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{main:#}");
    assert_eq!(backups[0]["db_id"], 1);
    assert_eq!(backups[1]["db_id"], 2);
    // Both generations archived timeline 1 from segment 1 on: the names repeat.
    let archive = main["archive"].as_array().unwrap();
    assert!(archive.iter().any(|t| t["db_id"] == 1) && archive.iter().any(|t| t["db_id"] == 2));

    // The old generation's backup restores with PostgreSQL 15 and reaches the end of its
    // own archive; the restore_command asks for generation 1's WAL only.
    let old_label = backups[0]["label"].as_str().unwrap().to_string();
    let data_old = dir.path().join("restored-15");
    restore(
        &cairn,
        &data_old,
        &[
            "--stanza",
            "main",
            "--set",
            &old_label,
            "--target-action",
            "promote",
        ],
    );
    let conf = std::fs::read_to_string(data_old.join("postgresql.auto.conf")).unwrap();
    assert!(conf.contains("--db-id 1"), "{conf}");
    let pg = start_restored(&dir, &old, &data_old, false, Recovered::Promoted);
    assert_eq!(table_checksum(&pg), old_sum);
    drop(pg);

    // The new generation's latest backup restores with PostgreSQL 17.
    let data_new = dir.path().join("restored-17");
    restore(
        &cairn,
        &data_new,
        &["--stanza", "main", "--target-action", "promote"],
    );
    let conf = std::fs::read_to_string(data_new.join("postgresql.auto.conf")).unwrap();
    assert!(!conf.contains("--db-id"), "{conf}");
    let pg = start_restored(&dir, &new, &data_new, false, Recovered::Promoted);
    assert_eq!(table_checksum(&pg), new_sum);
    drop(pg);

    // stanza-delete refuses while the stanza's cluster runs, then removes the stanza's
    // objects and nothing else.
    let out = cairn.run("cairn", &["--stanza", "main", "stanza-delete", "--force"]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
    assert!(!objects(&cairn.repo_dir, "stanza/main").is_empty());
    new.stop().unwrap();
    let keyring = objects(&cairn.repo_dir, "keyring");
    let other = objects(&cairn.repo_dir, "stanza/other");
    assert!(!other.is_empty());
    cairn.cairn_ok(&["--stanza", "main", "stanza-delete", "--force"]);
    assert!(objects(&cairn.repo_dir, "stanza/main").is_empty());
    assert_eq!(objects(&cairn.repo_dir, "keyring"), keyring);
    assert_eq!(objects(&cairn.repo_dir, "stanza/other"), other);
    let out = cairn.run("cairn", &["--stanza", "other", "info", "--output", "json"]);
    assert!(out.status.success(), "{}", describe(&out));
}
