//! A real PostgreSQL 15 starts on what cairn-restore wrote, recovers from the archive, and
//! has the primary's data, tablespace included (relocated). The backup is a plain
//! `pg_basebackup` copied into an in-memory repository the way cairn's backup stores one
//! (tablespace links only in `tablespace_map`), so this checks the executor against the
//! server before `cairn backup` exists.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_restore::{RecoverySettings, RestoreOptions, restore_backup};
use cairn_testkit::{
    ClusterOptions, PgCluster, PgInstall, TestDir, chown_to_postgres_recursive, wait_until,
};
use common::Fixture;

/// Every entry under `dir`, parents first: (relative path, is directory, mode).
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf, bool, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let md = std::fs::symlink_metadata(&path).unwrap();
        if md.file_type().is_symlink() {
            continue; // pg_tblspc/OID: the manifest has tablespace_map instead
        }
        let mode = md.permissions().mode() & 0o777;
        out.push((rel.clone(), path.clone(), md.is_dir(), mode));
        if md.is_dir() {
            walk(&path, &rel, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_a_restored_backup_with_a_relocated_tablespace() {
    // No skipping: scripts/install-test-deps.sh installs PostgreSQL 15.
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let archive = dir.subdir("archive").unwrap();
    let ts_original = dir.subdir("ts-original").unwrap();
    let primary = PgCluster::start_new(
        &install,
        &dir,
        ClusterOptions::new()
            .name("primary")
            .conf("archive_mode", "on")
            .conf("archive_command", format!("cp %p {}/%f", archive.display())),
    )
    .unwrap();
    primary
        .psql(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}';
             CREATE TABLE main_rows AS SELECT g AS x FROM generate_series(1, 20000) g;
             CREATE TABLE ts_rows TABLESPACE ts1 AS SELECT g AS x FROM generate_series(1, 5000) g;",
            ts_original.display()
        ))
        .unwrap();
    let oid: u32 = primary
        .psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
        .unwrap()
        .parse()
        .unwrap();

    // Plain pg_basebackup, tablespace mapped aside so the original stays in use.
    let bb = dir.path().join("bb");
    let bb_ts = dir.path().join("bb-ts");
    primary
        .basebackup_into_with(
            &bb,
            &cairn_testkit::BaseBackupOptions {
                extra_args: vec![format!(
                    "--tablespace-mapping={}={}",
                    ts_original.display(),
                    bb_ts.display()
                )],
                ..Default::default()
            },
        )
        .unwrap();
    // After the backup: only WAL replay brings these.
    primary
        .psql(
            "INSERT INTO main_rows SELECT g FROM generate_series(20001, 21000) g;
             INSERT INTO ts_rows SELECT g FROM generate_series(5001, 5500) g;",
        )
        .unwrap();
    let last = primary.switch_wal().unwrap();
    wait_until(
        "the last segment to be archived",
        Duration::from_secs(60),
        || Ok::<_, String>(archive.join(&last).exists().then_some(())),
    )
    .unwrap();

    // Into the repository, as cairn's backup stores it.
    let mut fx = Fixture::with_pack_target(4 << 20).await;
    let mut entries = Vec::new();
    walk(&bb, "", &mut entries);
    walk(&bb_ts, &format!("pg_tblspc/{oid}"), &mut entries);
    for (rel, path, is_dir, mode) in entries {
        if rel == "backup_label" || rel == "backup_manifest" {
            continue;
        }
        if is_dir {
            fx.dir(&rel, mode);
        } else {
            fx.file(&rel, mode, &std::fs::read(&path).unwrap(), 256 << 10)
                .await;
        }
    }
    fx.tablespace(oid, &ts_original);
    let (repo, stanza, mut manifest) = fx.manifest().await;
    manifest.backup_label = std::fs::read_to_string(bb.join("backup_label")).unwrap();
    manifest.tablespace_map = Some(format!("{oid} {}\n", ts_original.display()));

    let restored = dir.path().join("restored");
    let ts_new = dir.path().join("ts-relocated");
    // Shell and configuration quoting both matter here.
    let restore_command = format!("cp '{}'/%f \"%p\"", archive.display());
    let mut opts = RestoreOptions::new(
        &restored,
        RecoverySettings::new(cairn_restore::RestoreCommand::Custom(
            restore_command.clone(),
        )),
    );
    opts.tablespace_map.insert(oid, ts_new.clone());
    let report = restore_backup(&repo, &stanza, &manifest, &opts)
        .await
        .unwrap();
    assert!(report.files > 900, "{report:?}");
    chown_to_postgres_recursive(&ts_new).unwrap();

    let mut pg = PgCluster::from_existing_data_dir(&install, &dir, &restored).unwrap();
    pg.set_conf("archive_mode", "off").unwrap();
    pg.start().unwrap();
    // No target: recovery replays the whole archive, then promotes.
    wait_until("recovery to finish", Duration::from_secs(120), || {
        Ok::<_, cairn_testkit::Error>(
            pg.psql("SELECT NOT pg_is_in_recovery()")
                .ok()
                .filter(|r| r == "t"),
        )
    })
    .unwrap();
    assert_eq!(pg.psql("SHOW restore_command").unwrap(), restore_command);
    assert_eq!(
        pg.psql("SELECT count(*), max(x) FROM main_rows").unwrap(),
        "21000|21000"
    );
    assert_eq!(
        pg.psql("SELECT count(*), max(x) FROM ts_rows").unwrap(),
        "5500|5500"
    );
    assert_eq!(
        pg.psql(&format!("SELECT pg_tablespace_location({oid})"))
            .unwrap(),
        ts_new.canonicalize().unwrap().display().to_string()
    );

    // The restored cluster ran and changed; --delta brings it back to the backup, and it
    // recovers the same way again.
    pg.psql(
        "DELETE FROM main_rows WHERE x % 2 = 0; DELETE FROM ts_rows; CHECKPOINT;
         CREATE TABLE extra AS SELECT 1 AS y;",
    )
    .unwrap();
    pg.stop().unwrap();
    drop(pg);
    opts.delta = true;
    let delta = restore_backup(&repo, &stanza, &manifest, &opts)
        .await
        .unwrap();
    assert!(
        delta.bytes_written < report.bytes_written / 2,
        "delta {delta:?} vs full {report:?}"
    );
    assert!(delta.removed > 0);
    chown_to_postgres_recursive(&ts_new).unwrap();
    let mut pg = PgCluster::from_existing_data_dir(&install, &dir, &restored).unwrap();
    pg.set_conf("archive_mode", "off").unwrap();
    pg.start().unwrap();
    wait_until(
        "recovery after delta to finish",
        Duration::from_secs(120),
        || {
            Ok::<_, cairn_testkit::Error>(
                pg.psql("SELECT NOT pg_is_in_recovery()")
                    .ok()
                    .filter(|r| r == "t"),
            )
        },
    )
    .unwrap();
    assert_eq!(
        pg.psql("SELECT count(*), max(x) FROM main_rows").unwrap(),
        "21000|21000"
    );
    assert_eq!(
        pg.psql("SELECT count(*), max(x) FROM ts_rows").unwrap(),
        "5500|5500"
    );
    assert_eq!(pg.psql("SELECT to_regclass('extra') IS NULL").unwrap(), "t");
    pg.stop().unwrap();
}
