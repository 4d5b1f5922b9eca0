//! Every refusal happens before anything is written: the target, the tablespace
//! directories and a sentinel directory next to them look exactly as they did.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_exit::{Classify, ErrorKind};
use cairn_repo::FileKind;
use cairn_restore::{
    PathProblem, RestoreError, RestoreOptions, TablespaceProblem, check_manifest_paths,
    restore_backup,
};
use common::{Node, entry, minimal, recovery, snapshot};

struct Scene {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pg_data: PathBuf,
    ts: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sentinel")).unwrap();
        Scene {
            pg_data: root.join("pgdata"),
            ts: root.join("ts"),
            root,
            _tmp: tmp,
        }
    }

    /// Everything in the scene's directory (pg_data, tablespaces, the sentinel).
    fn state(&self) -> BTreeMap<String, Node> {
        snapshot(&self.root)
    }
}

/// Restore with `opts` and check it is refused with `kind`, touching nothing.
async fn refused(
    scene: &Scene,
    fx: common::Backup,
    opts: &RestoreOptions,
    kind: ErrorKind,
) -> RestoreError {
    let before = scene.state();
    let (repo, stanza, manifest) = fx;
    let err = restore_backup(&repo, &stanza, &manifest, opts)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(
        !matches!(err, RestoreError::Incomplete { .. }),
        "refused before writing: {err}"
    );
    assert_eq!(scene.state(), before, "nothing written for: {err}");
    assert!(snapshot(&scene.root.join("sentinel")).is_empty());
    err
}

fn opts(scene: &Scene) -> RestoreOptions {
    RestoreOptions::new(&scene.pg_data, recovery())
}

#[tokio::test]
async fn non_empty_data_directory() {
    let scene = Scene::new();
    std::fs::create_dir(&scene.pg_data).unwrap();
    std::fs::write(scene.pg_data.join("PG_VERSION"), b"15\n").unwrap();
    let err = refused(
        &scene,
        minimal(|_| {}).await,
        &opts(&scene),
        ErrorKind::Refused,
    )
    .await;
    assert!(matches!(err, RestoreError::PgDataNotEmpty { .. }), "{err}");
    assert!(err.hint().unwrap().contains("--delta"));
}

#[tokio::test]
async fn running_postmaster() {
    let scene = Scene::new();
    std::fs::create_dir(&scene.pg_data).unwrap();
    std::fs::write(scene.pg_data.join("postmaster.pid"), b"4242\n").unwrap();
    let err = refused(
        &scene,
        minimal(|_| {}).await,
        &opts(&scene),
        ErrorKind::Refused,
    )
    .await;
    assert!(matches!(err, RestoreError::PostmasterPid { .. }), "{err}");
}

#[tokio::test]
async fn data_directory_is_a_file_or_has_no_parent() {
    let scene = Scene::new();
    std::fs::write(&scene.pg_data, b"x").unwrap();
    let err = refused(
        &scene,
        minimal(|_| {}).await,
        &opts(&scene),
        ErrorKind::InvalidInput,
    )
    .await;
    assert!(matches!(err, RestoreError::NotDirectory { .. }), "{err}");

    let scene = Scene::new();
    let mut o = opts(&scene);
    o.pg_data = scene.root.join("missing/pgdata");
    let err = refused(&scene, minimal(|_| {}).await, &o, ErrorKind::InvalidInput).await;
    assert!(matches!(err, RestoreError::MissingParent { .. }), "{err}");
}

#[tokio::test]
async fn unsafe_manifest_paths() {
    let scene = Scene::new();
    let sentinel = scene.root.join("sentinel/evil");
    let cases: Vec<(String, PathProblem)> = vec![
        (
            sentinel.to_str().unwrap().to_string(),
            PathProblem::Absolute,
        ),
        ("../sentinel/evil".into(), PathProblem::DotDotComponent),
        (
            "base/../../sentinel/evil".into(),
            PathProblem::DotDotComponent,
        ),
        ("./base".into(), PathProblem::DotComponent),
        ("base//x".into(), PathProblem::EmptyComponent),
        ("base/".into(), PathProblem::EmptyComponent),
        ("".into(), PathProblem::Empty),
        ("base/a\0b".into(), PathProblem::Nul),
        ("PG_VERSION/x".into(), PathProblem::UnderFile),
        ("global".into(), PathProblem::Duplicate),
    ];
    for (path, problem) in cases {
        for kind in [FileKind::File, FileKind::Dir] {
            let p = path.clone();
            let backup = minimal(move |fx| {
                fx.raw(entry(&p, kind, 0o600, 0, None));
            })
            .await;
            assert!(check_manifest_paths(&backup.2).is_err(), "{path:?}");
            let err = refused(&scene, backup, &opts(&scene), ErrorKind::InvalidInput).await;
            match &err {
                RestoreError::UnsafePath {
                    path: named,
                    problem: p,
                } => {
                    assert_eq!(*p, problem, "{path:?}");
                    assert_eq!(*named, path.escape_debug().to_string());
                    assert!(err.to_string().contains(named.as_str()), "{err}");
                }
                other => panic!("{path:?}: {other}"),
            }
        }
    }
}

