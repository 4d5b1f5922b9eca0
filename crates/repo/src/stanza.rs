//! Stanza info: which PostgreSQL cluster a stanza protects, one generation per major
//! upgrade. Each change is a new object `stanza/NAME/info/SEQ` (never rewritten) with a
//! second copy `SEQ.copy` beside it; the newest generation is in force, read from whichever
//! copy is whole.

use serde::{Deserialize, Serialize};

use crate::check::{CopyCheck, Damage};
use crate::error::{BackendError, RepoError};
use crate::layout::{self, DbId, Identity, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::{Repository, now_rfc3339};

/// One cluster generation of a stanza.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbGeneration {
    pub db_id: DbId,
    pub system_id: u64,
    pub pg_major: u32,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StanzaInfo {
    pub name: StanzaName,
    pub seq: u64,
    /// Oldest first; the last is the current generation.
    pub history: Vec<DbGeneration>,
}

impl StanzaInfo {
    pub fn current(&self) -> &DbGeneration {
        self.history
            .last()
            .expect("stanza info always has a generation")
    }

    /// Generations newest first (where archive-get looks for a file).
    pub fn newest_first(&self) -> impl Iterator<Item = &DbGeneration> {
        self.history.iter().rev()
    }

    /// This info narrowed to generation `db` (a restore of an older generation reads only
    /// its WAL); `None` when the stanza has no such generation.
    pub fn only(&self, db: DbId) -> Option<StanzaInfo> {
        let g = self.generation(db)?.clone();
        Some(StanzaInfo {
            name: self.name.clone(),
            seq: self.seq,
            history: vec![g],
        })
    }

    /// The generation that wrote backups or WAL of database id `db`.
    pub fn generation(&self, db: DbId) -> Option<&DbGeneration> {
        self.history.iter().find(|g| g.db_id == db)
    }

    /// Checked against the key it was read from: a copy of another stanza's or another
    /// generation's info is refused.
    pub(crate) fn check(&self, stanza: &StanzaName, seq: u64) -> Result<(), String> {
        if self.history.is_empty() {
            return Err("it has no generation".into());
        }
        if &self.name != stanza || self.seq != seq {
            return Err(format!(
                "it is generation {} of stanza '{}'",
                self.seq, self.name
            ));
        }
        Ok(())
    }
}

/// What `stanza-create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaCreated {
    Created,
    /// The stanza already exists for this very cluster: nothing to do.
    AlreadyExists,
}

impl Repository {
    /// The stanza's current info, or `None` when the stanza does not exist.
    pub async fn stanza_info(&self, stanza: &StanzaName) -> Result<Option<StanzaInfo>, RepoError> {
        let listed = self
            .backend()
            .list(&layout::stanza_info_prefix(stanza), None)
            .await?;
        let Some(seq) = listed
            .iter()
            .filter_map(|l| layout::parse_copy_seq(&l.key).map(|(s, _)| s))
            .max()
        else {
            return Ok(None);
        };
        let main = layout::stanza_info(stanza, seq);
        let identity = Identity::of(&main);
        let mut problems = Vec::new();
        for key in [main.clone(), layout::stanza_info_copy(stanza, seq)] {
            match self.read_info(&key, &identity, stanza, seq).await {
                Ok(Some(info)) => return Ok(Some(info)),
                Ok(None) => problems.push(format!("{key} is missing")),
                Err(why) => problems.push(format!("{key}: {why}")),
            }
        }
        Err(RepoError::StanzaInfoDamaged {
            stanza: stanza.to_string(),
            problems: problems.join("; "),
        })
    }

