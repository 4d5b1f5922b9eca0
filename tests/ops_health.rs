//! Operating cairn (issue 11), against a real PostgreSQL 15 and a local repository:
//! `cairn metrics` parses as Prometheus text and its gauges match what `info` says after a
//! backup, a verify and two real drills; `--push` reaches a Pushgateway-compatible endpoint
//! started here; `check --max-backup-age` fails naming the newest backup when it is too
//! old and passes after a new backup; a failing `archive_command` makes `check` fail within
//! seconds naming `last_failed_wal`.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_testkit::{TestDir, wait_until};
use support::{
    Cairn, RepoSpec, describe, small_wal_cluster, start_archiving, wait_archived, workload,
};

/// `name{labels}` -> value, from Prometheus text parsed by `prometheus-parse`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let value = match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            other => panic!("{} is not a gauge: {other:?}", s.metric),
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    // Every family says what it is.
    for name in [
        "cairn_backup_last_success_timestamp_seconds",
        "cairn_stanza_healthy",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} "))
                && text.contains(&format!("# TYPE {name} gauge")),
            "{name} lacks HELP/TYPE"
        );
    }
    out
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

fn unix(rfc3339: &str) -> f64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn metrics(cairn: &Cairn) -> HashMap<String, f64> {
    parse_metrics(&cairn.cairn_ok(&["metrics"]))
}

