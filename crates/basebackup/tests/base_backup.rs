//! `BASE_BACKUP` against real servers: every file arrives whole, agrees with PostgreSQL's
//! own manifest (sizes, CRC32C checksums, times), the backup_label names the start the
//! stream reported, a tablespace comes as its own archive, and on PostgreSQL 17 and 18 an
//! incremental backup after `UPLOAD_MANIFEST` sends `INCREMENTAL.*` files that parse.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cairn_basebackup::{
    BackupEvent, BaseBackupOptions, ReplicationConnection, ReplicationError, TablespaceInfo,
};
use cairn_pgformat::backup_label::BackupLabelFile;
use cairn_pgformat::backup_manifest::{
    ChecksumAlgorithm, FileChecksummer, PgBackupManifest, WalRange,
};
use cairn_pgformat::incremental::{BLCKSZ, IncrementalEvent, IncrementalParser};
use cairn_pgformat::tar::TarKind;
use cairn_pgformat::{Lsn, TimelineId};
use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir, chown_to_postgres};
use common::{block_on, params};

/// A file as it arrived.
#[derive(Debug)]
struct Streamed {
    size: u64,
    mtime: i64,
    crc32c: Vec<u8>,
    /// Kept for the few files the tests read.
    content: Option<Vec<u8>>,
}

/// Everything a backup stream said, with paths as the manifest writes them (files of a
/// tablespace under `pg_tblspc/<oid>/`).
#[derive(Debug, Default)]
struct Collected {
    start: Option<(Lsn, TimelineId)>,
    end: Option<(Lsn, TimelineId)>,
    tablespaces: Vec<TablespaceInfo>,
    estimated_size: Option<u64>,
    archives: Vec<(String, Option<String>)>,
    files: BTreeMap<String, Streamed>,
    links: BTreeMap<String, String>,
    dirs: BTreeSet<String>,
    manifest: Vec<u8>,
    progress: Vec<u64>,
}

fn keep_content(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(name, "backup_label" | "tablespace_map") || name.starts_with("INCREMENTAL.")
}

