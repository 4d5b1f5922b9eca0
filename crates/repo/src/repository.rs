//! Opening a repository: storage, the key files ([`crate::keyring`]), and typed access to
//! encoded objects, each bound to the identity it is stored under.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, Listed, ListedAt, PutOutcome, Staged, StoreBackend, TempLeftover};
use crate::error::RepoError;
use crate::keyring::{self, KeyFileBody, REPO_FORMAT};
use crate::keys::{ContentId, KdfParams, KekCache, KeySet, KeyStorage};
use crate::layout::{Identity, ObjectKey};
use crate::object::{self, HEADER_LEN, ObjectHeader, ObjectKind};

/// Settings that are not in the repository itself.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub compress_level: i32,
    /// Where derived key-encryption keys may be cached (see [`KekCache`]).
    pub kek_cache: Option<PathBuf>,
    /// Argon2id cost for a repository created now.
    pub kdf: KdfParams,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            compress_level: 3,
            kek_cache: None,
            kdf: KdfParams::DEFAULT,
        }
    }
}

/// An encoded object, ready to store under the identity it was encoded for.
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Bytes,
    pub content_id: ContentId,
    pub plaintext_len: u64,
    identity: Identity,
}

impl Encoded {
    pub(crate) fn from_parts(
        bytes: Vec<u8>,
        content_id: ContentId,
        plaintext_len: u64,
        identity: Identity,
    ) -> Encoded {
        Encoded {
            bytes: Bytes::from(bytes),
            content_id,
            plaintext_len,
            identity,
        }
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// What the object was encoded as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// What `rekey` did: the key file generation it replaced and wrote, and the generations
/// it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    pub from: u64,
    pub to: u64,
    pub removed: Vec<u64>,
}

/// An open repository: storage plus keys.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Backend,
    keys: Arc<KeySet>,
    level: i32,
    repo_id: String,
    key_seq: u64,
    /// Older key file generations still present (a rekey that did not finish cleaning up).
    older_key_seqs: Arc<Vec<u64>>,
    /// What opening noticed and worked around (a damaged key file copy), for warnings.
    warnings: Arc<Vec<String>>,
    /// Where journal entries take their time from (the system clock unless a synthetic
    /// repository is being generated: `test-util`).
    clock: Clock,
    /// Segments per page of the WAL index (smaller in tests, to make many pages).
    wal_page_segments: u64,
}

/// The time source of journal keys and archive times.
#[derive(Clone, Default)]
struct Clock(Option<Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "synthetic"
        } else {
            "system"
        })
    }
}

impl Repository {
    /// Open an existing repository.
    pub async fn open(
        backend: Backend,
        pass: Option<&str>,
        opts: &OpenOptions,
    ) -> Result<Repository, RepoError> {
        let loaded = keyring::load(&backend).await?;
        let cache = opts.kek_cache.as_ref().map(KekCache::new);
        let keys = loaded.body.keys.open(pass, cache.as_ref())?;
        let warnings = loaded
            .problems
            .iter()
            .map(|(key, why)| {
                format!(
                    "key file {key} {why}; generation {} is in use (run `cairn verify`)",
                    loaded.body.seq
                )
            })
            .collect();
        Ok(Repository {
            backend,
            keys: Arc::new(keys),
            level: opts.compress_level,
            repo_id: loaded.body.repo_id,
            key_seq: loaded.body.seq,
            older_key_seqs: Arc::new(loaded.older),
            warnings: Arc::new(warnings),
            clock: Clock::default(),
            wal_page_segments: crate::wal_index::PAGE_SEGMENTS,
        })
    }

    /// Open the repository, creating it (with a new master key) when there is none.
    /// Returns whether it was created.
    pub async fn open_or_create(
        backend: Backend,
        pass: Option<&str>,
        opts: &OpenOptions,
    ) -> Result<(Repository, bool), RepoError> {
        match Repository::open(backend.clone(), pass, opts).await {
            Err(RepoError::NoRepository { .. }) => {}
            other => return other.map(|r| (r, false)),
        }
        let (keys, _) = KeyStorage::create(pass, opts.kdf)?;
        let body = KeyFileBody {
            format: REPO_FORMAT,
            repo_id: hex::encode(rand::random::<[u8; 16]>()),
            created: now_rfc3339(),
            seq: 1,
            keys,
        };
        let created = keyring::store(&backend, &body).await?;
        // Whoever won a race to create it, open what is there now.
        let repo = Repository::open(backend, pass, opts).await?;
        Ok((repo, created == PutOutcome::Created))
    }