/// One HTTP request a Pushgateway stand-in received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// A Pushgateway stand-in: answers 200 to every request and records it.
fn pushgateway() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let log = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            let mut len = 0usize;
            let mut content_type = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(Received {
                method,
                path,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// Set `[health]` in the configuration.
fn set_health(cairn: &Cairn, section: &str) {
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let text = match text.find("[health]") {
        Some(_) => text,
        None => format!("[health]\n{section}\n\n{text}"),
    };
    std::fs::write(&cairn.config, text).unwrap();
}

fn newest_backup(cairn: &Cairn) -> serde_json::Value {
    cairn.info_json()["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

fn backup_age(b: &serde_json::Value) -> f64 {
    let stop = unix(b["stop"]["time"].as_str().unwrap());
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9 - stop
}

#[test]
fn pg15_metrics_after_backup_verify_and_drill_and_a_push() {
    let dir = TestDir::new().unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);

    // Before any backup: the output parses, the counts are zero, no time is made up.
    let m = metrics(&cairn);
    assert_eq!(get(&m, "cairn_backups{stanza=main,type=full}"), 0.0);
    assert_eq!(get(&m, "cairn_stanza_healthy{stanza=main}"), 1.0);
    assert!(!m.contains_key("cairn_backup_last_success_timestamp_seconds{stanza=main,type=full}"));
    assert!(!m.contains_key("cairn_verify_last_success_timestamp_seconds{stanza=main}"));

    let last = workload(&pg, 2);
    wait_archived(&pg, &last);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    let last = workload(&pg, 2);
    wait_archived(&pg, &last);
    cairn.cairn_ok(&["verify"]);

    let info = cairn.info_json();
    let s = &info["stanzas"][0];
    let b = &s["backups"][0];
    let m = metrics(&cairn);
    let full = "{stanza=main,type=full}";
    assert_eq!(get(&m, &format!("cairn_backups{full}")), 1.0);
    assert_eq!(get(&m, "cairn_backups{stanza=main,type=incr}"), 0.0);
    let stop = unix(b["stop"]["time"].as_str().unwrap());
    let start = unix(b["start"]["time"].as_str().unwrap());
    assert!(
        (get(
            &m,
            &format!("cairn_backup_last_success_timestamp_seconds{full}")
        ) - stop)
            .abs()
            < 1e-3
    );
    assert!(
        (get(&m, &format!("cairn_backup_last_duration_seconds{full}")) - (stop - start)).abs()
            < 1e-3
    );
    assert_eq!(
        get(&m, &format!("cairn_backup_last_added_bytes{full}")),
        b["repo_added"].as_u64().unwrap() as f64
    );
    // The archive: the last segment arrived moments ago; the last commit is info's.
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let seg_at = get(
        &m,
        "cairn_archive_last_segment_timestamp_seconds{stanza=main}",
    );
    assert!(
        now - seg_at < 300.0 && seg_at >= stop - 1.0,
        "{seg_at} vs {now}"
    );
    let tl = &s["archive"][0];
    let last_commit = unix(tl["last_commit"].as_str().unwrap());
    assert!(
        (get(
            &m,
            "cairn_archive_last_commit_timestamp_seconds{stanza=main}"
        ) - last_commit)
            .abs()
            < 1e-3
    );
    let segments: u64 = tl["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["segments"].as_u64().unwrap())
        .sum();
    assert_eq!(
        get(&m, "cairn_archive_segments{stanza=main}"),
        segments as f64
    );
    // The recovery window: from the backup's end to the last commit.
    let w = &s["recovery_windows"][0];
    assert!(
        (get(
            &m,
            "cairn_recovery_window_start_timestamp_seconds{stanza=main}"
        ) - unix(w["from"].as_str().unwrap()))
        .abs()
            < 1e-3
    );
    assert!(
        (get(
            &m,
            "cairn_recovery_window_end_timestamp_seconds{stanza=main}"
        ) - unix(w["to"].as_str().unwrap()))
        .abs()
            < 1e-3
    );
    assert!(
        get(&m, "cairn_repo_size_bytes{stanza=main}") >= b["repo_added"].as_u64().unwrap() as f64
    );
    // The verify just run.
    let v = &s["last_verify"];
    assert_eq!(v["status"], "ok");
    assert!(
        (get(
            &m,
            "cairn_verify_last_success_timestamp_seconds{stanza=main}"
        ) - unix(v["finished"].as_str().unwrap()))
        .abs()
            < 1e-3
    );
    assert_eq!(get(&m, "cairn_verify_last_ok{stanza=main}"), 1.0);
    assert!(!m.contains_key("cairn_drill_last_success_timestamp_seconds{stanza=main}"));

    // Real drills (pg-bin: the test's server binaries): one that passes, then one whose
    // --sql returns no row (exit 19). The success gauges keep the first; the last-run
    // gauges follow the second.
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let pg_bin = format!(
        "[stanza.main]\npg-bin = \"{}\"\n",
        pg.install().bin_dir().display()
    );
    std::fs::write(&cairn.config, text.replacen("[stanza.main]\n", &pg_bin, 1)).unwrap();
    cairn.cairn_ok(&["drill"]);
    let passed = cairn.info_json()["stanzas"][0]["last_drill"].clone();
    assert_eq!(passed["status"], "succeeded", "{passed}");
    let out = cairn.run("cairn", &["drill", "--sql", "SELECT 1 WHERE false"]);
    assert_eq!(out.status.code(), Some(19), "{}", describe(&out));
    let failed = cairn.info_json()["stanzas"][0]["last_drill"].clone();
    assert_eq!(failed["status"], "failed", "{failed}");
    let m = metrics(&cairn);
    let at = |d: &serde_json::Value| unix(d["finished"].as_str().unwrap());
    assert!(
        (get(
            &m,
            "cairn_drill_last_success_timestamp_seconds{stanza=main}"
        ) - at(&passed))
        .abs()
            < 1e-3
    );
    assert_eq!(
        get(&m, "cairn_drill_last_duration_seconds{stanza=main}"),
        passed["duration_seconds"].as_f64().unwrap()
    );
    assert!(
        (get(&m, "cairn_drill_last_run_timestamp_seconds{stanza=main}") - at(&failed)).abs() < 1e-3
    );
    assert!(at(&failed) > at(&passed));
    assert_eq!(get(&m, "cairn_drill_last_ok{stanza=main}"), 0.0);

    // A push reaches the gateway: one PUT per stanza, to its group, the same gauges.
    let (url, got) = pushgateway();
    let out = cairn.run("cairn", &["metrics", "--push", &url]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "a push prints nothing on stdout");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].path, "/metrics/job/cairn/stanza/main");
    assert!(
        got[0].content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        got[0].content_type
    );
    let pushed = parse_metrics(&got[0].body);
    assert_eq!(get(&pushed, &format!("cairn_backups{full}")), 1.0);
    assert_eq!(pushed.len(), m.len());

    // A gateway that is not there: exit 18, one line, the URL without its password.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = cairn.run(
        "cairn",
        &[
            "metrics",
            "--push",
            &format!("http://ops:hunter2@127.0.0.1:{port}"),
        ],
    );
    assert_eq!(out.status.code(), Some(18), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cairn: ERROR: cannot push the metrics of stanza main"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "the password leaked: {err}");
}

#[test]
fn pg15_check_fails_on_a_stale_backup_and_at_once_on_a_failing_archive_command() {
    let dir = TestDir::new().unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &pg, RepoSpec::Local);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    let last = workload(&pg, 1);
    wait_archived(&pg, &last);

    // No backup and a threshold: unhealthy, saying so.
    let out = cairn.run("cairn", &["check", "--max-backup-age", "1h"]);
    assert_eq!(out.status.code(), Some(17), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no backup yet"),
        "{}",
        describe(&out)
    );

    cairn.cairn_ok(&["backup", "--type", "full"]);
    let first = newest_backup(&cairn);
    let first_label = first["label"].as_str().unwrap().to_string();
    cairn.cairn_ok(&["check", "--max-backup-age", "1h"]);

    // [health] max-backup-age = 15s: once the backup is older, check (no flag) fails
    // naming it; a flag overrides the configuration.
    set_health(&cairn, "max-backup-age = \"15s\"");
    wait_until(
        "the backup to be older than 15s",
        Duration::from_secs(60),
        || Ok::<_, String>((backup_age(&first) > 16.0).then_some(())),
    )
    .unwrap();
    let out = cairn.run("cairn", &["check"]);
    assert_eq!(out.status.code(), Some(17), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", describe(&out));
    assert!(
        errors[0].contains(&format!("the newest backup, {first_label}, finished")),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("max-backup-age is 15s"), "{}", errors[0]);
    assert!(
        err.lines().any(|l| l.starts_with("HINT: take a backup")),
        "{err}"
    );
    let m = metrics(&cairn);
    assert_eq!(get(&m, "cairn_stanza_healthy{stanza=main}"), 0.0);
    cairn.cairn_ok(&["check", "--max-backup-age", "1d"]);

    // A new backup: check passes again with the configured threshold.
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    let out = cairn.cairn_ok(&["check"]);
    let second = newest_backup(&cairn);
    assert_ne!(second["label"], first["label"]);
    assert!(
        out.contains("check passed") && out.contains(second["label"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(
        get(&metrics(&cairn), "cairn_stanza_healthy{stanza=main}"),
        1.0
    );

    // The archive lags: nothing archived for longer than --max-archive-lag. check names the
    // segment archived last (judged before its own WAL switch), then a check right after it
    // passes with a threshold its switch meets.
    let last_segment = |info: &serde_json::Value| -> String {
        info["stanzas"][0]["archive"][0]["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["last"].as_str().unwrap().to_string())
            .max()
            .unwrap()
    };
    let quiet_since = get(
        &metrics(&cairn),
        "cairn_archive_last_segment_timestamp_seconds{stanza=main}",
    );
    let newest_segment = last_segment(&cairn.info_json());
    wait_until(
        "the last archived segment to be older than 6s",
        Duration::from_secs(60),
        || {
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
            Ok::<_, String>((now - quiet_since > 7.0).then_some(()))
        },
    )
    .unwrap();
    pg.psql("CREATE TABLE lag_probe AS SELECT 1 AS x").unwrap();
    let out = cairn.run(
        "cairn",
        &["check", "--max-archive-lag", "6s", "--max-backup-age", "1h"],
    );
    assert_eq!(out.status.code(), Some(17), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the last WAL segment archived, {newest_segment}, arrived"
        )) && err.contains("max-archive-lag is 6s"),
        "{}",
        describe(&out)
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("HINT: check archive_command")),
        "{err}"
    );
    assert!(
        !err.contains("newest backup"),
        "the backup is young enough: {err}"
    );
    assert_ne!(
        last_segment(&cairn.info_json()),
        newest_segment,
        "check's own switch arrived"
    );
    cairn.cairn_ok(&["check", "--max-archive-lag", "1h", "--max-backup-age", "1h"]);

    // archive_command fails (it still calls cairn, with a configuration that is not
    // there): check says so within seconds, naming the segment, instead of waiting out
    // --archive-timeout.
    let broken = cairn.archive_command().replace(
        &cairn.config.display().to_string(),
        "/nonexistent/cairn.toml",
    );
    pg.set_conf(
        "archive_command",
        &format!("'{}'", broken.replace('\'', "''")),
    )
    .unwrap();
    pg.reload().unwrap();
    wait_until("the new archive_command", Duration::from_secs(30), || {
        Ok::<_, cairn_testkit::Error>(
            pg.psql("SHOW archive_command")?
                .contains("/nonexistent")
                .then_some(()),
        )
    })
    .unwrap();
    // WAL for check's switch to finish (an idle server has nothing to switch away from).
    pg.psql("CREATE TABLE after_break AS SELECT 1 AS x")
        .unwrap();
    let started = Instant::now();
    let out = cairn.run("cairn", &["check", "--archive-timeout", "300"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(16), "{}", describe(&out));
    let failed_wal = pg
        .psql("SELECT last_failed_wal FROM pg_stat_archiver")
        .unwrap();
    assert_eq!(failed_wal.len(), 24, "{failed_wal}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive_command is failing") && err.contains(&failed_wal),
        "{}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(30), "check took {took:?}");
}
