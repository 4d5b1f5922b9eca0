//! Raw access for tests and benches (the `test-util` feature; enable it in
//! dev-dependencies only). Production code goes through [`Repository`]'s typed access,
//! which keeps the rules: objects are encoded for the key they are stored under and
//! written only if absent. Tests need to break those rules on purpose: flip a byte,
//! drop an object, plant a stray one.
//!
//! ```
//! # async fn demo() {
//! use cairn_repo::{ObjectKey, Repository, test_util::RawBackend};
//! let repo = Repository::in_memory().await;
//! let key = ObjectKey::new("stray/x".to_string()).unwrap();
//! RawBackend::of(&repo).put_if_absent(&key, vec![1, 2, 3].into()).await.unwrap();
//! # }
//! ```

use std::ops::Range;

use bytes::Bytes;

use crate::backend::{Backend, Listed, PutOutcome};
use crate::error::BackendError;
use crate::keys::{ContentId, KeySet};
use crate::layout::{Identity, ObjectKey};
use crate::object::{self, ObjectKind};
use crate::repository::Repository;

/// A repository's storage with its raw operations open.
#[derive(Debug, Clone, Copy)]
pub struct RawBackend<'a>(&'a Backend);

impl<'a> RawBackend<'a> {
    /// The storage under an open repository.
    pub fn of(repo: &'a Repository) -> RawBackend<'a> {
        RawBackend(repo.backend())
    }

    /// A storage not (yet) opened as a repository.
    pub fn from_backend(backend: &'a Backend) -> RawBackend<'a> {
        RawBackend(backend)
    }

    pub async fn put_if_absent(
        &self,
        key: &ObjectKey,
        data: Bytes,
    ) -> Result<PutOutcome, BackendError> {
        self.0.put_if_absent(key, data).await
    }

    /// Replace an object whole (e.g. with damaged bytes).
    pub async fn put_overwrite(&self, key: &ObjectKey, data: Bytes) -> Result<(), BackendError> {
        self.0.put_overwrite(key, data).await
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, BackendError> {
        self.0.get(key).await
    }

    pub async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, BackendError> {
        self.0.get_range(key, range).await
    }

    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, BackendError> {
        self.0.list(prefix, start_after).await
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), BackendError> {
        self.0.delete(key).await
    }
}

/// Encode `plaintext` as an object of `kind` known as `identity` (benches, crafted
/// fixtures): the bytes and their content id.
pub fn encode(
    keys: &KeySet,
    kind: ObjectKind,
    identity: &Identity,
    plaintext: &[u8],
    level: i32,
) -> Result<(Vec<u8>, ContentId), String> {
    object::encode(keys, kind, identity, plaintext, level)
}

/// Decode an object encoded by [`encode`].
pub fn decode(
    keys: &KeySet,
    kind: ObjectKind,
    identity: &Identity,
    bytes: &[u8],
) -> Result<Vec<u8>, crate::error::ObjectError> {
    object::decode(keys, kind, identity, bytes)
}

/// Archive segment `i` of `wal` in generation 1 as archive-push would: encoded, stored and
/// announced in the catalog with its summary (tests that need real segments in a stanza).
pub async fn push_built_segment(
    repo: &Repository,
    stanza: &crate::layout::StanzaName,
    wal: &cairn_pgformat::builder::WalBuilder,
    i: usize,
) {
    let bytes = wal.segment(i);
    let summary = cairn_pgformat::summarize_segment(&bytes).expect("a built segment");
    let name = cairn_pgformat::WalFileName::Segment(wal.segment_name(i));
    let db = crate::layout::DbId(1);
    let enc = repo
        .encode_wal(stanza, db, &name, bytes.into())
        .await
        .expect("encoded");
    let detail = crate::wal::WalDetail::Segment {
        summary: Box::new(summary),
    };
    repo.push_wal(stanza, db, &name, &enc, detail)
        .await
        .expect("archived");
}