    /// Change the passphrase: the master key is wrapped under `new_pass` in the next key
    /// file generation (both copies), then older generations are removed. No data object
    /// is rewritten. Killed midway, exactly one passphrase opens the repository: the old one
    /// until the new generation's first copy is durable, the new one from then on.
    pub async fn rekey(
        &self,
        old_pass: &str,
        new_pass: &str,
        kdf: KdfParams,
    ) -> Result<Rekeyed, RepoError> {
        let guard = self
            .lock(
                crate::lock::LockTarget::Keys,
                "rekey",
                &crate::lock::LockOptions::default(),
            )
            .await?;
        let loaded = keyring::load(&self.backend).await?;
        if !loaded.body.keys.is_encrypted() {
            guard.release().await?;
            return Err(RepoError::NotEncrypted);
        }
        let keys = loaded.body.keys.rewrap(old_pass, new_pass, kdf)?;
        let from = loaded.body.seq;
        let body = KeyFileBody {
            seq: from + 1,
            created: now_rfc3339(),
            keys,
            ..loaded.body
        };
        if keyring::store(&self.backend, &body).await? == PutOutcome::Exists {
            return Err(RepoError::Concurrent {
                what: "key file",
                key: crate::layout::key_file(body.seq, false),
            });
        }
        let mut removed: Vec<u64> = loaded.older;
        removed.push(from);
        for &seq in &removed {
            // The copy first: a half-removed generation never looks whole.
            self.backend
                .delete(&crate::layout::key_file(seq, true))
                .await?;
            self.backend
                .delete(&crate::layout::key_file(seq, false))
                .await?;
        }
        guard.release().await?;
        Ok(Rekeyed {
            from,
            to: body.seq,
            removed,
        })
    }

    /// A new encrypted repository in memory with a cheap key derivation: for unit tests of
    /// this and other crates, never for data.
    pub async fn in_memory() -> Repository {
        let backend = Backend::Store(Arc::new(StoreBackend::memory()));
        let opts = OpenOptions {
            kdf: KdfParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            ..Default::default()
        };
        let (repo, _) = Repository::open_or_create(backend, Some("in-memory"), &opts)
            .await
            .expect("an in-memory repository opens");
        repo
    }

    /// This repository with journal entries and archive times taken from `clock` instead
    /// of the system clock: for generating a synthetic year-old repository (benches/).
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_clock(
        mut self,
        clock: Arc<dyn Fn() -> time::OffsetDateTime + Send + Sync>,
    ) -> Repository {
        self.clock = Clock(Some(clock));
        self
    }

    /// This repository writing WAL index pages of `segments` segments: tests make many
    /// pages out of few segments.
    #[cfg(any(test, feature = "test-util"))]
    pub fn with_wal_page_segments(mut self, segments: u64) -> Repository {
        self.wal_page_segments = segments.max(1);
        self
    }

    pub(crate) fn wal_page_segments(&self) -> u64 {
        self.wal_page_segments
    }