fn take_backup(
    conn: &mut ReplicationConnection,
    incremental: bool,
) -> Result<Collected, ReplicationError> {
    block_on(async {
        let opts = BaseBackupOptions {
            label: "cairn test".into(),
            fast_checkpoint: true,
            incremental,
        };
        let mut stream = conn.base_backup(&opts).await?;
        let mut c = Collected::default();
        let mut prefix = String::new();
        let mut open: Option<(String, u64, FileChecksummer, Option<Vec<u8>>)> = None;
        while let Some(event) = stream.next_event().await? {
            match event {
                BackupEvent::Started {
                    start_lsn,
                    timeline,
                } => {
                    assert!(c.start.is_none() && c.archives.is_empty());
                    c.start = Some((start_lsn, timeline));
                }
                BackupEvent::Tablespaces(list) => {
                    c.tablespaces = list;
                    c.estimated_size = stream.estimated_size();
                }
                BackupEvent::ArchiveStart { name, tablespace } => {
                    assert!(open.is_none(), "archive {name} starts inside a file");
                    prefix = match &tablespace {
                        None => String::new(),
                        Some(location) => {
                            let t = c
                                .tablespaces
                                .iter()
                                .find(|t| &t.location == location)
                                .unwrap();
                            format!("pg_tblspc/{}/", t.oid)
                        }
                    };
                    c.archives.push((name, tablespace));
                }
                BackupEvent::Entry(e) => {
                    assert!(open.is_none(), "{} starts inside another file", e.path);
                    let path = format!("{prefix}{}", e.path);
                    match e.kind {
                        TarKind::File => {
                            c.files.insert(
                                path.clone(),
                                Streamed {
                                    size: e.size,
                                    mtime: e.mtime,
                                    crc32c: Vec::new(),
                                    content: None,
                                },
                            );
                            let content = keep_content(&path).then(Vec::new);
                            open = Some((
                                path,
                                0,
                                FileChecksummer::new(ChecksumAlgorithm::Crc32c),
                                content,
                            ));
                        }
                        TarKind::Dir => {
                            c.dirs.insert(path.clone());
                            open = Some((
                                path,
                                0,
                                FileChecksummer::new(ChecksumAlgorithm::Crc32c),
                                None,
                            ));
                        }
                        TarKind::Symlink { target } => {
                            c.links.insert(path.clone(), target);
                            open = Some((
                                path,
                                0,
                                FileChecksummer::new(ChecksumAlgorithm::Crc32c),
                                None,
                            ));
                        }
                    }
                }
                BackupEvent::Data(d) => {
                    let (_, got, sum, content) = open.as_mut().expect("data inside a file");
                    *got += d.len() as u64;
                    sum.update(&d);
                    if let Some(content) = content {
                        content.extend_from_slice(&d);
                    }
                }
                BackupEvent::EntryEnd => {
                    let (path, got, sum, content) = open.take().expect("an entry to end");
                    if let Some(f) = c.files.get_mut(&path) {
                        assert_eq!(
                            got, f.size,
                            "{path}: bytes received differ from the tar header"
                        );
                        f.crc32c = sum.finish();
                        f.content = content;
                    } else {
                        assert_eq!(got, 0, "{path} is not a file but had data");
                    }
                }
                BackupEvent::Progress(p) => {
                    assert!(c.progress.last().is_none_or(|&last| last <= p));
                    c.progress.push(p);
                }
                BackupEvent::ManifestData(d) => {
                    assert!(open.is_none());
                    c.manifest.extend_from_slice(&d);
                }
                BackupEvent::Finished { end_lsn, timeline } => c.end = Some((end_lsn, timeline)),
            }
        }
        assert!(open.is_none());
        Ok(c)
    })
}

fn content<'c>(c: &'c Collected, path: &str) -> &'c [u8] {
    c.files[path].content.as_deref().unwrap()
}

/// The manifest verifies and lists exactly the files that arrived, with their sizes,
/// checksums and times; its WAL range is the backup's.
fn check_manifest(c: &Collected, major: u32, system_id: u64) -> PgBackupManifest {
    let m = PgBackupManifest::parse(&c.manifest).unwrap();
    if major >= 17 {
        assert_eq!((m.version, m.system_identifier), (2, Some(system_id)));
    } else {
        assert_eq!((m.version, m.system_identifier), (1, None));
    }
    let listed: BTreeSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    let streamed: BTreeSet<&str> = c.files.keys().map(String::as_str).collect();
    assert_eq!(listed, streamed, "manifest and stream list different files");
    for f in &m.files {
        let s = &c.files[&f.path];
        assert_eq!(f.size, s.size, "{}", f.path);
        assert_eq!(f.last_modified, s.mtime, "{}", f.path);
        let sum = f.checksum.as_ref().unwrap();
        assert_eq!(sum.algorithm, ChecksumAlgorithm::Crc32c);
        assert_eq!(sum.value, s.crc32c, "{}: checksum differs", f.path);
    }
    let (start, tli) = c.start.unwrap();
    let (end, end_tli) = c.end.unwrap();
    assert_eq!(tli, end_tli);
    assert_eq!(
        m.wal_ranges,
        vec![WalRange {
            timeline: tli,
            start_lsn: start,
            end_lsn: end
        }]
    );
    m
}

