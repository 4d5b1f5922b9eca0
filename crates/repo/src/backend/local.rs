//! A repository in a local directory, with PostgreSQL-grade durability: every object is
//! written to a temporary file, fsynced, linked under its final name only if that name is
//! free (`link` fails with EEXIST otherwise), and the directory is fsynced.
//!
//! Files are created 0600 and directories 0700 whatever the umask: a repository (an
//! unencrypted one's key file above all) is nobody else's to read. Writes are refused when
//! the repository's root belongs to another user (typically root running a command in the
//! postgres user's repository), so no object ends up unwritable for its owner.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use bytes::Bytes;

use super::{Listed, PutOutcome};
use crate::error::BackendError;
use crate::layout::ObjectKey;

#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// Whether this process may write here (checked once, on the first write).
    writer: std::sync::OnceLock<Result<(), OwnerMismatch>>,
}

/// The repository's root belongs to another user than the one writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMismatch {
    pub owner: u32,
    pub writer: u32,
}

fn io_err<'a>(op: &'static str, key: &'a str) -> impl FnOnce(std::io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        op,
        key: key.to_string(),
        source,
    }
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            writer: std::sync::OnceLock::new(),
        }
    }

    /// Refuse to write into a repository whose root another user owns. A root that does
    /// not exist yet is created by this user.
    fn check_writer(&self) -> Result<(), BackendError> {
        let checked = self.writer.get_or_init(|| {
            use std::os::unix::fs::MetadataExt;
            let me = rustix::process::geteuid().as_raw();
            match fs::metadata(&self.root) {
                Ok(m) if m.uid() != me => Err(OwnerMismatch {
                    owner: m.uid(),
                    writer: me,
                }),
                _ => Ok(()),
            }
        });
        checked.clone().map_err(|m| BackendError::NotOwner {
            root: self.root.display().to_string(),
            owner: m.owner,
            writer: m.writer,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    pub async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<PutOutcome, BackendError> {
        self.check_writer()?;
        let path = self.path(key);
        let root = self.root.clone();
        let k = key.clone();
        blocking(move || put_file(&root, &path, &data).map_err(io_err("write", k.as_str()))).await
    }

    /// Write `data` to a synced temporary file beside `key`, not yet under it: committing
    /// ([`LocalBackend::commit`]) then costs only the link and a sync of the directory. Other
    /// work (another object's write and sync) can overlap the expensive part.
    pub async fn stage(&self, key: &ObjectKey, data: Bytes) -> Result<StagedFile, BackendError> {
        self.check_writer()?;
        let path = self.path(key);
        let root = self.root.clone();
        let k = key.clone();
        let tmp = {
            let (path, k) = (path.clone(), k.clone());
            blocking(move || stage_file(&root, &path, &data).map_err(io_err("write", k.as_str())))
                .await?
        };
        Ok(StagedFile { tmp, path, key: k })
    }

    /// Put a staged file under its key unless the key exists, durably.
    pub async fn commit(&self, mut staged: StagedFile) -> Result<PutOutcome, BackendError> {
        let Some(tmp) = staged.tmp.take() else {
            return Ok(PutOutcome::Exists);
        };
        let path = staged.path.clone();
        let k = staged.key.clone();
        blocking(move || commit_file(&tmp, &path).map_err(io_err("write", k.as_str()))).await
    }

    pub async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<Option<Bytes>, BackendError> {
        let path = self.path(key);
        let k = key.clone();
        blocking(move || read_file(&path, range).map_err(io_err("read", k.as_str()))).await
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut out = Vec::new();
            // The prefix is a directory path ending in '/'.
            let dir = root.join(prefix.trim_end_matches('/'));
            walk(&dir, prefix.trim_end_matches('/'), &mut out).map_err(io_err("list", &prefix))?;
            Ok(out)
        })
        .await
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), BackendError> {
        self.check_writer()?;
        let path = self.path(key);
        let k = key.clone();
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    fsync_dir(parent).map_err(io_err("delete", k.as_str()))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", k.as_str())(e)),
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.spawn_blocking(f).await.expect("blocking task panicked"),
        Err(_) => f(),
    }
}

