//! Connecting to real servers: each authentication method, each common refusal with its
//! SQLSTATE and hint, a stopped server, and TLS per sslmode, for replication connections
//! and SQL sessions alike.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_basebackup::{ConnParams, ReplicationConnection, ReplicationError, connect_sql};
use cairn_exit::{Classify, ErrorKind};
use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestCertificates, TestDir, wait_until};
use common::{block_on, params};

fn connect(p: &ConnParams) -> Result<ReplicationConnection, ReplicationError> {
    block_on(ReplicationConnection::connect(p))
}

fn tcp(pg: &PgCluster, user: &str, password: Option<&str>) -> ConnParams {
    params(pg, user, password, true)
}

fn code(e: &ReplicationError) -> &str {
    e.sqlstate()
        .unwrap_or_else(|| panic!("not a server error: {e}"))
}

#[test]
fn authentication_and_refusals() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::start_new(&install, &dir, ClusterOptions::default()).unwrap();
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram LOGIN REPLICATION PASSWORD 's3cret'")
        .unwrap();
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'm5'")
        .unwrap();
    pg.psql("CREATE ROLE clear LOGIN REPLICATION PASSWORD 'plain'; CREATE ROLE norepl LOGIN PASSWORD 'x'; CREATE ROLE nohba LOGIN REPLICATION")
        .unwrap();
    // Only these lines: a replication connection that matches none of them is refused.
    std::fs::write(
        pg.data_dir().join("pg_hba.conf"),
        "host  all         scram     127.0.0.1/32  scram-sha-256\n\
         local all         all                     trust\n\
         host  all         all       127.0.0.1/32  trust\n\
         local replication all                     trust\n\
         host  replication scram     127.0.0.1/32  scram-sha-256\n\
         host  replication md5user   127.0.0.1/32  md5\n\
         host  replication clear     127.0.0.1/32  password\n\
         host  replication norepl    127.0.0.1/32  scram-sha-256\n",
    )
    .unwrap();
    pg.reload().unwrap();

    // SCRAM, md5, cleartext and trust (over the socket) all get in.
    for (user, password) in [("scram", "s3cret"), ("md5user", "m5"), ("clear", "plain")] {
        let mut c =
            connect(&tcp(&pg, user, Some(password))).unwrap_or_else(|e| panic!("{user}: {e}"));
        block_on(c.identify_system()).unwrap();
    }
    let mut c = connect(&params(&pg, "postgres", None, false)).unwrap();
    let id = block_on(c.identify_system()).unwrap();
    assert_eq!(id.dbname, None);
    assert_eq!(
        id.system_id.to_string(),
        pg.psql("SELECT system_identifier FROM pg_control_system()")
            .unwrap()
    );
    assert_eq!(block_on(c.show("wal_segment_size")).unwrap(), "16MB");
    block_on(c.close()).unwrap();

    // Wrong password.
    for user in ["scram", "md5user"] {
        let e = connect(&tcp(&pg, user, Some("wrong"))).unwrap_err();
        assert_eq!(code(&e), "28P01", "{e}");
        assert!(e.hint().unwrap().contains("pg-password"));
        assert!(!e.is_retryable());
    }
    // No password configured.
    let e = connect(&tcp(&pg, "scram", None)).unwrap_err();
    assert!(matches!(e, ReplicationError::NoPassword), "{e}");
    assert_eq!(e.kind(), ErrorKind::Config);
    // SQL sessions: the same answers, through tokio-postgres.
    let sql = |password: Option<&str>| {
        block_on(async {
            let client = connect_sql(&tcp(&pg, "scram", password), "postgres").await?;
            let row = client.query_one("SELECT current_user::text", &[]).await;
            Ok::<String, ReplicationError>(row.unwrap().get(0))
        })
    };
    assert_eq!(sql(Some("s3cret")).unwrap(), "scram");
    let e = sql(Some("wrong")).unwrap_err();
    assert_eq!(code(&e), "28P01", "{e}");
    assert!(e.hint().unwrap().contains("pg-password"));
    let e = sql(None).unwrap_err();
    assert!(matches!(e, ReplicationError::NoPassword), "{e}");
    let e = block_on(connect_sql(
        &params(&pg, "postgres", None, false),
        "nosuchdb",
    ))
    .unwrap_err();
    assert_eq!(code(&e), "3D000", "{e}");
    assert!(e.hint().unwrap().contains("pg-database"), "{e}");
    // No pg_hba.conf line for replication.
    let e = connect(&tcp(&pg, "nohba", None)).unwrap_err();
    assert_eq!(code(&e), "28000", "{e}");
    assert!(e.to_string().contains("pg_hba.conf"), "{e}");
    assert!(e.hint().unwrap().contains("host replication"));
    // A role without REPLICATION.
    let e = connect(&tcp(&pg, "norepl", Some("x"))).unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");
    assert!(e.hint().unwrap().contains("REPLICATION"));

    // All WAL senders busy.
    pg.set_conf("max_wal_senders", "1").unwrap();
    pg.restart().unwrap();
    let first = connect(&tcp(&pg, "scram", Some("s3cret"))).unwrap();
    let e = connect(&tcp(&pg, "scram", Some("s3cret"))).unwrap_err();
    assert_eq!(code(&e), "53300", "{e}");
    assert!(e.hint().unwrap().contains("max_wal_senders"));
    assert!(e.is_retryable());
    drop(first);
    wait_until(
        "the WAL sender slot to be free",
        Duration::from_secs(30),
        || connect(&tcp(&pg, "scram", Some("s3cret"))).map(Some),
    )
    .unwrap();

    // A stopped server: no socket file, and nothing listening on the port.
    pg.stop().unwrap();
    for p in [
        params(&pg, "postgres", None, false),
        tcp(&pg, "postgres", None),
    ] {
        let e = connect(&p).unwrap_err();
        assert!(matches!(e, ReplicationError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&pg.port().to_string()), "{e}");
        assert!(e.hint().unwrap().contains("running"));
        assert!(e.is_retryable());
        let e = block_on(connect_sql(&p, "postgres")).unwrap_err();
        assert!(matches!(e, ReplicationError::Connect { .. }), "{e}");
    }
}