/// The regular files of the data directory that the server sends, as backup paths:
/// everything but the contents of the directories in `excludeDirContents` and of
/// `pg_wal`, and the files in `excludeFiles` (src/backend/backup/basebackup.c). Tablespace
/// links are not followed.
fn files_the_server_sends(data: &Path) -> Vec<String> {
    const SKIP_CONTENTS: [&str; 8] = [
        "pg_wal",
        "pg_stat_tmp",
        "pg_replslot",
        "pg_dynshmem",
        "pg_notify",
        "pg_serial",
        "pg_snapshots",
        "pg_subtrans",
    ];
    const SKIP_FILES: [&str; 7] = [
        "postgresql.auto.conf.tmp",
        "current_logfiles.tmp",
        "backup_label",
        "tablespace_map",
        "backup_manifest",
        "postmaster.pid",
        "postmaster.opts",
    ];
    let mut out = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        if SKIP_CONTENTS.contains(&dir.as_str()) {
            continue;
        }
        for entry in std::fs::read_dir(data.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let kind = entry.file_type().unwrap();
            if kind.is_dir() && !name.starts_with("pgsql_tmp") {
                dirs.push(path);
            } else if kind.is_file()
                && !name.starts_with("pg_internal.init")
                && !(dir.is_empty() && SKIP_FILES.contains(&name.as_str()))
            {
                out.push(path);
            }
        }
    }
    out
}

fn full_backup_with_a_tablespace(major: u32) {
    let install = PgInstall::find(major).unwrap();
    let dir = TestDir::new().unwrap();
    let pg = PgCluster::start_new(&install, &dir, ClusterOptions::default()).unwrap();
    let ts_dir = dir.path().join("ts");
    std::fs::create_dir(&ts_dir).unwrap();
    chown_to_postgres(&ts_dir).unwrap();
    pg.psql(&format!(
        "CREATE TABLESPACE ts LOCATION '{}'",
        ts_dir.display()
    ))
    .unwrap();
    pg.psql("CREATE TABLE in_ts TABLESPACE ts AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g; CHECKPOINT")
        .unwrap();
    let ts_oid: u32 = pg
        .psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts'")
        .unwrap()
        .parse()
        .unwrap();
    let table_path = pg.psql("SELECT pg_relation_filepath('in_ts')").unwrap();
    let on_disk = files_the_server_sends(pg.data_dir());
    assert!(on_disk.len() > 500, "{}", on_disk.len());

    let mut conn = block_on(ReplicationConnection::connect(&params(
        &pg, "postgres", None, false,
    )))
    .unwrap();
    assert_eq!(conn.server_version_num().unwrap() / 10000, major);
    let id = block_on(conn.identify_system()).unwrap();
    let c = take_backup(&mut conn, false).unwrap();

    // Positions, tablespaces and archives.
    let (start, tli) = c.start.unwrap();
    let (end, _) = c.end.unwrap();
    assert_eq!(tli, TimelineId(1));
    assert!(start <= end && end <= block_on(conn.identify_system()).unwrap().xlogpos);
    assert_eq!(c.tablespaces.len(), 1);
    assert_eq!(
        (c.tablespaces[0].oid, c.tablespaces[0].location.as_str()),
        (ts_oid, ts_dir.to_str().unwrap())
    );
    assert!(c.tablespaces[0].size_kb.is_some_and(|kb| kb > 0));
    assert!(
        c.estimated_size.is_some_and(|b| b > 1 << 20),
        "{:?}",
        c.estimated_size
    );
    let names: BTreeSet<(String, Option<String>)> = c.archives.iter().cloned().collect();
    let expected: BTreeSet<(String, Option<String>)> = [
        ("base.tar".to_string(), None),
        (format!("{ts_oid}.tar"), Some(ts_dir.display().to_string())),
    ]
    .into();
    assert_eq!(names, expected);
    assert!(c.progress.last().is_some_and(|&p| p > 0));

    // Files.
    for must in [
        "PG_VERSION",
        "global/pg_control",
        "backup_label",
        "tablespace_map",
        "postgresql.conf",
    ] {
        assert!(c.files.contains_key(must), "{major}: {must} missing");
    }
    for path in &on_disk {
        assert!(
            c.files.contains_key(path),
            "{major}: {path} is in the data directory but was not sent"
        );
    }
    assert!(
        c.files.contains_key(&table_path),
        "{table_path} (in the tablespace) missing"
    );
    assert!(c.files[&table_path].size >= 8192);
    assert!(c.dirs.contains("base/1") && c.dirs.contains("pg_wal"));
    // With TABLESPACE_MAP the server leaves the link out: tablespace_map says where it
    // pointed, and recovery makes it again.
    assert!(c.links.is_empty(), "{:?}", c.links);
    assert!(!c.dirs.contains(&format!("pg_tblspc/{ts_oid}")));
    let catalog_dir = format!("pg_tblspc/{ts_oid}/PG_{major}_");
    assert!(
        c.dirs.iter().any(|d| d.starts_with(&catalog_dir)),
        "{catalog_dir}*"
    );
    assert_eq!(
        content(&c, "tablespace_map"),
        format!("{ts_oid} {}\n", ts_dir.display()).as_bytes()
    );

    // backup_label names the start the stream reported.
    let label = BackupLabelFile::parse(content(&c, "backup_label")).unwrap();
    assert_eq!(label.start_lsn, start);
    assert_eq!(label.start_timeline, Some(tli));
    assert!(label.checkpoint_lsn >= start);
    assert_eq!(label.label.as_deref(), Some("cairn test"));
    assert_eq!(label.method.as_deref(), Some("streamed"));
    assert!(!label.is_incremental());

    check_manifest(&c, major, id.system_id);
}

