//! The key files: the repository's format, its id, and the wrapped master key, in plain
//! JSON (they must be readable before any key is known).
//!
//! ```text
//! keyring/00000001        generation 1 of the key file
//! keyring/00000001.copy   its second copy, written right after it
//! ```
//! Each copy carries its own `check` (BLAKE3 of its body), so a damaged copy reads as
//! damage, never as a wrong passphrase, and the other copy is used. `rekey` writes the next
//! generation (both copies) and then deletes the older one; the newest generation with a
//! good copy is the one in force, so a rekey killed midway leaves exactly one passphrase
//! that opens the repository.
//!
//! A repository of format 1 has a `config` object instead: it is refused with one line
//! (decision 010).

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, PutOutcome};
use crate::check::{CopyCheck, Damage};
use crate::error::{BackendError, RepoError};
use crate::keys::KeyStorage;
use crate::layout::{self, ObjectKey};
use crate::repository::Repository;

/// The repository format this cairn writes and understands.
pub const REPO_FORMAT: u32 = 2;

/// What a key file says, without its check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyFileBody {
    pub format: u32,
    pub repo_id: String,
    pub created: String,
    pub seq: u64,
    #[serde(flatten)]
    pub keys: KeyStorage,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    #[serde(flatten)]
    body: KeyFileBody,
    check: String,
}

impl KeyFileBody {
    fn check(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key file serializes");
        let mut h = blake3::Hasher::new_derive_key("cairn 2026-12 key file check");
        h.update(&json);
        h.finalize().to_hex().to_string()
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let file = KeyFile {
            body: self.clone(),
            check: self.check(),
        };
        let mut v = serde_json::to_vec_pretty(&file).expect("a key file serializes");
        v.push(b'\n');
        v
    }

    /// Parse one copy; `Err` says how it is damaged.
    fn parse(bytes: &[u8], seq: u64) -> Result<KeyFileBody, String> {
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not a key file: {e}"))?;
        if file.check != file.body.check() {
            return Err("its check does not match its content".into());
        }
        if file.body.seq != seq {
            return Err(format!("it says generation {}", file.body.seq));
        }
        Ok(file.body)
    }
}

/// The key file in force, and what was wrong with the copies passed over.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub body: KeyFileBody,
    /// Damaged or missing copies of the generation in force, for warnings and `verify`.
    pub problems: Vec<(ObjectKey, String)>,
    /// Older generations still present (a rekey that did not finish its cleanup).
    pub older: Vec<u64>,
}