    async fn read_info(
        &self,
        key: &ObjectKey,
        identity: &Identity,
        stanza: &StanzaName,
        seq: u64,
    ) -> Result<Option<StanzaInfo>, String> {
        let plain = match self.get_as(key, identity, ObjectKind::StanzaInfo).await {
            Ok(Some((plain, _))) => plain,
            Ok(None) => return Ok(None),
            Err(RepoError::Object { source, .. }) => return Err(source.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        let info: StanzaInfo =
            serde_json::from_slice(&plain).map_err(|e| format!("not stanza info: {e}"))?;
        info.check(stanza, seq)?;
        Ok(Some(info))
    }

    /// Check both copies of every generation of the stanza's info: each must decode under
    /// its main key's identity, parse, and say it is that generation of this stanza.
    pub async fn check_stanza_info(
        &self,
        stanza: &StanzaName,
    ) -> Result<Vec<CopyCheck>, BackendError> {
        let listed = self
            .backend()
            .list(&layout::stanza_info_prefix(stanza), None)
            .await?;
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|l| layout::parse_copy_seq(&l.key).map(|(s, _)| s))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let newest = seqs.last().copied();
        let mut out = Vec::new();
        for seq in seqs {
            let main = layout::stanza_info(stanza, seq);
            let identity = Identity::of(&main);
            for (key, copy) in [
                (main.clone(), false),
                (layout::stanza_info_copy(stanza, seq), true),
            ] {
                let checked = self
                    .check_object(&key, ObjectKind::StanzaInfo, &identity)
                    .await?;
                let damage = match checked.result {
                    Err(d) => Some(d),
                    Ok(decoded) => match serde_json::from_slice::<StanzaInfo>(&decoded.plaintext) {
                        Err(e) => Some(Damage::Content(format!("not stanza info: {e}"))),
                        Ok(info) => info.check(stanza, seq).err().map(Damage::Content),
                    },
                };
                out.push(CopyCheck {
                    key,
                    generation: seq,
                    copy,
                    in_force: Some(seq) == newest,
                    bytes: checked.bytes,
                    damage,
                });
            }
        }
        Ok(out)
    }

    /// The stanza's info, or an error saying to create it.
    pub async fn require_stanza(&self, stanza: &StanzaName) -> Result<StanzaInfo, RepoError> {
        self.stanza_info(stanza)
            .await?
            .ok_or_else(|| RepoError::NoStanza {
                stanza: stanza.to_string(),
            })
    }

    /// Create the stanza for a cluster; a no-op when it exists for the same cluster.
    pub async fn create_stanza(
        &self,
        stanza: &StanzaName,
        system_id: u64,
        pg_major: u32,
    ) -> Result<StanzaCreated, RepoError> {
        if let Some(info) = self.stanza_info(stanza).await? {
            let cur = info.current();
            if cur.system_id == system_id && cur.pg_major == pg_major {
                return Ok(StanzaCreated::AlreadyExists);
            }
            return Err(mismatch(stanza, cur, system_id, pg_major));
        }
        let info = StanzaInfo {
            name: stanza.clone(),
            seq: 1,
            history: vec![DbGeneration {
                db_id: DbId(1),
                system_id,
                pg_major,
                created: now_rfc3339(),
            }],
        };
        self.write_info(&info).await?;
        Ok(StanzaCreated::Created)
    }

    /// Add a generation after a major upgrade (new system id and/or version).
    /// Returns `false` when the current generation already is this cluster.
    pub async fn upgrade_stanza(
        &self,
        stanza: &StanzaName,
        system_id: u64,
        pg_major: u32,
    ) -> Result<bool, RepoError> {
        let mut info = self.require_stanza(stanza).await?;
        let cur = info.current();
        if cur.system_id == system_id && cur.pg_major == pg_major {
            return Ok(false);
        }
        let db_id = DbId(cur.db_id.0 + 1);
        info.history.push(DbGeneration {
            db_id,
            system_id,
            pg_major,
            created: now_rfc3339(),
        });
        info.seq += 1;
        self.write_info(&info).await?;
        Ok(true)
    }

    async fn write_info(&self, info: &StanzaInfo) -> Result<(), RepoError> {
        let key = layout::stanza_info(&info.name, info.seq);
        let json = bytes::Bytes::from(serde_json::to_vec(info).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?);
        match self
            .put(&key, ObjectKind::StanzaInfo, json.clone())
            .await?
            .0
        {
            crate::backend::PutOutcome::Created => {}
            // Another process changed the stanza at the same moment; let the operator rerun.
            crate::backend::PutOutcome::Exists => {
                return Err(RepoError::Concurrent {
                    what: "stanza info",
                    key,
                });
            }
        }
        self.put_copy(
            &layout::stanza_info_copy(&info.name, info.seq),
            Identity::of(&key),
            ObjectKind::StanzaInfo,
            json,
        )
        .await?;
        Ok(())
    }

    /// Remove every object of the stanza, and nothing else. Returns how many were removed.
    /// It holds both of the stanza's locks meanwhile (no backup or expire may run), removes
    /// data first and stanza info last (a half-deleted stanza still shows and can be deleted
    /// again), then the lock objects once released.
    pub async fn delete_stanza(&self, stanza: &StanzaName) -> Result<usize, RepoError> {
        use futures::StreamExt;
        let guards = self
            .lock_all(
                vec![
                    crate::lock::LockTarget::Backup(stanza.clone()),
                    crate::lock::LockTarget::Maintenance(stanza.clone()),
                ],
                "stanza-delete",
                &crate::lock::LockOptions::default(),
            )
            .await?;
        let lock_root = format!("{}lock/", layout::stanza_prefix(stanza));
        let listed = self
            .backend()
            .list(&layout::stanza_prefix(stanza), None)
            .await?;
        // A listed name that is not a key cairn writes is not cairn's to delete.
        let keys: Vec<ObjectKey> = listed
            .into_iter()
            .filter(|l| !l.key.starts_with(&lock_root))
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect();
        let (info, rest): (Vec<ObjectKey>, Vec<ObjectKey>) = keys
            .into_iter()
            .partition(|k| k.as_str().starts_with(&layout::stanza_info_prefix(stanza)));
        let n = info.len() + rest.len();
        for batch in [rest, info] {
            let results: Vec<Result<(), crate::error::BackendError>> = futures::stream::iter(batch)
                .map(|k| async move { self.backend().delete(&k).await })
                .buffer_unordered(16)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        for g in guards {
            g.release().await?;
        }
        for l in self.backend().list(&lock_root, None).await? {
            if let Ok(key) = ObjectKey::new(l.key) {
                self.backend().delete(&key).await?;
            }
        }
        Ok(n)
    }
}

pub(crate) fn mismatch(
    stanza: &StanzaName,
    cur: &DbGeneration,
    system_id: u64,
    pg_major: u32,
) -> RepoError {
    RepoError::StanzaMismatch {
        stanza: stanza.to_string(),
        expected_system: cur.system_id,
        expected_version: cur.pg_major,
        found_system: system_id,
        found_version: pg_major,
    }
}
