//! A repository in an object store (S3, GCS, Azure, ...) through `object_store`.
//! Create-if-absent is a conditional PUT (`PutMode::Create`, `If-None-Match: *` on S3).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Listed, ListedAt, PutOutcome};
use crate::error::BackendError;
use crate::layout::ObjectKey;

pub struct StoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBackend")
            .field("url", &self.url)
            .finish()
    }
}

impl StoreBackend {
    /// Wrap a store; `prefix` (may be empty) is prepended to every key.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> StoreBackend {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        StoreBackend {
            store,
            prefix,
            url: url.to_string(),
        }
    }

    /// An in-memory store, for unit tests.
    pub fn memory() -> StoreBackend {
        StoreBackend::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        )
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> StorePath {
        StorePath::from(format!("{}{key}", self.prefix))
    }

    fn err<'a>(
        op: &'static str,
        key: &'a str,
    ) -> impl FnOnce(object_store::Error) -> BackendError + 'a {
        move |source| BackendError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub(crate) async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<PutOutcome, BackendError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(key.as_str()), PutPayload::from_bytes(data), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::Exists),
            Err(e) => Err(Self::err("write", key.as_str())(e)),
        }
    }

    /// Overwrite (or create) `key`: for lock objects only, every other object is written once.
    pub(crate) async fn put_overwrite(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<(), BackendError> {
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(key.as_str()), PutPayload::from_bytes(data), opts)
            .await
            .map(|_| ())
            .map_err(Self::err("write", key.as_str()))
    }

    pub(crate) async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<Option<Bytes>, BackendError> {
        let path = self.path(key.as_str());
        let result = match range {
            None => match self.store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            },
            Some(r) => self.store.get_range(&path, r).await,
        };
        match result {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::err("read", key.as_str())(e)),
        }
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, BackendError> {
        let p = self.path(prefix.trim_end_matches('/'));
        let stream = match start_after {
            Some(after) => self.store.list_with_offset(Some(&p), &self.path(after)),
            None => self.store.list(Some(&p)),
        };
        let metas: Vec<_> = stream
            .try_collect()
            .await
            .map_err(Self::err("list", prefix))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m
                    .location
                    .as_ref()
                    .strip_prefix(self.prefix.as_str())?
                    .to_string();
                Some(Listed { key, size: m.size })
            })
            .collect())
    }

    pub(crate) async fn list_modified(&self, prefix: &str) -> Result<Vec<ListedAt>, BackendError> {
        let p = self.path(prefix.trim_end_matches('/'));
        let metas: Vec<_> = self
            .store
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(Self::err("list", prefix))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m
                    .location
                    .as_ref()
                    .strip_prefix(self.prefix.as_str())?
                    .to_string();
                let millis = u64::try_from(m.last_modified.timestamp_millis()).unwrap_or(0);
                Some(ListedAt {
                    key,
                    size: m.size,
                    modified: std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis),
                })
            })
            .collect())
    }

    pub(crate) async fn delete(&self, key: &ObjectKey) -> Result<(), BackendError> {
        match self.store.delete(&self.path(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::err("delete", key.as_str())(e)),
        }
    }
}
