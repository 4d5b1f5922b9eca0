//! cairn on each object store, end to end against PostgreSQL 15 and a real server on
//! 127.0.0.1: S3 (moto), Azure Blob Storage (Azurite). One scenario, one test per store:
//! archive-push of real WAL from `archive_command`, a full backup and an incr, a restore of
//! the incr that replays later WAL through archive-get, and the restored cluster's rows equal
//! the primary's. Add further steps (expire, verify) to [`scenario`] and every store runs them.
//!
//! GCS has no such test: its emulator here (fake-gcs-server) does not take the uploads
//! object_store makes (decision 015). Its test checks that cairn then fails loudly and
//! PostgreSQL keeps its WAL.

mod support;

use cairn_testkit::{AzuriteServer, GcsServer, PgCluster, S3Server, TestDir};
use support::{Cairn, Recovered, RepoSpec, describe, start_archiving, table_checksum, workload};

/// One store under test: a cairn configured for it, and the keys it holds.
trait Store {
    fn cairn(&self, dir: &TestDir, cluster: &PgCluster) -> Cairn;
    fn keys(&self, prefix: &str) -> Vec<String>;
}

impl Store for S3Server {
    fn cairn(&self, dir: &TestDir, cluster: &PgCluster) -> Cairn {
        let endpoint = self.endpoint();
        let spec = RepoSpec::S3 {
            endpoint: &endpoint,
            bucket: self.bucket(),
            access_key: self.access_key_id(),
            secret_key: self.secret_access_key(),
        };
        Cairn::new(dir, cluster, spec)
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.list_keys(prefix).unwrap()
    }
}

impl Store for AzuriteServer {
    fn cairn(&self, dir: &TestDir, cluster: &PgCluster) -> Cairn {
        let endpoint = self.endpoint();
        let spec = RepoSpec::Azure {
            endpoint: &endpoint,
            container: self.container(),
            account: self.account(),
            access_key: self.access_key(),
        };
        Cairn::new(dir, cluster, spec)
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.list_keys(prefix).unwrap()
    }
}

fn backup(cairn: &Cairn, kind: &str) -> serde_json::Value {
    cairn.cairn_ok(&["backup", "--type", kind]);
    let info = cairn.info_json();
    info["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

/// Archive, back up (full, then incr), restore the incr to the end of the archive, compare.
fn scenario(store: &dyn Store) {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = store.cairn(&dir, &primary);
    start_archiving(&mut primary, &cairn);
    let out = cairn.cairn_ok(&["stanza-create"]);
    assert!(out.contains("created stanza 'main'"), "{out}");

    workload(&primary, 3);
    let full = backup(&cairn, "full");
    assert_eq!(full["type"], "full", "{full:#}");
    workload(&primary, 3);
    let incr = backup(&cairn, "incr");
    assert_eq!(incr["type"], "incr", "{incr:#}");
    assert_eq!(incr["parent"], full["label"], "{incr:#}");

    // Rows written after the incr reach a restore only through archived WAL.
    let last = workload(&primary, 3);
    support::wait_archived(&primary, &last);
    let expected = table_checksum(&primary);
    let failed: i64 = primary
        .psql("SELECT failed_count FROM pg_stat_archiver")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(failed, 0, "archive_command failed on this store");

    let target = dir.path().join("restored");
    let label = incr["label"].as_str().unwrap();
    support::restore(
        &cairn,
        &target,
        &["--set", label, "--target-action", "promote"],
    );
    let mut restored = support::start_restored(&dir, &primary, &target, false, Recovered::Promoted);
    assert_eq!(table_checksum(&restored), expected, "restore of {label}");
    restored.stop().unwrap();

    // Verify reads every object back from the store; expire drops the full there, and its
    // incr (every manifest is complete) still verifies and stays listed.
    cairn.cairn_ok(&["verify"]);
    let full_label = full["label"].as_str().unwrap();
    cairn.cairn_ok(&["expire", "--set", full_label]);
    cairn.cairn_ok(&["verify", "--set", label]);
    let info = cairn.info_json();
    let listed: Vec<&str> = info["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [label], "{info:#}");

    // Everything went to the store, nothing to the local repository directory.
    assert!(std::fs::read_dir(&cairn.repo_dir).unwrap().next().is_none());
    let keys = store.keys("cairn-test/");
    assert!(
        keys.iter().any(|k| k.contains(&last)),
        "the last segment {last} is not among the store's {} keys",
        keys.len()
    );
    primary.stop().unwrap();
}

#[test]
fn pg15_archive_backup_restore_on_s3() {
    scenario(&S3Server::start().unwrap());
}

#[test]
fn pg15_archive_backup_restore_on_azurite() {
    scenario(&AzuriteServer::start().unwrap());
}

#[test]
fn pg15_on_the_gcs_emulator_cairn_fails_loudly_and_postgres_keeps_its_wal() {
    let gcs = GcsServer::start().unwrap();
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let endpoint = gcs.endpoint();
    let cairn = Cairn::new(
        &dir,
        &primary,
        RepoSpec::Gcs {
            endpoint: &endpoint,
            bucket: gcs.bucket(),
        },
    );
    start_archiving(&mut primary, &cairn);
    // The repository's first object is refused by the emulator: one error line naming the
    // store, exit 4 (repository unavailable), and nothing stored.
    let out = cairn.run("cairn", &["stanza-create"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("400"), "{err}");
    assert!(gcs.list_keys("cairn-test/").unwrap().is_empty());

    // archive_command fails, so PostgreSQL keeps the segment and retries it.
    let segment = primary
        .psql("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    let wal = primary.data_dir().join("pg_wal").join(&segment);
    let out = cairn.run("cairn-archive-push", &[wal.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_ne!(out.status.code(), Some(0));
    assert!(wal.exists(), "PostgreSQL's copy of {segment} is gone");
    assert!(gcs.list_keys("").unwrap().is_empty());
    primary.stop().unwrap();
}
