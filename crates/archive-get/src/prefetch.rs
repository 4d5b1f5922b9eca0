//! Fetching WAL ahead of recovery (`[archive] async = true`; decision 009).
//!
//! PostgreSQL asks for one segment at a time and replays it before asking for the next, so
//! a fetch per call (GET, authenticate, decompress, verify) sits on recovery's critical
//! path. With async on, every call also tells a background worker which segment it served;
//! the worker fetches the segments after it (up to `get-queue-max`) into the spool,
//! `process-max` at a time, and the next call only verifies its file and renames it into
//! place.
//!
//! A spooled file is named `<segment>.<content id>` and the caller hashes it before handing
//! it over: the spool is a cache and is never fsynced, so a file damaged by a crash is
//! fetched again rather than given to PostgreSQL. The directory is keyed by repository id
//! and database id, so a recreated repository never serves a stale segment of the same
//! name. Anything odd in the spool falls back to the synchronous fetch: prefetching can
//! make recovery faster, never different.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_exit::{ErrorKind, Failure};
use cairn_pgformat::{SegmentName, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_repo::{ContentId, DbId, KeySet, Repository, StanzaInfo, StanzaName};
use cairn_spool::WorkerLock;

/// The worker exits when PostgreSQL has asked for nothing new for this long.
const IDLE_EXIT: Duration = Duration::from_secs(5);
/// How long a caller waits for a segment the worker is fetching before fetching it itself.
const WAIT_FOR_WORKER: Duration = Duration::from_secs(60);

/// The prefetch spool of one stanza in one repository.
#[derive(Debug, Clone)]
pub struct Prefetch {
    dir: PathBuf,
    queue_bytes: u64,
}

/// What fetching one segment ahead found.
enum Fetched {
    Stored,
    NotInArchive,
    Failed,
}

impl Prefetch {
    pub fn new(
        spool_path: &Path,
        stanza: &StanzaName,
        repo_id: &str,
        db_id: DbId,
        queue_bytes: u64,
    ) -> Prefetch {
        Prefetch {
            dir: spool_path
                .join(stanza.as_str())
                .join("get")
                .join(format!("{repo_id}-{db_id}")),
            queue_bytes,
        }
    }

    fn io(&self, what: &str, e: std::io::Error) -> Failure {
        Failure::new(
            ErrorKind::LocalIo,
            format!("spool {}: {what}: {e}", self.dir.display()),
        )
        .with_hint("check [archive] spool-path: it must be writable by the PostgreSQL user")
    }

    /// The spooled copy of `name` and the content id its name promises.
    fn find(&self, name: &str) -> Option<(PathBuf, ContentId)> {
        let prefix = format!("{name}.");
        fs::read_dir(&self.dir).ok()?.find_map(|e| {
            let file = e.ok()?.file_name().into_string().ok()?;
            let id = file.strip_prefix(&prefix)?;
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(id, &mut bytes).ok()?;
            Some((self.dir.join(&file), ContentId(bytes)))
        })
    }

    fn fetching_marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.fetching"))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("worker.lock")
    }

    fn want_path(&self) -> PathBuf {
        self.dir.join("want")
    }

    /// The caller's side: move the spooled `name` to `dest` if it is there and intact
    /// (waiting while the worker is fetching it); returns its size. `Ok(None)`: fetch it
    /// yourself.
    pub fn take(
        &self,
        keys: &KeySet,
        info: &StanzaInfo,
        name: &str,
        dest: &Path,
    ) -> Result<Option<u64>, Failure> {
        let deadline = Instant::now() + WAIT_FOR_WORKER;
        let mut delay = Duration::from_millis(1);
        loop {
            if let Some((path, id)) = self.find(name) {
                return self.hand_over(keys, info, name, &path, id, dest);
            }
            let in_progress =
                self.fetching_marker(name).exists() && WorkerLock::held(&self.lock_path());
            if !in_progress || Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    fn hand_over(
        &self,
        keys: &KeySet,
        info: &StanzaInfo,
        name: &str,
        path: &Path,
        id: ContentId,
        dest: &Path,
    ) -> Result<Option<u64>, Failure> {
        let Ok(bytes) = fs::read(path) else {
            return Ok(None);
        };
        let right_file = name.parse::<WalFileName>().is_ok_and(|n| {
            crate::delivery::check_delivered(&n, &bytes, bytes.len() as u64, info).is_ok()
        });
        if keys.content_id(&bytes) != id || !right_file {
            // Damaged (a crash before writeback) or not ours: never handed to PostgreSQL.
            let _ = fs::remove_file(path);
            return Ok(None);
        }
        let size = bytes.len() as u64;
        match fs::rename(path, dest) {
            Ok(()) => Ok(Some(size)),
            // The spool is on another file system: write the verified bytes instead.
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                crate::write_atomically(dest, &bytes)?;
                let _ = fs::remove_file(path);
                Ok(Some(size))
            }
            Err(e) => Err(Failure::new(
                ErrorKind::LocalIo,
                format!("cannot move {} to {}: {e}", path.display(), dest.display()),
            )),
        }
    }

    /// Tell the worker PostgreSQL now has `served`, so it fetches what comes after; start
    /// the worker if none runs.
    pub fn request(
        &self,
        served: &SegmentName,
        seg_size: WalSegmentSize,
        config: Option<&Path>,
        stanza: &str,
    ) -> Result<(), Failure> {
        cairn_spool::create_private_dir(&self.dir).map_err(|e| self.io("create", e))?;
        cairn_spool::write_whole(
            &self.want_path(),
            format!("{served} {}\n", seg_size.bytes()).as_bytes(),
        )
        .map_err(|e| self.io("write want", e))?;
        if !WorkerLock::held(&self.lock_path()) {
            self.start_worker(config, stanza)?;
        }
        Ok(())
    }

    fn read_want(&self) -> Option<(SegmentName, WalSegmentSize)> {
        let text = fs::read_to_string(self.want_path()).ok()?;
        let (name, size) = text.trim().split_once(' ')?;
        let seg = WalSegmentSize::new(size.parse().ok()?).ok()?;
        match name.parse::<WalFileName>().ok()? {
            WalFileName::Segment(s) => Some((s, seg)),
            _ => None,
        }
    }

    fn start_worker(&self, config: Option<&Path>, stanza: &str) -> Result<(), Failure> {
        // WAL_NAME and DEST are required arguments; the worker ignores them.
        let mut args = vec![
            "--prefetch-worker".as_ref(),
            "--stanza".as_ref(),
            stanza.as_ref(),
            "-".as_ref(),
            "-".as_ref(),
        ];
        if let Some(c) = config {
            args.extend(["--config".as_ref(), c.as_os_str()]);
        }
        cairn_spool::start_worker("cairn-archive-get", args)
            .map_err(|e| self.io("start the prefetch worker", e))
    }

    /// The segments to hold after `want`: as many as `get-queue-max` allows.
    fn window(&self, want: &SegmentName, seg: WalSegmentSize) -> Vec<SegmentName> {
        let n = (self.queue_bytes / seg.as_u64()).max(1);
        let first = want.segno(seg).0;
        (1..=n)
            .map(|k| SegmentName::from_segno(want.tli, XLogSegNo(first + k), seg))
            .collect()
    }

    /// Remove spooled segments outside `window` (PostgreSQL has moved past them, or went to
    /// another timeline), and markers and temporary files (`.<name>...`, from
    /// `cairn_spool::write_whole`) of fetches no longer running.
    fn clean(&self, window: &[SegmentName], in_flight: &HashSet<String>) {
        let keep: HashSet<String> = window.iter().map(|s| s.to_string()).collect();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(file) = e.file_name().into_string() else {
                continue;
            };
            let tmp = file.strip_prefix('.');
            let Some((segment, rest)) = tmp.unwrap_or(&file).split_once('.') else {
                continue;
            };
            let is_segment = matches!(segment.parse(), Ok(WalFileName::Segment(_)));
            if !is_segment || in_flight.contains(segment) {
                continue;
            }
            if tmp.is_some() || rest == "fetching" || !keep.contains(segment) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Fetch one segment into the spool (the worker's side).
    async fn fetch(&self, repo: &Repository, info: &StanzaInfo, seg: &SegmentName) -> Fetched {
        let name = seg.to_string();
        let marker = self.fetching_marker(&name);
        if File::create(&marker).is_err() {
            return Fetched::Failed;
        }
        let got = repo
            .get_wal_with_id(info, &WalFileName::Segment(*seg))
            .await;
        let outcome = match got {
            Ok(Some((bytes, id))) => {
                let path = self.dir.join(format!("{name}.{id}"));
                let stored =
                    tokio::task::spawn_blocking(move || cairn_spool::write_whole(&path, &bytes))
                        .await;
                match stored {
                    Ok(Ok(())) => {
                        tracing::debug!("prefetched {name}");
                        Fetched::Stored
                    }
                    Ok(Err(e)) => {
                        tracing::error!("cannot store prefetched {name} in the spool: {e}");
                        Fetched::Failed
                    }
                    Err(e) => {
                        tracing::error!("cannot store prefetched {name}: {e}");
                        Fetched::Failed
                    }
                }
            }
            Ok(None) => Fetched::NotInArchive,
            Err(e) => {
                let f = cairn_exit::Failure::from_error(&e);
                tracing::error!(
                    hint = f.hint.as_deref().unwrap_or(""),
                    "cannot prefetch {name}: {}",
                    f.message
                );
                Fetched::Failed
            }
        };
        let _ = fs::remove_file(&marker);
        outcome
    }
}

/// The worker: keep the segments after the one PostgreSQL last got in the spool, until
/// PostgreSQL has asked for nothing new for a while. Returns at once when another worker
/// holds the lock.
pub async fn run_worker(
    repo: Repository,
    info: StanzaInfo,
    pf: Prefetch,
    process_max: usize,
) -> Result<(), Failure> {
    cairn_spool::create_private_dir(&pf.dir).map_err(|e| pf.io("create", e))?;
    let Some(_lock) = WorkerLock::acquire(&pf.lock_path()).map_err(|e| pf.io("open lock", e))?
    else {
        return Ok(());
    };
    let mut want = None;
    let mut window: Vec<SegmentName> = Vec::new();
    // Segments from this position on are not fetched: one was not in the archive (yet).
    let mut stop_at = usize::MAX;
    let mut last_change = Instant::now();
    let mut in_flight: HashSet<String> = HashSet::new();
    // Stored for the current request: once PostgreSQL has taken one, it is not fetched again.
    let mut stored: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if let Some(w) = pf.read_want()
            && want != Some(w)
        {
            want = Some(w);
            window = pf.window(&w.0, w.1);
            stop_at = usize::MAX;
            stored.clear();
            last_change = Instant::now();
            pf.clean(&window, &in_flight);
        }
        for (i, seg) in window.iter().enumerate().take(stop_at) {
            if tasks.len() >= process_max {
                break;
            }
            let name = seg.to_string();
            if in_flight.contains(&name) || stored.contains(&name) || pf.find(&name).is_some() {
                continue;
            }
            in_flight.insert(name.clone());
            let (repo, info, pf, seg) = (repo.clone(), info.clone(), pf.clone(), *seg);
            tasks.spawn(async move { (i, name, pf.fetch(&repo, &info, &seg).await) });
        }
        if tasks.is_empty() {
            if last_change.elapsed() >= IDLE_EXIT {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        tokio::select! {
            done = tasks.join_next() => {
                if let Some(Ok((i, name, fetched))) = done {
                    in_flight.remove(&name);
                    // Stop the window at a hole (recovery will end there, or the segment
                    // is not archived yet) or a failure (the caller fetches it itself).
                    if matches!(fetched, Fetched::Stored) {
                        stored.insert(name);
                    } else {
                        stop_at = stop_at.min(i);
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(name: &str) -> SegmentName {
        match name.parse::<WalFileName>().unwrap() {
            WalFileName::Segment(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn spool(dir: &Path, queue: u64) -> Prefetch {
        Prefetch::new(dir, &StanzaName::new("main").unwrap(), "r", DbId(1), queue)
    }

    #[test]
    fn the_window_follows_the_served_segment_on_its_timeline() {
        let tmp = tempfile::tempdir().unwrap();
        let sixteen = WalSegmentSize::new(16 << 20).unwrap();
        let w = spool(tmp.path(), 128 << 20).window(&seg("0000000200000001000000FE"), sixteen);
        let names: Vec<String> = w.iter().map(|s| s.to_string()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "0000000200000001000000FF");
        assert_eq!(names[1], "000000020000000200000000", "crosses the log id");
        // A queue smaller than a segment still fetches one ahead.
        assert_eq!(
            spool(tmp.path(), 1)
                .window(&seg("000000010000000000000001"), sixteen)
                .len(),
            1
        );
    }

    #[test]
    fn cleaning_keeps_the_window_and_fetches_in_flight_only() {
        let tmp = tempfile::tempdir().unwrap();
        let pf = spool(tmp.path(), 32 << 20);
        fs::create_dir_all(&pf.dir).unwrap();
        let id = "ab".repeat(32);
        let files = [
            format!("000000010000000000000002.{id}"), // in the window
            format!("000000010000000000000009.{id}"), // behind or beyond it
            "000000010000000000000003.fetching".to_string(), // a worker died fetching it
            format!(".000000010000000000000003.{id}.cairn.7.0"), // an interrupted write
            format!(".000000010000000000000002.{id}.cairn.7.1"), // being written now
            "want".to_string(),
            "worker.lock".to_string(),
        ];
        for f in &files {
            fs::write(pf.dir.join(f), b"x").unwrap();
        }
        let window = [
            seg("000000010000000000000002"),
            seg("000000010000000000000003"),
        ];
        let in_flight = HashSet::from(["000000010000000000000002".to_string()]);
        pf.clean(&window, &in_flight);
        let mut left: Vec<String> = fs::read_dir(&pf.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!(".000000010000000000000002.{id}.cairn.7.1"),
                format!("000000010000000000000002.{id}"),
                "want".into(),
                "worker.lock".into()
            ]
        );
        assert_eq!(
            pf.find("000000010000000000000002").map(|(_, id)| id),
            Some(ContentId([0xab; 32]))
        );
        assert!(pf.find("000000010000000000000009").is_none());
    }
}
