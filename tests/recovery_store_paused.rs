//! Recovery while the object store hangs (PostgreSQL 15, moto S3 stopped with SIGSTOP past
//! cairn's retry budget, `[repo] io-timeout = "1s"`, `retry-max = 1`):
//!
//! - a restore to the end of the archive stops with FATAL at the segment the store could
//!   not deliver, naming it, and never comes up promoted;
//! - a `--standby` restore keeps retrying that segment (`archive-get` exits below 126, so
//!   the standby stays up) and catches up once the store answers again.
//!
//! To pause the store at a known point of recovery, the test puts a gate in front of the
//! `restore_command` cairn wrote: when PostgreSQL asks for segment K, the gate reports it and
//! waits for the test to pause the store, then runs cairn's command unchanged.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_testkit::{PgCluster, S3Server, TestDir, wait_until};
use support::{Cairn, RepoSpec, next_segment, segment_of, start_archiving};

const SEG: u64 = 1 << 20;

/// The `restore_command` `cairn restore` wrote into `data`'s `postgresql.auto.conf`.
fn written_restore_command(data: &Path) -> String {
    let conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    let line = conf
        .lines()
        .rev()
        .find(|l| l.starts_with("restore_command = '"))
        .unwrap_or_else(|| panic!("no restore_command in:\n{conf}"));
    let quoted = line.trim_start_matches("restore_command = ");
    quoted[1..quoted.len() - 1].replace("''", "'")
}

/// A gate before the written `restore_command`: asked for `at`, it creates `gate/reached`
/// and waits (at most a minute) for `gate/open`. Everything else goes straight through.
fn gate(pg: &PgCluster, data: &Path, gate: &Path, at: &str) {
    let original = written_restore_command(data);
    let g = gate.display();
    let command = format!(
        "if [ \"%f\" = \"{at}\" ] && [ ! -e {g}/open ]; then touch {g}/reached; i=0; \
         while [ ! -e {g}/open ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; fi; {original}"
    );
    pg.set_conf("restore_command", &command).unwrap();
}

fn gate_dir(dir: &TestDir, name: &str) -> PathBuf {
    let g = dir.subdir(name).unwrap();
    cairn_testkit::chown_to_postgres(&g).unwrap();
    g
}

/// Wait until PostgreSQL asks for the gated segment, pause the store, open the gate.
fn pause_at_gate(s3: &S3Server, gate: &Path) {
    wait_until(
        "recovery to ask for the gated segment",
        Duration::from_secs(120),
        || Ok::<_, std::io::Error>(gate.join("reached").exists().then_some(())),
    )
    .unwrap();
    s3.pause().unwrap();
    std::fs::write(gate.join("open"), "").unwrap();
}

/// cairn's error lines in a server log that name `segment`.
fn cairn_errors<'a>(log: &'a str, segment: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.starts_with("cairn-archive-get: ERROR:") && l.contains(segment))
        .collect()
}

