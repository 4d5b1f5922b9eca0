//! Restoring one file: its chunks in order, a few fetched and decoded ahead on other
//! tasks (so both cores decode), written one by one, never the whole file in memory.

use std::fs::{File, Permissions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cairn_repo::{BackupManifest, ManifestFile, Repository, StanzaName};
use futures::{StreamExt, TryStreamExt};
use tokio::task::{JoinError, JoinHandle};

use crate::error::RestoreError;
use crate::tree;

/// Chunks of one file fetched ahead of the one being written.
pub const READ_AHEAD: usize = 4;

/// Write `file`'s content to the new file `dest`, check its size, give it its mode and
/// mtime, and fsync it. Returns the bytes written.
pub async fn restore_file(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    file: &ManifestFile,
    dest: PathBuf,
) -> Result<u64, RestoreError> {
    let mut out = Some(tree::create_file(&dest)?);
    let reads = file.chunks.iter().enumerate().map(|(index, c)| {
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
    });
    let mut chunks = futures::stream::iter(reads).buffered(READ_AHEAD);
    let mut written = 0u64;
    while let Some(plain) = chunks.try_next().await? {
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
                Ok(f)
            })
            .await?,
        );
    }
    if written != file.size {
        return Err(RestoreError::Inconsistent {
            path: file.path.clone(),
            message: format!(
                "its chunks hold {written} bytes, the manifest says {}",
                file.size
            ),
        });
    }
    let f = out.take().expect("file handle");
    let (mode, mtime) = (file.mode, file.mtime);
    blocking(move || finish(f, &dest, mode, mtime)).await?;
    Ok(written)
}

/// Mode, mtime and fsync, on the open descriptor (no path lookup, no link to follow).
fn finish(f: File, path: &Path, mode: u32, mtime: i64) -> Result<(), RestoreError> {
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
