//! `cairn expire` end to end (PostgreSQL 15), on a local repository and on the S3 server:
//! count retention over three chains (dry run, what goes, the repository shrinking, the WAL
//! left without gaps, every kept backup and a PITR inside the kept window restoring
//! exactly, `--set` of a full leaving its incr restorable); a short recovery window keeping
//! exactly what it needs; pins, annotations, a tier and `auto` end to end.

mod support;
#[path = "expire_support/mod.rs"]
mod expire_support;

use std::time::Duration;

use cairn_testkit::{S3Server, TestDir, wait_until};
use expire_support::{
    Store, add_config, archive, backup, backup_doc, labels, restored_checksum, server_now,
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
    assert_eq!(store.objects(&cairn), before, "the dry run changed the repository");

    // The real run.
    let out = cairn.cairn_ok(&["expire"]);
    eprintln!("expire:\n{out}");
    assert!(out.contains("expire done: 2 backups removed"), "{out}");
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
    let shrunk = wait_until("condemned packs to be deleted", Duration::from_secs(60), || {
        let out = cairn.run("cairn", &["expire"]);
        assert!(out.status.success(), "{}", describe(&out));
        let now = store.bytes(&cairn);
        Ok::<_, String>((now < bytes_before).then_some(now))
    })
    .unwrap();
    eprintln!(
        "repository: {bytes_before} bytes before expire, {shrunk} after ({} freed)",
        bytes_before - shrunk
    );

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
