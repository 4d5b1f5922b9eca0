//! Journals: how `info`, the planner and `expire` read what the repository holds without
//! listing it all. Each change is a small entry object in the journal's log, keyed by the
//! time it was written; a reader folds a compacted snapshot and the entries written since.
//!
//! ```text
//! stanza/S/journal/NAME/log/20261201/20261201T101500.123456Z-1f2e3d4c-TAG   one entry (TAG names what it is about)
//! stanza/S/journal/NAME/snap/0000000000000007                      a snapshot (the folded state)
//! ```
//!
//! **No entry is ever missed.** A snapshot records `resume_after`, a log key [`MARGIN`]
//! older than the newest entry it folded, and the keys it folded after that point; readers
//! list the log from `resume_after` on and fetch only keys the snapshot has not folded.
//! An entry written by a slow writer can become visible after a snapshot passed its time,
//! but only if the write took longer than the margin: a writer whose entry took more than
//! half of it writes the entry again under a fresh key (see [`Repository::journal_append`]).
//! Writers' clocks must agree within half the margin (30 minutes).
//!
//! **Damage costs only itself.** A snapshot that fails its check falls back to the one
//! before it, and with none left the state is rebuilt from the whole log, with a warning.
//! Entries are never deleted just because a snapshot holds them: the log is the truth,
//! snapshots are a cache. A damaged entry is reported with the TAG of its key.
//!
//! The folded state must not depend on the order entries are applied in ([`Fold::apply`]):
//! entries that land late are applied after newer ones.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::backend::Staged;
use crate::check::Damage;
use crate::error::{BackendError, RepoError};
use crate::layout::{self, Identity, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::Repository;

/// How far before its newest entry a snapshot tells readers to resume listing.
pub const MARGIN: Duration = Duration::from_secs(3600);
/// New entries that make a reader write the next snapshot.
pub(crate) const SNAPSHOT_EVERY: usize = 64;
/// Snapshots kept before the newest (fallbacks for a damaged one).
pub(crate) const SNAPSHOTS_KEPT: u64 = 3;

/// A journal entry staged by [`Repository::journal_stage`], not yet visible.
#[derive(Debug)]
pub struct StagedEntry {
    staged: Staged,
    key: ObjectKey,
    started: time::OffsetDateTime,
    stanza: StanzaName,
    journal: JournalName,
    tag: String,
    json: Bytes,
}

/// A state folded from journal entries.
pub trait Fold: Default + Serialize + DeserializeOwned + Send {
    type Entry: Serialize + DeserializeOwned + Send;
    /// Apply one entry written under log key `key`. Must give the same state whatever the
    /// order entries arrive in.
    fn apply(&mut self, key: &str, entry: Self::Entry);
    /// Note an entry that cannot be read (damaged): `tag` is what its key says it is about.
    fn damaged(&mut self, key: &str, tag: &str, reason: String);
}

/// Which journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalName {
    Wal,
    Backups,
}