/// A file written and synced beside its object's key ([`LocalBackend::stage`]); removed if
/// dropped uncommitted.
#[derive(Debug)]
pub struct StagedFile {
    /// `None` when the key already existed at staging: nothing was written.
    tmp: Option<PathBuf>,
    path: PathBuf,
    key: ObjectKey,
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn put_file(root: &Path, path: &Path, data: &[u8]) -> std::io::Result<PutOutcome> {
    match stage_file(root, path, data)? {
        Some(tmp) => commit_file(&tmp, path),
        None => Ok(PutOutcome::Exists),
    }
}

/// Write `data` to a new temporary file beside `path` and sync it; `None` when `path`
/// exists already.
fn stage_file(root: &Path, path: &Path, data: &[u8]) -> std::io::Result<Option<PathBuf>> {
    let parent = path.parent().expect("object paths have a parent");
    if path.exists() {
        return Ok(None);
    }
    create_dirs_durably(root, parent)?;
    let tmp = parent.join(format!(
        ".tmp.{}.{}.{:016x}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask can only narrow the mode; make it exact.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(Some(tmp)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Link a staged file under `path` unless it exists, remove the temporary name, and sync
/// the directory.
fn commit_file(tmp: &Path, path: &Path) -> std::io::Result<PutOutcome> {
    let linked = match fs::hard_link(tmp, path) {
        Ok(()) => Ok(PutOutcome::Created),
        Err(e) if e.kind() == IoKind::AlreadyExists => Ok(PutOutcome::Exists),
        Err(e) => Err(e),
    };
    let _ = fs::remove_file(tmp);
    let outcome = linked?;
    fsync_dir(path.parent().expect("object paths have a parent"))?;
    Ok(outcome)
}

/// `create_dir_all`, fsyncing each new directory's parent so the new entry survives a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir != root
        && let Some(parent) = dir.parent()
    {
        create_dirs_durably(root, parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_file(path: &Path, range: Option<Range<u64>>) -> std::io::Result<Option<Bytes>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Sized up front: a chunk is then one read, not a growing buffer's dozen.
    let mut buf = Vec::new();
    match range {
        None => {
            buf.reserve_exact(f.metadata()?.len() as usize);
            f.read_to_end(&mut buf)?;
        }
        Some(r) => {
            let len = r.end.saturating_sub(r.start);
            buf.reserve_exact(len as usize);
            f.seek(SeekFrom::Start(r.start))?;
            f.take(len).read_to_end(&mut buf)?;
        }
    }
    Ok(Some(Bytes::from(buf)))
}

fn walk(dir: &Path, key_prefix: &str, out: &mut Vec<Listed>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(".tmp.") {
            continue;
        }
        let key = format!("{key_prefix}/{name}");
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if ft.is_file() {
            out.push(Listed {
                key,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_and_directories_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o002));
        let b = LocalBackend::new(dir.path().join("repo"));
        let key = ObjectKey::new("stanza/main/wal/1/x").unwrap();
        b.put_if_absent(&key, Bytes::from_static(b"one")).await.unwrap();
        rustix::process::umask(old);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("repo/stanza/main/wal/1/x")), 0o600);
        for d in ["repo", "repo/stanza", "repo/stanza/main/wal/1"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
    }

    #[tokio::test]
    async fn create_if_absent_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let key = ObjectKey::new("a/b/c").unwrap();
        assert_eq!(
            b.put_if_absent(&key, Bytes::from_static(b"one"))
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put_if_absent(&key, Bytes::from_static(b"two"))
                .await
                .unwrap(),
            PutOutcome::Exists
        );
        assert_eq!(
            b.get(&key, None).await.unwrap().unwrap(),
            Bytes::from_static(b"one")
        );
        assert_eq!(
            b.get(&key, Some(1..3)).await.unwrap().unwrap(),
            Bytes::from_static(b"ne")
        );
        assert!(
            b.get(&ObjectKey::new("a/x").unwrap(), None)
                .await
                .unwrap()
                .is_none()
        );
        let listed = b.list("a/").await.unwrap();
        assert_eq!(
            listed,
            vec![Listed {
                key: "a/b/c".into(),
                size: 3
            }]
        );
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path().join("a/b")).unwrap().count(), 1);
        b.delete(&key).await.unwrap();
        b.delete(&key).await.unwrap();
        assert!(b.list("a/").await.unwrap().is_empty());
    }
}
