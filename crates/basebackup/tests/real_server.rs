//! The replication client against real PostgreSQL servers.

use cairn_basebackup::{
    BackupEvent, BaseBackupOptions, ConnParams, ReplicationConnection, ReplicationError,
};
use cairn_exit::Classify;
use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir};

fn params(pg: &PgCluster, user: &str, password: Option<&str>, tcp: bool) -> ConnParams {
    ConnParams {
        host: if tcp {
            "127.0.0.1".into()
        } else {
            pg.socket_dir().display().to_string()
        },
        port: pg.port(),
        user: user.into(),
        password: password.map(str::to_string),
        sslmode: None,
        application_name: "cairn-test".into(),
    }
}

async fn backup_files(
    conn: &mut ReplicationConnection,
) -> (Vec<(String, u64)>, String, Vec<u8>, u64) {
    let mut stream = conn
        .base_backup(&BaseBackupOptions {
            label: "t".into(),
            fast_checkpoint: true,
            incremental: false,
        })
        .await
        .unwrap();
    let mut files = Vec::new();
    let mut label = Vec::new();
    let mut manifest = Vec::new();
    let mut current: Option<(String, u64, u64)> = None;
    let mut started = None;
    let mut finished = false;
    while let Some(ev) = stream.next_event().await.unwrap() {
        match ev {
            BackupEvent::Started { start_lsn, .. } => started = Some(start_lsn),
            BackupEvent::Entry(e) => current = Some((e.path, e.size, 0)),
            BackupEvent::Data(d) => {
                let c = current.as_mut().unwrap();
                c.2 += d.len() as u64;
                if c.0 == "backup_label" {
                    label.extend_from_slice(&d);
                }
            }
            BackupEvent::EntryEnd => {
                let (p, size, got) = current.take().unwrap();
                assert_eq!(size, got, "{p}");
                files.push((p, size));
            }
            BackupEvent::ManifestData(d) => manifest.extend_from_slice(&d),
            BackupEvent::Finished { end_lsn, .. } => {
                assert!(end_lsn >= started.unwrap());
                finished = true;
            }
            _ => {}
        }
    }
    assert!(finished);
    (
        files,
        String::from_utf8(label).unwrap(),
        manifest,
        started.unwrap().0,
    )
}

#[tokio::test]
async fn pg15_and_pg17_base_backup_streams_every_file() {
    for major in [15, 17] {
        let install = PgInstall::find(major).unwrap();
        let dir = TestDir::new().unwrap();
        let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
        pg.start().unwrap();
        let mut conn = ReplicationConnection::connect(&params(&pg, "postgres", None, false))
            .await
            .unwrap();
        assert_eq!(conn.server_version_num().unwrap() / 10000, major);
        let id = conn.identify_system().await.unwrap();
        let sysid: u64 = pg
            .psql("SELECT system_identifier FROM pg_control_system()")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(id.system_id, sysid);
        assert_eq!(conn.show("wal_segment_size").await.unwrap(), "16MB");
        let (files, label, manifest, start) = backup_files(&mut conn).await;
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        for must in [
            "PG_VERSION",
            "global/pg_control",
            "postgresql.conf",
            "backup_label",
        ] {
            assert!(
                names.contains(&must),
                "{major}: {must} missing from {names:?}"
            );
        }
        assert!(names.iter().any(|n| n.starts_with("base/1/")));
        assert!(
            label.contains(&format!(
                "START WAL LOCATION: {}",
                cairn_pgformat::Lsn(start)
            )),
            "{label}"
        );
        let manifest = String::from_utf8(manifest).unwrap();
        assert!(
            manifest.contains("PostgreSQL-Backup-Manifest-Version")
                && manifest.contains("\"global/pg_control\"")
        );
    }
}

#[tokio::test]
async fn passwords_and_refusals() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    pg.start().unwrap();
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram LOGIN REPLICATION PASSWORD 's3cret'").unwrap();
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'm5'")
        .unwrap();
    pg.psql("CREATE ROLE norepl LOGIN PASSWORD 'x'").unwrap();
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host replication scram 127.0.0.1/32 scram-sha-256\nhost replication md5user 127.0.0.1/32 md5\nhost replication norepl 127.0.0.1/32 scram-sha-256\n{old}"),
    )
    .unwrap();
    pg.reload().unwrap();

    let mut c = ReplicationConnection::connect(&params(&pg, "scram", Some("s3cret"), true))
        .await
        .unwrap();
    c.identify_system().await.unwrap();
    let mut c = ReplicationConnection::connect(&params(&pg, "md5user", Some("m5"), true))
        .await
        .unwrap();
    c.identify_system().await.unwrap();

    let e = ReplicationConnection::connect(&params(&pg, "scram", Some("wrong"), true))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ReplicationError::Server { code, .. } if code == "28P01"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("pg-password"));
    let e = ReplicationConnection::connect(&params(&pg, "norepl", Some("x"), true))
        .await
        .unwrap_err();
    assert!(matches!(&e, ReplicationError::Server { .. }), "{e}");
    assert!(e.hint().is_some(), "{e}");
    let e = ReplicationConnection::connect(&params(&pg, "scram", None, true))
        .await
        .unwrap_err();
    assert!(matches!(e, ReplicationError::NoPassword), "{e}");

    pg.stop().unwrap();
    let e = ReplicationConnection::connect(&params(&pg, "postgres", None, false))
        .await
        .unwrap_err();
    assert!(matches!(e, ReplicationError::Connect { .. }), "{e}");
    assert!(e.hint().unwrap().contains("running"));
}

#[tokio::test]
async fn tls_by_sslmode() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let (cert, key) = (
        pg.data_dir().join("server.crt"),
        pg.data_dir().join("server.key"),
    );
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-newkey",
            "rsa:2048",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for f in [&cert, &key] {
        cairn_testkit::chown_to_postgres(f).unwrap();
    }
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pg.set_conf("ssl", "on").unwrap();
    pg.start().unwrap();
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE tls LOGIN REPLICATION PASSWORD 'pw'").unwrap();
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("hostssl replication tls 127.0.0.1/32 scram-sha-256\nhostnossl replication tls 127.0.0.1/32 reject\n{old}")).unwrap();
    pg.reload().unwrap();

    let mut p = params(&pg, "tls", Some("pw"), true);
    for mode in ["require", "prefer"] {
        p.sslmode = Some(mode.into());
        let mut c = ReplicationConnection::connect(&p).await.unwrap();
        c.identify_system().await.unwrap();
    }
    // Only TLS connections are allowed for this role, so clear text is rejected by the server.
    p.sslmode = Some("disable".into());
    let e = ReplicationConnection::connect(&p).await.unwrap_err();
    assert!(
        matches!(&e, ReplicationError::Server { code, .. } if code == "28000"),
        "{e}"
    );
    p.sslmode = Some("verify-full".into());
    assert!(matches!(
        ReplicationConnection::connect(&p).await.unwrap_err(),
        ReplicationError::UnsupportedSsl { .. }
    ));

    // A server without TLS: require fails clearly, prefer falls back.
    pg.set_conf("ssl", "off").unwrap();
    std::fs::write(&hba, old).unwrap();
    pg.restart().unwrap();
    let mut p = params(&pg, "postgres", None, true);
    p.sslmode = Some("require".into());
    assert!(matches!(
        ReplicationConnection::connect(&p).await.unwrap_err(),
        ReplicationError::TlsRefused
    ));
    p.sslmode = Some("prefer".into());
    ReplicationConnection::connect(&p)
        .await
        .unwrap()
        .identify_system()
        .await
        .unwrap();
}