/// Read the newest generation of the key file, from whichever copy is whole.
pub(crate) async fn load(backend: &Backend) -> Result<Loaded, RepoError> {
    let listed = backend.list(layout::keyring_prefix(), None).await?;
    let mut seqs: Vec<u64> = listed
        .iter()
        .filter_map(|l| layout::parse_copy_seq(&l.key).map(|(s, _)| s))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    if seqs.is_empty() {
        if backend.get(&layout::format1_config()).await?.is_some() {
            return Err(RepoError::UnsupportedFormat {
                found: 1,
                supported: REPO_FORMAT,
            });
        }
        return Err(RepoError::NoRepository {
            location: backend.location(),
        });
    }
    // The newest generation with a good copy is in force (decision 010): a newer one
    // damaged in both copies (a stray object, a rekey killed half-way) is reported, not
    // allowed to lock the repository.
    let mut problems = Vec::new();
    for (i, &seq) in seqs.iter().enumerate().rev() {
        for copy in [false, true] {
            let key = layout::key_file(seq, copy);
            match backend.get(&key).await? {
                None => problems.push((key, "is missing".to_string())),
                Some(bytes) => match KeyFileBody::parse(&bytes, seq) {
                    Ok(body) => {
                        if body.format > REPO_FORMAT {
                            return Err(RepoError::UnsupportedFormat {
                                found: body.format,
                                supported: REPO_FORMAT,
                            });
                        }
                        if !copy {
                            // Look at the copy too, so damage to it is reported, not hidden.
                            let copy_key = layout::key_file(seq, true);
                            match backend.get(&copy_key).await? {
                                None => problems.push((copy_key, "is missing".into())),
                                Some(b) => {
                                    if let Err(why) = KeyFileBody::parse(&b, seq) {
                                        problems.push((copy_key, why));
                                    }
                                }
                            }
                        }
                        let older = seqs[..i].to_vec();
                        return Ok(Loaded {
                            body,
                            problems,
                            older,
                        });
                    }
                    Err(why) => problems.push((key, why)),
                },
            }
        }
    }
    Err(RepoError::KeyFilesDamaged {
        problems: problems
            .into_iter()
            .map(|(k, why)| format!("{k} {why}"))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Write generation `body.seq`: the main copy, then the second. `Exists` when another
/// process wrote that generation first.
pub(crate) async fn store(backend: &Backend, body: &KeyFileBody) -> Result<PutOutcome, RepoError> {
    let bytes = bytes::Bytes::from(body.to_bytes());
    let main = backend
        .put_if_absent(&layout::key_file(body.seq, false), bytes.clone())
        .await?;
    if main == PutOutcome::Exists {
        return Ok(PutOutcome::Exists);
    }
    backend
        .put_if_absent(&layout::key_file(body.seq, true), bytes)
        .await?;
    Ok(PutOutcome::Created)
}

impl Repository {
    /// Check both copies of every key file generation present: each must parse, pass its
    /// check, say its own generation and belong to this repository. Older generations (a
    /// rekey that did not finish its cleanup) are checked too, marked not in force.
    pub async fn check_key_files(&self) -> Result<Vec<CopyCheck>, BackendError> {
        let listed = self.backend().list(layout::keyring_prefix(), None).await?;
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|l| layout::parse_copy_seq(&l.key).map(|(s, _)| s))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut out = Vec::new();
        for seq in seqs {
            for copy in [false, true] {
                let key = layout::key_file(seq, copy);
                let (bytes, damage) = match self.backend().get(&key).await? {
                    None => (0, Some(Damage::Missing)),
                    Some(b) => (b.len() as u64, self.key_file_damage(&b, seq)),
                };
                out.push(CopyCheck {
                    key,
                    generation: seq,
                    copy,
                    in_force: seq == self.key_generation(),
                    bytes,
                    damage,
                });
            }
        }
        Ok(out)
    }

    fn key_file_damage(&self, bytes: &[u8], seq: u64) -> Option<Damage> {
        let body = match KeyFileBody::parse(bytes, seq) {
            Ok(body) => body,
            Err(why) => return Some(Damage::Content(why)),
        };
        if body.repo_id != self.repo_id() {
            return Some(Damage::Content(format!(
                "it is a key file of another repository ({})",
                body.repo_id
            )));
        }
        if body.format != REPO_FORMAT {
            return Some(Damage::Content(format!(
                "it says repository format {}",
                body.format
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StoreBackend;
    use crate::keys::{KdfParams, KeyStorage};
    use std::sync::Arc;

    const FAST: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn body(seq: u64) -> KeyFileBody {
        KeyFileBody {
            format: REPO_FORMAT,
            repo_id: "r".into(),
            created: "2026-12-01T00:00:00Z".into(),
            seq,
            keys: KeyStorage::create(Some("pw"), FAST).unwrap().0,
        }
    }

    fn backend() -> Backend {
        Backend::Store(Arc::new(StoreBackend::memory()))
    }

    #[tokio::test]
    async fn a_damaged_main_copy_falls_back_to_the_second_and_is_reported() {
        let b = backend();
        let written = body(1);
        store(&b, &written).await.unwrap();
        let key = layout::key_file(1, false);
        let mut bytes = b.get(&key).await.unwrap().unwrap().to_vec();
        // One changed character inside the wrapped key.
        let at = bytes.windows(11).position(|w| w == b"wrapped_key").unwrap() + 16;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        b.delete(&key).await.unwrap();
        b.put_if_absent(&key, bytes.into()).await.unwrap();
        let loaded = load(&b).await.unwrap();
        assert_eq!(loaded.body, written);
        assert_eq!(loaded.problems.len(), 1);
        assert!(
            loaded.problems[0].1.contains("check"),
            "{:?}",
            loaded.problems
        );
        // Both damaged: damage, not a wrong passphrase.
        let copy = layout::key_file(1, true);
        b.delete(&copy).await.unwrap();
        b.put_if_absent(&copy, bytes::Bytes::from_static(b"{"))
            .await
            .unwrap();
        assert!(matches!(
            load(&b).await,
            Err(RepoError::KeyFilesDamaged { .. })
        ));
    }

    #[tokio::test]
    async fn rekey_rewraps_removes_the_old_generation_and_rewrites_no_data() {
        use crate::repository::{OpenOptions, Repository};
        let b = backend();
        let opts = OpenOptions {
            kdf: FAST,
            ..Default::default()
        };
        let (repo, _) = Repository::open_or_create(b.clone(), Some("old"), &opts)
            .await
            .unwrap();
        let stanza = crate::StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, 42, 15).await.unwrap();
        let before: Vec<_> = b.list("stanza/", None).await.unwrap();
        let done = repo.rekey("old", "new", FAST).await.unwrap();
        assert_eq!((done.from, done.to, done.removed.clone()), (1, 2, vec![1]));
        assert_eq!(b.list("stanza/", None).await.unwrap(), before);
        assert!(matches!(
            Repository::open(b.clone(), Some("old"), &opts).await,
            Err(RepoError::WrongPassphrase)
        ));
        let again = Repository::open(b.clone(), Some("new"), &opts)
            .await
            .unwrap();
        assert_eq!(
            again
                .require_stanza(&stanza)
                .await
                .unwrap()
                .current()
                .system_id,
            42
        );
        assert_eq!(
            b.list(layout::keyring_prefix(), None).await.unwrap().len(),
            2,
            "generation 2 and its copy only"
        );
        let (plain, _) = Repository::open_or_create(backend(), None, &opts)
            .await
            .unwrap();
        assert!(matches!(
            plain.rekey("x", "y", FAST).await,
            Err(RepoError::NotEncrypted)
        ));
    }

    #[tokio::test]
    async fn the_newest_generation_is_in_force_and_format_1_is_refused() {
        let b = backend();
        store(&b, &body(1)).await.unwrap();
        let newer = body(2);
        // A rekey killed after the first copy of generation 2.
        b.put_if_absent(&layout::key_file(2, false), newer.to_bytes().into())
            .await
            .unwrap();
        let loaded = load(&b).await.unwrap();
        assert_eq!(loaded.body, newer);
        assert_eq!(loaded.older, vec![1]);
        assert_eq!(loaded.problems.len(), 1, "the missing copy is reported");

        // A generation 3 damaged in both copies (here: generation 2 stored under its
        // keys) does not lock the repository: generation 2 stays in force, and both bad
        // copies are reported.
        b.put_if_absent(&layout::key_file(2, true), newer.to_bytes().into())
            .await
            .unwrap();
        for copy in [false, true] {
            b.put_if_absent(&layout::key_file(3, copy), newer.to_bytes().into())
                .await
                .unwrap();
        }
        let loaded = load(&b).await.unwrap();
        assert_eq!(loaded.body, newer);
        assert_eq!(loaded.older, vec![1]);
        let bad: Vec<&str> = loaded.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(bad, vec!["keyring/00000003", "keyring/00000003.copy"]);

        let old = backend();
        old.put_if_absent(&layout::format1_config(), bytes::Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert!(matches!(
            load(&old).await,
            Err(RepoError::UnsupportedFormat { found: 1, .. })
        ));
        assert!(matches!(
            load(&backend()).await,
            Err(RepoError::NoRepository { .. })
        ));
    }
}