#[test]
fn pg15_full_backup_with_a_tablespace() {
    full_backup_with_a_tablespace(15);
}

#[test]
fn pg17_full_backup_with_a_tablespace() {
    full_backup_with_a_tablespace(17);
}

#[test]
fn pg18_full_backup_with_a_tablespace() {
    full_backup_with_a_tablespace(18);
}

#[test]
fn pg17_incremental_backup_sends_changed_blocks() {
    incremental_backup_sends_changed_blocks(17);
}

#[test]
fn pg18_incremental_backup_sends_changed_blocks() {
    incremental_backup_sends_changed_blocks(18);
}

fn incremental_backup_sends_changed_blocks(major: u32) {
    let install = PgInstall::find(major).unwrap();
    let dir = TestDir::new().unwrap();
    let pg = PgCluster::start_new(
        &install,
        &dir,
        ClusterOptions::new().conf("summarize_wal", "on"),
    )
    .unwrap();
    pg.psql("CREATE TABLE t (id int, v text) WITH (fillfactor = 100); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 30000) g; CHECKPOINT")
        .unwrap();
    let rel = pg.psql("SELECT pg_relation_filepath('t')").unwrap();
    let rel_blocks: u32 = pg
        .psql("SELECT pg_relation_size('t') / 8192")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rel_blocks > 500, "{rel_blocks}");
    let p = params(&pg, "postgres", None, true);

    let mut conn = block_on(ReplicationConnection::connect(&p)).unwrap();
    let id = block_on(conn.identify_system()).unwrap();
    let full = take_backup(&mut conn, false).unwrap();
    let full_start = full.start.unwrap();

    // INCREMENTAL without a manifest, and a manifest that is not one, are refused and
    // leave the connection usable.
    let e = take_backup(&mut conn, true).unwrap_err();
    assert_eq!(e.sqlstate(), Some("55000"), "{e}");
    let e = block_on(conn.upload_manifest(b"{ \"not\": \"a manifest\" }\n")).unwrap_err();
    assert!(matches!(e, ReplicationError::Server { .. }), "{e}");
    block_on(conn.identify_system()).unwrap();

    pg.psql("UPDATE t SET v = 'changed' WHERE id IN (1, 15000, 29999)")
        .unwrap();
    let mut conn = block_on(ReplicationConnection::connect(&p)).unwrap();
    block_on(conn.upload_manifest(&full.manifest)).unwrap();
    let incr = take_backup(&mut conn, true).unwrap();

    let label = BackupLabelFile::parse(content(&incr, "backup_label")).unwrap();
    assert_eq!(label.start_lsn, incr.start.unwrap().0);
    let from = label.incremental_from.unwrap();
    assert_eq!((from.lsn, from.timeline), full_start);
    let m = check_manifest(&incr, major, id.system_id);
    let incremental: Vec<&String> = incr
        .files
        .keys()
        .filter(|p| p.contains("/INCREMENTAL."))
        .collect();
    assert!(!incremental.is_empty());
    assert!(m.files.iter().any(|f| f.path.contains("/INCREMENTAL.")));

    // Every incremental file parses, is as long as its header says, and the changed table
    // sends only a few of its blocks.
    for path in &incremental {
        let bytes = content(&incr, path);
        let mut parser = IncrementalParser::new();
        let mut events = Vec::new();
        for piece in bytes.chunks(3000) {
            parser.push(piece, &mut events).unwrap();
        }
        parser.finish().unwrap();
        let IncrementalEvent::Header(h) = &events[0] else {
            panic!("{path}: no header first")
        };
        assert_eq!(h.file_len(), bytes.len() as u64, "{path}");
        assert_eq!(events.len(), 1 + h.blocks.len());
        assert!(
            events[1..]
                .iter()
                .all(|e| matches!(e, IncrementalEvent::Block { data, .. } if data.len() == BLCKSZ))
        );
    }
    let (dir_part, file) = rel.rsplit_once('/').unwrap();
    let table = format!("{dir_part}/INCREMENTAL.{file}");
    assert!(
        incr.files.contains_key(&table),
        "{table} missing from {incremental:?}"
    );
    let mut parser = IncrementalParser::new();
    let mut events = Vec::new();
    parser.push(content(&incr, &table), &mut events).unwrap();
    let IncrementalEvent::Header(h) = &events[0] else {
        panic!()
    };
    assert!(h.truncation_block_length >= rel_blocks, "{h:?}");
    assert!(
        !h.blocks.is_empty() && h.blocks.len() < 20,
        "{} of {rel_blocks} blocks sent",
        h.blocks.len()
    );
    assert!(
        !incr.files.contains_key(&rel),
        "the whole table was sent as well"
    );
    let full_bytes: u64 = full.files.values().map(|f| f.size).sum();
    let incr_bytes: u64 = incr.files.values().map(|f| f.size).sum();
    assert!(
        incr_bytes * 2 < full_bytes,
        "incremental {incr_bytes} bytes, full {full_bytes}"
    );
}