#[test]
fn pg15_recovery_with_the_store_hung_stops_and_a_standby_waits_for_it() {
    let dir = TestDir::new().unwrap();
    let s3 = S3Server::start().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
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
    cairn.set_repo("io-timeout", "\"1s\"");
    cairn.set_repo("retry-max", "1");
    cairn.set_repo("retry-timeout", "\"2s\"");
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    support::workload(&primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    support::workload(&primary, 8);
    primary
        .psql("CREATE TABLE marker AS SELECT 42 AS x")
        .unwrap();
    let marker_lsn = primary.psql("SELECT pg_current_wal_insert_lsn()").unwrap();
    let last = primary
        .psql("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    support::wait_archived(&primary, &last);
    let info = cairn.info_json();
    let full = &info["stanzas"][0]["backups"][0];
    let label = full["label"].as_str().unwrap().to_string();
    let mut before = segment_of(full["stop"]["lsn"].as_str().unwrap(), 1, SEG);
    for _ in 0..3 {
        before = next_segment(&before, SEG);
    }
    let held = next_segment(&before, SEG);
    assert!(held < last, "{held} is not before the last segment {last}");

    // Recovery to the end of the archive: the store hangs at `held`, recovery stops there.
    let data = dir.path().join("stopped");
    support::restore(&cairn, &data, &["--set", &label]);
    let mut pg = PgCluster::from_existing_data_dir(primary.install(), &dir, &data).unwrap();
    pg.set_conf("archive_mode", "off").unwrap();
    let g = gate_dir(&dir, "gate-recovery");
    gate(&pg, &data, &g, &held);
    pg.start_no_wait().unwrap();
    pause_at_gate(&s3, &g);
    wait_until(
        "recovery to stop at the segment the store does not deliver",
        Duration::from_secs(120),
        || {
            let promoted = pg
                .psql("SELECT pg_is_in_recovery()")
                .is_ok_and(|r| r == "f");
            assert!(!promoted, "came up promoted:\n{}", pg.log_tail(40));
            let log = std::fs::read_to_string(pg.log_path()).unwrap_or_default();
            let gave_up = log.contains("due to startup process failure");
            Ok::<_, cairn_testkit::Error>((gave_up && !pg.is_running()).then_some(()))
        },
    )
    .unwrap();
    s3.resume().unwrap();
    let log = std::fs::read_to_string(pg.log_path()).unwrap();
    assert!(
        log.contains(&format!("restored log file \"{before}\" from archive")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "FATAL:  could not restore file \"{held}\" from archive"
        )),
        "{log}"
    );
    let errors = cairn_errors(&log, &held);
    assert!(
        errors
            .iter()
            .any(|l| l.contains("could not be restored") && l.contains("timed out")),
        "{log}"
    );
    assert!(!data.join("pg_wal/00000002.history").exists());
    let keys = s3
        .list_keys("cairn-test/stanza/main/wal/1/00000002")
        .unwrap();
    assert!(keys.is_empty(), "a new timeline was archived: {keys:?}");

    // A standby: the same outage is waited out.
    let data = dir.path().join("standby");
    support::restore(&cairn, &data, &["--set", &label, "--standby"]);
    let written = written_restore_command(&data);
    assert!(written.contains("--standby"), "{written}");
    let mut standby = PgCluster::from_existing_data_dir(primary.install(), &dir, &data).unwrap();
    standby.set_conf("archive_mode", "off").unwrap();
    standby
        .set_conf("wal_retrieve_retry_interval", "200ms")
        .unwrap();
    let g = gate_dir(&dir, "gate-standby");
    gate(&standby, &data, &g, &held);
    standby.start_no_wait().unwrap();
    pause_at_gate(&s3, &g);
    wait_until(
        "the standby to try the held segment again",
        Duration::from_secs(120),
        || {
            let log = std::fs::read_to_string(standby.log_path()).unwrap_or_default();
            Ok::<_, std::io::Error>((cairn_errors(&log, &held).len() >= 2).then_some(()))
        },
    )
    .unwrap();
    let log = std::fs::read_to_string(standby.log_path()).unwrap();
    assert!(
        !log.contains("could not restore file") && !log.contains("startup process"),
        "{log}"
    );
    assert!(standby.is_running());
    assert!(standby.is_in_recovery().unwrap());
    let replayed = |pg: &PgCluster| {
        pg.psql(&format!(
            "SELECT pg_last_wal_replay_lsn() >= '{marker_lsn}'::pg_lsn"
        ))
    };
    assert_eq!(replayed(&standby).unwrap(), "f");
    s3.resume().unwrap();
    wait_until(
        "the standby to catch up once the store answers",
        Duration::from_secs(120),
        || Ok::<_, cairn_testkit::Error>(replayed(&standby).ok().filter(|r| r == "t")),
    )
    .unwrap();
    assert_eq!(standby.psql("SELECT x FROM marker").unwrap(), "42");
    assert!(
        standby.is_in_recovery().unwrap(),
        "a standby stays in recovery"
    );
    standby.stop().unwrap();
}
