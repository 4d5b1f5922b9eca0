//! The kit's PostgreSQL fixtures against real servers.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cairn_testkit::{
    BaseBackupOptions, ClusterOptions, Error, PgClientTools, PgCluster, PgInstall, PostgresUser,
    TestDir, WalMethod, is_root, wait_until,
};

#[test]
fn pg15_init_start_query_stop() -> Result<(), Error> {
    let dir = TestDir::new()?;
    let install = PgInstall::find(15)?;
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::new().wal_segsize_mb(1))?;
    assert!(!pg.is_running());
    pg.start()?;
    assert!(pg.is_running());
    assert_eq!(pg.version_major(), 15);
    assert_eq!(pg.psql("SHOW wal_level")?, "replica");
    assert_eq!(pg.psql("SHOW wal_segment_size")?, "1MB");
    assert_eq!(pg.psql("SHOW fsync")?, "off");
    assert_eq!(pg.psql("SHOW port")?, pg.port().to_string());
    // Several statements, one output line per row.
    let out = pg.psql(
        "CREATE TABLE t(x int); INSERT INTO t VALUES (1), (2); SELECT x FROM t ORDER BY x;",
    )?;
    assert_eq!(out, "1\n2");
    // Errors carry psql's stderr.
    let err = pg.psql("SELECT * FROM no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    if is_root() {
        let user = PostgresUser::get()?;
        assert_eq!(std::fs::metadata(pg.data_dir()).unwrap().uid(), user.uid);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().uid(), user.uid);
    }
    pg.stop()?;
    assert!(!pg.is_running());
    pg.stop()?; // stopping a stopped cluster is fine
    Ok(())
}

#[test]
fn set_conf_restart_crash_and_recover() -> Result<(), Error> {
    let dir = TestDir::new()?;
    let mut pg = PgCluster::start_new(
        &PgInstall::find(15)?,
        &dir,
        ClusterOptions::new().name("crashy"),
    )?;
    pg.set_conf("work_mem", "8MB")?;
    pg.set_conf("application_name", "it's quoted")?;
    pg.set_conf("cluster_name", "'already ''quoted'''")?;
    pg.reload()?;
    wait_until("work_mem to change", Duration::from_secs(10), || {
        Ok::<_, Error>((pg.psql("SHOW work_mem")? == "8MB").then_some(()))
    })?;
    pg.restart()?;
    assert_eq!(pg.psql("SHOW cluster_name")?, "already 'quoted'");
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS x")?;
    pg.kill_postmaster()?;
    assert!(!pg.is_running());
    pg.start()?; // crash recovery
    assert_eq!(pg.psql("SELECT count(*) FROM t")?, "100");
    assert!(
        pg.log_tail(200).contains("not properly shut down"),
        "{}",
        pg.log_tail(50)
    );
    pg.stop_immediate()?;
    pg.restart()?;
    assert_eq!(pg.psql("SELECT count(*) FROM t")?, "100");
    Ok(())
}

#[test]
fn basebackup_restores_into_a_startable_cluster() -> Result<(), Error> {
    let dir = TestDir::new()?;
    let install = PgInstall::find(15)?;
    let primary = PgCluster::start_new(&install, &dir, ClusterOptions::new().name("primary"))?;
    primary.psql("CREATE TABLE t AS SELECT generate_series(1, 10) AS x")?;
    let dest = dir.path().join("copy");
    primary.basebackup_into_with(
        &dest,
        &BaseBackupOptions {
            wal: WalMethod::Fetch,
            ..BaseBackupOptions::default()
        },
    )?;
    let mut copy = PgCluster::from_existing_data_dir(&install, &dir, &dest)?;
    assert_eq!(copy.name(), "copy");
    assert_ne!(copy.port(), primary.port());
    copy.start()?;
    assert_eq!(copy.psql("SELECT sum(x) FROM t")?, "55");
    // The copy is independent of the primary.
    copy.psql("INSERT INTO t VALUES (100)")?;
    assert_eq!(primary.psql("SELECT sum(x) FROM t")?, "55");
    Ok(())
}

#[test]
fn a_failed_start_shows_the_server_log() -> Result<(), Error> {
    let dir = TestDir::new()?;
    let mut pg = PgCluster::init(
        &PgInstall::find(15)?,
        &dir,
        ClusterOptions::new().conf("shared_buffers", "not-a-size"),
    )?;
    let err = pg.start().unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("shared_buffers"), "{text}");
    assert!(text.contains("did not start"), "{text}");
    Ok(())
}

fn smoke(major: u32, checksums: bool) -> Result<(), Error> {
    let dir = TestDir::new()?;
    let install = PgInstall::find(major)?;
    assert_eq!(install.major(), major);
    let pg = PgCluster::start_new(
        &install,
        &dir,
        ClusterOptions::new().data_checksums(checksums),
    )?;
    assert_eq!(pg.version_major(), major);
    let version: u32 = pg.psql("SHOW server_version_num")?.parse().unwrap();
    assert_eq!(version / 10000, major);
    assert_eq!(
        pg.psql("SHOW data_checksums")?,
        if checksums { "on" } else { "off" }
    );
    let segment = pg.switch_wal()?;
    assert_eq!(segment.len(), 24, "{segment}");
    Ok(())
}

#[test]
fn pg16_from_npm() -> Result<(), Error> {
    smoke(16, true)
}

#[test]
fn pg17_from_npm() -> Result<(), Error> {
    smoke(17, false)
}

#[test]
fn pg18_from_npm_and_client_tools() -> Result<(), Error> {
    smoke(18, false)?;
    // pg_basebackup 18 backs up an 18 server; pg_verifybackup 18 checks it.
    let dir = TestDir::new()?;
    let install = PgInstall::find(18)?;
    let pg = PgCluster::start_new(&install, &dir, ClusterOptions::new())?;
    let dest = dir.path().join("backup");
    pg.basebackup_into_with(
        &dest,
        &BaseBackupOptions {
            wal: WalMethod::Stream,
            ..BaseBackupOptions::default()
        },
    )?;
    let tools = PgClientTools::find()?;
    let out = std::process::Command::new(tools.bin("pg_verifybackup"))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn unknown_major_is_a_clear_error() {
    let err = PgInstall::find(9).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

#[test]
fn dropping_never_leaves_a_postmaster_behind() -> Result<(), Error> {
    let install = PgInstall::find(15)?;
    // The right order: the cluster goes first.
    let dir = TestDir::new()?;
    let pg = PgCluster::start_new(&install, &dir, ClusterOptions::new())?;
    let pid = pg.postmaster_pid().expect("postmaster.pid");
    drop(pg);
    assert!(!process_alive(pid));
    // The wrong order: the directory (with postmaster.pid) vanishes under a running server.
    let pg = PgCluster::start_new(&install, &dir, ClusterOptions::new().name("second"))?;
    let pid = pg.postmaster_pid().expect("postmaster.pid");
    drop(dir);
    drop(pg);
    assert!(!process_alive(pid));
    Ok(())
}