#[tokio::test]
async fn links_other_than_tablespaces() {
    let scene = Scene::new();
    let sentinel = scene.root.join("sentinel");
    let s = sentinel.to_str().unwrap().to_string();
    // A link anywhere but pg_tblspc/OID; pg_tblspc/OID of a tablespace the backup does
    // not list; and content under such a link.
    for (path, under) in [
        ("base/evil", None),
        ("pg_wal", Some("pg_wal/000000010000000000000001")),
        ("pg_tblspc/99999", Some("pg_tblspc/99999/PG_15/x")),
        ("pg_tblspc", None),
    ] {
        let s = s.clone();
        let backup = minimal(move |fx| {
            fx.link(path, &s);
            if let Some(u) = under {
                fx.raw(entry(u, FileKind::File, 0o600, 0, None));
            }
        })
        .await;
        let err = refused(&scene, backup, &opts(&scene), ErrorKind::InvalidInput).await;
        assert!(
            matches!(
                err,
                RestoreError::UnexpectedLink { .. } | RestoreError::UnsafePath { .. }
            ),
            "{path}: {err}"
        );
    }
    // The tablespace's own link path as a directory.
    let ts = scene.ts.clone();
    let backup = minimal(move |fx| {
        fx.tablespace(16384, &ts).dir("pg_tblspc/16384", 0o700);
    })
    .await;
    let err = refused(&scene, backup, &opts(&scene), ErrorKind::InvalidInput).await;
    assert!(
        matches!(
            err,
            RestoreError::UnsafePath {
                problem: PathProblem::TablespaceLinkNotLink,
                ..
            }
        ),
        "{err}"
    );
}

async fn with_tablespace(location: &Path) -> common::Backup {
    let location = location.to_path_buf();
    minimal(move |fx| {
        fx.tablespace(16384, &location).dir("pg_tblspc", 0o700);
    })
    .await
}

