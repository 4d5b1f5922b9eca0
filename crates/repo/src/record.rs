//! Records: small results a stanza keeps about itself (the last verify, drills, the jobs of
//! `cairn serve`), so `info`, metrics and the status page can show them.
//!
//! ```text
//! stanza/S/record/KIND/20261201T101500.123456Z-1f2e3d4c   one record (JSON, ObjectKind::Record)
//! ```
//! A record is written once and never changed; the newest of a kind is the one with the
//! greatest key. Only the newest [`RECORDS_KEPT`] of each kind are kept: writing one
//! deletes the oldest beyond that. A damaged record costs only itself: readers pass over
//! it to the next newest.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RepoError;
use crate::journal::stamp;
use crate::layout::{self, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::Repository;

/// Records kept per stanza and kind.
pub const RECORDS_KEPT: usize = 20;

/// What a record is about: lower-case letters and `-` (`verify`, `drill`, `job`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKind(String);

impl RecordKind {
    pub fn new(name: &str) -> Result<RecordKind, String> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        if ok {
            Ok(RecordKind(name.to_string()))
        } else {
            Err(format!("'{name}' is not a record kind"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<T> {
    pub key: ObjectKey,
    pub value: T,
}

impl Repository {
    /// Write a record of `kind` for the stanza, then delete the oldest beyond
    /// [`RECORDS_KEPT`] (best effort: a failed delete leaves one more record, no harm).
    pub async fn put_record<T: Serialize>(
        &self,
        stanza: &StanzaName,
        kind: &RecordKind,
        value: &T,
    ) -> Result<ObjectKey, RepoError> {
        self.put_record_keeping(stanza, kind, value, RECORDS_KEPT)
            .await
    }

    /// [`Repository::put_record`], keeping the newest `keep` records of the kind (at least
    /// one: the one just written).
    pub async fn put_record_keeping<T: Serialize>(
        &self,
        stanza: &StanzaName,
        kind: &RecordKind,
        value: &T,
        keep: usize,
    ) -> Result<ObjectKey, RepoError> {
        let keep = keep.max(1);
        let key = loop {
            let name = format!(
                "{}-{:08x}",
                stamp(time::OffsetDateTime::now_utc()),
                rand::random::<u32>()
            );
            let key = layout::record(stanza, kind.as_str(), &name);
            match self.put_json(&key, ObjectKind::Record, value).await? {
                crate::PutOutcome::Created => break key,
                // The same microsecond and the same random number: take another.
                crate::PutOutcome::Exists => continue,
            }
        };
        let keys = self.record_keys(stanza, kind).await?;
        if keys.len() > keep {
            for old in &keys[..keys.len() - keep] {
                let _ = self.backend().delete(old).await;
            }
        }
        Ok(key)
    }

    /// The newest readable record of `kind`, or `None` when there is none. Damaged newer
    /// records are passed over.
    pub async fn latest_record<T: DeserializeOwned>(
        &self,
        stanza: &StanzaName,
        kind: &RecordKind,
    ) -> Result<Option<Record<T>>, RepoError> {
        for key in self.record_keys(stanza, kind).await?.into_iter().rev() {
            match self.get_json::<T>(&key, ObjectKind::Record, "record").await {
                Ok(Some(value)) => return Ok(Some(Record { key, value })),
                // Deleted since the listing, or damaged: the next newest.
                Ok(None) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The newest `limit` readable records of `kind`, oldest first. Damaged ones are
    /// passed over (and counted in the second value).
    pub async fn records<T: DeserializeOwned>(
        &self,
        stanza: &StanzaName,
        kind: &RecordKind,
        limit: usize,
    ) -> Result<(Vec<Record<T>>, usize), RepoError> {
        let keys = self.record_keys(stanza, kind).await?;
        let mut out = Vec::new();
        let mut damaged = 0;
        for key in keys.into_iter().rev().take(limit) {
            match self.get_json::<T>(&key, ObjectKind::Record, "record").await {
                Ok(Some(value)) => out.push(Record { key, value }),
                Ok(None) => {}
                Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => damaged += 1,
                Err(e) => return Err(e),
            }
        }
        out.reverse();
        Ok((out, damaged))
    }

    /// The keys of the stanza's records of `kind`, oldest first.
    pub async fn record_keys(
        &self,
        stanza: &StanzaName,
        kind: &RecordKind,
    ) -> Result<Vec<ObjectKey>, RepoError> {
        let prefix = layout::record_prefix(stanza, kind.as_str());
        Ok(self
            .backend()
            .list(&prefix, None)
            .await?
            .into_iter()
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outcome {
        n: u32,
    }

    #[tokio::test]
    async fn the_newest_record_is_read_damaged_ones_are_passed_over_and_old_ones_go() {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        let kind = RecordKind::new("verify").unwrap();
        assert!(RecordKind::new("Verify").is_err() && RecordKind::new("").is_err());
        assert_eq!(
            repo.latest_record::<Outcome>(&stanza, &kind).await.unwrap(),
            None
        );
        let mut keys = Vec::new();
        for n in 0..(RECORDS_KEPT as u32 + 3) {
            keys.push(
                repo.put_record(&stanza, &kind, &Outcome { n })
                    .await
                    .unwrap(),
            );
        }
        let left = repo.record_keys(&stanza, &kind).await.unwrap();
        assert_eq!(left.len(), RECORDS_KEPT);
        assert_eq!(left, keys[3..].to_vec(), "the oldest three went");
        let latest = repo.latest_record::<Outcome>(&stanza, &kind).await.unwrap();
        assert_eq!(
            latest.map(|r| r.value),
            Some(Outcome {
                n: RECORDS_KEPT as u32 + 2
            })
        );
        // The newest damaged: the one before it is read.
        let newest = keys.last().unwrap();
        repo.backend().delete(newest).await.unwrap();
        repo.backend()
            .put_if_absent(newest, bytes::Bytes::from_static(b"junk"))
            .await
            .unwrap();
        let latest = repo.latest_record::<Outcome>(&stanza, &kind).await.unwrap();
        assert_eq!(
            latest.map(|r| r.value),
            Some(Outcome {
                n: RECORDS_KEPT as u32 + 1
            })
        );
        // All of them, oldest first, the damaged one counted and passed over.
        let (all, damaged) = repo.records::<Outcome>(&stanza, &kind, 100).await.unwrap();
        assert_eq!(damaged, 1);
        let ns: Vec<u32> = all.iter().map(|r| r.value.n).collect();
        assert_eq!(ns, (3..RECORDS_KEPT as u32 + 2).collect::<Vec<_>>());
        let (two, _) = repo.records::<Outcome>(&stanza, &kind, 3).await.unwrap();
        assert_eq!(
            two.iter().map(|r| r.value.n).collect::<Vec<_>>(),
            [RECORDS_KEPT as u32, RECORDS_KEPT as u32 + 1],
            "the newest 3 keys, of which one is damaged"
        );
        // A kind may keep more than the default.
        let job = RecordKind::new("job").unwrap();
        for n in 0..(RECORDS_KEPT as u32 + 5) {
            repo.put_record_keeping(&stanza, &job, &Outcome { n }, RECORDS_KEPT + 2)
                .await
                .unwrap();
        }
        assert_eq!(
            repo.record_keys(&stanza, &job).await.unwrap().len(),
            RECORDS_KEPT + 2
        );
        // Another kind is separate.
        let drill = RecordKind::new("drill").unwrap();
        assert_eq!(
            repo.latest_record::<Outcome>(&stanza, &drill)
                .await
                .unwrap(),
            None
        );
    }
}
