//! Checks for `cairn verify`: read an object and say exactly what is wrong with it. Damage
//! is the answer here, not an error; only the storage failing is an error.
//!
//! Each kind of object is checked by the module that owns its format: key files
//! ([`Repository::check_key_files`]), stanza info ([`Repository::check_stanza_info`]),
//! journals ([`Repository::check_journal`]), packs and their indexes
//! ([`Repository::pack_inventory`], [`crate::ChunkCodec::check`]). What is shared is here:
//! [`Repository::check_object`] decodes any encoded object under the identity it must have.

use std::fmt;

use crate::error::{BackendError, ObjectError};
use crate::keys::ContentId;
use crate::layout::{Identity, ObjectKey};
use crate::object::{self, ObjectKind};
use crate::repository::Repository;

/// What is wrong with one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Nothing is stored under the key.
    Missing,
    /// The bytes do not decode: see [`ObjectError`].
    Object(ObjectError),
    /// It decodes, but what it holds is wrong (not its kind's JSON, another generation's or
    /// another stanza's content, entries outside their pack, ...).
    Content(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing => f.write_str("is missing"),
            Damage::Object(e) => fmt::Display::fmt(e, f),
            Damage::Content(m) => f.write_str(m),
        }
    }
}

/// A decoded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub plaintext: Vec<u8>,
    /// The content id, checked against the plaintext.
    pub content_id: ContentId,
}

/// One object read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCheck {
    pub key: ObjectKey,
    /// Bytes read from the store.
    pub bytes: u64,
    pub result: Result<Decoded, Damage>,
}

/// One copy of a key file or of stanza info, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCheck {
    pub key: ObjectKey,
    pub generation: u64,
    /// The second copy (`.copy`) rather than the main one.
    pub copy: bool,
    /// Whether this generation is the one in force (the newest).
    pub in_force: bool,
    pub bytes: u64,
    pub damage: Option<Damage>,
}

/// Objects at least this large are decoded on the blocking pool.
const DECODE_INLINE_MAX: usize = 1 << 20;

impl Repository {
    /// Read `key` and decode it as an object of `kind` known as `identity` (its own key's
    /// identity for most objects; the main key's for a second copy or a WAL repair copy).
    /// Large objects are decoded on the blocking pool.
    pub async fn check_object(
        &self,
        key: &ObjectKey,
        kind: ObjectKind,
        identity: &Identity,
    ) -> Result<ObjectCheck, BackendError> {
        let Some(bytes) = self.backend().get(key).await? else {
            return Ok(ObjectCheck {
                key: key.clone(),
                bytes: 0,
                result: Err(Damage::Missing),
            });
        };
        let len = bytes.len() as u64;
        let keys = self.shared_keys();
        let identity = identity.clone();
        let decode = move || object::decode_with_id(&keys, kind, &identity, &bytes);
        let decoded = if len as usize >= DECODE_INLINE_MAX {
            tokio::task::spawn_blocking(decode)
                .await
                .expect("decode task panicked")
        } else {
            decode()
        };
        Ok(ObjectCheck {
            key: key.clone(),
            bytes: len,
            result: decoded
                .map(|(plaintext, content_id)| Decoded {
                    plaintext,
                    content_id,
                })
                .map_err(Damage::Object),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::StanzaName;

    #[tokio::test]
    async fn check_object_names_missing_damaged_and_moved_objects() {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, 7, 15).await.unwrap();
        let key = crate::layout::stanza_info(&stanza, 1);
        let good = repo
            .check_object(&key, ObjectKind::StanzaInfo, &Identity::of(&key))
            .await
            .unwrap();
        assert!(good.bytes > 0);
        assert!(good.result.is_ok());
        let elsewhere = ObjectKey::new("stanza/main/info/00000009").unwrap();
        let missing = repo
            .check_object(
                &elsewhere,
                ObjectKind::StanzaInfo,
                &Identity::of(&elsewhere),
            )
            .await
            .unwrap();
        assert_eq!(missing.result, Err(Damage::Missing));
        // The same bytes under another key: moved.
        let bytes = repo.backend().get(&key).await.unwrap().unwrap();
        repo.backend()
            .put_if_absent(&elsewhere, bytes.clone())
            .await
            .unwrap();
        let moved = repo
            .check_object(
                &elsewhere,
                ObjectKind::StanzaInfo,
                &Identity::of(&elsewhere),
            )
            .await
            .unwrap();
        assert_eq!(moved.result, Err(Damage::Object(ObjectError::Misplaced)));
        // Read as the wrong kind.
        let wrong = repo
            .check_object(&key, ObjectKind::WalFile, &Identity::of(&key))
            .await
            .unwrap();
        assert!(matches!(
            wrong.result,
            Err(Damage::Object(ObjectError::WrongKind { .. }))
        ));
    }
}
