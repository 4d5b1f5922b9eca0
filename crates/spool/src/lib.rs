//! `cairn-spool`: the background workers of the local spool directory, shared by the async
//! `cairn-archive-push` and the `cairn-archive-get` prefetch, and the way both write a
//! file there (or into `pg_wal`) so that a reader sees it whole or not at all
//! ([`write_whole`]).
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
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

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
        .mode(0o600)
        .open(path)
}

/// Create `dir` and its missing parents as private directories (0700, whatever the
/// umask): the spool holds WAL and cached keys.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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

/// Write `bytes` to a temporary file beside `dest` (named `.<name>.cairn.<pid>.<n>`) and
/// rename it over `dest`: readers see the old file, the new one whole, or none. Not
/// fsynced: what is written here is a cache or a marker, or PostgreSQL's own to sync.
pub fn write_whole(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.cairn.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_and_dirs_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // SAFETY-free: umask is process-wide; this test only widens what others may read.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let spool = dir.path().join("a/b/spool");
        create_private_dir(&spool).unwrap();
        write_whole(&spool.join("f"), b"x").unwrap();
        rustix::process::umask(old);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&spool), 0o700);
        assert_eq!(mode(&spool.join("f")), 0o600);
    }

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
    fn a_file_is_replaced_whole_and_no_temporary_stays() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("000000010000000000000001.ok");
        write_whole(&dest, b"first").unwrap();
        write_whole(&dest, b"second").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failed write leaves nothing behind and the old file as it was.
        let missing = dir.path().join("no-such-dir/file");
        assert!(write_whole(&missing, b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_worker_is_found_beside_another_binary() {
        let me = std::env::current_exe().unwrap();
        let other = worker_exe("cairn-archive-get").unwrap();
        assert_eq!(other.parent(), me.parent());
        assert_eq!(other.file_name().unwrap(), "cairn-archive-get");
    }
}