    /// Now, by this repository's clock.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        match &self.clock.0 {
            Some(c) => c(),
            None => time::OffsetDateTime::now_utc(),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The zstd level objects are written with.
    pub fn compress_level(&self) -> i32 {
        self.level
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub(crate) fn shared_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys)
    }

    pub fn repo_id(&self) -> &str {
        &self.repo_id
    }

    /// The generation of the key file in force.
    pub fn key_generation(&self) -> u64 {
        self.key_seq
    }

    /// Older key file generations still in the repository (a rekey that did not finish).
    pub fn older_key_generations(&self) -> &[u64] {
        &self.older_key_seqs
    }

    /// What opening worked around (e.g. a damaged key file copy): print these as warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Where the repository is, for messages (`/var/lib/cairn`, `s3://bucket/prefix`).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Keys stored under `prefix` (ending in `/`), sorted: for scans that must also find
    /// what no catalog lists (verify).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, RepoError> {
        Ok(self.backend.list(prefix, None).await?)
    }

    /// [`Repository::list`] with each object's last-modified time.
    pub async fn list_modified(&self, prefix: &str) -> Result<Vec<ListedAt>, RepoError> {
        Ok(self.backend.list_modified(prefix).await?)
    }

    /// Remove temporary files of writers killed more than `older_than` ago (local
    /// repositories only); returns what was removed.
    pub async fn remove_stale_temps(
        &self,
        older_than: Duration,
    ) -> Result<Vec<TempLeftover>, RepoError> {
        Ok(self.backend.remove_stale_temps(older_than).await?)
    }

    /// Remove an object that a plan condemned (expire, verify's cleanup of repair
    /// leftovers); one that is not there is not an error. Nothing is ever overwritten.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), RepoError> {
        Ok(self.backend.delete(key).await?)
    }

    /// Bytes `range` of an object as stored (still encoded), or `None` when it does not
    /// exist: for readers that decode parts themselves (a pack's chunks).
    pub async fn get_stored_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Option<Bytes>, RepoError> {
        Ok(self.backend.get_range(key, range).await?)
    }

    /// Encode `plaintext` (compress, encrypt, content id) as `identity`. Large objects are
    /// encoded on the blocking pool, so the caller can do other work (e.g. validate)
    /// meanwhile.
    pub(crate) async fn encode_as(
        &self,
        kind: ObjectKind,
        identity: Identity,
        plaintext: Bytes,
    ) -> Result<Encoded, RepoError> {
        let keys = self.keys.clone();
        let level = self.level;
        let len = plaintext.len() as u64;
        let id = identity.clone();
        let run = move || object::encode(&keys, kind, &id, &plaintext, level);
        let (bytes, content_id) = if len >= 1 << 20 {
            tokio::task::spawn_blocking(run)
                .await
                .expect("encode task panicked")
        } else {
            run()
        }
        .map_err(|message| RepoError::Encode { message })?;
        Ok(Encoded::from_parts(bytes, content_id, len, identity))
    }

    /// Store an encoded object under `key` unless the key exists. The key must be the one
    /// the object was encoded for.
    pub async fn put_encoded(
        &self,
        key: &ObjectKey,
        encoded: &Encoded,
    ) -> Result<PutOutcome, RepoError> {
        self.check_identity(key, encoded)?;
        Ok(self
            .backend
            .put_if_absent(key, encoded.bytes.clone())
            .await?)
    }

    /// Stage an encoded object for `key` ([`Backend::stage`]); commit it with
    /// [`Backend::commit`]. The key must be the one the object was encoded for.
    pub async fn stage_encoded(
        &self,
        key: &ObjectKey,
        encoded: &Encoded,
    ) -> Result<Staged, RepoError> {
        self.check_identity(key, encoded)?;
        Ok(self.backend.stage(key, encoded.bytes.clone()).await?)
    }

    fn check_identity(&self, key: &ObjectKey, encoded: &Encoded) -> Result<(), RepoError> {
        if encoded.identity != Identity::of(key) {
            return Err(RepoError::Encode {
                message: format!(
                    "object encoded as {} cannot be stored under {key}",
                    encoded.identity
                ),
            });
        }
        Ok(())
    }

    /// Encode and store `plaintext` under `key` unless the key exists.
    pub(crate) async fn put(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
        plaintext: Bytes,
    ) -> Result<(PutOutcome, ContentId), RepoError> {
        let encoded = self.encode_as(kind, Identity::of(key), plaintext).await?;
        Ok((self.put_encoded(key, &encoded).await?, encoded.content_id))
    }

    /// Store `plaintext` under `key` as the second copy of the object known as `identity`.
    pub(crate) async fn put_copy(
        &self,
        key: &ObjectKey,
        identity: Identity,
        kind: ObjectKind,
        plaintext: Bytes,
    ) -> Result<PutOutcome, RepoError> {
        let encoded = self.encode_as(kind, identity, plaintext).await?;
        Ok(self
            .backend
            .put_if_absent(key, encoded.bytes.clone())
            .await?)
    }

    /// Fetch and decode an object; `None` when it does not exist.
    pub async fn get(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self.get_with_id(key, kind).await?.map(|(plain, _)| plain))
    }

    /// [`Repository::get`] with the content id the object was checked against.
    pub async fn get_with_id(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
    ) -> Result<Option<(Vec<u8>, ContentId)>, RepoError> {
        self.get_as(key, &Identity::of(key), kind).await
    }

    /// Fetch the object stored under `key` and decode it as `identity` (a second copy
    /// decodes as its main object).
    pub(crate) async fn get_as(
        &self,
        key: &ObjectKey,
        identity: &Identity,
        kind: ObjectKind,
    ) -> Result<Option<(Vec<u8>, ContentId)>, RepoError> {
        let Some(bytes) = self.backend.get(key).await? else {
            return Ok(None);
        };
        object::decode_with_id(&self.keys, kind, identity, &bytes)
            .map(Some)
            .map_err(|e| RepoError::object(key, e))
    }

    /// The content id recorded in a stored object's header (one small ranged read).
    pub async fn stored_content_id(&self, key: &ObjectKey) -> Result<Option<ContentId>, RepoError> {
        let Some(bytes) = self.backend.get_range(key, 0..HEADER_LEN as u64).await? else {
            return Ok(None);
        };
        let header = ObjectHeader::parse(&bytes).map_err(|e| RepoError::object(key, e))?;
        Ok(Some(header.content_id))
    }

    pub async fn put_json<T: Serialize>(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
        value: &T,
    ) -> Result<PutOutcome, RepoError> {
        let json = serde_json::to_vec(value).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?;
        Ok(self.put(key, kind, Bytes::from(json)).await?.0)
    }

    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
        what: &'static str,
    ) -> Result<Option<T>, RepoError> {
        let Some(bytes) = self.get(key, kind).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RepoError::Malformed {
                what,
                key: key.clone(),
                message: e.to_string(),
            })
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
