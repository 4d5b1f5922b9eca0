//! Keys. A random 256-bit master key is created with the repository; everything else is
//! derived from it with BLAKE3's key derivation:
//! - the object key base (each object's AES-256-GCM key is keyed-BLAKE3(base, object salt)),
//! - the content-id key (content ids are keyed BLAKE3 hashes, so ids do not reveal content).
//!
//! With a passphrase the master key is stored wrapped (AES-256-GCM) under a key-encryption
//! key derived with Argon2id; without one it is stored in the clear (content is then only
//! authenticated against accidental damage, not against an attacker).

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::RepoError;

/// A keyed BLAKE3 hash identifying content inside one repository.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId(pub [u8; 32]);

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", hex::encode(&self.0[..8]))
    }
}

impl std::str::FromStr for ContentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v = hex::decode(s).map_err(|e| e.to_string())?;
        let a: [u8; 32] = v
            .try_into()
            .map_err(|_| "content id must be 32 bytes".to_string())?;
        Ok(ContentId(a))
    }
}

impl Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The keys derived from the master key.
#[derive(Clone)]
pub struct KeySet {
    object_base: [u8; 32],
    id_key: [u8; 32],
    bind_key: [u8; 32],
    encrypt: bool,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("encrypt", &self.encrypt)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    pub fn from_master(master: &[u8; 32], encrypt: bool) -> KeySet {
        KeySet {
            object_base: blake3::derive_key("cairn 2026-11 object encryption key", master),
            id_key: blake3::derive_key("cairn 2026-11 content id key", master),
            bind_key: blake3::derive_key("cairn 2026-12 object binding key", master),
            encrypt,
        }
    }

    /// Whether objects are encrypted.
    pub fn encrypts(&self) -> bool {
        self.encrypt
    }

    /// The content id of `data`. Large inputs hash on several threads.
    pub fn content_id(&self, data: &[u8]) -> ContentId {
        let mut h = blake3::Hasher::new_keyed(&self.id_key);
        if data.len() >= 1 << 20 {
            h.update_rayon(data);
        } else {
            h.update(data);
        }
        ContentId(*h.finalize().as_bytes())
    }

    /// The binding of an object header to the identity it is stored under (16 bytes).
    pub(crate) fn binding(&self, header: &[u8], identity: &[u8]) -> [u8; 16] {
        let mut h = blake3::Hasher::new_keyed(&self.bind_key);
        h.update(header);
        h.update(&(identity.len() as u64).to_le_bytes());
        h.update(identity);
        h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
    }

    /// An incremental hasher for a content id.
    pub(crate) fn content_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }

    /// The key content ids are hashed with (for joining pieces: [`crate::content_tree`]).
    pub(crate) fn content_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    /// The content id, hashed on the calling thread only (when other threads are busy).
    pub fn content_id_single(&self, data: &[u8]) -> ContentId {
        ContentId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// The AES-256-GCM key of one object, from its random salt.
    pub(crate) fn object_cipher(&self, salt: &[u8; 32]) -> Aes256Gcm {
        let k = blake3::keyed_hash(&self.object_base, salt);
        Aes256Gcm::new_from_slice(k.as_bytes()).expect("32-byte key")
    }
}

/// Argon2id cost parameters, kept in the repository config so they can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes): archive-push stays well
    /// under 64 MiB of memory even when it has to derive the key.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
}

/// How the master key is stored in the key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cipher", rename_all = "kebab-case")]
pub enum KeyStorage {
    /// No encryption: the master key in the clear (it only keys content ids).
    None { master_key: String },
    /// Master key wrapped with AES-256-GCM under an Argon2id-derived key.
    Aes256Gcm {
        kdf: KdfParams,
        salt: String,
        nonce: String,
        wrapped_key: String,
    },
}

fn b64_32(s: &str) -> Option<[u8; 32]> {
    B64.decode(s).ok()?.try_into().ok()
}

fn derive_kek(pass: &str, salt: &[u8], kdf: KdfParams) -> Result<[u8; 32], RepoError> {
    let params =
        argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|e| RepoError::Encode {
            message: format!("argon2 parameters: {e}"),
        })?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(pass.as_bytes(), salt, &mut out)
        .map_err(|e| RepoError::Encode {
            message: format!("argon2: {e}"),
        })?;
    Ok(out)
}