#[test]
fn pg15_a_page_checksum_failure_fails_the_backup_and_names_the_block() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let pg =
        PgCluster::start_new(&install, &dir, ClusterOptions::new().data_checksums(true)).unwrap();
    pg.psql("CREATE TABLE c AS SELECT g FROM generate_series(1, 1000) g; CHECKPOINT")
        .unwrap();
    let rel = pg.psql("SELECT pg_relation_filepath('c')").unwrap();
    // Flip a byte of block 0's tuple data on disk; the server's cached copy is clean, so
    // only a reader of the file notices.
    let file = pg.data_dir().join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4000] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let mut conn = block_on(ReplicationConnection::connect(&params(
        &pg, "postgres", None, false,
    )))
    .unwrap();
    let (events, error, notices) = block_on(async {
        let opts = BaseBackupOptions {
            label: "t".into(),
            fast_checkpoint: true,
            incremental: false,
        };
        let mut stream = conn.base_backup(&opts).await.unwrap();
        let mut events = 0;
        let error = loop {
            match stream.next_event().await {
                Ok(Some(_)) => events += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        (events, error, stream.take_notices())
    });
    // Everything was sent, and then the server failed the backup.
    assert!(events > 100);
    let error = error.expect("the backup must fail");
    assert_eq!(error.sqlstate(), Some("XX001"), "{error}");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("checksum verification failed") && n.contains(&rel)),
        "{notices:?}"
    );
}
