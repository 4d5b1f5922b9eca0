//! The backup lock end to end (PostgreSQL 15; decision 011), on a local repository and on
//! a real S3 server: two backups started together, one refused naming the holder and the
//! other restoring; a backup killed while holding the lock, taken over at once by the next
//! backup on the same host, with a warning naming the dead holder.

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cairn_testkit::{
    ClusterOptions, PgCluster, PgInstall, S3Server, TestDir, run_as_postgres, wait_until,
};
use support::{Cairn, Recovered, RepoSpec, describe, restore, start_archiving, table_checksum};

/// The generations of the stanza's backup lock, by number.
enum LockDir<'a> {
    Local(&'a Cairn),
    S3(&'a S3Server),
}

impl LockDir<'_> {
    fn generations(&self) -> Vec<u64> {
        let names: Vec<String> = match self {
            LockDir::Local(cairn) => {
                std::fs::read_dir(cairn.repo_dir.join("stanza/main/lock/backup"))
                    .map(|d| {
                        d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            }
            LockDir::S3(s3) => s3.list_keys("cairn-test/stanza/main/lock/backup/").unwrap(),
        };
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|n| n.rsplit('/').next()?.parse().ok())
            .collect();
        seqs.sort();
        seqs
    }
}

fn spawn_backup(cairn: &Cairn) -> Child {
    let mut cmd = Command::new(cairn.exe("cairn"));
    cmd.args(["backup", "--type", "full"])
        .env("CAIRN_CONFIG", &cairn.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_as_postgres(&mut cmd).unwrap();
    cmd.spawn().unwrap()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn the_backups(cairn: &Cairn) -> Vec<String> {
    cairn.info_json()["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap().to_string())
        .collect()
}

fn locks(dir: &TestDir, primary: &mut PgCluster, cairn: &Cairn, lock_dir: LockDir<'_>) {
    start_archiving(primary, cairn);
    cairn.cairn_ok(&["stanza-create"]);
    support::workload(primary, 3);
    let expected = table_checksum(primary);

    // Two backups at once: exactly one takes the lock, the other fails at once naming it.
    let (a, b) = (spawn_backup(cairn), spawn_backup(cairn));
    let pids = [a.id(), b.id()];
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let (winner, loser) = match codes.as_slice() {
        [Some(0), Some(11)] => (0, 1),
        [Some(11), Some(0)] => (1, 0),
        _ => panic!(
            "expected one success and one exit 11:\n{}\n---\n{}",
            describe(&outs[0]),
            describe(&outs[1])
        ),
    };
    let refused = stderr(&outs[loser]);
    eprintln!("the refused backup said:\n{refused}");
    let errors: Vec<&str> = refused
        .lines()
        .filter(|l| l.starts_with("cairn: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{refused}");
    for part in [
        "the backup lock of stanza 'main' is held by `cairn backup`".to_string(),
        format!("host {}", host_name()),
        format!("pid {}", pids[winner]),
    ] {
        assert!(errors[0].contains(&part), "{part:?} missing: {refused}");
    }
    assert!(
        refused
            .lines()
            .any(|l| l.starts_with("HINT: ") && l.contains("heartbeat")),
        "{refused}"
    );
    assert!(
        !stderr(&outs[winner]).contains("WARNING"),
        "{}",
        describe(&outs[winner])
    );
    let labels = the_backups(cairn);
    assert_eq!(labels.len(), 1, "{labels:?}");

    // The winner's backup restores, starts and has the data.
    let data = dir.path().join("restored");
    restore(
        cairn,
        &data,
        &["--set", &labels[0], "--target", "immediate"],
    );
    let mut pg = support::start_restored(dir, primary, &data, false, Recovered::Consistent);
    assert_eq!(table_checksum(&pg), expected);
    pg.stop().unwrap();

    // A backup killed while it holds the lock: the next one, on the same host, takes it
    // over at once (the holder's process is gone) and says so.
    let before = *lock_dir
        .generations()
        .last()
        .expect("the race left its generation");
    let mut killed = spawn_backup(cairn);
    let killed_pid = killed.id();
    wait_until(
        "the backup to hold the lock",
        Duration::from_secs(60),
        || {
            Ok::<_, String>(
                lock_dir
                    .generations()
                    .iter()
                    .any(|&s| s > before)
                    .then_some(()),
            )
        },
    )
    .unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let out = cairn.run("cairn", &["backup", "--type", "full"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    let warning = err
        .lines()
        .find(|l| l.starts_with("cairn: WARNING: took over the backup lock of stanza 'main'"))
        .unwrap_or_else(|| panic!("no takeover warning: {err}"));
    eprintln!("{warning}");
    for part in [
        format!("`cairn backup` on host {}", host_name()),
        format!("pid {killed_pid}"),
        "is gone".to_string(),
    ] {
        assert!(warning.contains(&part), "{part:?} missing: {warning}");
    }
    assert_eq!(the_backups(cairn).len(), 2);
    // One generation is left, released: the next backup takes it without a warning.
    assert_eq!(lock_dir.generations().len(), 1);
    let out = cairn.run("cairn", &["backup", "--type", "incr"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("WARNING"), "{}", describe(&out));
}

fn cluster(dir: &TestDir) -> PgCluster {
    let install = PgInstall::find(15).unwrap();
    PgCluster::init(&install, dir, ClusterOptions::default()).unwrap()
}

#[test]
fn pg15_backup_lock_on_a_local_repository() {
    let dir = TestDir::new().unwrap();
    let mut primary = cluster(&dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    locks(&dir, &mut primary, &cairn, LockDir::Local(&cairn));
}

#[test]
fn pg15_backup_lock_on_s3() {
    let dir = TestDir::new().unwrap();
    let s3 = S3Server::start().unwrap();
    let mut primary = cluster(&dir);
    let cairn = Cairn::new(
        &dir,
        &primary,
        RepoSpec::S3 {
            endpoint: &s3.endpoint(),
            bucket: s3.bucket(),
            access_key: s3.access_key_id(),
            secret_key: s3.secret_access_key(),
        },
    );
    locks(&dir, &mut primary, &cairn, LockDir::S3(&s3));
}
