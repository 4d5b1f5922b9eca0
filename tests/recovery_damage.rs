//! Recovery never promotes short of the archive, and a re-push repairs a damaged copy
//! (PostgreSQL 15, local repository).
//!
//! One primary archives through cairn and takes a full backup, then fills more segments. A
//! segment in the middle of the WAL after the backup is damaged (one flipped byte), then
//! deleted while the catalog still lists it: each time, a restore of the full with no target
//! must stop with FATAL at that segment, naming it and the cause, and never come up
//! promoted. Pushing the original segment again repairs the damaged copy (the archive then
//! delivers the original bytes, listed once). A repair killed between its durable side copy
//! and the new main copy (simulated: the side copy present, the main object gone) is served
//! from the side copy, and a later push puts the main copy back.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_testkit::{PgCluster, TestDir, wait_until};
use support::{Cairn, RepoSpec, describe, next_segment, segment_of, start_archiving};

const SEG: u64 = 1 << 20;

/// The local path of WAL file `name`'s object (timeline 1, first generation).
fn wal_object(cairn: &Cairn, name: &str) -> PathBuf {
    cairn
        .repo_dir
        .join(format!("stanza/main/wal/1/00000001/{name}"))
}

/// Every WAL segment object of timeline `tli` in the repository.
fn timeline_objects(cairn: &Cairn, tli: u32) -> Vec<String> {
    let dir = cairn.repo_dir.join(format!("stanza/main/wal/1/{tli:08X}"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `cairn-archive-get NAME DEST` as PostgreSQL runs it; returns (exit code, bytes written).
fn archive_get(cairn: &Cairn, dir: &TestDir, name: &str) -> (Option<i32>, Option<Vec<u8>>) {
    let scratch = dir.subdir("get").unwrap();
    cairn_testkit::chown_to_postgres(&scratch).unwrap();
    let dest = scratch.join(name);
    let _ = std::fs::remove_file(&dest);
    let out = cairn.run("cairn-archive-get", &[name, dest.to_str().unwrap()]);
    let bytes = std::fs::read(&dest).ok();
    let _ = std::fs::remove_file(&dest);
    (out.status.code(), bytes)
}

/// How many segments the catalog shows on timeline 1 (`info --output json`).
fn catalogued_segments(cairn: &Cairn) -> u64 {
    let info = cairn.info_json();
    let tl = info["stanzas"][0]["archive"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["timeline"] == 1)
        .cloned()
        .unwrap();
    tl["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["segments"].as_u64().unwrap())
        .sum()
}

/// Restore backup `label` with no target, start it archiving into the same repository, and
/// wait until the postmaster gives up. It must never be seen out of recovery, and must not
/// have made a new timeline. Returns the server log.
fn recover_expecting_stop(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    label: &str,
    tag: &str,
) -> String {
    let data = dir.path().join(format!("stop-{tag}"));
    support::restore(cairn, &data, &["--set", label]);
    let mut pg = PgCluster::from_existing_data_dir(primary.install(), dir, &data).unwrap();
    // Archiving on: a promotion would push 00000002.history into the repository.
    pg.set_conf("archive_mode", "on").unwrap();
    pg.set_conf(
        "archive_command",
        &format!("'{}'", cairn.archive_command().replace('\'', "''")),
    )
    .unwrap();
    pg.start_no_wait().unwrap();
    wait_until(
        "the restored server to stop at the damaged segment",
        Duration::from_secs(120),
        || {
            // In recovery, or not accepting connections yet: both fine. Out of it: never.
            let promoted = pg
                .psql("SELECT pg_is_in_recovery()")
                .is_ok_and(|r| r == "f");
            assert!(
                !promoted,
                "the restored cluster came up promoted:\n{}",
                pg.log_tail(40)
            );
            let log = std::fs::read_to_string(pg.log_path()).unwrap_or_default();
            let gave_up = log.contains("due to startup process failure");
            Ok::<_, cairn_testkit::Error>((gave_up && !pg.is_running()).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", pg.log_tail(60)));
    assert!(!data.join("pg_wal/00000002.history").exists());
    assert!(
        timeline_objects(cairn, 2).is_empty(),
        "a new timeline was archived: {:?}",
        timeline_objects(cairn, 2)
    );
    std::fs::read_to_string(pg.log_path()).unwrap()
}

/// The server log shows recovery replaying up to `bad`, then stopping there with FATAL, and
/// cairn's line naming `bad` and `cause`.
fn assert_stopped_at(log: &str, before: &str, bad: &str, cause: &str) {
    assert!(
        log.contains(&format!("restored log file \"{before}\" from archive")),
        "recovery did not get as far as {before}:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{bad}\" from archive"
        )),
        "no FATAL for {bad}:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.starts_with("cairn-archive-get: ERROR:") && l.contains(bad))
        .unwrap_or_else(|| panic!("cairn named no cause for {bad}:\n{log}"));
    assert!(line.contains(cause), "{line}");
    assert!(
        !log.contains(&format!("restored log file \"{bad}\"")),
        "{bad} was replayed:\n{log}"
    );
}

fn write_as_postgres(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    cairn_testkit::chown_to_postgres(path).unwrap();
}

#[test]
fn pg15_recovery_stops_at_damage_and_a_re_push_repairs_it() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    support::workload(&primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let last = support::workload(&primary, 10);
    support::wait_archived(&primary, &last);
    let info = cairn.info_json();
    let full = &info["stanzas"][0]["backups"][0];
    let label = full["label"].as_str().unwrap().to_string();
    let stop = segment_of(full["stop"]["lsn"].as_str().unwrap(), 1, SEG);
    // The segment to damage: in the middle of the WAL after the backup.
    let mut before = next_segment(&stop, SEG);
    for _ in 0..3 {
        before = next_segment(&before, SEG);
    }
    let bad = next_segment(&before, SEG);
    assert!(bad < last, "{bad} is not before the last segment {last}");
    let segments = catalogued_segments(&cairn);

    // The original bytes, as the archive delivers them now.
    let (code, original) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(0));
    let original = original.unwrap();
    assert_eq!(original.len() as u64, SEG);
    let saved_dir = dir.subdir("saved").unwrap();
    cairn_testkit::chown_to_postgres(&saved_dir).unwrap();
    let saved = saved_dir.join(&bad);
    write_as_postgres(&saved, &original);

    // 1. One flipped byte in the middle of the object.
    let object = wal_object(&cairn, &bad);
    let good_object = std::fs::read(&object).unwrap();
    let mut flipped = good_object.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&object, &flipped).unwrap();
    let (code, _) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(126), "archive-get of the damaged segment");
    let log = recover_expecting_stop(&dir, &primary, &cairn, &label, "flipped");
    assert_stopped_at(&log, &before, &bad, "failed authentication");

    // 2. Pushing the original again replaces the damaged copy: exit 0 only with a good copy.
    let out = cairn.run("cairn-archive-push", &[saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was damaged") && err.contains("replaced"),
        "{err}"
    );
    let (code, got) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(0));
    assert!(
        got.as_deref() == Some(&original[..]),
        "the archive does not deliver the original bytes"
    );
    assert_ne!(std::fs::read(&object).unwrap(), flipped);
    assert_eq!(catalogued_segments(&cairn), segments, "listed once");
    let repair_dir = cairn.repo_dir.join("stanza/main/wal-repair/1");
    let left: Vec<_> = std::fs::read_dir(&repair_dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "side copies left: {left:?}");
    // Pushing it once more is a no-op success (its one log line says so, no repair).
    let out = cairn.run("cairn-archive-push", &[saved.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("already archived") && !err.contains("damaged"),
        "{}",
        describe(&out)
    );

    // 3. The object deleted while the catalog lists it: lost, not "not archived".
    let repaired_object = std::fs::read(&object).unwrap();
    std::fs::remove_file(&object).unwrap();
    let (code, _) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(126), "archive-get of the deleted segment");
    let log = recover_expecting_stop(&dir, &primary, &cairn, &label, "deleted");
    assert_stopped_at(&log, &before, &bad, "does not have the object");

    // 4. A repair killed after its side copy was durable and the damaged main copy deleted:
    // the side copy is served, recovery reaches the end of the archive.
    std::fs::create_dir_all(&repair_dir).unwrap();
    let side = repair_dir.join(format!("{bad}.00c0ffee00c0ffee"));
    std::fs::write(&side, &repaired_object).unwrap();
    cairn_testkit::chown_to_postgres_recursive(&cairn.repo_dir).unwrap();
    let (code, got) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(0));
    assert!(
        got.as_deref() == Some(&original[..]),
        "the side copy does not deliver the original bytes"
    );
    let expected = support::table_checksum(&primary);
    let data = dir.path().join("after-repair");
    support::restore(&cairn, &data, &["--set", &label]);
    let mut pg =
        support::start_restored(&dir, &primary, &data, false, support::Recovered::Promoted);
    assert_eq!(support::table_checksum(&pg), expected);
    let log = std::fs::read_to_string(pg.log_path()).unwrap();
    assert!(
        log.contains(&format!("restored log file \"{bad}\" from archive")),
        "{log}"
    );
    pg.stop().unwrap();
    // A later push completes the repair: the main copy is back and good.
    let out = cairn.run("cairn-archive-push", &[saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(object.exists());
    std::fs::remove_file(&side).unwrap();
    let (code, got) = archive_get(&cairn, &dir, &bad);
    assert_eq!(code, Some(0));
    assert!(
        got.as_deref() == Some(&original[..]),
        "the new main copy does not deliver the original bytes"
    );
    assert_eq!(catalogued_segments(&cairn), segments, "listed once");
}
