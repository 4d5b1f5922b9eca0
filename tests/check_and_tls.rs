//! An operator's first connections (PostgreSQL 15): `pg-sslmode = "verify-full"` works for
//! `stanza-create`, `check` and `backup` alike (one TLS setup for SQL and replication), a
//! wrong CA or host name is one line with a hint, and `check` and `backup` both refuse a
//! `pg-data` that is not the server's data directory.

mod support;

use std::process::Output;

use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestCertificates, TestDir};
use support::{Cairn, RepoSpec, describe, start_archiving};

/// Exits with `code`, says `needle` on its one `ERROR` line, and gives a `HINT:`
/// containing `hint`.
fn fails_with(out: &Output, code: i32, needle: &str, hint: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: ERROR"))
        .collect();
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert_eq!(errors.len(), 1, "{}", describe(out));
    assert!(errors[0].contains(needle), "{}", describe(out));
    assert!(
        err.lines()
            .any(|l| l.starts_with("HINT:") && l.contains(hint)),
        "{}",
        describe(out)
    );
}

#[test]
fn pg15_verify_full_for_stanza_create_check_and_backup() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let certs = TestCertificates::generate(&dir.subdir("certs").unwrap()).unwrap();
    pg.enable_tls(&certs).unwrap();
    // The role may only come in over TLS, for SQL and replication alike.
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "hostssl   all         cairn 127.0.0.1/32 scram-sha-256\n\
             hostnossl all         cairn 127.0.0.1/32 reject\n\
             hostssl   replication cairn 127.0.0.1/32 scram-sha-256\n\
             hostnossl replication cairn 127.0.0.1/32 reject\n{old}"
        ),
    )
    .unwrap();
    let cairn = Cairn::new(&dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    // What README asks of a role that is not a superuser.
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE cairn LOGIN REPLICATION PASSWORD 'pw' IN ROLE pg_read_all_settings")
        .unwrap();
    pg.psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO cairn")
        .unwrap();

    let ca = certs.ca().display().to_string();
    let other = certs.other_ca().display().to_string();
    let run = |args: &[&str], host: &str, mode: &str, roots: &str| {
        cairn.run_env(
            "cairn",
            args,
            &[
                ("CAIRN_STANZA_MAIN_PG_HOST", host),
                ("CAIRN_STANZA_MAIN_PG_USER", "cairn"),
                ("CAIRN_STANZA_MAIN_PG_PASSWORD", "pw"),
                ("CAIRN_STANZA_MAIN_PG_SSLMODE", mode),
                ("PGSSLROOTCERT", roots),
            ],
        )
    };

    // A CA that did not sign the server's certificate: refused before anything is written
    // (stanza-create does not fall back to reading pg_control when the server answers).
    let out = run(&["stanza-create"], "localhost", "verify-full", &other);
    fails_with(&out, 10, "TLS", &other);
    assert!(
        !cairn.repo_dir.join("stanza").exists(),
        "stanza-create wrote despite the TLS failure"
    );
    // The right CA, but an address the certificate does not name.
    let out = run(&["stanza-create"], "127.0.0.1", "verify-full", &ca);
    fails_with(&out, 10, "TLS", &ca);
    // Clear text is refused by pg_hba.conf: the successes below are encrypted.
    let out = run(&["stanza-create"], "localhost", "disable", &ca);
    fails_with(&out, 10, "no encryption", "pg-sslmode");

    let out = run(&["stanza-create"], "localhost", "verify-full", &ca);
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(&["check"], "localhost", "verify-full", &other);
    fails_with(&out, 10, "TLS", &other);
    for args in [&["check"][..], &["backup"]] {
        let out = run(args, "localhost", "verify-full", &ca);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    let out = run(&["check"], "localhost", "verify-full", &ca);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("check passed"),
        "{}",
        describe(&out)
    );
    let backups = cairn.info_json()["stanzas"][0]["backups"].clone();
    assert_eq!(backups.as_array().unwrap().len(), 1, "{backups:#}");
}

#[test]
fn pg15_check_and_backup_refuse_a_pg_data_the_server_does_not_run_on() {
    let install = PgInstall::find(15).unwrap();
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    let cairn = Cairn::new(&dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    cairn.cairn_ok(&["check"]);

    let elsewhere = dir.subdir("elsewhere").unwrap();
    let wrong = [("CAIRN_STANZA_MAIN_PG_DATA", elsewhere.to_str().unwrap())];
    let data_dir = pg.data_dir().display().to_string();
    for args in [&["check"][..], &["backup"]] {
        let out = cairn.run_env("cairn", args, &wrong);
        fails_with(
            &out,
            3,
            &format!(
                "pg-data is {}, but the server at {} runs on {data_dir}",
                elsewhere.display(),
                pg.socket_dir()
                    .join(format!(".s.PGSQL.{}", pg.port()))
                    .display()
            ),
            "pg-data",
        );
    }
    assert_eq!(
        cairn.info_json()["stanzas"][0]["backups"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // A role that may not read data_directory is told what to grant.
    pg.psql("CREATE ROLE plain LOGIN REPLICATION").unwrap();
    let out = cairn.run_env(
        "cairn",
        &["check"],
        &[("CAIRN_STANZA_MAIN_PG_USER", "plain")],
    );
    fails_with(
        &out,
        10,
        "data_directory",
        "GRANT pg_read_all_settings TO plain",
    );
}
