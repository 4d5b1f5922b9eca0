//! The WAL archive: one object per archived file under a key computed from its name (so
//! `archive-get` is one GET), and beside it a small summary the planner and `info` read
//! instead of the WAL itself.

use cairn_pgformat::WalFileName;
use cairn_pgformat::summary::SegmentSummary;
use serde::{Deserialize, Serialize};

use crate::backend::PutOutcome;
use crate::catalog::WalEvent;
use crate::error::RepoError;
use crate::journal::JournalName;
use crate::keys::ContentId;
use crate::layout::{self, DbId, Identity, ObjectKey, StanzaName};
use crate::object::{self, ObjectKind, PlaintextSink, StreamError};
use crate::repository::{Encoded, Repository};
use crate::stanza::StanzaInfo;

/// What is known about one archived file without reading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalEntry {
    /// The file name as PostgreSQL gave it.
    pub name: String,
    pub db_id: DbId,
    pub content_id: ContentId,
    pub size: u64,
    pub archived_at: String,
    pub detail: WalDetail,
}

impl WalEntry {
    pub fn file_name(&self) -> Option<WalFileName> {
        self.name.parse().ok()
    }
}

/// The part of a summary that depends on the kind of file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum WalDetail {
    /// A full segment, or a `.partial` one (the name says which).
    Segment { summary: Box<SegmentSummary> },
    /// A timeline history file, kept verbatim (it is tiny).
    History { text: String },
    /// A backup history file, kept verbatim.
    BackupHistory { text: String },
}

/// Why [`Repository::get_wal_into`] failed: the repository, or writing the file.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{0}")]
    Sink(#[source] std::io::Error),
}