impl KeyStorage {
    /// Create a new random master key, wrapped under `pass` if given.
    pub fn create(pass: Option<&str>, kdf: KdfParams) -> Result<(KeyStorage, KeySet), RepoError> {
        KeyStorage::wrap(rand::random(), pass, kdf)
    }

    /// The same master key wrapped under `new_pass` (fresh salt and nonce), for `rekey`:
    /// `old_pass` must open this storage. No data object changes.
    pub fn rewrap(
        &self,
        old_pass: &str,
        new_pass: &str,
        kdf: KdfParams,
    ) -> Result<KeyStorage, RepoError> {
        let master = self.master(Some(old_pass), None)?;
        KeyStorage::wrap(master, Some(new_pass), kdf).map(|(st, _)| st)
    }

    fn wrap(
        master: [u8; 32],
        pass: Option<&str>,
        kdf: KdfParams,
    ) -> Result<(KeyStorage, KeySet), RepoError> {
        match pass {
            None => Ok((
                KeyStorage::None {
                    master_key: B64.encode(master),
                },
                KeySet::from_master(&master, false),
            )),
            Some(pass) => {
                let salt: [u8; 16] = rand::random();
                let nonce: [u8; 12] = rand::random();
                let kek = derive_kek(pass, &salt, kdf)?;
                let wrapped = Aes256Gcm::new_from_slice(&kek)
                    .expect("32-byte key")
                    .encrypt(&Nonce::from(nonce), master.as_slice())
                    .map_err(|_| RepoError::Encode {
                        message: "key wrap failed".into(),
                    })?;
                Ok((
                    KeyStorage::Aes256Gcm {
                        kdf,
                        salt: B64.encode(salt),
                        nonce: B64.encode(nonce),
                        wrapped_key: B64.encode(wrapped),
                    },
                    KeySet::from_master(&master, true),
                ))
            }
        }
    }

    /// Open the master key. `cache` is a directory where the derived key-encryption key may
    /// be kept (mode 0600) so that per-segment commands skip the deliberately slow Argon2id.
    pub fn open(&self, pass: Option<&str>, cache: Option<&KekCache>) -> Result<KeySet, RepoError> {
        let encrypt = matches!(self, KeyStorage::Aes256Gcm { .. });
        self.master(pass, cache)
            .map(|m| KeySet::from_master(&m, encrypt))
    }

    /// Whether the master key is wrapped under a passphrase.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, KeyStorage::Aes256Gcm { .. })
    }

    fn master(&self, pass: Option<&str>, cache: Option<&KekCache>) -> Result<[u8; 32], RepoError> {
        let malformed = |m: &str| RepoError::KeyFilesDamaged {
            problems: format!("the key file in force is malformed ({m})"),
        };
        match self {
            KeyStorage::None { master_key } => {
                if pass.is_some() {
                    return Err(RepoError::PassphraseUnexpected);
                }
                b64_32(master_key).ok_or_else(|| malformed("bad master key"))
            }
            KeyStorage::Aes256Gcm {
                kdf,
                salt,
                nonce,
                wrapped_key,
            } => {
                let pass = pass.ok_or(RepoError::PassphraseRequired)?;
                let salt = B64.decode(salt).map_err(|_| malformed("bad salt"))?;
                let nonce: [u8; 12] = B64
                    .decode(nonce)
                    .ok()
                    .and_then(|n| n.try_into().ok())
                    .ok_or_else(|| malformed("bad nonce"))?;
                let wrapped = B64
                    .decode(wrapped_key)
                    .map_err(|_| malformed("bad wrapped key"))?;
                let unwrap = |kek: &[u8; 32]| -> Option<[u8; 32]> {
                    Aes256Gcm::new_from_slice(kek)
                        .expect("32-byte key")
                        .decrypt(&Nonce::from(nonce), wrapped.as_slice())
                        .ok()?
                        .try_into()
                        .ok()
                };
                if let Some(m) = cache
                    .and_then(|c| c.load(&salt, pass))
                    .and_then(|kek| unwrap(&kek))
                {
                    return Ok(m);
                }
                let kek = derive_kek(pass, &salt, *kdf)?;
                let m = unwrap(&kek).ok_or(RepoError::WrongPassphrase)?;
                if let Some(cache) = cache {
                    cache.store(&salt, pass, &kek);
                }
                Ok(m)
            }
        }
    }
}