/// Runs [`tls_verify_child`] in a child process with these settings: the root file comes
/// from the environment (`PGSSLROOTCERT`), which a test must not change in its own
/// process.
fn verify_in_child(port: u16, host: &str, mode: &str, roots: &Path, expect: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "tls_verify_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("PGSSLROOTCERT", roots)
        .env("CAIRN_TLS_PORT", port.to_string())
        .env("CAIRN_TLS_HOST", host)
        .env("CAIRN_TLS_MODE", mode)
        .env("CAIRN_TLS_EXPECT", expect)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{mode} to {host} with roots {}: expected {expect}\n{}{}",
        roots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The child side of [`verify_in_child`]; does nothing when run on its own.
#[test]
#[ignore = "run by tls_by_sslmode in a child process"]
fn tls_verify_child() {
    let Ok(port) = std::env::var("CAIRN_TLS_PORT") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let p = ConnParams {
        host: var("CAIRN_TLS_HOST"),
        port: port.parse().unwrap(),
        user: "tls".into(),
        password: Some("pw".into()),
        sslmode: Some(var("CAIRN_TLS_MODE")),
        application_name: "cairn-test".into(),
    };
    let expect = var("CAIRN_TLS_EXPECT");
    let roots = var("PGSSLROOTCERT");
    // An SQL session must agree with the replication connection on every setting.
    let sql = block_on(async {
        let client = connect_sql(&p, "postgres").await?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| ReplicationError::Protocol(e.to_string()))?;
        Ok::<bool, ReplicationError>(row.get(0))
    });
    match (expect.as_str(), sql) {
        ("ok", Ok(encrypted)) => assert!(encrypted, "SQL session without TLS"),
        ("tls-error", Err(e @ ReplicationError::Tls { .. })) => {
            assert!(e.hint().unwrap().contains(&roots), "{e}");
        }
        ("root-error", Err(e @ ReplicationError::RootCert { .. })) => {
            assert_eq!(e.kind(), ErrorKind::Config);
        }
        (expect, got) => panic!("SQL: expected {expect}, got {got:?}"),
    }
    match (expect.as_str(), connect(&p)) {
        ("ok", Ok(mut c)) => {
            assert!(c.is_tls());
            block_on(c.identify_system()).unwrap();
        }
        ("tls-error", Err(e @ ReplicationError::Tls { .. })) => {
            assert!(e.hint().unwrap().contains(&roots), "{e}");
            assert!(!e.is_retryable());
        }
        ("root-error", Err(e @ ReplicationError::RootCert { .. })) => {
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(&roots), "{e}");
        }
        (expect, got) => panic!("expected {expect}, got {got:?}"),
    }
}

