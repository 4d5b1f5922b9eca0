//! Shared pieces of the end-to-end tests: a cairn installation in a test directory, its
//! configuration, and running its commands the way PostgreSQL does (as `postgres`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir, run_as_postgres, wait_until};

pub const PASSPHRASE: &str = "correct horse battery staple";

/// A cairn installation for one test: binaries, configuration, repository, spool.
pub struct Cairn {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub repo_dir: PathBuf,
}

/// Where the repository lives.
pub enum RepoSpec<'a> {
    Local,
    S3 {
        endpoint: &'a str,
        bucket: &'a str,
        access_key: &'a str,
        secret_key: &'a str,
    },
    /// Azure Blob Storage (Azurite): `endpoint` includes the account path.
    Azure {
        endpoint: &'a str,
        container: &'a str,
        account: &'a str,
        access_key: &'a str,
    },
    /// Google Cloud Storage (an emulator that checks no credentials).
    Gcs {
        endpoint: &'a str,
        bucket: &'a str,
    },
}

impl Cairn {
    pub fn new(dir: &TestDir, cluster: &PgCluster, repo: RepoSpec<'_>) -> Cairn {
        let bin = cairn_testkit::install_bins(dir).expect("install cairn binaries");
        let repo_dir = dir.subdir("repo").unwrap();
        let spool = dir.subdir("spool").unwrap();
        let repo_section = match repo {
            RepoSpec::Local => format!("path = \"{}\"", repo_dir.display()),
            RepoSpec::S3 {
                endpoint,
                bucket,
                access_key,
                secret_key,
            } => format!(
                "url = \"s3://{bucket}/cairn-test\"\n\n[repo.s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
                 access-key-id = \"{access_key}\"\nsecret-access-key = \"{secret_key}\"\nallow-http = true"
            ),
            RepoSpec::Azure {
                endpoint,
                container,
                account,
                access_key,
            } => format!(
                "url = \"az://{container}/cairn-test\"\n\n[repo.azure]\nendpoint = \"{endpoint}\"\n\
                 account = \"{account}\"\naccess-key = \"{access_key}\"\nallow-http = true"
            ),
            RepoSpec::Gcs { endpoint, bucket } => format!(
                "url = \"gs://{bucket}/cairn-test\"\n\n[repo.gcs]\nendpoint = \"{endpoint}\"\n\
                 anonymous = true\nallow-http = true"
            ),
        };
        // A [repo.*] table must come last in [repo]; cipher-pass goes first.
        let text = format!(
            "[archive]\nspool-path = \"{}\"\n\n[stanza.main]\npg-data = \"{}\"\npg-host = \"{}\"\npg-port = {}\n\n\
             [repo]\ncipher-pass = \"{PASSPHRASE}\"\n{repo_section}\n",
            spool.display(),
            cluster.data_dir().display(),
            cluster.socket_dir().display(),
            cluster.port(),
        );
        let config = dir.path().join("cairn.toml");
        std::fs::write(&config, text).unwrap();
        // It holds the passphrase: private, as cairn asks (it warns about a readable one).
        std::fs::set_permissions(
            &config,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        cairn_testkit::chown_to_postgres(&config).unwrap();
        Cairn {
            bin,
            config,
            repo_dir,
        }
    }

    /// Turn on `[archive] async = true` with `process-max` workers.
    pub fn enable_async(&self, process_max: u32) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen(
            "[archive]\n",
            &format!("[archive]\nasync = true\nprocess-max = {process_max}\n"),
            1,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Add `key = value` (`value` in TOML, e.g. `"1s"` with its quotes) to `[repo]`.
    pub fn set_repo(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen("[repo]\n", &format!("[repo]\n{key} = {value}\n"), 1);
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn exe(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `archive_command` as an operator would write it, with the config in the environment.
    pub fn archive_command(&self) -> String {
        format!(
            "CAIRN_CONFIG={} {} %p",
            self.config.display(),
            self.exe("cairn-archive-push").display()
        )
    }

    pub fn restore_command(&self) -> String {
        format!(
            "CAIRN_CONFIG={} {} %f \"%p\"",
            self.config.display(),
            self.exe("cairn-archive-get").display()
        )
    }

    /// Run a cairn binary as the postgres user with this configuration.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.run_env(program, args, &[])
    }

    pub fn run_env(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(self.exe(program));
        cmd.args(args)
            .env("CAIRN_CONFIG", &self.config)
            .current_dir("/");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_as_postgres(&mut cmd).unwrap();
        cmd.output().expect("run cairn")
    }

    /// `cairn ARGS`, asserting success; returns stdout.
    pub fn cairn_ok(&self, args: &[&str]) -> String {
        let out = self.run("cairn", args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn info_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.cairn_ok(&["info", "--output", "json"])).unwrap()
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A new (stopped) PostgreSQL `major` cluster with 1 MiB WAL segments: tests fill many
/// segments quickly.
pub fn small_wal_cluster(major: u32, dir: &TestDir) -> PgCluster {
    let install = PgInstall::find(major).unwrap();
    PgCluster::init(
        &install,
        dir,
        ClusterOptions {
            wal_segsize_mb: Some(1),
            ..Default::default()
        },
    )
    .unwrap()
}

/// A PostgreSQL 15 cluster with 1 MiB segments that records commit timestamps and runs no
/// autovacuum (the workload's commits are the only ones), archiving into a new stanza, with
/// table `r`: one row per transaction, `id` in commit order.
pub fn commit_log_cluster(dir: &TestDir) -> (PgCluster, Cairn) {
    let mut primary = small_wal_cluster(15, dir);
    primary.set_conf("track_commit_timestamp", "on").unwrap();
    primary.set_conf("autovacuum", "off").unwrap();
    let cairn = Cairn::new(dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    primary
        .psql("CREATE TABLE r (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    (primary, cairn)
}

/// Configure archiving to cairn and start the cluster.
pub fn start_archiving(cluster: &mut PgCluster, cairn: &Cairn) {
    cluster.set_conf("archive_mode", "on").unwrap();
    cluster
        .set_conf(
            "archive_command",
            &format!("'{}'", cairn.archive_command().replace('\'', "''")),
        )
        .unwrap();
    cluster.start().unwrap();
}

/// A workload: `rounds` batches of rows, each followed by a WAL switch. Returns the name of
/// the last segment switched away from.
pub fn workload(cluster: &PgCluster, rounds: usize) -> String {
    cluster
        .psql("CREATE TABLE IF NOT EXISTS t (id bigserial PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    let mut last = String::new();
    for _ in 0..rounds {
        cluster
            .psql(
                "INSERT INTO t (v) SELECT md5(random()::text) || g FROM generate_series(1, 3000) g",
            )
            .unwrap();
        last = cluster
            .psql("SELECT pg_walfile_name(pg_switch_wal())")
            .unwrap();
    }
    last
}

/// Wait until PostgreSQL's archiver reports `segment` (or a later one) archived.
pub fn wait_archived(cluster: &PgCluster, segment: &str) {
    wait_until("archiver to reach the segment", Duration::from_secs(120), || {
        let row = cluster.psql("SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver")?;
        let mut parts = row.split('|');
        let last = parts.next().unwrap_or_default().to_string();
        Ok::<_, cairn_testkit::Error>((last.len() == 24 && last.as_str() >= segment).then_some(()))
    })
    .unwrap();
}

pub fn table_checksum(cluster: &PgCluster) -> String {
    cluster.psql("SELECT count(*) || ':' || md5(string_agg(id || ':' || v || ':' || at, ',' ORDER BY id)) FROM t").unwrap()
}

/// Find a file under `root` whose path ends with `suffix`.
pub fn find_file(root: &Path, suffix: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, suffix) {
                return Some(f);
            }
        } else if p.to_string_lossy().ends_with(suffix) {
            return Some(p);
        }
    }
    None
}

/// `cairn restore --pg-data DIR ARGS` into a directory that does not exist and into an
/// empty one: each must exit with `code`, print one `cairn: ERROR` line and a `HINT:`, and
/// leave the directory as it was. Returns (error line, hint line).
pub fn refused(cairn: &Cairn, dir: &TestDir, args: &[&str], code: i32) -> (String, String) {
    let missing = dir.path().join("refused-missing");
    let empty = dir.subdir("refused-empty").unwrap();
    let mut lines = (String::new(), String::new());
    for target in [&missing, &empty] {
        let mut all = vec!["restore", "--pg-data", target.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = cairn.run("cairn", &all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("cairn: ERROR: "))
            .collect();
        let hints: Vec<&str> = err.lines().filter(|l| l.starts_with("HINT: ")).collect();
        assert!(
            errors.len() == 1 && hints.len() == 1,
            "{args:?}: {}",
            describe(&out)
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
        assert_eq!(
            std::fs::read_dir(&empty).unwrap().count(),
            0,
            "{args:?} wrote into {}",
            empty.display()
        );
        lines = (errors[0].to_string(), hints[0].to_string());
    }
    lines
}

/// The name of the WAL segment holding `lsn` (`X/Y`) on timeline `tli`.
pub fn segment_of(lsn: &str, tli: u32, seg_bytes: u64) -> String {
    let seg = cairn_pgformat::WalSegmentSize::new(seg_bytes as u32).unwrap();
    cairn_pgformat::SegmentName::containing(
        cairn_pgformat::TimelineId(tli),
        lsn.parse().unwrap(),
        seg,
    )
    .to_string()
}

/// The segment after `name` (a 24-character WAL segment name).
pub fn next_segment(name: &str, seg_bytes: u64) -> String {
    let seg = cairn_pgformat::WalSegmentSize::new(seg_bytes as u32).unwrap();
    match name.parse().unwrap() {
        cairn_pgformat::WalFileName::Segment(s) => s.next(seg).to_string(),
        other => panic!("{other:?} is not a segment"),
    }
}

/// How far recovery must get before a restored cluster is handed to the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Consistent and paused at the target (recovery_target_action = pause), or promoted.
    Consistent,
    /// Recovery ended and the cluster was promoted.
    Promoted,
}

/// `cairn restore --pg-data DATA ARGS...`, asserting success.
pub fn restore(cairn: &Cairn, data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["restore", "--pg-data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = cairn.run("cairn", &all);
    assert!(out.status.success(), "cairn {all:?}: {}", describe(&out));
    out
}

/// Start a restored data directory (archiving off unless `archive`) and wait until it has
/// recovered as far as `until`.
pub fn start_restored(
    dir: &TestDir,
    like: &PgCluster,
    data: &Path,
    archive: bool,
    until: Recovered,
) -> PgCluster {
    let mut pg = PgCluster::from_existing_data_dir(like.install(), dir, data).unwrap();
    if !archive {
        pg.set_conf("archive_mode", "off").unwrap();
    }
    pg.start().unwrap();
    let sql = match until {
        Recovered::Consistent => "SELECT pg_is_wal_replay_paused() OR NOT pg_is_in_recovery()",
        Recovered::Promoted => "SELECT NOT pg_is_in_recovery()",
    };
    wait_until(
        "the restored cluster to recover",
        Duration::from_secs(120),
        || Ok::<_, cairn_testkit::Error>(pg.psql(sql).ok().filter(|r| r == "t")),
    )
    .unwrap();
    pg
}
