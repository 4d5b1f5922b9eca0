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
use std::time::{Duration, SystemTime};

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use bytes::Bytes;

use super::{Listed, ListedAt, PutOutcome, TempLeftover};
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

    pub(crate) async fn put_if_absent(
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
    pub(crate) async fn stage(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<StagedFile, BackendError> {
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
    pub(crate) async fn commit(&self, mut staged: StagedFile) -> Result<PutOutcome, BackendError> {
        let Some(tmp) = staged.tmp.take() else {
            return Ok(PutOutcome::Exists);
        };
        let path = staged.path.clone();
        let k = staged.key.clone();
        blocking(move || commit_file(&tmp, &path).map_err(io_err("write", k.as_str()))).await
    }

    /// Overwrite (or create) `key`: for lock objects only, every other object is written once.
    pub(crate) async fn put_overwrite(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<(), BackendError> {
        self.check_writer()?;
        let path = self.path(key);
        let root = self.root.clone();
        let k = key.clone();
        blocking(move || replace_file(&root, &path, &data).map_err(io_err("write", k.as_str())))
            .await
    }

    pub(crate) async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<Option<Bytes>, BackendError> {
        let path = self.path(key);
        let k = key.clone();
        blocking(move || read_file(&path, range).map_err(io_err("read", k.as_str()))).await
    }

    /// The objects under `prefix` whose keys sort after `start_after` (unsorted).
    /// Directories and files that sort before it are passed over unread.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, BackendError> {
        Ok(self
            .list_after(prefix, start_after)
            .await?
            .into_iter()
            .map(|l| Listed {
                key: l.key,
                size: l.size,
            })
            .collect())
    }

    pub(crate) async fn list_modified(&self, prefix: &str) -> Result<Vec<ListedAt>, BackendError> {
        self.list_after(prefix, None).await
    }

    async fn list_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<ListedAt>, BackendError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let after = start_after.map(str::to_string);
        blocking(move || {
            let mut out = Vec::new();
            // The prefix is a directory path ending in '/'.
            let dir = root.join(prefix.trim_end_matches('/'));
            walk(
                &dir,
                prefix.trim_end_matches('/'),
                after.as_deref(),
                &mut out,
            )
            .map_err(io_err("list", &prefix))?;
            Ok(out)
        })
        .await
    }

    /// Remove `.tmp.*` files (see [`put_file`]) last written more than `older_than` ago.
    pub(crate) async fn remove_stale_temps(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TempLeftover>, BackendError> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            remove_temps(&root, "", older_than, &mut out)
                .map_err(io_err("remove temporary files in", ""))?;
            Ok(out)
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &ObjectKey) -> Result<(), BackendError> {
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

/// Write `data` to a new synced temporary file beside `path`; `None` when `path` exists.
fn stage_file(root: &Path, path: &Path, data: &[u8]) -> std::io::Result<Option<PathBuf>> {
    let parent = path.parent().expect("object paths have a parent");
    if path.exists() {
        return Ok(None);
    }
    create_dirs_durably(root, parent)?;
    write_temp(parent, path, data).map(Some)
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

/// Replace the object at `path` whole (lock heartbeats only): a reader sees the old or the
/// new content, never a mix, and the new one is durable when this returns.
fn replace_file(root: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().expect("object paths have a parent");
    create_dirs_durably(root, parent)?;
    let tmp = write_temp(parent, path, data)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(parent)
}

/// `data` in a new fsynced temporary file beside `path` (skipped by listings).
fn write_temp(parent: &Path, path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = parent.join(format!(
        "{TEMP_PREFIX}{}.{}.{:016x}",
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
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
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

fn walk(
    dir: &Path,
    key_prefix: &str,
    after: Option<&str>,
    out: &mut Vec<ListedAt>,
) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = format!("{key_prefix}/{name}");
        let ft = entry.file_type()?;
        if ft.is_dir() {
            // Every key inside starts with `key/`: all sort before `after` when that does.
            let inner = format!("{key}/");
            if after.is_some_and(|a| inner.as_str() < a && !a.starts_with(&inner)) {
                continue;
            }
            walk(&entry.path(), &key, after, out)?;
        } else if ft.is_file() {
            if after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let meta = entry.metadata()?;
            out.push(ListedAt {
                key,
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(())
}

/// What every temporary file's name starts with.
const TEMP_PREFIX: &str = ".tmp.";

/// Walk `dir` (never following links) and remove stale temporary files, fsyncing each
/// directory something was removed from.
fn remove_temps(
    dir: &Path,
    rel: &str,
    older_than: Duration,
    out: &mut Vec<TempLeftover>,
) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed_here = false;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            remove_temps(&entry.path(), &path, older_than, out)?;
            continue;
        }
        if !ft.is_file() || !name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let meta = entry.metadata()?;
        // A clock set back makes a file look new: it waits for the next run.
        let age = now.duration_since(meta.modified()?).unwrap_or_default();
        if age <= older_than {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        removed_here = true;
        out.push(TempLeftover {
            path,
            size: meta.len(),
            age,
        });
    }
    if removed_here {
        fsync_dir(dir)?;
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
        b.put_if_absent(&key, Bytes::from_static(b"one"))
            .await
            .unwrap();
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
        let listed = b.list("a/", None).await.unwrap();
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
        assert!(b.list("a/", None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_listing_after_a_key_passes_over_what_sorts_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let keys = [
            "j/log/20261130/20261130T235959.000000Z-1",
            "j/log/20261201/20261201T000000.000000Z-1",
            "j/log/20261201/20261201T101500.000000Z-2",
            "j/log/20261201/20261201T101500.000000Z-3",
            "j/log/20261202/20261202T000000.000000Z-1",
            "j/log/2026120/x",
        ];
        for k in keys {
            b.put_if_absent(&ObjectKey::new(k).unwrap(), Bytes::from_static(b"e"))
                .await
                .unwrap();
        }
        for after in [
            "j/log/20261201/20261201T101500.000000Z",
            "j/log/20261201/20261201T101500.000000Z-2",
            "j/log/20261201/",
            "j/log/20261201",
            "j/log/2026120",
            "j/log/",
            "j/log/20261203/",
        ] {
            let mut got: Vec<String> = b
                .list("j/log/", Some(after))
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.key)
                .collect();
            got.sort();
            let mut want: Vec<String> = keys
                .iter()
                .filter(|k| **k > after)
                .map(|k| k.to_string())
                .collect();
            want.sort();
            assert_eq!(got, want, "after {after}");
        }
    }

    #[tokio::test]
    async fn overwrite_replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let key = ObjectKey::new("lock/keys/00000001").unwrap();
        b.put_overwrite(&key, Bytes::from_static(b"first, longer"))
            .await
            .unwrap();
        b.put_overwrite(&key, Bytes::from_static(b"second"))
            .await
            .unwrap();
        assert_eq!(
            b.get(&key, None).await.unwrap().unwrap(),
            Bytes::from_static(b"second")
        );
        assert_eq!(
            fs::read_dir(dir.path().join("lock/keys")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn stale_temporary_files_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let key = ObjectKey::new("stanza/main/pack/ab/abcd").unwrap();
        b.put_if_absent(&key, Bytes::from_static(b"pack"))
            .await
            .unwrap();
        let sub = dir.path().join("stanza/main/pack/ab");
        let stale = sub.join(".tmp.abcd.4242.00000000000000ff");
        let fresh = sub.join(".tmp.abcd.4243.00000000000000fe");
        fs::write(&stale, vec![0u8; 1000]).unwrap();
        fs::write(&fresh, b"x").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        // An old file that is not a temporary file is never touched.
        let other = sub.join("tmp.not-ours");
        fs::write(&other, b"y").unwrap();
        File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let removed = b
            .remove_stale_temps(Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert_eq!(
            removed[0].path,
            "stanza/main/pack/ab/.tmp.abcd.4242.00000000000000ff"
        );
        assert_eq!(removed[0].size, 1000);
        assert!(removed[0].age >= Duration::from_secs(7000));
        assert!(!stale.exists() && fresh.exists() && other.exists());
        assert!(b.get(&key, None).await.unwrap().is_some());
        // Listings show when each object was written.
        let listed = b.list_modified("stanza/").await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            listed
                .iter()
                .any(|l| l.key.ends_with("tmp.not-ours") && l.modified == two_hours_ago)
        );
    }
}
