//! Creating the restored tree on disk without following links: directories with `mkdir`
//! (which fails on anything already there, a link included), files with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, all under directories this restore created.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::RestoreError;

/// Create one directory (0700 until [`set_mode`] gives it its final mode, so a read-only
/// directory in the backup does not stop the restore from filling it).
pub fn create_dir(path: &Path) -> Result<(), RestoreError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| RestoreError::io("create directory", path, e))
}

/// Create a new file for writing, 0600; fails if anything (a link included) is there.
pub fn create_file(path: &Path) -> Result<File, RestoreError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RestoreError::io("create", path, e))
}

/// Open an existing regular file for a delta update, without following a link.
pub fn open_for_update(path: &Path) -> Result<File, RestoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RestoreError::io("open", path, e))
}

/// Open an existing file this restore wrote, for reading, without following a link.
pub fn read_file(path: &Path) -> Result<Vec<u8>, RestoreError> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RestoreError::io("open", path, e))?;
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut f, &mut buf).map_err(|e| RestoreError::io("read", path, e))?;
    Ok(buf)
}

/// Write a whole small file (`backup_label`, a signal file) and make it durable.
pub fn write_new_file(path: &Path, content: &[u8]) -> Result<(), RestoreError> {
    let mut f = create_file(path)?;
    f.write_all(content)
        .map_err(|e| RestoreError::io("write", path, e))?;
    f.sync_all().map_err(|e| RestoreError::io("fsync", path, e))
}

/// Set the permission bits of a directory this restore created.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), RestoreError> {
    fs::set_permissions(path, Permissions::from_mode(mode & 0o777))
        .map_err(|e| RestoreError::io("chmod", path, e))
}

/// Start writing `len` bytes at `offset` of `f` to disk now, without waiting for it.
/// Left alone, the kernel holds a whole restore in the page cache and writes it in the
/// final fsyncs, after all the decoding; started early, the disk works while the next
/// chunks decode. `POSIX_FADV_DONTNEED` starts writeback of dirty pages (what PostgreSQL's
/// `pg_flush_data()` falls back to without `sync_file_range`); pages under writeback stay
/// cached. Only a hint: an error changes nothing, the fsync still makes the file durable.
pub fn start_writeback(f: &File, offset: u64, len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(f, offset, Some(len), rustix::fs::Advice::DontNeed);
    }
}

/// Make a directory's entries durable.
pub fn fsync_dir(path: &Path) -> Result<(), RestoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| RestoreError::io("fsync", path, e))
}

/// `link` -> `target`.
pub fn symlink(target: &Path, link: &Path) -> Result<(), RestoreError> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| RestoreError::io("create symbolic link", link, e))
}

/// Rename within one directory this restore owns, then make it durable.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), RestoreError> {
    fs::rename(from, to).map_err(|e| RestoreError::io("rename", from, e))?;
    fsync_dir(to.parent().unwrap_or(Path::new("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_never_created_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_file(&link).is_err());
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_file(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert!(create_dir(&link).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }
}
