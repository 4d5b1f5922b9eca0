//! `cairn-archive-get` with `[archive] async = true` against WAL a real PostgreSQL 15
//! archived: each call starts (or feeds) the prefetch worker, the next segments wait in the
//! spool, a call takes its segment from there, and a damaged spool file is never handed
//! over: the segment is fetched again and arrives intact.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_testkit::{TestDir, wait_until};
use support::{Cairn, RepoSpec, describe, start_archiving, wait_archived, workload};

/// The segment after `name` (the cluster's 1 MiB segments).
fn next_segment(name: &str) -> String {
    support::next_segment(name, 1 << 20)
}

/// The spooled copy of `segment`, if the worker has it.
fn spooled(spool: &Path, segment: &str) -> Option<PathBuf> {
    let get = spool.join("main/get");
    for dir in std::fs::read_dir(get).ok()?.flatten() {
        for f in std::fs::read_dir(dir.path()).ok()?.flatten() {
            let name = f.file_name().into_string().ok()?;
            if name.len() == 24 + 1 + 64 && name.starts_with(&format!("{segment}.")) {
                return Some(f.path());
            }
        }
    }
    None
}

fn get(cairn: &Cairn, segment: &str, dest: &Path, prefetch: bool) -> std::process::Output {
    let env: &[(&str, &str)] = if prefetch {
        &[]
    } else {
        &[("CAIRN_ARCHIVE_ASYNC", "false")]
    };
    cairn.run_env("cairn-archive-get", &[segment, dest.to_str().unwrap()], env)
}

#[test]
fn pg15_archive_get_prefetches_and_never_hands_over_a_damaged_spool_file() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    cairn.enable_async(2);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    let last = workload(&primary, 10);
    wait_archived(&primary, &last);
    let info = cairn.info_json();
    let first = info["stanzas"][0]["archive"][0]["ranges"][0]["first"]
        .as_str()
        .unwrap()
        .to_string();
    let s1 = next_segment(&first);
    let (s2, s3) = (next_segment(&s1), next_segment(&next_segment(&s1)));
    assert!(s3 <= last, "{s3} is archived (last {last})");

    let got = dir.subdir("got").unwrap();
    let reference = |seg: &str| {
        let dest = got.join(format!("{seg}.reference"));
        let out = get(&cairn, seg, &dest, false);
        assert!(out.status.success(), "{}", describe(&out));
        std::fs::read(dest).unwrap()
    };
    let spool = dir.path().join("spool");

    // The first call fetches s1 itself and starts the worker, which fetches s2, s3, ...
    let dest = got.join("RECOVERYXLOG");
    let out = get(&cairn, &s1, &dest, true);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), reference(&s1));
    wait_until(
        "the worker to spool s2 and s3",
        Duration::from_secs(60),
        || {
            Ok::<_, std::io::Error>(
                (spooled(&spool, &s2).is_some() && spooled(&spool, &s3).is_some()).then_some(()),
            )
        },
    )
    .unwrap();

    // Damage the spooled s3, as a crash before writeback could.
    let damaged = spooled(&spool, &s3).unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();

    // s2 comes from the spool: the file is moved, not copied.
    let out = get(&cairn, &s2, &dest, true);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), reference(&s2));
    assert!(spooled(&spool, &s2).is_none(), "s2 left the spool");

    // s3's spooled copy fails its hash: it is dropped and s3 is fetched again, intact.
    let out = get(&cairn, &s3, &dest, true);
    assert!(out.status.success(), "{}", describe(&out));
    let s3_bytes = std::fs::read(&dest).unwrap();
    assert_eq!(s3_bytes, reference(&s3));
    assert_ne!(s3_bytes, bytes, "the damaged copy was not handed over");
    // The damaged copy is gone (the worker may have fetched s3 again meanwhile: intact).
    if let Ok(again) = std::fs::read(&damaged) {
        assert_eq!(again, s3_bytes, "a spooled copy of s3 is intact");
    }

    // Past the end of the archive: still "not in the archive", as without prefetching.
    let beyond = next_segment(
        &primary
            .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .unwrap(),
    );
    let out = get(&cairn, &beyond, &got.join("none"), true);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!got.join("none").exists());

    // The worker exits by itself once PostgreSQL stops asking (no process outlives the test).
    let worker_dir = std::fs::read_dir(spool.join("main/get"))
        .unwrap()
        .flatten()
        .next()
        .expect("the worker's directory")
        .path();
    let lock = worker_dir.join("worker.lock");
    let lock = std::fs::File::options().write(true).open(lock).unwrap();
    wait_until(
        "the prefetch worker to exit",
        Duration::from_secs(60),
        || Ok::<_, std::io::Error>(lock.try_lock().ok()),
    )
    .unwrap();
    primary.stop().unwrap();
}
