//! The WAL archive path end to end against PostgreSQL 15: a primary archives through
//! `cairn-archive-push`, a copy made with `pg_basebackup -X none` recovers through
//! `cairn-archive-get` to the end of the archive, and its data equals the primary's.

mod support;

use std::time::Duration;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, S3Server, TestDir, wait_until};
use support::{Cairn, RepoSpec, start_archiving, table_checksum, wait_archived, workload};

fn archive_and_recover(dir: &TestDir, primary: &mut PgCluster, cairn: &Cairn) {
    start_archiving(primary, cairn);
    let out = cairn.cairn_ok(&["stanza-create"]);
    assert!(out.contains("created stanza 'main'"), "{out}");
    // Running it again for the same cluster is a no-op.
    assert!(
        cairn
            .cairn_ok(&["stanza-create"])
            .contains("already exists")
    );

    let replica_dir = dir.subdir("replica").unwrap();
    std::fs::remove_dir(&replica_dir).unwrap();
    primary.basebackup_into(&replica_dir).unwrap();

    let last = workload(primary, 24);
    wait_archived(primary, &last);
    let expected = table_checksum(primary);
    let archived: i64 = primary
        .psql("SELECT archived_count FROM pg_stat_archiver")
        .unwrap()
        .parse()
        .unwrap();
    assert!(archived >= 20, "only {archived} segments archived");

    // The catalog shows one timeline, no gaps, up to the last switched segment.
    let info = cairn.info_json();
    let tl = &info["stanzas"][0]["archive"][0];
    assert_eq!(tl["timeline"], 1, "{info:#}");
    assert_eq!(tl["gaps"].as_array().unwrap().len(), 0, "{info:#}");
    assert!(
        tl["ranges"][0]["last"].as_str().unwrap() >= last.as_str(),
        "{info:#}"
    );
    assert!(tl["last_commit"].is_string(), "{info:#}");
    let text = cairn.cairn_ok(&["info"]);
    assert!(
        text.contains("timeline 1") && !text.contains("GAP"),
        "{text}"
    );

    let mut replica =
        PgCluster::from_existing_data_dir(primary.install(), dir, &replica_dir).unwrap();
    replica.set_conf("archive_mode", "off").unwrap();
    replica
        .set_conf(
            "restore_command",
            &format!("'{}'", cairn.restore_command().replace('\'', "''")),
        )
        .unwrap();
    std::fs::write(replica_dir.join("recovery.signal"), "").unwrap();
    cairn_testkit::chown_to_postgres(&replica_dir.join("recovery.signal")).unwrap();
    replica.start().unwrap();
    wait_until(
        "replica to finish archive recovery",
        Duration::from_secs(120),
        || {
            Ok::<_, cairn_testkit::Error>(
                (replica.psql("SELECT pg_is_in_recovery()")? == "f").then_some(()),
            )
        },
    )
    .unwrap();
    assert_eq!(table_checksum(&replica), expected);
    replica.stop().unwrap();
}

#[test]
fn pg15_archives_and_recovers_from_a_local_repository() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    archive_and_recover(&dir, &mut primary, &cairn);
    // Objects really are encrypted: no archived object contains the table's text.
    let sample = primary.psql("SELECT v FROM t ORDER BY id LIMIT 1").unwrap();
    let wal_obj =
        support::find_file(&cairn.repo_dir, &last_segment_name(&primary)).expect("a WAL object");
    let bytes = std::fs::read(wal_obj).unwrap();
    assert!(!bytes.windows(sample.len()).any(|w| w == sample.as_bytes()));
}

fn last_segment_name(cluster: &PgCluster) -> String {
    cluster
        .psql("SELECT last_archived_wal FROM pg_stat_archiver")
        .unwrap()
}

#[test]
fn pg15_archives_and_recovers_from_s3() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let s3 = S3Server::start().unwrap();
    let mut primary = PgCluster::init(
        &install,
        &dir,
        ClusterOptions {
            wal_segsize_mb: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
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
    archive_and_recover(&dir, &mut primary, &cairn);
    // Nothing was written to the local repository directory: it all went to S3.
    assert!(std::fs::read_dir(&cairn.repo_dir).unwrap().next().is_none());
}

#[test]
fn pg15_async_archiving_recovers_to_the_same_data() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    cairn.enable_async(2);
    archive_and_recover(&dir, &mut primary, &cairn);
    // The spool holds no leftover markers: every .ok was consumed by its archive_command.
    let spool = dir.path().join("spool/main/archive");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ok") || n.ends_with(".error"))
        .collect();
    assert!(left.len() <= 2, "unconsumed markers: {left:?}");
    // The worker ran, and exits by itself once idle (no process outlives the test).
    let lock = std::fs::File::options()
        .write(true)
        .open(spool.join("worker.lock"))
        .expect("the async worker ran");
    wait_until("the async worker to exit", Duration::from_secs(30), || {
        Ok::<_, std::io::Error>(lock.try_lock().ok())
    })
    .unwrap();
    // Recovery went through the prefetch worker, which also exits once idle.
    let get = std::fs::read_dir(dir.path().join("spool/main/get"))
        .expect("archive-get prefetched")
        .flatten()
        .next()
        .expect("the prefetch worker's directory")
        .path();
    let want = std::fs::read_to_string(get.join("want")).unwrap();
    assert!(want.starts_with("00000001"), "last segment served: {want}");
    let lock = std::fs::File::options()
        .write(true)
        .open(get.join("worker.lock"))
        .expect("the prefetch worker ran");
    wait_until(
        "the prefetch worker to exit",
        Duration::from_secs(30),
        || Ok::<_, std::io::Error>(lock.try_lock().ok()),
    )
    .unwrap();
}

#[test]
fn pg17_and_pg18_archive_and_recover() {
    for major in [17, 18] {
        let dir = TestDir::new().unwrap();
        let mut primary = support::small_wal_cluster(major, &dir);
        let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
        archive_and_recover(&dir, &mut primary, &cairn);
        let info = cairn.info_json();
        assert_eq!(info["stanzas"][0]["db"][0]["pg_version"], major, "{info:#}");
    }
}
