//! Stanza info: which PostgreSQL cluster a stanza protects, one generation per major
//! upgrade. Each change is a new object `stanza/NAME/info/SEQ` (never rewritten); the
//! newest one is in force.

use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::layout::{self, DbId, StanzaName};
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

    fn check(self, key: &crate::layout::ObjectKey) -> Result<StanzaInfo, RepoError> {
        if self.history.is_empty() {
            return Err(RepoError::Malformed {
                what: "stanza info",
                key: key.clone(),
                message: "no generation".into(),
            });
        }
        Ok(self)
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
            .filter_map(|l| layout::parse_seq(&l.key))
            .max()
        else {
            return Ok(None);
        };
        let key = layout::stanza_info(stanza, seq);
        match self
            .get_json::<StanzaInfo>(&key, ObjectKind::StanzaInfo, "stanza info")
            .await?
        {
            Some(info) => info.check(&key).map(Some),
            None => Ok(None),
        }
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
        match self.put_json(&key, ObjectKind::StanzaInfo, info).await? {
            crate::backend::PutOutcome::Created => Ok(()),
            // Another process changed the stanza at the same moment; let the operator rerun.
            crate::backend::PutOutcome::Exists => Err(RepoError::Malformed {
                what: "stanza info",
                key,
                message: "was changed concurrently; run the command again".into(),
            }),
        }
    }

    /// Remove every object of the stanza. Returns how many were removed.
    pub async fn delete_stanza(&self, stanza: &StanzaName) -> Result<usize, RepoError> {
        let listed = self
            .backend()
            .list(&layout::stanza_prefix(stanza), None)
            .await?;
        // Info last: a half-deleted stanza still shows up and can be deleted again.
        let (info, rest): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .partition(|l| l.key.starts_with(&layout::stanza_info_prefix(stanza)));
        let n = info.len() + rest.len();
        for l in rest.into_iter().chain(info) {
            let key =
                crate::layout::ObjectKey::new(l.key.clone()).map_err(|m| RepoError::Malformed {
                    what: "listing",
                    key: layout::repo_config(),
                    message: m,
                })?;
            self.backend().delete(&key).await?;
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