impl cairn_exit::Classify for DeliverError {
    fn kind(&self) -> cairn_exit::ErrorKind {
        match self {
            DeliverError::Repo(e) => e.kind(),
            DeliverError::Sink(_) => cairn_exit::ErrorKind::LocalIo,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DeliverError::Repo(e) => e.hint(),
            DeliverError::Sink(_) => None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored now, durably.
    Stored,
    /// The same content was already stored (PostgreSQL retried after a crash): success.
    AlreadyStored,
    /// A stored copy failed its check (`damage` says how) or had vanished, and was
    /// replaced by this good one, now durable.
    Repaired { damage: Option<String> },
}

impl Repository {
    /// Encode an archived file (`bytes`, as PostgreSQL gave it) for the key it is stored
    /// under. Large files are encoded on the blocking pool, so the caller can validate the
    /// file meanwhile.
    pub async fn encode_wal(
        &self,
        stanza: &StanzaName,
        db_id: DbId,
        name: &WalFileName,
        bytes: bytes::Bytes,
    ) -> Result<Encoded, RepoError> {
        let key = layout::wal_file(stanza, db_id, name);
        self.encode_as(ObjectKind::WalFile, Identity::of(&key), bytes)
            .await
    }

    /// Store an archived file (encoded with [`Repository::encode_wal`]) and its summary.
    /// Never overwrites a good copy: a different file under the same name is a
    /// [`RepoError::Conflict`] and the stored object is left as it was. A stored copy that
    /// fails its check is replaced by this one, which is made durable beside it first, so
    /// the only good copy is never dropped before another is durable.
    pub async fn push_wal(
        &self,
        stanza: &StanzaName,
        db_id: DbId,
        name: &WalFileName,
        encoded: &Encoded,
        detail: WalDetail,
    ) -> Result<PushOutcome, RepoError> {
        let key = layout::wal_file(stanza, db_id, name);
        let content_id = encoded.content_id;
        let entry = WalEntry {
            name: name.to_string(),
            db_id,
            content_id,
            size: encoded.plaintext_len,
            archived_at: self
                .now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            detail,
        };
        // The file and its catalog entry are written and synced side by side; the entry
        // becomes visible only once the file is stored: the catalog must never list a file
        // that is not.
        let tag = entry.name.clone();
        let event = WalEvent::Archived { entry };
        let (file, announced) = tokio::try_join!(
            self.stage_encoded(&key, encoded),
            self.journal_stage(stanza, JournalName::Wal, &tag, &event),
        )?;
        let result = match self.backend().commit(file).await? {
            PutOutcome::Created => PushOutcome::Stored,
            PutOutcome::Exists => match self.get_with_id(&key, ObjectKind::WalFile).await {
                Ok(Some((_, stored))) if stored == content_id => PushOutcome::AlreadyStored,
                Ok(Some((_, stored))) => {
                    return Err(RepoError::Conflict {
                        name: name.to_string(),
                        stored: stored.to_string()[..16].to_string(),
                        new: content_id.to_string()[..16].to_string(),
                    });
                }
                // Deleted between the two calls (expire): store it again.
                Ok(None) => self.replace_wal(stanza, db_id, name, encoded, None).await?,
                Err(RepoError::Object { source, .. }) => {
                    self.replace_wal(stanza, db_id, name, encoded, Some(source.to_string()))
                        .await?
                }
                Err(e) => return Err(e),
            },
        };
        self.journal_commit(announced).await?;
        Ok(result)
    }

    /// Replace a damaged (or vanished) stored copy: the good bytes go under a side key
    /// first, durably, then the damaged object is deleted and the good one created in its
    /// place. Killed in between, the side copy survives and PostgreSQL, which got no exit
    /// 0, pushes the segment again.
    async fn replace_wal(
        &self,
        stanza: &StanzaName,
        db_id: DbId,
        name: &WalFileName,
        encoded: &Encoded,
        damage: Option<String>,
    ) -> Result<PushOutcome, RepoError> {
        let key = &layout::wal_file(stanza, db_id, name);
        let side = layout::wal_repair(stanza, db_id, name);
        self.backend()
            .put_if_absent(&side, encoded.bytes().clone())
            .await?;
        if damage.is_some() {
            self.backend().delete(key).await?;
        }
        match self.put_encoded(key, encoded).await? {
            PutOutcome::Created => {}
            // Someone else stored it in between: it must now be this very file.
            PutOutcome::Exists => match self.get_with_id(key, ObjectKind::WalFile).await? {
                Some((_, id)) if id == encoded.content_id => {}
                _ => {
                    return Err(RepoError::Concurrent {
                        what: "WAL file",
                        key: key.clone(),
                    });
                }
            },
        }
        self.backend().delete(&side).await?;
        Ok(PushOutcome::Repaired { damage })
    }

    /// Fetch, authenticate and decode an archived file, looking in the current cluster
    /// generation first. `None` when no generation has it.
    pub async fn get_wal(
        &self,
        info: &StanzaInfo,
        name: &WalFileName,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self
            .get_wal_with_id(info, name)
            .await?
            .map(|(bytes, _)| bytes))
    }

    /// [`Repository::get_wal`] with the file's content id (checked while decoding). A good
    /// copy left beside a damaged or missing one by a killed repair is served in its place.
    pub async fn get_wal_with_id(
        &self,
        info: &StanzaInfo,
        name: &WalFileName,
    ) -> Result<Option<(Vec<u8>, ContentId)>, RepoError> {
        let mut damage = None;
        for generation in info.newest_first() {
            let key = layout::wal_file(&info.name, generation.db_id, name);
            match self.get_with_id(&key, ObjectKind::WalFile).await {
                Ok(Some(got)) => return Ok(Some(got)),
                Ok(None) => continue,
                Err(e @ RepoError::Object { .. }) => {
                    damage = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(got) = self.wal_repair_copy(info, name).await? {
            return Ok(Some(got));
        }
        damage.map_or(Ok(None), Err)
    }

    /// Fetch an archived file and decode it straight into `sink` (see
    /// [`crate::object::decode_into`]): no buffer of the file's size. `None` when no
    /// generation has it. As [`Repository::get_wal_with_id`], a good repair copy stands in
    /// for a damaged or missing main copy (the sink is reset first). The sink holds a good
    /// file only when this returns `Ok(Some(_))`.
    pub async fn get_wal_into<S: PlaintextSink + ?Sized>(
        &self,
        info: &StanzaInfo,
        name: &WalFileName,
        sink: &S,
    ) -> Result<Option<(u64, ContentId)>, DeliverError> {
        let mut damage = None;
        for generation in info.newest_first() {
            let key = layout::wal_file(&info.name, generation.db_id, name);
            let Some(bytes) = self.backend().get(&key).await.map_err(RepoError::from)? else {
                continue;
            };
            let identity = Identity::of(&key);
            match object::decode_into(
                self.keys(),
                ObjectKind::WalFile,
                &identity,
                Vec::from(bytes),
                sink,
            ) {
                Ok(got) => return Ok(Some(got)),
                Err(StreamError::Sink(e)) => return Err(DeliverError::Sink(e)),
                Err(StreamError::Object(e)) => {
                    damage = Some(RepoError::object(&key, e));
                    break;
                }
            }
        }
        if let Some((bytes, id)) = self.wal_repair_copy(info, name).await? {
            let write = || {
                sink.reset()?;
                sink.write_at(0, &bytes)
            };
            write().map_err(DeliverError::Sink)?;
            return Ok(Some((bytes.len() as u64, id)));
        }
        match damage {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    /// A good copy of `name` under `wal-repair/`, left by a repair killed before it
    /// replaced the main copy.
    async fn wal_repair_copy(
        &self,
        info: &StanzaInfo,
        name: &WalFileName,
    ) -> Result<Option<(Vec<u8>, ContentId)>, RepoError> {
        for generation in info.newest_first() {
            let prefix = layout::wal_repair_prefix(&info.name, generation.db_id);
            let want = format!("{prefix}{name}.");
            let key = layout::wal_file(&info.name, generation.db_id, name);
            for l in self.backend().list(&prefix, None).await? {
                let Some(side) = l
                    .key
                    .starts_with(&want)
                    .then(|| ObjectKey::new(l.key.clone()).ok())
                    .flatten()
                else {
                    continue;
                };
                if let Ok(Some(got)) = self
                    .get_as(&side, &Identity::of(&key), ObjectKind::WalFile)
                    .await
                {
                    return Ok(Some(got));
                }
            }
        }
        Ok(None)
    }

    /// Whether the stanza's WAL catalog lists `name` (in any generation): a file the
    /// catalog lists but the store does not deliver is lost, not "not archived".
    pub async fn wal_listed(
        &self,
        info: &StanzaInfo,
        name: &WalFileName,
    ) -> Result<bool, RepoError> {
        // Through the index: a recovery asks for files past the archive's end at every
        // timeline probe, and each must not fold the whole catalog.
        Ok(self.wal_catalog_paged(&info.name).await?.lists(name))
    }
}
