//! Logging (issue 11), against a real PostgreSQL 15 and a local repository: each
//! `cairn-archive-push` and `cairn-archive-get` call leaves one line in PostgreSQL's log (or
//! on its standard error), `-q` silences it; the detached async worker's failures land in
//! `<spool>/log/cairn.log` (private, JSON lines with `[log] format = "json"`, no secrets),
//! and `cairn check` and `cairn info` name that file.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_testkit::{TestDir, wait_until};
use support::{
    Cairn, PASSPHRASE, RepoSpec, describe, small_wal_cluster, start_archiving, wait_archived,
    workload,
};

fn lines_containing(path: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The timeline directories of archived WAL in a local repository.
fn wal_dirs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for db in std::fs::read_dir(repo.join("stanza/main/wal")).unwrap() {
        for tl in std::fs::read_dir(db.unwrap().path()).unwrap() {
            out.push(tl.unwrap().path());
        }
    }
    assert!(!out.is_empty(), "no WAL directory under {}", repo.display());
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn pg15_one_line_per_call_and_async_worker_failures_in_the_spool_log() {
    let dir = TestDir::new().unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);

    // Synchronous archiving: one line per call in PostgreSQL's log, at the default level.
    let seg = workload(&pg, 1);
    wait_archived(&pg, &seg);
    let pushed = lines_containing(
        pg.log_path(),
        &format!("cairn-archive-push: pushed {seg} ("),
    );
    assert_eq!(pushed.len(), 1, "{pushed:?}\n{}", pg.log_tail(40));
    assert!(
        pushed[0].contains(" MiB in ") && pushed[0].ends_with(" ms)"),
        "{}",
        pushed[0]
    );

    // archive-get: one line for a file served, one for a file the archive does not have;
    // -q keeps only warnings and errors.
    let got = dir.subdir("got").unwrap();
    cairn_testkit::chown_to_postgres(&got).unwrap();
    let dest = got.join("seg");
    // The configuration's warnings come once per call, before its work.
    std::fs::set_permissions(&cairn.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cairn.run("cairn-archive-get", &[&seg, dest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("holds repo.cipher-pass and is readable"))
        .collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(
        warned[0].starts_with("cairn-archive-get: WARNING: configuration file "),
        "{err}"
    );
    assert!(!err.contains(PASSPHRASE));
    std::fs::set_permissions(&cairn.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = cairn.run("cairn-archive-get", &[&seg, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("cairn-archive-get: served {seg} (1.0 MiB in ")),
        "{err}"
    );
    let out = cairn.run(
        "cairn-archive-get",
        &["00000002.history", dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cairn-archive-get: not in archive 00000002.history\n"
    );
    let out = cairn.run("cairn-archive-get", &["-q", &seg, dest.to_str().unwrap()]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );

    // Async archiving with JSON logs; the repository refuses the worker's writes.
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    std::fs::write(&cairn.config, format!("[log]\nformat = \"json\"\n\n{text}")).unwrap();
    cairn.enable_async(2);
    let log = dir.path().join("spool/log/cairn.log");
    assert!(!log.exists());
    let dirs: Vec<(PathBuf, u32)> = wal_dirs(&cairn.repo_dir)
        .into_iter()
        .map(|d| (d.clone(), mode(&d)))
        .collect();
    for (d, _) in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let failing = workload(&pg, 1);
    wait_until(
        "the worker to log its failure",
        Duration::from_secs(60),
        || {
            Ok::<_, String>(
                (!lines_containing(&log, &format!("cannot push {failing}")).is_empty())
                    .then_some(()),
            )
        },
    )
    .unwrap();

    // The log: private, every line a JSON object, the failure an error naming the segment,
    // no passphrase.
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PASSPHRASE), "the passphrase was logged");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failure = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("cannot push {failing}"))
        })
        .unwrap();
    assert_eq!(failure["level"], "error");
    assert_eq!(failure["program"], "cairn-archive-push");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("permission denied"),
        "{failure}"
    );
    assert!(failure["time"].as_str().unwrap().ends_with('Z'));

    // check says at once that archiving fails, and names the log that says why.
    let out = cairn.run("cairn", &["check"]);
    assert_eq!(out.status.code(), Some(16), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let warning = err
        .lines()
        .find(|l| l.starts_with("cairn: WARNING: the async archiving workers logged"))
        .unwrap_or_else(|| panic!("no worker log warning: {}", describe(&out)));
    assert!(
        warning.contains(&format!("see {}", log.display())) && warning.contains(&failing),
        "{warning}"
    );
    assert!(err.contains("archive_command is failing"), "{err}");
    assert!(!err.contains(PASSPHRASE));

    // The repository takes writes again: archiving catches up; info still points at the
    // log, since the errors are recent.
    for (d, m) in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(*m)).unwrap();
    }
    wait_archived(&pg, &failing);
    assert!(!lines_containing(&log, &format!("pushed {failing} (")).is_empty());
    let info = cairn.cairn_ok(&["info"]);
    assert!(
        info.lines().any(
            |l| l.starts_with("WARNING: the async archiving workers logged")
                && l.contains(&log.display().to_string())
        ),
        "{info}"
    );
    let doc = cairn.info_json();
    let w = doc["worker_log_warning"].as_str().unwrap();
    assert!(
        w.contains(&log.display().to_string()) && w.contains(&failing),
        "{w}"
    );
}
