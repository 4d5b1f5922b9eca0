//! Restoring one file: its chunks in order, a few fetched and decoded ahead on other
//! tasks (so both cores decode), written one by one, never the whole file in memory.

use std::fs::{File, Permissions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cairn_repo::{BackupManifest, ChunkRef, ManifestFile, Repository, StanzaName};
use futures::{StreamExt, TryStreamExt};
use tokio::task::{JoinError, JoinHandle};

use crate::error::RestoreError;
use crate::tree;

/// Chunks of one file fetched ahead of the one being written.
pub const READ_AHEAD: usize = 4;

/// What restoring one file did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Bytes written from the repository.
    pub written: u64,
    /// Bytes already right on disk (delta restore).
    pub kept: u64,
    /// Chunks read from the repository.
    pub chunks_read: u64,
}

/// Restore `file` to `dest`, check its size, give it its mode and mtime, and fsync it.
/// With `delta`, an existing regular file there is updated in place: only the chunks
/// whose content id differs are fetched and written, and it is cut to size.
pub async fn restore_file(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    file: &ManifestFile,
    dest: PathBuf,
    delta: bool,
) -> Result<Written, RestoreError> {
    if delta && let Some(existing) = open_existing(&dest)? {
        return update_file(repo, stanza, manifest, file, dest, existing).await;
    }
    let mut out = Some(tree::create_file(&dest)?);
    let reads = file
        .chunks
        .iter()
        .enumerate()
        .map(|(index, c)| fetch(repo, stanza, manifest, file, index, c));
    let mut chunks = futures::stream::iter(reads).buffered(READ_AHEAD);
    let mut written = 0u64;
    while let Some(plain) = chunks.try_next().await? {
        let offset = written;
        written += plain.len() as u64;
        let f = out
            .take()
            .expect("file handle is returned after every write");
        let path = dest.clone();
        out = Some(
            blocking(move || {
                let mut f = f;
                f.write_all(&plain)
                    .map_err(|e| RestoreError::io("write", path, e))?;
                tree::start_writeback(&f, offset, plain.len() as u64);
                Ok(f)
            })
            .await?,
        );
    }
    check_size(file, written)?;
    let f = out.take().expect("file handle");
    let (mode, mtime) = (file.mode, file.mtime);
    blocking(move || finish(&f, &dest, mode, mtime)).await?;
    Ok(Written {
        written,
        kept: 0,
        chunks_read: file.chunks.len() as u64,
    })
}

/// Fetch chunk `index` of `file` on its own task (decoding uses another core), checking
/// its size against the manifest.
fn fetch<'a>(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    file: &'a ManifestFile,
    index: usize,
    c: &'a ChunkRef,
) -> impl Future<Output = Result<Vec<u8>, RestoreError>> + 'a {
    let loc = manifest.location(c);
    let (repo, stanza, id) = (repo.clone(), stanza.clone(), c.id);
    async move {
        let loc = loc.ok_or_else(|| RestoreError::Inconsistent {
            path: file.path.clone(),
            message: format!("chunk {index} names pack {}, which is not listed", c.pack),
        })?;
        let plain = AbortOnDrop(tokio::spawn(async move {
            repo.read_chunk(&stanza, &id, &loc).await
        }))
        .await
        .map_err(join_error)?
        .map_err(|source| RestoreError::Repo {
            path: file.path.clone(),
            source: Box::new(source),
        })?;
        if plain.len() as u64 != u64::from(c.size) {
            return Err(RestoreError::ChunkSize {
                path: file.path.clone(),
                index,
                expected: c.size.into(),
                found: plain.len() as u64,
            });
        }
        Ok(plain)
    }
}

fn check_size(file: &ManifestFile, written: u64) -> Result<(), RestoreError> {
    if written == file.size {
        return Ok(());
    }
    Err(RestoreError::Inconsistent {
        path: file.path.clone(),
        message: format!(
            "its chunks hold {written} bytes, the manifest says {}",
            file.size
        ),
    })
}

