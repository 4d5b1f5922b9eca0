//! `cairn expire` end to end (PostgreSQL 15), on a local repository and on the S3 server:
//! count retention over three chains (dry run, what goes, the repository shrinking, the WAL
//! left without gaps, every kept backup and a PITR inside the kept window restoring
//! exactly, `--set` of a full leaving its incr restorable); a short recovery window keeping
//! exactly what it needs; pins, annotations, a tier and `auto` end to end.

#[path = "expire_support/mod.rs"]
mod expire_support;
mod support;

use std::time::Duration;

use cairn_testkit::{S3Server, TestDir, wait_until};
use expire_support::{
    Store, add_config, archive, backup, backup_doc, labels, restored_checksum, server_now,
    verify_clean,
};
use support::{describe, segment_of, small_wal_cluster, start_archiving, table_checksum, workload};

const SEG: u64 = 1 << 20;

struct Chain {
    full: String,
    full_sum: String,
    incr: String,
    incr_sum: String,
}

fn count_retention(store: Store<'_>) {
    let dir = TestDir::with_prefix(&format!("expire-count-{}", store.name())).unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = store.cairn(&dir, &pg);
    add_config(&cairn, "[retention]\nfull = 2\ngc-grace = \"1s\"\n");
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);

    let mut chains = Vec::new();
    let mut pitr = None;
    for i in 0..3 {
        workload(&pg, 3);
        let (full, _) = backup(&cairn, &["--type", "full"]);
        let full_sum = table_checksum(&pg);
        workload(&pg, 2);
        let (incr, _) = backup(&cairn, &["--type", "incr"]);
        let incr_sum = table_checksum(&pg);
        if i == 1 {
            // A moment inside the window the expire keeps: after these rows, before the next.
            workload(&pg, 1);
            let target = server_now(&pg);
            let sum = table_checksum(&pg);
            workload(&pg, 1);
            pitr = Some((incr.clone(), target, sum));
        }
        chains.push(Chain {
            full,
            full_sum,
            incr,
            incr_sum,
        });
    }
    let last = workload(&pg, 1);
    support::wait_archived(&pg, &last);
    let all: Vec<String> = chains
        .iter()
        .flat_map(|c| [c.full.clone(), c.incr.clone()])
        .collect();
    assert_eq!(labels(&cairn), all);

    // A dry run names what would go and changes nothing. (`info` first: a reader may write
    // a catalog snapshot, which is a cache, not a change expire makes.)
    cairn.info_json();
    let before = store.objects(&cairn);
    let bytes_before = store.bytes(&cairn);
    let dry = cairn.cairn_ok(&["expire", "--dry-run"]);
    eprintln!("expire --dry-run:\n{dry}");
    for gone in [&chains[0].full, &chains[0].incr] {
        assert!(
            dry.lines()
                .any(|l| l.starts_with("would remove") && l.contains(gone.as_str())),
            "{gone} not named:\n{dry}"
        );
    }
    for kept in &all[2..] {
        assert!(
            dry.lines()
                .any(|l| l.starts_with("keep") && l.contains(kept.as_str())),
            "{kept}:\n{dry}"
        );
    }
    assert!(dry.contains("files of WAL of db 1 timeline 1"), "{dry}");
    assert_eq!(
        store.objects(&cairn),
        before,
        "the dry run changed the repository"
    );

    // The real run.
    let run = cairn.run("cairn", &["expire"]);
    assert!(run.status.success(), "{}", describe(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("expire:\n{out}");
    assert!(out.contains("expire done: 2 backups removed"), "{out}");
    // Without a terminal, progress ends with one line of what was deleted.
    let err = String::from_utf8_lossy(&run.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("cairn: expire main: "))
        .unwrap_or_else(|| panic!("no progress line in {err}"));
    assert!(
        line.contains("deleted") && !line.contains(" 0 objects deleted"),
        "{line}"
    );
    assert_eq!(labels(&cairn), all[2..].to_vec());
    // WAL: everything before the oldest kept backup's start is gone, nothing after it.
    let oldest = backup_doc(&cairn, &chains[1].full);
    let start_seg = segment_of(oldest["start"]["lsn"].as_str().unwrap(), 1, SEG);
    let tls = archive(&cairn);
    assert_eq!(tls.len(), 1, "{tls:?}");
    let ranges = tls[0]["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "the WAL left has a gap: {tls:?}");
    assert!(tls[0]["gaps"].as_array().unwrap().is_empty());
    assert_eq!(ranges[0]["first"], start_seg.as_str(), "{tls:?}");
    let wal_objects = store.keys(&cairn, "stanza/main/wal/1/00000001/");
    assert!(
        wal_objects
            .iter()
            .all(|k| k.rsplit('/').next().unwrap() >= start_seg.as_str()),
        "WAL before {start_seg} is still stored"
    );

    // The repository shrinks once the condemned packs' grace has passed.
    let shrunk = wait_until(
        "condemned packs to be deleted",
        Duration::from_secs(60),
        || {
            let out = cairn.run("cairn", &["expire"]);
            assert!(out.status.success(), "{}", describe(&out));
            let now = store.bytes(&cairn);
            Ok::<_, String>((now < bytes_before).then_some(now))
        },
    )
    .unwrap();
    eprintln!(
        "repository: {bytes_before} bytes before expire, {shrunk} after ({} freed)",
        bytes_before - shrunk
    );
    eprintln!("{}", verify_clean(&cairn, "after expire"));

    // Every kept backup restores to its checksums, and a PITR inside the window lands.
    for c in &chains[1..] {
        assert_eq!(
            restored_checksum(&dir, &pg, &cairn, &c.full, &[]),
            c.full_sum,
            "{}",
            c.full
        );
        assert_eq!(
            restored_checksum(&dir, &pg, &cairn, &c.incr, &[]),
            c.incr_sum,
            "{}",
            c.incr
        );
    }
    let (from, target, sum) = pitr.unwrap();
    assert_eq!(
        restored_checksum(
            &dir,
            &pg,
            &cairn,
            &from,
            &["--target-time", &target, "--target-action", "promote"]
        ),
        sum,
        "PITR to {target}"
    );

    // `expire --set` of a full: its incr stays and restores.
    let c = &chains[2];
    let out = cairn.cairn_ok(&["expire", "--set", &c.full]);
    assert!(out.contains("expire done: 1 backups removed"), "{out}");
    assert_eq!(
        labels(&cairn),
        vec![
            chains[1].full.clone(),
            chains[1].incr.clone(),
            c.incr.clone()
        ]
    );
    assert_eq!(
        restored_checksum(&dir, &pg, &cairn, &c.incr, &[]),
        c.incr_sum
    );
    verify_clean(&cairn, "after expire --set");
    pg.stop().unwrap();
}

#[test]
fn pg15_count_retention_on_a_local_repository() {
    count_retention(Store::Local);
}

#[test]
fn pg15_count_retention_on_s3() {
    let s3 = S3Server::start().unwrap();
    count_retention(Store::S3(&s3));
}

fn rfc3339(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// `recovery-window` shorter than the age of the oldest backup: the newest backup that
/// stopped before the window's start and everything after it stay, the rest goes.
#[test]
fn pg15_a_short_recovery_window_keeps_exactly_what_it_needs() {
    let dir = TestDir::with_prefix("expire-window").unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Store::Local.cairn(&dir, &pg);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    workload(&pg, 2);
    let (b1, _) = backup(&cairn, &["--type", "full"]);
    workload(&pg, 2);
    let (b2, _) = backup(&cairn, &["--type", "incr"]);
    workload(&pg, 2);
    let target = server_now(&pg);
    let target_sum = table_checksum(&pg);
    workload(&pg, 2);
    // The window's start must fall between two backups' stops with room on either side
    // of it (the window has whole seconds): let 4 s pass after b2 stopped.
    let b2_stop = rfc3339(backup_doc(&cairn, &b2)["stop"]["time"].as_str().unwrap());
    wait_until("4 s after b2 stopped", Duration::from_secs(30), || {
        Ok::<_, String>(
            (time::OffsetDateTime::now_utc() >= b2_stop + Duration::from_secs(4)).then_some(()),
        )
    })
    .unwrap();
    let (b3, _) = backup(&cairn, &["--type", "incr"]);
    let last = workload(&pg, 1);
    support::wait_archived(&pg, &last);

    // A window whose start falls between b2's and b3's stops, half-way.
    let stop = |l: &str| rfc3339(backup_doc(&cairn, l)["stop"]["time"].as_str().unwrap());
    let (s2, s3) = (stop(&b2), stop(&b3));
    let gap: time::Duration = s3 - s2;
    assert!(
        gap >= time::Duration::seconds(3),
        "b2 and b3 stopped only {gap} apart; the test needs 3 s"
    );
    let start: time::OffsetDateTime = s2 + gap / 2;
    let window = (time::OffsetDateTime::now_utc() - start).whole_seconds();
    let env = [("CAIRN_RETENTION_RECOVERY_WINDOW", format!("{window}s"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dry = cairn.run_env("cairn", &["expire", "--dry-run"], &env);
    let dry_text = String::from_utf8_lossy(&dry.stdout).into_owned();
    eprintln!("window {window}s:\n{dry_text}");
    assert!(dry.status.success(), "{}", describe(&dry));
    assert!(
        dry_text.contains(&format!("keep incr backup {b2}, parent {b1}"))
            || dry_text.contains(&format!("keep incr backup {b2}: recovery window start")),
        "{dry_text}"
    );
    let out = cairn.run_env("cairn", &["expire"], &env);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(labels(&cairn), vec![b2.clone(), b3.clone()]);
    // WAL from b2's start on, without a gap.
    let start_seg = segment_of(
        backup_doc(&cairn, &b2)["start"]["lsn"].as_str().unwrap(),
        1,
        SEG,
    );
    let tls = archive(&cairn);
    assert_eq!(tls[0]["ranges"].as_array().unwrap().len(), 1, "{tls:?}");
    assert_eq!(tls[0]["ranges"][0]["first"], start_seg.as_str());
    // The window's first moments are still reachable: from b2 (an incr: every manifest
    // is complete).
    assert_eq!(
        restored_checksum(
            &dir,
            &pg,
            &cairn,
            &b2,
            &["--target-time", &target, "--target-action", "promote"]
        ),
        target_sum
    );
    pg.stop().unwrap();
}

/// Pins, annotations, a daily tier and `auto = true`: every backup runs expire; the tier
/// keeps the newest backup of the day, the pin keeps the first; `--set` refuses the
/// pinned one until it is unpinned.
#[test]
fn pg15_pins_annotations_a_tier_and_auto_expire() {
    let dir = TestDir::with_prefix("expire-pins").unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Store::Local.cairn(&dir, &pg);
    add_config(
        &cairn,
        "[retention]\nkeep-daily = 1\nauto = true\ngc-grace = \"1s\"\n",
    );
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    workload(&pg, 2);
    let (f1, out) = backup(
        &cairn,
        &[
            "--type",
            "full",
            "--pin",
            "--annotation",
            "ticket=OPS-1",
            "--annotation",
            "note=before the migration",
        ],
    );
    assert!(out.contains("expire done: 0 backups removed"), "{out}");
    let f1_sum = table_checksum(&pg);
    workload(&pg, 2);
    let (f2, _) = backup(&cairn, &["--type", "full"]);
    workload(&pg, 2);
    let (f3, out) = backup(&cairn, &["--type", "full"]);
    eprintln!("backup with auto expire:\n{out}");
    assert!(
        out.contains(&format!(
            "removing full backup {f2}: no retention rule keeps it"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("keep full backup {f1} (pinned): pinned")),
        "{out}"
    );
    assert_eq!(labels(&cairn), vec![f1.clone(), f3.clone()]);

    // info shows the pin and the notes, as JSON and as text.
    let doc = backup_doc(&cairn, &f1);
    assert_eq!(doc["pinned"], true);
    assert_eq!(doc["annotations"]["ticket"], "OPS-1");
    assert_eq!(doc["annotations"]["note"], "before the migration");
    assert_eq!(backup_doc(&cairn, &f3)["pinned"], false);
    assert_eq!(
        backup_doc(&cairn, &f3)["annotations"],
        serde_json::json!({})
    );
    let text = cairn.cairn_ok(&["info"]);
    assert!(
        text.contains(&format!("full backup {f1} (pinned)")),
        "{text}"
    );
    assert!(
        text.contains("        note: before the migration"),
        "{text}"
    );
    assert!(text.contains("        ticket: OPS-1"), "{text}");

    // The pinned backup still restores: its own WAL was kept.
    assert_eq!(restored_checksum(&dir, &pg, &cairn, &f1, &[]), f1_sum);

    // A pin holds against --set too.
    let refused = cairn.run("cairn", &["expire", "--set", &f1]);
    assert_eq!(refused.status.code(), Some(13), "{}", describe(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&format!("backup {f1} is pinned")), "{err}");
    assert!(
        err.contains(&format!("HINT: run `cairn unpin {f1}`")),
        "{err}"
    );
    assert_eq!(labels(&cairn).len(), 2);

    // Unpinned, the tier decides: it goes.
    let out = cairn.cairn_ok(&["unpin", &f1]);
    assert!(out.contains("no longer pinned"), "{out}");
    let out = cairn.cairn_ok(&["expire"]);
    assert!(out.contains(&format!("removing full backup {f1}")), "{out}");
    assert_eq!(labels(&cairn), vec![f3.clone()]);

    // Bad input: an unknown backup, a malformed annotation.
    let out = cairn.run("cairn", &["pin", "20200101-000000F"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HINT:"));
    let out = cairn.run("cairn", &["backup", "--annotation", "no value"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    pg.stop().unwrap();
}