impl JournalName {
    fn as_str(self) -> &'static str {
        match self {
            JournalName::Wal => "wal",
            JournalName::Backups => "backups",
        }
    }

    fn entry_kind(self) -> ObjectKind {
        match self {
            JournalName::Wal => ObjectKind::WalSummary,
            JournalName::Backups => ObjectKind::BackupCatalog,
        }
    }

    fn snapshot_kind(self) -> ObjectKind {
        match self {
            JournalName::Wal => ObjectKind::WalCatalog,
            JournalName::Backups => ObjectKind::BackupCatalog,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot<S> {
    seq: u64,
    resume_after: Option<String>,
    /// Log keys after `resume_after` that `state` already holds.
    folded_after: BTreeSet<String>,
    /// The newest log key folded.
    newest: Option<String>,
    state: S,
}

/// A folded journal and what reading it ran into.
#[derive(Debug)]
pub struct Folded<S> {
    pub state: S,
    /// Damaged snapshots passed over, a rebuild from the log: for warnings and `verify`.
    pub warnings: Vec<String>,
    /// Entries read from the log (not from a snapshot) on this read.
    pub fresh: usize,
    /// The snapshot this read wrote, if it wrote one.
    pub written: Option<SnapshotMeta>,
}

/// Where a snapshot's folding stopped: what a reader starting from it lists and skips.
/// Derived views of a snapshot (the WAL index) carry the same, so a reader of the view
/// folds exactly the entries the snapshot does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub seq: u64,
    pub resume_after: Option<String>,
    /// Log keys after `resume_after` that the state already holds.
    pub folded_after: BTreeSet<String>,
    /// The newest log key folded.
    pub newest: Option<String>,
}

impl SnapshotMeta {
    /// Where a fold that folded `keys` (every key after the previous resume point) and
    /// whose newest entry is `newest` stops: [`MARGIN`] before its newest entry, so an
    /// entry written late under an older stamp is still read by the next reader.
    pub(crate) fn after(
        stanza: &StanzaName,
        journal: JournalName,
        seq: u64,
        newest: Option<String>,
        keys: BTreeSet<String>,
    ) -> SnapshotMeta {
        let resume_after = newest.as_deref().and_then(|n| {
            let t = parse_stamp(log_key_tag_stamp(n))?;
            let back = t - MARGIN;
            // Sorts before every entry written at `back` or later.
            Some(layout::journal_log(stanza, journal.as_str(), &stamp(back)).to_string())
        });
        let folded_after = match &resume_after {
            Some(r) => keys.into_iter().filter(|k| k > r).collect(),
            None => keys,
        };
        SnapshotMeta {
            seq,
            resume_after,
            folded_after,
            newest,
        }
    }
}

/// One log entry as read: absent (deleted since the listing), or damaged.
pub(crate) type Fetched<E> = (ObjectKey, Result<Option<E>, RepoError>);

/// The time part of a log key: `20261201T101500.123456Z`.
pub(crate) fn stamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

fn parse_stamp(s: &str) -> Option<time::OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() < 23 || b[8] != b'T' || b[15] != b'.' || b[22] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms_micro(
        n(9..11)? as u8,
        n(11..13)? as u8,
        n(13..15)? as u8,
        n(16..22)?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// The TAG at the end of a log key's name.
pub fn log_key_tag(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    // stamp (23) '-' rand (8) '-' tag
    name.get(33..).unwrap_or("")
}

impl Repository {
    /// Append an entry about `tag` (a WAL file name, a backup label: `[A-Za-z0-9._-]`) to
    /// a journal. Returns the log key. An entry whose write took longer than half of
    /// [`MARGIN`] is written again under a fresh key, so no reader can miss it.
    pub async fn journal_append<E: Serialize>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        tag: &str,
        entry: &E,
    ) -> Result<ObjectKey, RepoError> {
        let staged = self.journal_stage(stanza, journal, tag, entry).await?;
        self.journal_commit(staged).await
    }

    /// The first half of [`Repository::journal_append`]: the entry is encoded and, on a
    /// local repository, written and synced beside its key, but no reader sees it until
    /// [`Repository::journal_commit`]. A caller whose entry must not be seen before
    /// something else is stored stages it while storing that, and commits it after.
    pub async fn journal_stage<E: Serialize>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        tag: &str,
        entry: &E,
    ) -> Result<StagedEntry, RepoError> {
        let json = serde_json::to_vec(entry).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?;
        self.stage_json(stanza, journal, tag, Bytes::from(json))
            .await
    }

    async fn stage_json(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        tag: &str,
        json: Bytes,
    ) -> Result<StagedEntry, RepoError> {
        let started = self.now();
        let key = layout::journal_log(
            stanza,
            journal.as_str(),
            &format!("{}-{:08x}-{tag}", stamp(started), rand::random::<u32>()),
        );
        let encoded = self
            .encode_as(journal.entry_kind(), Identity::of(&key), json.clone())
            .await?;
        let staged = self.stage_encoded(&key, &encoded).await?;
        Ok(StagedEntry {
            staged,
            key,
            started,
            stanza: stanza.clone(),
            journal,
            tag: tag.to_string(),
            json,
        })
    }

    /// Make a staged entry visible (and durable). Returns its log key; an entry whose write
    /// took longer than half of [`MARGIN`] is written again under a fresh key.
    pub async fn journal_commit(&self, entry: StagedEntry) -> Result<ObjectKey, RepoError> {
        let mut entry = entry;
        loop {
            self.backend().commit(entry.staged).await?;
            let took = self.now() - entry.started;
            if took < MARGIN / 2 {
                return Ok(entry.key);
            }
            entry = self
                .stage_json(&entry.stanza, entry.journal, &entry.tag, entry.json)
                .await?;
        }
    }

    /// Fold a journal: the newest readable snapshot plus every entry it does not hold.
    /// Writes the next snapshot when many entries were new (best effort).
    pub async fn journal_fold<S: Fold>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
    ) -> Result<Folded<S>, RepoError> {
        self.journal_fold_with(stanza, journal, false).await
    }

    /// [`Repository::journal_fold`], writing the next snapshot in any case if `force`.
    pub(crate) async fn journal_fold_with<S: Fold>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        force: bool,
    ) -> Result<Folded<S>, RepoError> {
        let snap_prefix = layout::journal_snap_prefix(stanza, journal.as_str());
        // Newest first.
        let seqs: Vec<u64> = self
            .backend()
            .list_seqs(&snap_prefix)
            .await?
            .into_iter()
            .rev()
            .collect();
        let mut warnings = Vec::new();
        let mut base: Option<Snapshot<S>> = None;
        for &seq in &seqs {
            let key = layout::journal_snap(stanza, journal.as_str(), seq);
            match self
                .get_json::<Snapshot<S>>(&key, journal.snapshot_kind(), "journal snapshot")
                .await
            {
                Ok(Some(s)) if s.seq == seq => {
                    base = Some(s);
                    break;
                }
                Ok(Some(_)) => warnings.push(format!("{key} holds another snapshot; passed over")),
                Ok(None) => {}
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    warnings.push(format!("{e}; using an older snapshot"))
                }
                Err(e) => return Err(e),
            }
        }
        if base.is_none() && !seqs.is_empty() {
            warnings.push(format!(
                "no {} journal snapshot could be read; rebuilt from the whole log",
                journal.as_str()
            ));
        }
        let newest_seq = seqs.first().copied().unwrap_or(0);
        let (mut state, resume_after, folded_after, mut newest) = match base {
            Some(s) => (s.state, s.resume_after, s.folded_after, s.newest),
            None => (S::default(), None, BTreeSet::new(), None),
        };
        let fetched: Vec<Fetched<S::Entry>> = self
            .journal_fresh(stanza, journal, resume_after.as_deref(), &folded_after)
            .await?;
        let count = fetched.len();
        let mut all_keys: BTreeSet<String> = folded_after;
        for (key, got) in fetched {
            match got {
                Ok(Some(entry)) => state.apply(key.as_str(), entry),
                // Deleted between listing and reading (expire): nothing to fold.
                Ok(None) => continue,
                Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                    state.damaged(key.as_str(), log_key_tag(key.as_str()), e.to_string())
                }
                Err(e) => return Err(e),
            }
            if newest.as_deref().is_none_or(|n| key.as_str() > n) {
                newest = Some(key.to_string());
            }
            all_keys.insert(key.to_string());
        }
        let mut folded = Folded {
            state,
            warnings,
            fresh: count,
            written: None,
        };
        if count >= SNAPSHOT_EVERY || force {
            // Best effort: a reader without write access still gets the state.
            folded.written = self
                .write_journal_snapshot(
                    stanza,
                    journal,
                    newest_seq + 1,
                    &folded.state,
                    newest,
                    all_keys,
                )
                .await
                .ok();
        }
        Ok(folded)
    }

    /// The log entries written after `resume_after` that are not in `folded_after`, read
    /// (each absent, damaged or its entry).
    pub(crate) async fn journal_fresh<E: DeserializeOwned + Send>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        resume_after: Option<&str>,
        folded_after: &BTreeSet<String>,
    ) -> Result<Vec<Fetched<E>>, RepoError> {
        let log_prefix = layout::journal_log_prefix(stanza, journal.as_str());
        let listed = self.backend().list(&log_prefix, resume_after).await?;
        let fresh: Vec<ObjectKey> = listed
            .into_iter()
            .filter(|l| !folded_after.contains(&l.key))
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect();
        Ok(futures::stream::iter(fresh)
            .map(|key| async move {
                let got = self
                    .get_json::<E>(&key, journal.entry_kind(), "journal entry")
                    .await;
                (key, got)
            })
            .buffer_unordered(16)
            .collect()
            .await)
    }

    async fn write_journal_snapshot<S: Fold>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        seq: u64,
        state: &S,
        newest: Option<String>,
        keys: BTreeSet<String>,
    ) -> Result<SnapshotMeta, RepoError> {
        let meta = SnapshotMeta::after(stanza, journal, seq, newest, keys);
        let snap = Snapshot {
            seq,
            resume_after: meta.resume_after.clone(),
            folded_after: meta.folded_after.clone(),
            newest: meta.newest.clone(),
            state,
        };
        self.put_json(
            &layout::journal_snap(stanza, journal.as_str(), seq),
            journal.snapshot_kind(),
            &snap,
        )
        .await?;
        if let Some(old) = seq.checked_sub(SNAPSHOTS_KEPT + 1).filter(|s| *s > 0) {
            let _ = self
                .backend()
                .delete(&layout::journal_snap(stanza, journal.as_str(), old))
                .await;
        }
        Ok(meta)
    }
}

