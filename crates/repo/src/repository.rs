//! Opening a repository: storage, the plain-JSON `config` object with the key wrap, and
//! typed access to encoded objects.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, PutOutcome, StoreBackend};
use crate::error::RepoError;
use crate::keys::{ContentId, KdfParams, KekCache, KeySet, KeyStorage};
use crate::layout::{self, ObjectKey};
use crate::object::{self, HEADER_LEN, ObjectHeader, ObjectKind};

/// The repository format this cairn writes and understands.
pub const REPO_FORMAT: u32 = 1;

/// The `config` object at the repository root.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoConfigFile {
    format: u32,
    repo_id: String,
    created: String,
    #[serde(flatten)]
    keys: KeyStorage,
}

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

/// An encoded object, ready to store.
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Bytes,
    pub content_id: ContentId,
    pub plaintext_len: u64,
}

impl Encoded {
    /// Wrap bytes produced by [`crate::object::encode`].
    pub fn from_parts(bytes: Vec<u8>, content_id: ContentId, plaintext_len: u64) -> Encoded {
        Encoded {
            bytes: Bytes::from(bytes),
            content_id,
            plaintext_len,
        }
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// An open repository: storage plus keys.
#[derive(Debug, Clone)]
pub struct Repository {
    backend: Backend,
    keys: Arc<KeySet>,
    level: i32,
    repo_id: String,
}

impl Repository {
    /// Open an existing repository.
    pub async fn open(
        backend: Backend,
        pass: Option<&str>,
        opts: &OpenOptions,
    ) -> Result<Repository, RepoError> {
        let key = layout::repo_config();
        let Some(bytes) = backend.get(&key).await? else {
            return Err(RepoError::NoRepository {
                location: backend.location(),
            });
        };
        let file: RepoConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| RepoError::Malformed {
                what: "repository config",
                key: key.clone(),
                message: e.to_string(),
            })?;
        if file.format > REPO_FORMAT {
            return Err(RepoError::UnsupportedFormat {
                found: file.format,
                supported: REPO_FORMAT,
            });
        }
        let cache = opts.kek_cache.as_ref().map(KekCache::new);
        let keys = file.keys.open(pass, cache.as_ref())?;
        Ok(Repository {
            backend,
            keys: Arc::new(keys),
            level: opts.compress_level,
            repo_id: file.repo_id,
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
        let file = RepoConfigFile {
            format: REPO_FORMAT,
            repo_id: hex::encode(rand::random::<[u8; 16]>()),
            created: now_rfc3339(),
            keys,
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?;
        let created = backend
            .put_if_absent(&layout::repo_config(), Bytes::from(json))
            .await?;
        // Whoever won a race to create it, open what is there now.
        let repo = Repository::open(backend, pass, opts).await?;
        Ok((repo, created == PutOutcome::Created))
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

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The zstd level objects are written with.
    pub fn compress_level(&self) -> i32 {
        self.level
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn repo_id(&self) -> &str {
        &self.repo_id
    }

    /// Encode `plaintext` (compress, encrypt, content id). Large objects are encoded on the
    /// blocking pool, so the caller can do other work (e.g. validate) meanwhile.
    pub async fn encode(&self, kind: ObjectKind, plaintext: Bytes) -> Result<Encoded, RepoError> {
        let keys = self.keys.clone();
        let level = self.level;
        let len = plaintext.len() as u64;
        let run = move || object::encode(&keys, kind, &plaintext, level);
        let (bytes, content_id) = if len >= 1 << 20 {
            tokio::task::spawn_blocking(run)
                .await
                .expect("encode task panicked")
        } else {
            run()
        }
        .map_err(|message| RepoError::Encode { message })?;
        Ok(Encoded {
            bytes: Bytes::from(bytes),
            content_id,
            plaintext_len: len,
        })
    }

    /// Store an encoded object under `key` unless the key exists.
    pub async fn put_encoded(
        &self,
        key: &ObjectKey,
        encoded: &Encoded,
    ) -> Result<PutOutcome, RepoError> {
        Ok(self
            .backend
            .put_if_absent(key, encoded.bytes.clone())
            .await?)
    }

    /// Encode and store `plaintext` under `key` unless the key exists.
    pub async fn put(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
        plaintext: Bytes,
    ) -> Result<(PutOutcome, ContentId), RepoError> {
        let encoded = self.encode(kind, plaintext).await?;
        Ok((self.put_encoded(key, &encoded).await?, encoded.content_id))
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
        let Some(bytes) = self.backend.get(key).await? else {
            return Ok(None);
        };
        object::decode_with_id(&self.keys, kind, &bytes)
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
