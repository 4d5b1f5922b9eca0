//! Asynchronous archiving (`[archive] async = true`; decision 008).
//!
//! The process PostgreSQL runs for segment N only waits for a marker in the spool
//! directory: `N.ok` (durably stored: exit 0) or `N.error` (exit with that error; PostgreSQL
//! retries). A background worker, started on demand and alone thanks to a lock file, looks
//! ahead at `pg_wal/archive_status/*.ready`, pushes up to `process-max` segments at once with
//! one warm repository handle, and leaves the markers. A marker `N.ok` is written only after
//! N is durable in the repository, so exit 0 keeps its promise.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{Repository, StanzaInfo, StanzaName};
use cairn_spool::WorkerLock;

/// How long the worker stays alive without work.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// How long a caller waits for its segment's marker before failing (PostgreSQL retries).
const CALLER_TIMEOUT: Duration = Duration::from_secs(120);

/// The spool of one stanza.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(spool_path: &Path, stanza: &StanzaName) -> Spool {
        Spool {
            dir: spool_path.join(stanza.as_str()).join("archive"),
        }
    }

    fn marker(&self, name: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{name}.{kind}"))
    }

    fn io(&self, what: &str, e: std::io::Error) -> Failure {
        Failure::new(
            ErrorKind::LocalIo,
            format!("spool {}: {what}: {e}", self.dir.display()),
        )
        .with_hint("check [archive] spool-path: it must be writable by the PostgreSQL user")
    }

    /// The caller's side: consume N's marker if there is one; otherwise make sure a worker
    /// runs and wait for the marker.
    pub fn await_segment(
        &self,
        wal_path: &Path,
        config: Option<&Path>,
        stanza: &str,
    ) -> Result<(), Failure> {
        cairn_spool::create_private_dir(&self.dir).map_err(|e| self.io("create", e))?;
        let name = wal_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let pg_wal = wal_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let pg_wal = std::path::absolute(&pg_wal).map_err(|e| self.io("resolve pg_wal", e))?;
        let deadline = Instant::now() + CALLER_TIMEOUT;
        let mut started = false;
        let mut delay = Duration::from_millis(2);
        loop {
            if let Some(result) = self.take_marker(&name)? {
                return result;
            }
            if !started || !WorkerLock::held(&self.lock_path()) {
                self.start_worker(&pg_wal, config, stanza)?;
                started = true;
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(ErrorKind::RepoUnavailable, format!("{name} was not archived within {CALLER_TIMEOUT:?}"))
                    .with_hint("the async worker is slow or failing; look for .error files in the spool and in PostgreSQL's log"));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// `Some(Ok)` for `.ok`, `Some(Err)` for `.error` (both consumed), `None` for neither.
    fn take_marker(&self, name: &str) -> Result<Option<Result<(), Failure>>, Failure> {
        let ok = self.marker(name, "ok");
        if ok.exists() {
            fs::remove_file(&ok).map_err(|e| self.io("remove marker", e))?;
            return Ok(Some(Ok(())));
        }
        let err = self.marker(name, "error");
        if let Ok(text) = fs::read_to_string(&err) {
            fs::remove_file(&err).map_err(|e| self.io("remove marker", e))?;
            let mut lines = text.lines();
            let kind = lines
                .next()
                .and_then(|c| c.parse::<u8>().ok())
                .and_then(|c| ErrorKind::ALL.into_iter().find(|k| k.code() == c));
            let message = lines
                .next()
                .unwrap_or("the async worker failed")
                .to_string();
            let mut f = Failure::new(kind.unwrap_or(ErrorKind::Internal), message);
            if let Some(h) = lines.next() {
                f = f.with_hint(h);
            }
            return Ok(Some(Err(f)));
        }
        Ok(None)
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("worker.lock")
    }

    fn start_worker(
        &self,
        pg_wal: &Path,
        config: Option<&Path>,
        stanza: &str,
    ) -> Result<(), Failure> {
        let mut args = vec![
            "--async-worker".as_ref(),
            pg_wal.as_os_str(),
            "--stanza".as_ref(),
            stanza.as_ref(),
        ];
        if let Some(c) = config {
            args.extend(["--config".as_ref(), c.as_os_str()]);
        }
        cairn_spool::start_worker("cairn-archive-push", args)
            .map_err(|e| self.io("start the async worker", e))
    }

    fn write_marker(&self, name: &str, kind: &str, body: &str) -> std::io::Result<()> {
        cairn_spool::write_whole(&self.marker(name, kind), body.as_bytes())
    }
}

/// The worker: push what `pg_wal/archive_status` says is ready, `process_max` at a time,
/// until there has been nothing to do for a while. Returns when idle or when another
/// worker holds the lock.
pub async fn run_worker(
    repo: Repository,
    info: StanzaInfo,
    spool: Spool,
    pg_wal: PathBuf,
    process_max: usize,
) -> Result<(), Failure> {
    cairn_spool::create_private_dir(&spool.dir).map_err(|e| spool.io("create", e))?;
    let Some(_lock) =
        WorkerLock::acquire(&spool.lock_path()).map_err(|e| spool.io("open lock", e))?
    else {
        return Ok(());
    };
    let mut idle_since = Instant::now();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    // Pushed and marked `.ok` by this worker while `.ready` still stands: the foreground may
    // already have taken the marker before PostgreSQL renames `.ready` to `.done`, and a
    // second push would leave a marker nobody collects.
    let mut pushed: BTreeSet<String> = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let ready = ready_segments(&pg_wal, &spool, &in_flight, &mut pushed);
        for name in ready
            .into_iter()
            .take(process_max.saturating_sub(tasks.len()))
        {
            in_flight.insert(name.clone());
            let (repo, info, spool, path) = (
                repo.clone(),
                info.clone(),
                spool.clone(),
                pg_wal.join(&name),
            );
            tasks.spawn(async move {
                let started = Instant::now();
                let result = crate::push_with(&repo, &info, &path).await;
                match &result {
                    Ok(outcome) => crate::report::pushed(&path, outcome, started.elapsed()),
                    Err(f) => tracing::error!(
                        hint = f.hint.as_deref().unwrap_or(""),
                        "cannot push {name}: {}",
                        f.message
                    ),
                }
                let marked = match &result {
                    Ok(_) => spool.write_marker(&name, "ok", ""),
                    Err(f) => spool.write_marker(
                        &name,
                        "error",
                        &format!(
                            "{}\n{}\n{}",
                            f.kind.code(),
                            f.message,
                            f.hint.clone().unwrap_or_default()
                        ),
                    ),
                };
                (name, result.is_ok() && marked.is_ok())
            });
        }
        if tasks.is_empty() {
            if idle_since.elapsed() >= IDLE_EXIT {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if let Some(Ok((name, ok))) = tasks.join_next().await {
            in_flight.remove(&name);
            if ok {
                pushed.insert(name);
            }
        }
        idle_since = Instant::now();
    }
}

/// Segments PostgreSQL has marked ready and the spool has no marker for, oldest first.
/// `pushed` forgets the segments whose `.ready` is gone.
fn ready_segments(
    pg_wal: &Path,
    spool: &Spool,
    in_flight: &BTreeSet<String>,
    pushed: &mut BTreeSet<String>,
) -> Vec<String> {
    let Ok(entries) = fs::read_dir(pg_wal.join("archive_status")) else {
        return Vec::new();
    };
    let ready: BTreeSet<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".ready").map(str::to_string))
        .collect();
    pushed.retain(|n| ready.contains(n));
    let mut out: Vec<String> = ready
        .into_iter()
        .filter(|n| {
            !in_flight.contains(n)
                && !pushed.contains(n)
                && !spool.marker(n, "ok").exists()
                && !spool.marker(n, "error").exists()
        })
        .collect();
    // History files first (PostgreSQL needs them before the new timeline's segments).
    out.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    out
}
