//! `cairn-spool`: the background workers of the local spool directory, shared by the async
//! `cairn-archive-push` and the `cairn-archive-get` prefetch.
//!
//! A worker holds an exclusive lock on a file in its spool directory for as long as it
//! runs ([`WorkerLock`]); a caller that finds the lock free starts one ([`start_worker`]) as
//! a detached process in its own process group, so signals PostgreSQL sends to the process
//! that called it (its archiver or startup process) never kill a worker mid-write.
//!
//! ```no_run
//! use std::path::Path;
//! let lock = Path::new("/var/spool/cairn/main/archive/worker.lock");
//! if !cairn_spool::WorkerLock::held(lock) {
//!     cairn_spool::start_worker("cairn-archive-push", ["--async-worker", "/pg/pg_wal"]).unwrap();
//! }
//! // In the worker:
//! let Some(_held) = cairn_spool::WorkerLock::acquire(lock).unwrap() else {
//!     return; // another worker runs
//! };
//! ```

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The lock a running worker holds; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct WorkerLock {
    _file: File,
}

fn open_lock(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

impl WorkerLock {
    /// Take the lock; `None` when another worker holds it.
    pub fn acquire(path: &Path) -> io::Result<Option<WorkerLock>> {
        let file = open_lock(path)?;
        Ok(file
            .try_lock()
            .is_ok()
            .then_some(WorkerLock { _file: file }))
    }

    /// Whether a worker holds the lock at `path` now (an unreadable lock counts as free:
    /// starting a second worker is harmless, it exits at once).
    pub fn held(path: &Path) -> bool {
        open_lock(path).is_ok_and(|f| f.try_lock().is_err())
    }
}

/// The binary called `name`: this one when it is that binary, else the one beside it
/// (`cairn archive-push` runs the same code as `cairn-archive-push` but cannot be its worker).
pub fn worker_exe(name: &str) -> io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    if me.file_name().is_some_and(|n| n == name) {
        return Ok(me);
    }
    Ok(me.with_file_name(name))
}

/// Start `name ARGS...` ([`worker_exe`]) detached: its own process group, no stdio.
pub fn start_worker<I, S>(name: &str, args: I) -> io::Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(worker_exe(name)?);
    cmd.args(args)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.spawn().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.lock");
        assert!(!WorkerLock::held(&path));
        let first = WorkerLock::acquire(&path).unwrap().expect("free");
        assert!(WorkerLock::held(&path));
        assert!(WorkerLock::acquire(&path).unwrap().is_none());
        drop(first);
        assert!(!WorkerLock::held(&path));
        assert!(WorkerLock::acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_worker_is_found_beside_another_binary() {
        let me = std::env::current_exe().unwrap();
        let other = worker_exe("cairn-archive-get").unwrap();
        assert_eq!(other.parent(), me.parent());
        assert_eq!(other.file_name().unwrap(), "cairn-archive-get");
    }
}
