//! Storage underneath the repository: a local directory, or any `object_store` store.
//! Both offer the same few operations, and both create objects only if absent.

mod local;
mod store;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use local::{LocalBackend, StagedFile};
pub use store::StoreBackend;

use crate::error::BackendError;
use crate::layout::ObjectKey;

/// What a create-if-absent write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object is now durably stored under its key.
    Created,
    /// An object already had that key; nothing was written.
    Exists,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// An object prepared by [`Backend::stage`], not yet under its key; dropped uncommitted,
/// it leaves nothing behind.
#[derive(Debug)]
pub struct Staged(StagedInner);

#[derive(Debug)]
enum StagedInner {
    Local(StagedFile),
    Store { key: ObjectKey, data: Bytes },
}

/// One entry of a listing, with the time it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAt {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A temporary file a killed writer left behind (local repositories only), as removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempLeftover {
    /// Its path relative to the repository root.
    pub path: String,
    pub size: u64,
    /// How long ago it was last written.
    pub age: Duration,
}

/// A repository's storage.
#[derive(Debug, Clone)]
pub enum Backend {
    Local(Arc<LocalBackend>),
    Store(Arc<StoreBackend>),
}

impl Backend {
    /// Write `data` under `key` unless the key exists. `Created` means durable.
    pub(crate) async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<PutOutcome, BackendError> {
        match self {
            Backend::Local(b) => b.put_if_absent(key, data).await,
            Backend::Store(b) => b.put_if_absent(key, data).await,
        }
    }

    /// Prepare `data` for [`Backend::commit`] under `key`. On a local repository this writes
    /// and syncs it beside the key (the expensive part, which can overlap other work); an
    /// object store only keeps it for the conditional PUT.
    pub(crate) async fn stage(&self, key: &ObjectKey, data: Bytes) -> Result<Staged, BackendError> {
        Ok(Staged(match self {
            Backend::Local(b) => StagedInner::Local(b.stage(key, data).await?),
            Backend::Store(_) => StagedInner::Store {
                key: key.clone(),
                data,
            },
        }))
    }

    /// Store a staged object under its key unless the key exists. `Created` means durable.
    pub(crate) async fn commit(&self, staged: Staged) -> Result<PutOutcome, BackendError> {
        match (self, staged.0) {
            (Backend::Local(b), StagedInner::Local(f)) => b.commit(f).await,
            (Backend::Store(b), StagedInner::Store { key, data }) => {
                b.put_if_absent(&key, data).await
            }
            _ => unreachable!("an object is committed to the backend that staged it"),
        }
    }

    /// Replace `key` whole, or create it. Only lock objects are ever overwritten (their
    /// heartbeat); everything else is written once by [`Backend::put_if_absent`].
    pub(crate) async fn put_overwrite(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<(), BackendError> {
        match self {
            Backend::Local(b) => b.put_overwrite(key, data).await,
            Backend::Store(b) => b.put_overwrite(key, data).await,
        }
    }

    /// The whole object, or `None` when it does not exist.
    pub(crate) async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, BackendError> {
        match self {
            Backend::Local(b) => b.get(key, None).await,
            Backend::Store(b) => b.get(key, None).await,
        }
    }

    /// Part of an object, or `None` when it does not exist.
    pub(crate) async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, BackendError> {
        match self {
            Backend::Local(b) => b.get(key, Some(range)).await,
            Backend::Store(b) => b.get(key, Some(range)).await,
        }
    }

    /// Keys under `prefix` (a string ending in `/`), sorted, those after `start_after` only.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, BackendError> {
        let mut out = match self {
            Backend::Local(b) => b.list(prefix, start_after).await?,
            Backend::Store(b) => b.list(prefix, start_after).await?,
        };
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(after) = start_after {
            out.retain(|l| l.key.as_str() > after);
        }
        Ok(out)
    }

    /// The sequence numbers of the objects under `prefix` whose names are numbers
    /// (generations, snapshots), oldest first.
    pub(crate) async fn list_seqs(&self, prefix: &str) -> Result<Vec<u64>, BackendError> {
        let mut seqs: Vec<u64> = self
            .list(prefix, None)
            .await?
            .iter()
            .filter_map(|l| crate::layout::parse_seq(&l.key))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// [`Backend::list`] with each object's last-modified time (sorted by key).
    pub(crate) async fn list_modified(&self, prefix: &str) -> Result<Vec<ListedAt>, BackendError> {
        let mut out = match self {
            Backend::Local(b) => b.list_modified(prefix).await?,
            Backend::Store(b) => b.list_modified(prefix).await?,
        };
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Remove the temporary files of writers killed mid-write that were last written more
    /// than `older_than` ago, anywhere in the repository; returns what was removed. Object
    /// stores have none: a PUT is atomic and leaves nothing behind when it fails.
    pub(crate) async fn remove_stale_temps(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TempLeftover>, BackendError> {
        match self {
            Backend::Local(b) => b.remove_stale_temps(older_than).await,
            Backend::Store(_) => Ok(Vec::new()),
        }
    }

    /// Remove an object; removing one that is not there is not an error.
    pub(crate) async fn delete(&self, key: &ObjectKey) -> Result<(), BackendError> {
        match self {
            Backend::Local(b) => b.delete(key).await,
            Backend::Store(b) => b.delete(key).await,
        }
    }

    /// A description for messages (`/var/lib/cairn`, `s3://bucket/prefix`).
    pub fn location(&self) -> String {
        match self {
            Backend::Local(b) => b.root().display().to_string(),
            Backend::Store(b) => b.url().to_string(),
        }
    }
}
