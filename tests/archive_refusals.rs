//! Bad input to the archive commands gets a clear error and a stable exit code, and
//! nothing stored is lost or overwritten (PostgreSQL 15, local encrypted repository).

mod support;

use std::path::{Path, PathBuf};

use cairn_testkit::TestDir;
use support::{Cairn, RepoSpec, describe, start_archiving, wait_archived, workload};

const CONFLICT: i32 = 7;
const INVALID: i32 = 8;
const STANZA: i32 = 9;
const CORRUPT: i32 = 6;
const WRONG_PASS: i32 = 5;
const UNDELIVERABLE: i32 = 126;
const REFUSED: i32 = 13;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_for_postgres(dir: &TestDir, sub: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let d = dir.subdir(sub).unwrap();
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    cairn_testkit::chown_to_postgres(&p).unwrap();
    p
}

fn stored_object(cairn: &Cairn, name: &str) -> PathBuf {
    support::find_file(&cairn.repo_dir.join("stanza/main/wal"), &format!("/{name}"))
        .expect("stored object")
}

#[test]
fn pg15_archive_refusals() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    // Keep switched segments in pg_wal so the test can compare them with the archive.
    primary.set_conf("wal_keep_size", "'256MB'").unwrap();
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    let check = cairn.cairn_ok(&["check"]);
    assert!(check.contains("check passed"), "{check}");

    let seg = workload(&primary, 3);
    wait_archived(&primary, &seg);
    let original = std::fs::read(primary.data_dir().join("pg_wal").join(&seg)).unwrap();

    // archive-get returns exactly what PostgreSQL wrote.
    let out_dir = dir.subdir("out").unwrap();
    let dest = out_dir.join("RECOVERYXLOG");
    let out = cairn.run("cairn-archive-get", &[&seg, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), original);

    // Pushing the same content again succeeds (PostgreSQL retries after a crash).
    let again = copy_for_postgres(&dir, "again", &seg, &original);
    let out = cairn.run("cairn-archive-push", &[again.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));

    // Different bytes under a stored name: refused, stored object unchanged.
    let stored_path = stored_object(&cairn, &seg);
    let stored_before = std::fs::read(&stored_path).unwrap();
    let mut altered = original.clone();
    let mid = altered.len() / 2 + 1000;
    altered[mid] ^= 0x55;
    let p = copy_for_postgres(&dir, "altered", &seg, &altered);
    let out = cairn.run("cairn-archive-push", &[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(CONFLICT), "{}", describe(&out));
    assert!(
        stderr(&out).contains(&seg) && stderr(&out).contains("different content"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&stored_path).unwrap(), stored_before);

    // A truncated segment is refused.
    let next = next_name(&seg);
    let p = copy_for_postgres(&dir, "truncated", &next, &original[..original.len() / 2]);
    let out = cairn.run("cairn-archive-push", &[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(INVALID), "{}", describe(&out));

    // A segment whose content is another segment is refused.
    let p = copy_for_postgres(&dir, "renamed", &next_name(&next), &original);
    let out = cairn.run("cairn-archive-push", &[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(INVALID), "{}", describe(&out));
    assert!(
        stderr(&out).contains("not what its name says"),
        "{}",
        describe(&out)
    );

    // Something that is not a WAL file name is refused.
    let p = copy_for_postgres(&dir, "junk", "postmaster.pid", b"123\n");
    let out = cairn.run("cairn-archive-push", &[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(INVALID), "{}", describe(&out));

    // A segment from another cluster is refused.
    let other_dir = TestDir::new().unwrap();
    let mut other = support::small_wal_cluster(15, &other_dir);
    other.set_conf("wal_keep_size", "'64MB'").unwrap();
    other.start().unwrap();
    let foreign_name = other
        .psql("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    other.psql("CHECKPOINT").unwrap();
    let foreign = std::fs::read(other.data_dir().join("pg_wal").join(&foreign_name)).unwrap();
    other.stop().unwrap();
    let p = copy_for_postgres(&dir, "foreign", &foreign_name, &foreign);
    let out = cairn.run("cairn-archive-push", &[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(STANZA), "{}", describe(&out));
    assert!(stderr(&out).contains("system"), "{}", describe(&out));

    // archive-get of a segment the archive does not have: exit 1 and no file.
    let missing = out_dir.join("missing");
    let out = cairn.run(
        "cairn-archive-get",
        &["0000000100000001000000FF", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!missing.exists());

    // A wrong passphrase is reported as such. In recovery it stops PostgreSQL (126: the
    // archive may have the file); a standby keeps the kind's own code and retries.
    let wrong = [("CAIRN_REPO_CIPHER_PASS", "not the passphrase")];
    let out = cairn.run_env(
        "cairn-archive-get",
        &[&seg, missing.to_str().unwrap()],
        &wrong,
    );
    assert_eq!(out.status.code(), Some(UNDELIVERABLE), "{}", describe(&out));
    assert!(stderr(&out).contains("passphrase"), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("not the passphrase"),
        "{}",
        describe(&out)
    );
    let out = cairn.run_env(
        "cairn-archive-get",
        &["--standby", &seg, missing.to_str().unwrap()],
        &wrong,
    );
    assert_eq!(out.status.code(), Some(WRONG_PASS), "{}", describe(&out));
    assert!(!missing.exists());

    // A flipped byte in a stored object: archive-get fails clearly and writes nothing.
    flip_byte(&stored_path, stored_before.len() / 2);
    let out = cairn.run("cairn-archive-get", &[&seg, missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(UNDELIVERABLE), "{}", describe(&out));
    assert!(stderr(&out).contains("damaged"), "{}", describe(&out));
    let out = cairn.run(
        "cairn-archive-get",
        &["--standby", &seg, missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(CORRUPT), "{}", describe(&out));
    assert!(!missing.exists());
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        1,
        "only RECOVERYXLOG from before"
    );

    // With the server stopped, stanza-create reads the identity from pg_control: the same
    // cluster is a no-op, another cluster's data directory is refused.
    primary.stop().unwrap();
    let out = cairn.run("cairn", &["stanza-create"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already exists"),
        "{}",
        describe(&out)
    );
    assert!(stderr(&out).contains("pg_control"), "{}", describe(&out));
    let other_data = other.data_dir().to_str().unwrap().to_string();
    let out = cairn.run_env(
        "cairn",
        &["stanza-create"],
        &[("CAIRN_STANZA_MAIN_PG_DATA", &other_data)],
    );
    assert_eq!(out.status.code(), Some(STANZA), "{}", describe(&out));
    assert!(
        stderr(&out).contains("stanza-upgrade"),
        "{}",
        describe(&out)
    );

    // stanza-delete wants --force, then removes everything of the stanza.
    let out = cairn.run("cairn", &["stanza-delete"]);
    assert_eq!(out.status.code(), Some(REFUSED), "{}", describe(&out));
    assert!(stored_path.exists());
    cairn.cairn_ok(&["stanza-delete", "--force"]);
    assert!(!stored_path.exists());
    let info = cairn.info_json();
    assert_eq!(info["stanzas"][0]["status"], "missing", "{info:#}");
    // Recovery cannot tell "not archived" from a stanza that is gone: it stops (126).
    let out = cairn.run("cairn-archive-get", &[&seg, missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(UNDELIVERABLE), "{}", describe(&out));
    let out = cairn.run(
        "cairn-archive-get",
        &["--standby", &seg, missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(STANZA), "{}", describe(&out));
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// The next segment name on the same timeline (1 MiB segments: 4096 per xlogid).
fn next_name(name: &str) -> String {
    let seg: cairn_pgformat::SegmentName = name.parse().unwrap();
    let size = cairn_pgformat::WalSegmentSize::new(1 << 20).unwrap();
    seg.next(size).to_string()
}
