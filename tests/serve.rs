//! `cairn serve` end to end against PostgreSQL 15 and a local repository: the API behind
//! its bearer token, backups through the API (202, 409, the job's end, the backup
//! listed), `/healthz` turning 503 once a threshold is exceeded, `/metrics` parsed, the
//! status page in headless Chromium, a `* * * * *` schedule, `max-replay`, and SIGTERM
//! during a backup leaving nothing half-listed.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_testkit::{PgCluster, TestDir, run_as_postgres, wait_until};
use support::{Cairn, RepoSpec, small_wal_cluster, start_archiving, workload};

const TOKEN: &str = "t0ken-for-the-serve-test";

/// A running `cairn serve`, its address read from its first line on stderr.
struct Serve {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(cairn: &Cairn) -> Serve {
        let mut cmd = Command::new(cairn.exe("cairn"));
        cmd.arg("serve")
            .env("CAIRN_CONFIG", &cairn.config)
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        run_as_postgres(&mut cmd).unwrap();
        let mut child = cmd.spawn().expect("start cairn serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("cairn: serving on http://") {
                    let _ = tx.send(a.to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "cairn serve did not start listening; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Serve { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request; returns the status and the body.
    fn request(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(rest)
        } else {
            rest.to_string()
        };
        (status, body)
    }

    fn json(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.request(method, path, Some(TOKEN), body);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// Wait for job `id` to end; returns it.
    fn wait_job(&self, id: &str) -> serde_json::Value {
        wait_until("the job to end", Duration::from_secs(180), || {
            let (status, job) = self.json("GET", &format!("/api/v1/jobs/{id}"), "");
            assert_eq!(status, 200, "{job}");
            Ok::<_, String>((job["status"] != "running").then_some(job))
        })
        .unwrap()
    }

    /// SIGTERM; returns the exit status once it stopped.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = wait_until("cairn serve to exit", Duration::from_secs(120), || {
            self.child.try_wait().map_err(|e| e.to_string())
        })
        .unwrap();
        // The stderr reader sees the end of the pipe once the process is gone.
        let log = wait_until("the log to close", Duration::from_secs(10), || {
            let l = self.log();
            Ok::<_, String>(l.contains("stopped").then_some(l))
        })
        .unwrap_or_else(|_| self.log());
        (status, log)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// Add `text` (TOML sections) to the test's configuration.
fn configure(cairn: &Cairn, dir: &TestDir, text: &str) {
    let token = dir.path().join("api-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    cairn_testkit::chown_to_postgres(&token).unwrap();
    let base = std::fs::read_to_string(&cairn.config).unwrap();
    let base = match base.find("\n[serve]") {
        Some(i) => base[..i + 1].to_string(),
        None => base,
    };
    let serve = format!(
        "[serve]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"{}\"\n{text}",
        token.display()
    );
    std::fs::write(&cairn.config, format!("{base}\n{serve}")).unwrap();
}

fn backups(cairn: &Cairn) -> Vec<serde_json::Value> {
    cairn.info_json()["stanzas"][0]["backups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Prometheus text: `name{labels} value` lines (and `# HELP`/`# TYPE`); every sample's
/// value must parse. Returns (name with labels, value).
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix("# ") {
            assert!(
                c.starts_with("HELP ") || c.starts_with("TYPE "),
                "comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels in {line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        out.push((series.to_string(), v));
    }
    out
}

fn metric(samples: &[(String, f64)], prefix: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(s, _)| s.starts_with(prefix))
        .map(|(_, v)| *v)
}

/// The page as headless Chromium renders it (its DOM after parsing).
fn chromium_dom(dir: &TestDir, url: &str) -> String {
    let profile = dir.subdir("chromium-profile").unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("chromium (Debian package `chromium`, scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn new_cluster(dir: &TestDir) -> (PgCluster, Cairn) {
    let mut pg = small_wal_cluster(15, dir);
    let cairn = Cairn::new(dir, &pg, RepoSpec::Local);
    // Drills start PostgreSQL from pg-bin (the postgres user's PATH has none).
    let text = std::fs::read_to_string(&cairn.config).unwrap();
    let text = text.replacen(
        "[stanza.main]\n",
        &format!(
            "[stanza.main]\npg-bin = \"{}\"\n",
            pg.install().bin_dir().display()
        ),
        1,
    );
    std::fs::write(&cairn.config, text).unwrap();
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    (pg, cairn)
}

#[test]
fn pg15_api_backups_health_metrics_page_and_sigterm() {
    let dir = TestDir::new().unwrap();
    let (pg, cairn) = new_cluster(&dir);
    workload(&pg, 2);
    configure(
        &cairn,
        &dir,
        "shutdown-grace = \"1s\"\n\n[health]\nmax-backup-age = \"25s\"\n",
    );
    let serve = Serve::start(&cairn);

    // The API needs the token: none and a wrong one are 401 with a JSON error.
    for token in [None, Some("wrong-token")] {
        let (status, body) = serve.request("GET", "/api/v1/stanzas", token, "");
        assert_eq!(status, 401, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        assert!(!serve.log().contains(TOKEN), "the token is never logged");
    }
    let (status, v) = serve.json("GET", "/api/v1/stanzas", "");
    assert_eq!(status, 200);
    assert_eq!(v["stanzas"][0]["name"], "main");

    // No backup yet: max-backup-age is not met.
    let (status, body) = serve.request("GET", "/healthz", None, "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no backup"), "{body}");

    // A backup through the API, and a second one while it waits or runs: 409.
    let (status, job) = serve.json("POST", "/api/v1/stanzas/main/backups", r#"{"type":"full"}"#);
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "running");
    assert_eq!(job["kind"], "backup-full");
    let id = job["id"].as_str().unwrap().to_string();
    let (status, busy) = serve.json("POST", "/api/v1/stanzas/main/backups", r#"{"type":"incr"}"#);
    assert_eq!(status, 409, "{busy}");
    assert!(busy["error"].as_str().unwrap().contains(&id), "{busy}");
    let (status, bad) = serve.json(
        "POST",
        "/api/v1/stanzas/main/backups",
        r#"{"type":"weekly"}"#,
    );
    assert_eq!(status, 400, "{bad}");

    let done = serve.wait_job(&id);
    assert_eq!(done["status"], "succeeded", "{done}\n{}", serve.log());
    for k in [
        "id", "kind", "status", "started", "finished", "error", "result",
    ] {
        assert!(done.get(k).is_some(), "job field {k}: {done}");
    }
    let label = done["result"]["label"].as_str().unwrap().to_string();
    let (status, listed) = serve.json("GET", "/api/v1/stanzas/main/backups", "");
    assert_eq!(status, 200);
    assert!(
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["label"] == label.as_str() && b["type"] == "full"),
        "{listed}"
    );
    assert!(backups(&cairn).iter().any(|b| b["label"] == label.as_str()));

    // Healthy now, and 503 naming the backup once it is older than max-backup-age.
    let (status, body) = serve.request("GET", "/healthz", None, "");
    assert_eq!(status, 200, "{body}");
    let body = wait_until("healthz to turn 503", Duration::from_secs(60), || {
        let (status, body) = serve.request("GET", "/healthz", None, "");
        Ok::<_, String>((status == 503).then_some(body))
    })
    .unwrap();
    assert!(body.contains(&label), "{body}");

    // Metrics parse and count the backup.
    let (status, text) = serve.request("GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    assert_eq!(
        metric(&samples, "cairn_backups{stanza=\"main\",type=\"full\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &samples,
            "cairn_backup_last_success_timestamp_seconds{stanza=\"main\",type=\"full\"}"
        )
        .is_some_and(|t| t > 1.7e9),
        "{text}"
    );
    assert_eq!(
        metric(&samples, "cairn_stanza_healthy{"),
        Some(0.0),
        "{text}"
    );

    // The restore plan as `restore --dry-run` gives it.
    let (status, plan) = serve.json("GET", "/api/v1/stanzas/main/plan", "");
    assert_eq!(status, 200, "{plan}");
    assert!(plan.to_string().contains(&label), "{plan}");
    let (status, plan) = serve.json(
        "GET",
        "/api/v1/stanzas/main/plan?target-time=2026-01-01",
        "",
    );
    assert_eq!(status, 400, "a time without offset: {plan}");

    // A restore drill through the API: its job succeeds, and metrics show it.
    let (status, job) = serve.json(
        "POST",
        "/api/v1/stanzas/main/drills",
        r#"{"sql":"SELECT 1"}"#,
    );
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["kind"], "drill");
    let drill = serve.wait_job(job["id"].as_str().unwrap());
    assert_eq!(drill["status"], "succeeded", "{drill}\n{}", serve.log());
    let (_, text) = serve.request("GET", "/metrics", None, "");
    let samples = parse_metrics(&text);
    assert!(
        metric(
            &samples,
            "cairn_drill_last_success_timestamp_seconds{stanza=\"main\"}"
        )
        .is_some_and(|t| t > 1.7e9),
        "{text}"
    );

    // The status page in a real browser: one window shape per recoverable window.
    let windows = cairn.info_json()["stanzas"][0]["recovery_windows"]
        .as_array()
        .unwrap()
        .len();
    assert!(windows >= 1);
    let dom = chromium_dom(&dir, &format!("http://{}/", serve.addr));
    assert!(dom.contains("<svg"), "{dom}");
    assert_eq!(
        dom.matches("<rect class=\"window\"").count(),
        windows,
        "{dom}"
    );
    assert!(dom.contains(&label), "the backups are listed: {dom}");
    let last_drill = &dom[dom.find("id=\"last-drill\"").expect("the last drill")..];
    assert!(
        last_drill[..200.min(last_drill.len())].contains("succeeded"),
        "{last_drill}"
    );

    // SIGTERM during a backup: archiving is broken first, so the backup waits for WAL
    // that never comes and is still running when the 1 s grace ends. It is abandoned:
    // never listed, its lock given back, its job failed; serve exits 0.
    let archive_command = pg.psql("SHOW archive_command").unwrap();
    pg.psql("ALTER SYSTEM SET archive_command = 'false'")
        .unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    let before = backups(&cairn).len();
    let (status, job) = serve.json("POST", "/api/v1/stanzas/main/backups", r#"{"type":"full"}"#);
    assert_eq!(status, 202, "{job}");
    let cut = job["id"].as_str().unwrap().to_string();
    wait_until("the backup to stream", Duration::from_secs(60), || {
        let (_, j) = serve.json("GET", &format!("/api/v1/jobs/{cut}"), "");
        assert_eq!(j["status"], "running", "{j}");
        Ok::<_, String>(j["received_bytes"].as_u64().filter(|b| *b > 0))
    })
    .unwrap();
    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("abandon"), "{log}");
    assert_eq!(
        backups(&cairn).len(),
        before,
        "the abandoned backup is not listed"
    );
    // Every listed backup is whole: verify reads each one.
    cairn.cairn_ok(&["verify"]);
    // Archiving back; the lock was given back: a backup from the command line runs now.
    pg.psql(&format!(
        "ALTER SYSTEM SET archive_command = '{}'",
        archive_command.trim().replace('\'', "''")
    ))
    .unwrap();
    pg.psql("SELECT pg_reload_conf()").unwrap();
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    assert_eq!(backups(&cairn).len(), before + 1);

    // The job history survived the restart, the abandoned job with it.
    let serve = Serve::start(&cairn);
    let (status, old) = serve.json("GET", &format!("/api/v1/jobs/{id}"), "");
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["status"], "succeeded");
    let (_, cut_job) = serve.json("GET", &format!("/api/v1/jobs/{cut}"), "");
    assert_eq!(cut_job["status"], "failed", "{cut_job}");
    assert!(
        cut_job["error"]
            .as_str()
            .is_some_and(|e| e.contains("abandon")),
        "{cut_job}"
    );
    let (status, _) = serve.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn pg15_schedule_and_max_replay_take_backups_on_their_own() {
    let dir = TestDir::new().unwrap();
    let (pg, cairn) = new_cluster(&dir);
    workload(&pg, 1);

    // Every minute: a full backup without anyone asking.
    configure(&cairn, &dir, "\n[schedule]\nbackup-full = \"* * * * *\"\n");
    let serve = Serve::start(&cairn);
    let first = wait_until("a scheduled backup", Duration::from_secs(150), || {
        Ok::<_, String>(backups(&cairn).into_iter().next())
    })
    .unwrap();
    assert_eq!(first["type"], "full");
    // The listing comes with the manifest; the job ends just after.
    wait_until(
        "the scheduled job to succeed",
        Duration::from_secs(60),
        || {
            let (_, jobs) = serve.json("GET", "/api/v1/stanzas/main/jobs", "");
            Ok::<_, String>(
                jobs["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|j| {
                        j["origin"] == "schedule"
                            && j["kind"] == "backup-full"
                            && j["status"] == "succeeded"
                    })
                    .then_some(()),
            )
        },
    )
    .unwrap();
    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
    let count = backups(&cairn).len();

    // max-replay: 3 MiB of 1 MiB segments. More WAL than that piles up after the newest
    // backup; serve's check takes an incr without a schedule.
    configure(&cairn, &dir, "\n[schedule]\nmax-replay = \"3MiB\"\n");
    let last = workload(&pg, 6);
    support::wait_archived(&pg, &last);
    let serve = Serve::start(&cairn);
    let incr = wait_until(
        "max-replay to take an incr",
        Duration::from_secs(180),
        || {
            let all = backups(&cairn);
            Ok::<_, String>((all.len() > count).then(|| all.last().cloned().unwrap()))
        },
    )
    .unwrap();
    assert_eq!(incr["type"], "incr", "{incr}");
    // The listing comes with the manifest; the job ends just after.
    wait_until(
        "the max-replay job to succeed",
        Duration::from_secs(60),
        || {
            let (_, jobs) = serve.json("GET", "/api/v1/stanzas/main/jobs", "");
            Ok::<_, String>(
                jobs["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|j| j["origin"] == "max-replay" && j["status"] == "succeeded")
                    .then_some(()),
            )
        },
    )
    .unwrap();
    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
}