/// The regular file at `dest`, opened for update without following a link; `None` when
/// there is none (a file with other hard links is removed, not changed through them).
fn open_existing(dest: &Path) -> Result<Option<File>, RestoreError> {
    let md = match std::fs::symlink_metadata(dest) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RestoreError::io("inspect", dest, e)),
    };
    if !md.file_type().is_file() || md.nlink() > 1 {
        std::fs::remove_file(dest).map_err(|e| RestoreError::io("remove", dest, e))?;
        return Ok(None);
    }
    tree::open_for_update(dest).map(Some)
}

/// Delta: compare each chunk with what is on disk by content id, rewrite the ones that
/// differ in place. Like the normal path, `READ_AHEAD` chunks are read, hashed and (when
/// they differ) fetched ahead of the one being written; chunks never overlap, so reading
/// one while writing another through the same descriptor is safe.
async fn update_file(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    file: &ManifestFile,
    dest: PathBuf,
    existing: File,
) -> Result<Written, RestoreError> {
    let f = Arc::new(existing);
    let offsets = file.chunks.iter().scan(0u64, |next, c| {
        let at = *next;
        *next += u64::from(c.size);
        Some(at)
    });
    let checks = file
        .chunks
        .iter()
        .zip(offsets)
        .enumerate()
        .map(|(index, (c, offset))| {
            let (f, repo_keys, path) = (f.clone(), repo.clone(), dest.clone());
            let (size, id) = (c.size as usize, c.id);
            async move {
                let same = blocking(move || {
                    let mut buf = vec![0u8; size];
                    match f.read_exact_at(&mut buf, offset) {
                        Ok(()) => Ok(repo_keys.keys().content_id_single(&buf) == id),
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
                        Err(e) => Err(RestoreError::io("read", path, e)),
                    }
                })
                .await?;
                let plain = if same {
                    None
                } else {
                    Some(fetch(repo, stanza, manifest, file, index, c).await?)
                };
                Ok::<_, RestoreError>((offset, c.size, plain))
            }
        });
    let mut chunks = futures::stream::iter(checks).buffered(READ_AHEAD);
    let mut out = Written::default();
    let mut end = 0u64;
    while let Some((offset, size, plain)) = chunks.try_next().await? {
        end = offset + u64::from(size);
        let Some(plain) = plain else {
            out.kept += u64::from(size);
            continue;
        };
        out.written += plain.len() as u64;
        out.chunks_read += 1;
        let (f, path) = (f.clone(), dest.clone());
        blocking(move || {
            f.write_all_at(&plain, offset)
                .map_err(|e| RestoreError::io("write", path, e))
        })
        .await?;
    }
    drop(chunks);
    check_size(file, end)?;
    let (mode, mtime, size) = (file.mode, file.mtime, file.size);
    blocking(move || {
        f.set_len(size)
            .map_err(|e| RestoreError::io("truncate", &dest, e))?;
        finish(&f, &dest, mode, mtime)
    })
    .await?;
    Ok(out)
}

/// Mode, mtime and fsync, on the open descriptor (no path lookup, no link to follow).
fn finish(f: &File, path: &Path, mode: u32, mtime: i64) -> Result<(), RestoreError> {
    f.set_permissions(Permissions::from_mode(mode & 0o777))
        .map_err(|e| RestoreError::io("chmod", path, e))?;
    if let Ok(secs) = u64::try_from(mtime) {
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .map_err(|e| RestoreError::io("set mtime of", path, e))?;
    }
    f.sync_all().map_err(|e| RestoreError::io("fsync", path, e))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RestoreError> + Send + 'static,
) -> Result<T, RestoreError> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

fn join_error(e: JoinError) -> RestoreError {
    RestoreError::Internal(format!("restore task failed: {e}"))
}

/// A spawned task that is cancelled when nobody waits for it any more (a failed file
/// stops the chunk reads it started).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}
