//! A SIGKILL sweep over `cairn expire` (PostgreSQL 15), on a local repository and on the
//! S3 server. Each round takes a new full backup (so `full = 1` drops the previous one,
//! its WAL, and leaves a pack mostly garbage to repack), starts expire with a pause point
//! (debug builds: `CAIRN_TEST_EXPIRE_PAUSE`), waits until the repository shows the run
//! got there, and kills it with SIGKILL. Every backup `info` lists then restores to its
//! checksum; the rerun takes the dead run's lock over, finishes the job, and the backup
//! left restores again.

#[path = "expire_support/mod.rs"]
mod expire_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_testkit::{PgCluster, S3Server, TestDir, run_as_postgres, wait_until};
use expire_support::{Store, add_config, backup, labels, restored_checksum, verify_clean};
use support::{Cairn, describe, small_wal_cluster, start_archiving, table_checksum};

/// New data in `t`: every chunk of the table changes (a new file of fresh random rows).
/// A small table `keep_ROUND` that never changes again lands in the same pack as `t`'s
/// rows, so once the next round drops this round's backup, that pack is mostly garbage
/// with a little still live: every round has a pack to repack, whatever else the server
/// happened to change.
fn rewrite(pg: &PgCluster, round: usize) {
    pg.psql(&format!(
        "CREATE TABLE IF NOT EXISTS t (id bigserial PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()); \
         TRUNCATE t; \
         INSERT INTO t (v) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 60000); \
         CREATE TABLE keep_{round} AS SELECT md5(random()::text) AS v FROM generate_series(1, 2000)"
    ))
    .unwrap();
    let last = pg.psql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    support::wait_archived(pg, &last);
}

type Objects = BTreeSet<String>;

fn keys(store: Store<'_>, cairn: &Cairn) -> Objects {
    store.objects(cairn).into_iter().map(|(k, _)| k).collect()
}

fn max_gc(keys: &Objects) -> u64 {
    keys.iter()
        .filter_map(|k| k.strip_prefix("stanza/main/gc/")?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Whether the repository shows that the run reached `step` (the pause point after it),
/// compared with `before`, the objects when it started. `dropped`: the backup it removes.
fn reached(step: &str, before: &Objects, now: &Objects, dropped: &str) -> bool {
    let gone = |prefix: &str| {
        before
            .iter()
            .filter(|k| k.starts_with(prefix) && !now.contains(*k))
            .count()
    };
    let new = |f: &dyn Fn(&str) -> bool| now.iter().any(|k| !before.contains(k) && f(k));
    match step {
        "backup-recorded" => new(&|k| {
            k.starts_with("stanza/main/journal/backups/log/") && k.ends_with(&format!("-{dropped}"))
        }),
        "backup-removed" => !now.contains(&format!("stanza/main/backup/{dropped}/manifest")),
        "wal-recorded" => {
            new(&|k| k.starts_with("stanza/main/journal/wal/log/") && k.contains("-expired-"))
        }
        "wal-deleted" => gone("stanza/main/wal/") + gone("stanza/main/journal/wal/log/") >= 3,
        "gc-recorded" => max_gc(now) >= max_gc(before) + 2,
        "pack-deleted" => gone("stanza/main/pack-index/") >= 1,
        "repack-copied" => new(&|k| k.starts_with("stanza/main/pack-index/")),
        "manifest-revised" => new(&|k| k.contains("/manifest.0000")),
        other => panic!("no predicate for {other}"),
    }
}

fn sweep(store: Store<'_>) {
    let dir = TestDir::with_prefix(&format!("expire-killed-{}", store.name())).unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = store.cairn(&dir, &pg);
    add_config(&cairn, "[retention]\nfull = 1\ngc-grace = \"1s\"\n");
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    rewrite(&pg, 0);
    let (first, _) = backup(&cairn, &["--type", "full"]);
    sums.insert(first, table_checksum(&pg));

    // The pack deletes need packs condemned by an earlier round: they come later.
    let points = [
        ("backup-recorded", 1),
        ("wal-recorded", 1),
        ("backup-removed", 1),
        ("wal-deleted", 3),
        ("gc-recorded", 1),
        ("repack-copied", 1),
        ("pack-deleted", 1),
        ("manifest-revised", 1),
    ];
    for (round, (step, n)) in points.into_iter().enumerate() {
        let dropped = labels(&cairn).pop().unwrap();
        rewrite(&pg, round + 1);
        let (label, _) = backup(&cairn, &["--type", "full"]);
        sums.insert(label.clone(), table_checksum(&pg));

        let before = keys(store, &cairn);
        let mut cmd = Command::new(cairn.exe("cairn"));
        cmd.arg("expire")
            .env("CAIRN_CONFIG", &cairn.config)
            .env("CAIRN_TEST_EXPIRE_PAUSE", format!("{step}:{n}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        run_as_postgres(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        wait_until(
            &format!("expire to reach {step}:{n}"),
            Duration::from_secs(60),
            || {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    panic!("expire ended ({status}) before {step}:{n}");
                }
                Ok::<_, String>(
                    reached(step, &before, &keys(store, &cairn), &dropped).then_some(()),
                )
            },
        )
        .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();

        // Every backup info lists restores, whatever the kill interrupted.
        let listed = labels(&cairn);
        assert!(listed.contains(&label), "{listed:?}");
        for l in &listed {
            assert_eq!(
                restored_checksum(&dir, &pg, &cairn, l, &[]),
                sums[l],
                "{l} after a kill at {step}:{n}"
            );
        }
        verify_clean(&cairn, &format!("after a kill at {step}:{n}"));
        // The rerun takes the dead run's lock over and finishes the job.
        let rerun = cairn.run("cairn", &["expire"]);
        assert!(rerun.status.success(), "{}", describe(&rerun));
        let err = String::from_utf8_lossy(&rerun.stderr);
        assert!(err.contains("took over"), "{err}");
        assert_eq!(labels(&cairn), vec![label.clone()], "after {step}:{n}");
        let left = keys(store, &cairn);
        assert!(
            !left
                .iter()
                .any(|k| k.starts_with(&format!("stanza/main/backup/{dropped}/"))),
            "{dropped} is left after the rerun"
        );
        assert_eq!(
            restored_checksum(&dir, &pg, &cairn, &label, &[]),
            sums[&label],
            "{label} after the rerun of {step}:{n}"
        );
        verify_clean(&cairn, &format!("after the rerun of {step}:{n}"));
        eprintln!(
            "killed at {step}:{n}: every listed backup restored and verify was clean; the rerun \
             finished and verify was clean again"
        );
    }
    pg.stop().unwrap();
}

#[test]
fn pg15_expire_killed_at_every_step_locally() {
    sweep(Store::Local);
}

#[test]
fn pg15_expire_killed_at_every_step_on_s3() {
    let s3 = S3Server::start().unwrap();
    sweep(Store::S3(&s3));
}
