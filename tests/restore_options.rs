//! `cairn restore` options end to end (PostgreSQL 15): `--archive-mode off` keeps a restored
//! copy from archiving its new timeline into the repository and `preserve` (the default)
//! does archive it, as the output says; a paused target tells the operator how to end
//! recovery, and that works; `--dry-run` refuses what the real run refuses; `--standby`
//! writes a restore_command with `cairn-archive-get --standby`; a passphrase that only the
//! restoring shell's environment holds is warned about; out-of-range durations are usage
//! errors, not panics.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cairn_testkit::{PgCluster, TestDir, wait_until};
use support::{Cairn, Recovered, RepoSpec, describe, start_archiving};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exactly one `cairn: ERROR:` line and one `HINT:` line; returns the error line.
fn one_error(out: &Output) -> String {
    let err = stderr(out);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: ERROR: "))
        .collect();
    let hints = err.lines().filter(|l| l.starts_with("HINT: ")).count();
    assert!(
        errors.len() == 1 && hints == 1 && err.lines().count() == 2,
        "{}",
        describe(out)
    );
    errors[0].to_string()
}

#[test]
fn pg15_restore_options() {
    let dir = TestDir::new().unwrap();
    let mut primary = support::small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    support::workload(&primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let last = support::workload(&primary, 1);
    support::wait_archived(&primary, &last);

    durations_out_of_range(&cairn);
    dry_run_checks_the_destination(&dir, &cairn);
    standby_restore_command(&dir, &cairn);
    passphrase_only_in_the_environment(&dir, &cairn);
    archive_mode_off(&dir, &primary, &cairn);
    archive_mode_preserve(&dir, &primary, &cairn);
}

/// `--archive-timeout` beyond range: exit 2 with one line, for backup and check alike.
fn durations_out_of_range(cairn: &Cairn) {
    for args in [
        &["backup", "--archive-timeout", "18446744073709551615"][..],
        &["check", "--archive-timeout", "18446744073709551615"],
        &["backup", "--archive-timeout", "8d"],
        &["check", "--archive-timeout", "99999999999999999999999h"],
    ] {
        let out = cairn.run("cairn", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let line = one_error(&out);
        assert!(
            line.contains("--archive-timeout") && line.contains("out of range: at most 7d"),
            "{line}"
        );
    }
    // Units are accepted, and the usage error for a malformed value is one line too.
    let out = cairn.run("cairn", &["check", "--archive-timeout", "ten"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(one_error(&out).contains("not a duration"));
}

/// `--dry-run` refuses `--pg-data /` and `--delta` into a directory that is not a data
/// directory with the same code and line as the real run, and writes nothing.
fn dry_run_checks_the_destination(dir: &TestDir, cairn: &Cairn) {
    let not_pgdata = dir.subdir("not-pgdata").unwrap();
    std::fs::write(not_pgdata.join("keep.txt"), b"mine").unwrap();
    cairn_testkit::chown_to_postgres(&not_pgdata).unwrap();
    let pg_data = not_pgdata.to_str().unwrap();
    for args in [
        &["restore", "--pg-data", "/"][..],
        &["restore", "--pg-data", pg_data, "--delta"],
        &["restore", "--pg-data", pg_data],
    ] {
        let real = cairn.run("cairn", args);
        let mut dry_args = args.to_vec();
        dry_args.push("--dry-run");
        let dry = cairn.run("cairn", &dry_args);
        assert_eq!(
            real.status.code(),
            Some(13),
            "{args:?}: {}",
            describe(&real)
        );
        assert_eq!(
            dry.status.code(),
            Some(13),
            "{dry_args:?}: {}",
            describe(&dry)
        );
        assert_eq!(one_error(&dry), one_error(&real));
        assert!(stdout(&dry).is_empty(), "a refused dry run printed a plan");
    }
    let delta = cairn.run(
        "cairn",
        &["restore", "--pg-data", pg_data, "--delta", "--dry-run"],
    );
    assert!(one_error(&delta).contains("does not look like a PostgreSQL data directory"));
    let left: Vec<_> = std::fs::read_dir(&not_pgdata).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(std::fs::read(not_pgdata.join("keep.txt")).unwrap(), b"mine");
}

/// The words of a restore_command, to check flags whatever their order.
fn words(command: &str) -> Vec<String> {
    command.split_whitespace().map(String::from).collect()
}

/// `--standby`: restore_command runs `cairn-archive-get --standby`; without it, no
/// `--standby`. Checked in the dry-run plan and in the written postgresql.auto.conf.
fn standby_restore_command(dir: &TestDir, cairn: &Cairn) {
    let empty = dir.subdir("standby-dry").unwrap();
    let plan = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["restore", "--pg-data", empty.to_str().unwrap(), "--dry-run"];
        args.extend_from_slice(&["--output", "json"]);
        args.extend_from_slice(extra);
        serde_json::from_str(&cairn.cairn_ok(&args)).unwrap()
    };
    let standby = plan(&["--standby"]);
    let cmd = words(standby["restore_command"].as_str().unwrap());
    assert!(cmd[0].ends_with("cairn-archive-get"), "{cmd:?}");
    for flag in ["--standby", "--config", "--stanza", "%f", "\"%p\""] {
        assert!(cmd.iter().any(|w| w == flag), "no {flag} in {cmd:?}");
    }
    assert_eq!(standby["signal"], "standby.signal");
    let plain = plan(&[]);
    let cmd = words(plain["restore_command"].as_str().unwrap());
    assert!(!cmd.iter().any(|w| w == "--standby"), "{cmd:?}");
    assert_eq!(plain["signal"], "recovery.signal");
    assert_eq!(plain["archive_mode"], "preserve");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    let data = dir.path().join("standby-written");
    support::restore(cairn, &data, &["--standby"]);
    let conf = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    let line = conf
        .lines()
        .rfind(|l| l.starts_with("restore_command = "))
        .unwrap();
    assert!(words(line).iter().any(|w| w == "--standby"), "{line}");
    assert!(data.join("standby.signal").exists());
}

/// The configuration without `cipher-pass`: the passphrase then comes only from
/// `CAIRN_REPO_CIPHER_PASS`, which the restore_command PostgreSQL runs will not have.
fn passphrase_only_in_the_environment(dir: &TestDir, cairn: &Cairn) {
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("cipher-pass"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let config = dir.path().join("no-pass.toml");
    std::fs::write(&config, &without).unwrap();
    cairn_testkit::chown_to_postgres(&config).unwrap();
    let target = dir.path().join("pass-dry");
    let args = [
        "restore",
        "--pg-data",
        target.to_str().unwrap(),
        "--dry-run",
    ];
    let env_pass = ("CAIRN_REPO_CIPHER_PASS", support::PASSPHRASE);

    let out = cairn.run_env(
        "cairn",
        &args,
        &[("CAIRN_CONFIG", config.to_str().unwrap()), env_pass],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    let warning = err
        .lines()
        .find(|l| l.starts_with("cairn: WARNING: "))
        .unwrap_or_else(|| panic!("no warning: {}", describe(&out)));
    assert!(
        warning.contains("CAIRN_REPO_CIPHER_PASS") && warning.contains("restore_command"),
        "{warning}"
    );
    assert!(
        !err.contains(support::PASSPHRASE),
        "the passphrase was printed"
    );
    let hint = err.lines().find(|l| l.starts_with("HINT: ")).unwrap();
    assert!(
        hint.contains("cipher-pass") && hint.contains(config.to_str().unwrap()),
        "{hint}"
    );
    // Without a passphrase from anywhere the repository does not open at all.
    let out = cairn.run_env(
        "cairn",
        &args,
        &[("CAIRN_CONFIG", config.to_str().unwrap())],
    );
    assert!(!out.status.success(), "{}", describe(&out));

    // The file has it: no warning, whatever the environment also says.
    let out = cairn.run_env("cairn", &args, &[env_pass]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("WARNING"), "{}", describe(&out));
}

fn auto_conf(data: &Path) -> String {
    std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap()
}

/// Timelines the repository holds WAL of.
fn archived_timelines(cairn: &Cairn) -> Vec<u64> {
    cairn.info_json()["stanzas"][0]["archive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect()
}

/// `--archive-mode off` with a paused target: the output says how to end recovery and that
/// the copy does not archive; ending recovery as told promotes it, and nothing of its new
/// timeline reaches the repository.
fn archive_mode_off(dir: &TestDir, primary: &PgCluster, cairn: &Cairn) {
    let data = dir.path().join("archive-off");
    let out = support::restore(
        cairn,
        &data,
        &["--target", "immediate", "--archive-mode", "off"],
    );
    let text = stdout(&out);
    assert!(
        text.contains("SELECT pg_wal_replay_resume();") && text.contains("pg_ctl promote"),
        "{text}"
    );
    assert!(
        text.contains("archive_mode = off (written by cairn restore)"),
        "{text}"
    );
    let conf = auto_conf(&data);
    let ours = conf
        .split("# written by cairn restore (backup")
        .nth(1)
        .unwrap();
    assert!(ours.lines().any(|l| l == "archive_mode = 'off'"), "{conf}");
    assert!(
        conf.lines()
            .any(|l| l.starts_with("# written by cairn restore: disabled: archive_mode")),
        "{conf}"
    );

    let mut pg = support::start_restored(dir, primary, &data, true, Recovered::Consistent);
    assert_eq!(pg.psql("SHOW archive_mode").unwrap(), "off");
    assert!(pg.is_in_recovery().unwrap());
    assert_eq!(pg.psql("SELECT pg_is_wal_replay_paused()").unwrap(), "t");
    pg.psql("SELECT pg_wal_replay_resume()").unwrap();
    wait_until("recovery to end", Duration::from_secs(120), || {
        Ok::<_, cairn_testkit::Error>(
            pg.psql("SELECT NOT pg_is_in_recovery()")
                .ok()
                .filter(|r| r == "t"),
        )
    })
    .unwrap();
    let timeline = pg
        .psql("SELECT timeline_id FROM pg_control_checkpoint()")
        .unwrap();
    support::workload(&pg, 2);
    pg.psql("CHECKPOINT").unwrap();
    assert_eq!(
        pg.psql("SELECT archived_count || ':' || failed_count FROM pg_stat_archiver")
            .unwrap(),
        "0:0"
    );
    assert_eq!(
        archived_timelines(cairn),
        vec![1],
        "timeline {timeline} archived"
    );
    pg.stop().unwrap();
}

/// `--archive-mode preserve` (the default): the output says the copy keeps cairn's
/// archive_command, with a warning; promoted, it does archive its new timeline here.
fn archive_mode_preserve(dir: &TestDir, primary: &PgCluster, cairn: &Cairn) {
    let data = dir.path().join("archive-preserve");
    let out = support::restore(
        cairn,
        &data,
        &["--target", "immediate", "--target-action", "promote"],
    );
    let text = stdout(&out);
    assert!(
        text.contains(
            "archiving: the restored cluster keeps archive_mode = on with archive_command '"
        ) && text.contains("cairn-archive-push"),
        "{text}"
    );
    assert!(text.contains("promotes to a new timeline"), "{text}");
    assert!(!text.contains("pg_wal_replay_resume"), "{text}");
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("cairn: WARNING: ") && l.contains("new timeline")),
        "{err}"
    );
    assert!(
        err.contains("HINT: for a copy that must not archive, restore with --archive-mode off"),
        "{err}"
    );
    assert!(!auto_conf(&data).contains("archive_mode = 'off'"));

    let mut pg = support::start_restored(dir, primary, &data, true, Recovered::Promoted);
    assert_eq!(pg.psql("SHOW archive_mode").unwrap(), "on");
    let last = support::workload(&pg, 1);
    assert!(last.starts_with("00000002"), "{last}");
    support::wait_archived(&pg, &last);
    assert_eq!(archived_timelines(cairn), vec![1, 2]);
    pg.stop().unwrap();
}