#[test]
fn tls_by_sslmode() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let certs = TestCertificates::generate(&dir.subdir("certs").unwrap()).unwrap();
    pg.enable_tls(&certs).unwrap();
    pg.start().unwrap();
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE tls LOGIN REPLICATION PASSWORD 'pw'")
        .unwrap();
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "hostssl replication tls 127.0.0.1/32 scram-sha-256\nhostnossl replication tls 127.0.0.1/32 reject\n\
             hostssl all tls 127.0.0.1/32 scram-sha-256\nhostnossl all tls 127.0.0.1/32 reject\n{old}"
        ),
    )
    .unwrap();
    pg.reload().unwrap();

    // require, prefer and the default (prefer) encrypt when the server can.
    let mut p = params(&pg, "tls", Some("pw"), true);
    for mode in [Some("require"), Some("prefer"), None] {
        p.sslmode = mode.map(str::to_string);
        let mut c = connect(&p).unwrap();
        assert!(c.is_tls(), "{mode:?}");
        block_on(c.identify_system()).unwrap();
    }
    // Only TLS connections are allowed for this role, so clear text is rejected: for SQL
    // sessions with the hint for SQL sessions.
    p.sslmode = Some("disable".into());
    let e = connect(&p).unwrap_err();
    assert_eq!(code(&e), "28000", "{e}");
    let e = block_on(connect_sql(&p, "postgres")).unwrap_err();
    assert_eq!(code(&e), "28000", "{e}");
    assert!(!e.hint().unwrap().contains("replication"), "{e}");
    p.sslmode = Some("require".into());
    let client = block_on(connect_sql(&p, "postgres")).unwrap();
    let row = block_on(client.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    ))
    .unwrap();
    assert!(row.get::<_, bool>(0));
    drop(client);
    p.sslmode = Some("verify_full".into());
    let e = connect(&p).unwrap_err();
    assert!(matches!(e, ReplicationError::UnsupportedSsl { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Config);

    // Verified: the right CA and name pass; another CA, or an address the certificate
    // does not name under verify-full, fail; verify-ca does not look at names.
    let (ca, other) = (certs.ca(), certs.other_ca());
    let port = pg.port();
    verify_in_child(port, "localhost", "verify-full", &ca, "ok");
    verify_in_child(port, "127.0.0.1", "verify-ca", &ca, "ok");
    verify_in_child(port, "127.0.0.1", "verify-full", &ca, "tls-error");
    verify_in_child(port, "localhost", "verify-ca", &other, "tls-error");
    verify_in_child(
        port,
        "localhost",
        "verify-full",
        &dir.path().join("missing.crt"),
        "root-error",
    );

    // A server without TLS: require fails clearly, prefer falls back.
    pg.set_conf("ssl", "off").unwrap();
    std::fs::write(&hba, old).unwrap();
    pg.restart().unwrap();
    let mut p = params(&pg, "postgres", None, true);
    p.sslmode = Some("require".into());
    let e = connect(&p).unwrap_err();
    assert!(matches!(e, ReplicationError::TlsRefused { .. }), "{e}");
    let e = block_on(connect_sql(&p, "postgres")).unwrap_err();
    assert!(matches!(e, ReplicationError::TlsRefused { .. }), "{e}");
    p.sslmode = Some("prefer".into());
    let mut c = connect(&p).unwrap();
    assert!(!c.is_tls());
    block_on(c.identify_system()).unwrap();
    let client = block_on(connect_sql(&p, "postgres")).unwrap();
    assert_eq!(
        block_on(client.query_one("SELECT 1", &[]))
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}