/// A journal log entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedEntry {
    pub key: ObjectKey,
    /// What its key says it is about (a WAL file name, a backup label, ...).
    pub tag: String,
    pub damage: Damage,
}

/// A journal read object by object: every snapshot and every log entry.
#[derive(Debug, Clone, Default)]
pub struct JournalCheck {
    /// Each snapshot, oldest first, with its damage if any.
    pub snapshots: Vec<(ObjectKey, u64, Option<Damage>)>,
    /// Log entries read, and their bytes.
    pub entries: u64,
    pub entry_bytes: u64,
    pub damaged_entries: Vec<DamagedEntry>,
}

impl Repository {
    /// Read every snapshot and every log entry of a journal, each decoded and parsed as
    /// the state `S` and the entry `E` it must hold; `checked` is told the bytes of each
    /// object read.
    pub async fn check_journal<S: DeserializeOwned, E: DeserializeOwned>(
        &self,
        stanza: &StanzaName,
        journal: JournalName,
        checked: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<JournalCheck, BackendError> {
        let mut out = JournalCheck::default();
        let snap_prefix = layout::journal_snap_prefix(stanza, journal.as_str());
        for seq in self.backend().list_seqs(&snap_prefix).await? {
            let key = layout::journal_snap(stanza, journal.as_str(), seq);
            let c = self
                .check_object(&key, journal.snapshot_kind(), &Identity::of(&key))
                .await?;
            checked(c.bytes);
            let damage = match c.result {
                Err(d) => Some(d),
                Ok(d) => match serde_json::from_slice::<Snapshot<S>>(&d.plaintext) {
                    Err(e) => Some(Damage::Content(format!("not a journal snapshot: {e}"))),
                    Ok(s) if s.seq != seq => {
                        Some(Damage::Content(format!("it says it is snapshot {}", s.seq)))
                    }
                    Ok(_) => None,
                },
            };
            out.snapshots.push((key, c.bytes, damage));
        }
        let keys: Vec<ObjectKey> = self
            .backend()
            .list(&layout::journal_log_prefix(stanza, journal.as_str()), None)
            .await?
            .into_iter()
            .filter_map(|l| ObjectKey::new(l.key).ok())
            .collect();
        let mut results = futures::stream::iter(keys)
            .map(|key| async move {
                self.check_object(&key, journal.entry_kind(), &Identity::of(&key))
                    .await
            })
            .buffer_unordered(16);
        while let Some(c) = results.next().await {
            let c = c?;
            checked(c.bytes);
            out.entries += 1;
            out.entry_bytes += c.bytes;
            let damage = match c.result {
                // Deleted between listing and reading (expire): not damage.
                Err(Damage::Missing) => continue,
                Err(d) => d,
                Ok(d) => match serde_json::from_slice::<E>(&d.plaintext) {
                    Ok(_) => continue,
                    Err(e) => Damage::Content(format!("not a journal entry: {e}")),
                },
            };
            out.damaged_entries.push(DamagedEntry {
                tag: log_key_tag(c.key.as_str()).to_string(),
                key: c.key,
                damage,
            });
        }
        out.damaged_entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// The stamp at the start of a log key's name.
fn log_key_tag_stamp(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.get(..23).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Names {
        seen: BTreeMap<String, u32>,
        damaged: Vec<String>,
    }

    impl Fold for Names {
        type Entry = u32;
        fn apply(&mut self, key: &str, entry: u32) {
            self.seen.insert(log_key_tag(key).to_string(), entry);
        }
        fn damaged(&mut self, _key: &str, tag: &str, _reason: String) {
            self.damaged.push(tag.to_string());
        }
    }

    async fn repo() -> (Repository, StanzaName) {
        (
            Repository::in_memory().await,
            StanzaName::new("main").unwrap(),
        )
    }

    #[test]
    fn stamps_round_trip_and_sort_by_time() {
        let t = time::macros::datetime!(2026-12-01 10:15:00.123456 UTC);
        assert_eq!(stamp(t), "20261201T101500.123456Z");
        assert_eq!(parse_stamp(&stamp(t)), Some(t));
        let later = t + Duration::from_micros(1);
        assert!(stamp(later) > stamp(t));
        assert_eq!(
            log_key_tag("a/b/20261201T101500.123456Z-0000abcd-000000010000000000000003"),
            "000000010000000000000003"
        );
    }

    #[tokio::test]
    async fn snapshots_fold_and_an_entry_far_behind_the_newest_is_still_seen() {
        let (repo, stanza) = repo().await;
        for i in 0..(SNAPSHOT_EVERY as u32 + 5) {
            repo.journal_append(&stanza, JournalName::Wal, &format!("n{i:03}"), &i)
                .await
                .unwrap();
        }
        let first: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert_eq!(first.state.seen.len(), SNAPSHOT_EVERY + 5);
        assert_eq!(first.fresh, SNAPSHOT_EVERY + 5);
        // A snapshot exists now; the next read takes its entries from it.
        let again: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert_eq!(again.fresh, 0);
        assert_eq!(again.state.seen.len(), SNAPSHOT_EVERY + 5);
        // An entry that lands late, keyed half an hour before everything else: a
        // slow writer within the margin.
        let late = layout::journal_log(
            &stanza,
            "wal",
            &format!(
                "{}-00000000-late",
                stamp(time::OffsetDateTime::now_utc() - MARGIN / 2)
            ),
        );
        repo.put_json(&late, ObjectKind::WalSummary, &7u32)
            .await
            .unwrap();
        let with_late: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert_eq!(with_late.state.seen.get("late"), Some(&7));
    }

    #[tokio::test]
    async fn a_damaged_snapshot_falls_back_and_no_snapshot_rebuilds_from_the_log() {
        let (repo, stanza) = repo().await;
        for round in 0..2u32 {
            for i in 0..SNAPSHOT_EVERY as u32 {
                repo.journal_append(&stanza, JournalName::Wal, &format!("r{round}n{i:03}"), &i)
                    .await
                    .unwrap();
            }
            let _: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        }
        let snaps = repo
            .backend()
            .list(&layout::journal_snap_prefix(&stanza, "wal"), None)
            .await
            .unwrap();
        assert_eq!(snaps.len(), 2);
        let newest = ObjectKey::new(snaps[1].key.clone()).unwrap();
        let mut bytes = repo.backend().get(&newest).await.unwrap().unwrap().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        repo.backend().delete(&newest).await.unwrap();
        repo.backend()
            .put_if_absent(&newest, bytes.into())
            .await
            .unwrap();
        let f: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert_eq!(f.state.seen.len(), 2 * SNAPSHOT_EVERY);
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(f.warnings[0].contains(newest.as_str()), "{:?}", f.warnings);
        // Every snapshot damaged (the read above wrote a third one): rebuilt from the log.
        for l in repo
            .backend()
            .list(&layout::journal_snap_prefix(&stanza, "wal"), None)
            .await
            .unwrap()
        {
            let key = ObjectKey::new(l.key).unwrap();
            repo.backend().delete(&key).await.unwrap();
            repo.backend()
                .put_if_absent(&key, bytes::Bytes::from_static(b"junk"))
                .await
                .unwrap();
        }
        let f: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert_eq!(f.state.seen.len(), 2 * SNAPSHOT_EVERY);
        assert!(
            f.warnings.iter().any(|w| w.contains("rebuilt")),
            "{:?}",
            f.warnings
        );
    }

    #[tokio::test]
    async fn a_damaged_entry_is_reported_by_its_tag() {
        let (repo, stanza) = repo().await;
        let key = repo
            .journal_append(&stanza, JournalName::Wal, "000000010000000000000009", &9u32)
            .await
            .unwrap();
        repo.backend().delete(&key).await.unwrap();
        repo.backend()
            .put_if_absent(&key, bytes::Bytes::from_static(b"not an object"))
            .await
            .unwrap();
        let f: Folded<Names> = repo.journal_fold(&stanza, JournalName::Wal).await.unwrap();
        assert!(f.state.seen.is_empty());
        assert_eq!(
            f.state.damaged,
            vec!["000000010000000000000009".to_string()]
        );
    }
}
