//! Expire running while a backup and archive-push run (PostgreSQL 15), on a local
//! repository and on the S3 server. The backup is held after it has stored its packs and
//! before its manifest (archiving is held, so it waits for its WAL): expire condemns those
//! packs (no manifest references them yet) but does not delete them while that backup runs,
//! even after the grace; archiving resumes while expire runs again; the backup finishes and
//! restores, and the next expire takes its packs back.

#[path = "expire_support/mod.rs"]
mod expire_support;
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_testkit::{PgCluster, S3Server, TestDir, run_as_postgres, wait_until};
use expire_support::{Store, add_config, backup, labels, restored_checksum, verify_clean};
use support::{describe, small_wal_cluster, table_checksum, workload};

fn packs(store: Store<'_>, cairn: &support::Cairn) -> Vec<String> {
    store.keys(cairn, "stanza/main/pack/")
}

fn basebackup_running(pg: &PgCluster) -> bool {
    pg.psql("SELECT count(*) FROM pg_stat_progress_basebackup")
        .map(|n| n != "0")
        .unwrap_or(true)
}

fn concurrent(store: Store<'_>) {
    let dir = TestDir::with_prefix(&format!("expire-concurrent-{}", store.name())).unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = store.cairn(&dir, &pg);
    add_config(&cairn, "[retention]\nfull = 1\ngc-grace = \"1s\"\n");
    // Archiving waits while HOLD exists (the archiver loops inside archive_command).
    let hold = dir.path().join("HOLD");
    let command = format!(
        "while [ -e {} ]; do sleep 0.05; done; {}",
        hold.display(),
        cairn.archive_command()
    );
    pg.set_conf("archive_mode", "on").unwrap();
    pg.set_conf(
        "archive_command",
        &format!("'{}'", command.replace('\'', "''")),
    )
    .unwrap();
    pg.start().unwrap();
    cairn.cairn_ok(&["stanza-create"]);
    workload(&pg, 3);
    let (f1, _) = backup(&cairn, &["--type", "full"]);
    workload(&pg, 3);
    let (f2, _) = backup(&cairn, &["--type", "full"]);
    let last = workload(&pg, 2);
    support::wait_archived(&pg, &last);
    let sum = table_checksum(&pg);

    // Hold archiving, then start a backup: it stores its packs and waits for its WAL.
    std::fs::write(&hold, b"").unwrap();
    let before = packs(store, &cairn);
    let mut cmd = Command::new(cairn.exe("cairn"));
    cmd.args(["backup", "--type", "full"])
        .env("CAIRN_CONFIG", &cairn.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_as_postgres(&mut cmd).unwrap();
    let running = cmd.spawn().unwrap();
    wait_until(
        "the backup to store its packs and wait for its WAL",
        Duration::from_secs(120),
        || {
            let new = packs(store, &cairn)
                .iter()
                .filter(|p| !before.contains(p))
                .count();
            Ok::<_, String>((new > 0 && !basebackup_running(&pg)).then_some(()))
        },
    )
    .unwrap();

    // Expire 1: drops f1, condemns what nothing references, the backup's new packs too.
    let out = cairn.cairn_ok(&["expire"]);
    eprintln!("expire while the backup waits:\n{out}");
    assert!(out.contains(&format!("removing full backup {f1}")), "{out}");
    assert!(out.contains("condemn "), "{out}");
    let new_packs: Vec<String> = packs(store, &cairn)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    // Expire 2, once the grace has passed: the running backup may use them; nothing goes.
    let out = wait_until("the grace to pass", Duration::from_secs(60), || {
        let out = cairn.cairn_ok(&["expire"]);
        Ok::<_, String>(out.contains("may use it").then_some(out))
    })
    .unwrap();
    eprintln!("expire after the grace, the backup still running:\n{out}");
    assert!(out.contains("), 0 packs deleted"), "{out}");
    let now = packs(store, &cairn);
    for p in &new_packs {
        assert!(now.contains(p), "{p} of the running backup was deleted");
    }

    // Archiving resumes (archive-push runs), WAL keeps coming, and expire runs meanwhile.
    std::fs::remove_file(&hold).unwrap();
    let (writer, during) = std::thread::scope(|s| {
        let w = s.spawn(|| workload(&pg, 4));
        let out = cairn.run("cairn", &["expire"]);
        assert!(out.status.success(), "{}", describe(&out));
        (
            w.join().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    });
    eprintln!("expire while archiving resumes:\n{during}");
    let done = running.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "the backup failed: {}",
        describe(&done)
    );
    support::wait_archived(&pg, &writer);
    let f3 = labels(&cairn).last().unwrap().clone();
    assert_ne!(f3, f2);
    assert_eq!(restored_checksum(&dir, &pg, &cairn, &f3, &[]), sum);

    // The next expire drops f2 and takes the new backup's packs back, unless the expire
    // that ran while archiving resumed already did, having found the backup finished (the
    // two race); after the grace the rest is collected and the new backup still restores.
    let out = cairn.cairn_ok(&["expire"]);
    eprintln!("expire after the backup:\n{out}");
    let both = format!("{during}{out}");
    assert!(
        both.contains(&format!("removing full backup {f2}")),
        "{both}"
    );
    assert!(
        both.contains("condemned packs are referenced again and stay"),
        "{both}"
    );
    wait_until("garbage to be collected", Duration::from_secs(60), || {
        let out = cairn.cairn_ok(&["expire"]);
        Ok::<_, String>(
            (!out.contains("condemned pack") && !out.contains("condemn ")).then_some(()),
        )
    })
    .unwrap();
    assert_eq!(labels(&cairn), vec![f3.clone()]);
    assert_eq!(restored_checksum(&dir, &pg, &cairn, &f3, &[]), sum);
    eprintln!("{}", verify_clean(&cairn, "after the concurrent runs"));
    pg.stop().unwrap();
}

#[test]
fn pg15_expire_while_a_backup_and_archive_push_run_locally() {
    concurrent(Store::Local);
}

#[test]
fn pg15_expire_while_a_backup_and_archive_push_run_on_s3() {
    let s3 = S3Server::start().unwrap();
    concurrent(Store::S3(&s3));
}