/// A local cache of derived key-encryption keys, one file per repository key salt.
///
/// A cached entry is as sensitive as the passphrase in `cairn.toml` beside it (mode 0600,
/// same owner). It also holds a MAC of the passphrase under that key, so a changed
/// passphrase in the configuration is noticed and reported rather than silently ignored.
#[derive(Debug, Clone)]
pub struct KekCache {
    dir: PathBuf,
}

impl KekCache {
    pub fn new(dir: impl Into<PathBuf>) -> KekCache {
        KekCache { dir: dir.into() }
    }

    fn file(&self, salt: &[u8]) -> PathBuf {
        let name = blake3::derive_key("cairn 2026-11 kek cache file name", salt);
        self.dir.join(format!("kek-{}", hex::encode(&name[..16])))
    }

    fn load(&self, salt: &[u8], pass: &str) -> Option<[u8; 32]> {
        let bytes = std::fs::read(self.file(salt)).ok()?;
        if bytes.len() != 64 {
            return None;
        }
        let kek: [u8; 32] = bytes[..32].try_into().ok()?;
        let mac = blake3::keyed_hash(&kek, pass.as_bytes());
        // Constant time is not needed: whoever reads this file already holds the key.
        (mac.as_bytes() == &bytes[32..]).then_some(kek)
    }

    // Best effort: a cache that cannot be written only costs time.
    fn store(&self, salt: &[u8], pass: &str, kek: &[u8; 32]) {
        let _ = write_private(&self.dir, &self.file(salt), kek, pass);
    }
}

fn write_private(dir: &Path, path: &Path, kek: &[u8; 32], pass: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".kek.{}.{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(kek)?;
    f.write_all(blake3::keyed_hash(kek, pass.as_bytes()).as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn wrap_and_unwrap() {
        let (st, ks) = KeyStorage::create(Some("pw"), FAST).unwrap();
        let again = st.open(Some("pw"), None).unwrap();
        assert_eq!(ks.content_id(b"x"), again.content_id(b"x"));
        assert!(matches!(
            st.open(Some("wrong"), None),
            Err(RepoError::WrongPassphrase)
        ));
        assert!(matches!(
            st.open(None, None),
            Err(RepoError::PassphraseRequired)
        ));
    }

    #[test]
    fn rewrap_keeps_the_master_key_under_a_new_passphrase() {
        let (st, ks) = KeyStorage::create(Some("old"), FAST).unwrap();
        let new = st.rewrap("old", "new", FAST).unwrap();
        assert_eq!(
            new.open(Some("new"), None).unwrap().content_id(b"x"),
            ks.content_id(b"x")
        );
        assert!(matches!(
            new.open(Some("old"), None),
            Err(RepoError::WrongPassphrase)
        ));
        assert!(matches!(
            st.rewrap("wrong", "new", FAST),
            Err(RepoError::WrongPassphrase)
        ));
    }

    #[test]
    fn cache_is_used_and_notices_a_changed_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KekCache::new(dir.path().join("keys"));
        let (st, ks) = KeyStorage::create(Some("pw"), FAST).unwrap();
        st.open(Some("pw"), Some(&cache)).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1);
        let again = st.open(Some("pw"), Some(&cache)).unwrap();
        assert_eq!(ks.content_id(b"y"), again.content_id(b"y"));
        assert!(matches!(
            st.open(Some("other"), Some(&cache)),
            Err(RepoError::WrongPassphrase)
        ));
    }

    #[test]
    fn ids_are_keyed() {
        let (_, a) = KeyStorage::create(None, FAST).unwrap();
        let (_, b) = KeyStorage::create(None, FAST).unwrap();
        assert_ne!(a.content_id(b"same"), b.content_id(b"same"));
    }
}