#[tokio::test]
async fn tablespace_targets() {
    let scene = Scene::new();
    let problem = |err: &RestoreError| match err {
        RestoreError::Tablespace { problem, .. } => problem.clone(),
        other => panic!("{other}"),
    };

    // Relative, in the manifest or in the map.
    let err = refused(
        &scene,
        with_tablespace(Path::new("relative/ts")).await,
        &opts(&scene),
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::Relative);
    let mut o = opts(&scene);
    o.tablespace_map.insert(16384, "relative/ts".into());
    let err = refused(
        &scene,
        with_tablespace(&scene.ts).await,
        &o,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::Relative);

    // Inside the data directory (original location or remapped), or containing it.
    let inside = scene.pg_data.join("ts");
    let err = refused(
        &scene,
        with_tablespace(&inside).await,
        &opts(&scene),
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::InsidePgData);
    let mut o = opts(&scene);
    o.tablespace_map
        .insert(16384, scene.root.join("sentinel/../pgdata/x"));
    let err = refused(
        &scene,
        with_tablespace(&scene.ts).await,
        &o,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::InsidePgData);
    let mut o = opts(&scene);
    o.tablespace_map.insert(16384, scene.root.clone());
    let err = refused(
        &scene,
        with_tablespace(&scene.ts).await,
        &o,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::ContainsPgData);

    // Not empty: refused, with a hint to relocate.
    std::fs::create_dir(&scene.ts).unwrap();
    std::fs::write(scene.ts.join("PG_14_202107181"), b"").unwrap();
    let err = refused(
        &scene,
        with_tablespace(&scene.ts).await,
        &opts(&scene),
        ErrorKind::Refused,
    )
    .await;
    assert_eq!(problem(&err), TablespaceProblem::NotEmpty);
    assert!(err.hint().unwrap().contains("--tablespace-map 16384="));

    // Two tablespaces in one directory.
    let other = scene.root.join("other");
    let o2 = other.clone();
    let backup = minimal(move |fx| {
        fx.tablespace(16384, &o2)
            .tablespace(16390, &o2.join("nested"));
    })
    .await;
    let err = refused(&scene, backup, &opts(&scene), ErrorKind::InvalidInput).await;
    assert_eq!(problem(&err), TablespaceProblem::Overlaps { other: 16384 });

    // A map entry for a tablespace the backup does not have.
    let mut o = opts(&scene);
    o.tablespace_map.insert(99, scene.root.join("x"));
    let err = refused(
        &scene,
        with_tablespace(&other).await,
        &o,
        ErrorKind::InvalidInput,
    )
    .await;
    assert!(
        matches!(err, RestoreError::UnknownTablespace { oid: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("16384"), "{err}");
}

#[tokio::test]
async fn bad_settings_and_inconsistent_manifests() {
    let scene = Scene::new();
    // A second recovery target cannot be expressed (one RecoveryTarget); a command that
    // would inject a line into postgresql.auto.conf is refused.
    let mut o = opts(&scene);
    o.recovery.restore_command = cairn_restore::RestoreCommand::Custom(
        "cairn-archive-get %f %p\nshared_preload_libraries = 'x'".into(),
    );
    let err = refused(&scene, minimal(|_| {}).await, &o, ErrorKind::InvalidInput).await;
    assert!(matches!(err, RestoreError::BadSetting { .. }), "{err}");

    // A file whose chunks do not add up to its size, a chunk naming a pack that is not
    // listed, a backup without a control file.
    let mut backup = minimal(|_| {}).await;
    let f = backup
        .2
        .files
        .iter_mut()
        .find(|f| f.path == "PG_VERSION")
        .unwrap();
    f.size += 1;
    let err = refused(&scene, backup, &opts(&scene), ErrorKind::Corrupt).await;
    assert!(matches!(err, RestoreError::Inconsistent { .. }), "{err}");
    let mut backup = minimal(|_| {}).await;
    let f = backup
        .2
        .files
        .iter_mut()
        .find(|f| f.path == "PG_VERSION")
        .unwrap();
    f.chunks[0].pack = 99;
    refused(&scene, backup, &opts(&scene), ErrorKind::Corrupt).await;
    let mut backup = minimal(|_| {}).await;
    backup.2.files.retain(|f| f.path != "global/pg_control");
    refused(&scene, backup, &opts(&scene), ErrorKind::Corrupt).await;
    // PostgreSQL's tablespace_map names a tablespace the manifest lost: restoring would
    // silently drop it.
    let mut backup = minimal(|_| {}).await;
    backup.2.tablespace_map = Some("16384 /srv/ts\n".into());
    let err = refused(&scene, backup, &opts(&scene), ErrorKind::Corrupt).await;
    assert!(err.to_string().contains("16384"), "{err}");
}

#[tokio::test]
async fn reserved_names_must_be_files() {
    let scene = Scene::new();
    for name in ["backup_label", "postgresql.auto.conf", "recovery.signal"] {
        let backup = minimal(move |fx| {
            fx.dir(name, 0o700);
        })
        .await;
        refused(&scene, backup, &opts(&scene), ErrorKind::InvalidInput).await;
    }
}

#[tokio::test]
async fn delta_only_over_a_stopped_data_directory() {
    // A directory that is not a data directory: delta would delete someone's files.
    let scene = Scene::new();
    std::fs::create_dir(&scene.pg_data).unwrap();
    std::fs::write(scene.pg_data.join("notes.txt"), b"precious").unwrap();
    let mut o = opts(&scene);
    o.delta = true;
    let err = refused(&scene, minimal(|_| {}).await, &o, ErrorKind::Refused).await;
    assert!(
        matches!(err, RestoreError::NotADataDirectory { .. }),
        "{err}"
    );

    // A data directory with a postmaster.pid: a server may be running on it.
    std::fs::write(scene.pg_data.join("PG_VERSION"), b"15\n").unwrap();
    std::fs::write(scene.pg_data.join("postmaster.pid"), b"4242\n").unwrap();
    let err = refused(&scene, minimal(|_| {}).await, &o, ErrorKind::Refused).await;
    assert!(matches!(err, RestoreError::PostmasterPid { .. }), "{err}");

    // Refusals that do not depend on delta still apply.
    std::fs::remove_file(scene.pg_data.join("postmaster.pid")).unwrap();
    let backup = minimal(|fx| {
        fx.raw(entry("../sentinel/x", FileKind::File, 0o600, 0, None));
    })
    .await;
    refused(&scene, backup, &o, ErrorKind::InvalidInput).await;
}
