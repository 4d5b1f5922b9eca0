//! The backup catalog: what `info`, the planner and `expire` know about a stanza's backups
//! without reading every manifest. It is folded from the stanza's `backups`
//! [journal](crate::journal) and checked against one listing of the backup directory (a
//! page per thousand backups), so a backup whose journal entry never landed (killed between
//! its manifest and the entry) still shows up, and one whose manifest vanished shows up as
//! damaged.
//!
//! The manifest stays the commit point: a backup exists when its manifest does.
//! Events: a backup was committed (its summary), removed (by `expire`, written before its
//! manifest is deleted), pinned or unpinned, or found damaged by a reader (`restore`,
//! `backup`, `verify` record what they find, so `info` shows it).

use std::collections::{BTreeMap, BTreeSet};

use cairn_pgformat::{Lsn, TimelineId};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::RepoError;
use crate::journal::{Fold, JournalName};
use crate::layout::{self, DbId, StanzaName};
use crate::manifest::{
    BackupLabel, BackupManifest, BackupTime, BackupType, DamagedBackup, IncrementalMode,
};
use crate::repository::Repository;

/// What the catalog knows about one backup: its manifest without the file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub label: BackupLabel,
    pub backup_type: BackupType,
    pub parent: Option<BackupLabel>,
    pub db_id: DbId,
    pub system_id: u64,
    pub pg_major: u32,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub start_time: BackupTime,
    pub stop_time: BackupTime,
    pub incremental_mode: IncrementalMode,
    pub db_size: u64,
    pub bytes_received: u64,
    pub repo_added: u64,
    /// Encoded bytes of the backup's distinct chunks.
    pub repo_size: u64,
    pub files: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Never expired while set (`cairn pin`).
    #[serde(default)]
    pub pinned: bool,
}

impl BackupSummary {
    pub fn of(m: &BackupManifest) -> BackupSummary {
        let mut seen = std::collections::HashSet::new();
        let repo_size = m
            .files
            .iter()
            .flat_map(|f| &f.chunks)
            .filter(|c| seen.insert((c.pack, c.offset)))
            .map(|c| u64::from(c.len))
            .sum();
        BackupSummary {
            label: m.label.clone(),
            backup_type: m.backup_type,
            parent: m.parent.clone(),
            db_id: m.db_id,
            system_id: m.system_id,
            pg_major: m.pg_major,
            timeline: m.timeline,
            start_lsn: m.start_lsn,
            stop_lsn: m.stop_lsn,
            start_time: m.start_time,
            stop_time: m.stop_time,
            incremental_mode: m.incremental_mode,
            db_size: m.db_size,
            bytes_received: m.bytes_received,
            repo_added: m.repo_added,
            repo_size,
            files: m.files.len() as u64,
            annotations: m.annotations.clone(),
            pinned: false,
        }
    }
}

/// One event of the `backups` journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BackupEvent {
    Committed { summary: Box<BackupSummary> },
    Removed { label: BackupLabel },
    Pinned { label: BackupLabel, pinned: bool },
    Damaged { label: BackupLabel, reason: String },
}

/// The folded state of the `backups` journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupState {
    committed: BTreeMap<BackupLabel, BackupSummary>,
    removed: BTreeSet<BackupLabel>,
    /// The newest pin event per label (log key, pinned): the newest decides.
    pins: BTreeMap<BackupLabel, (String, bool)>,
    damaged: BTreeMap<BackupLabel, String>,
    /// Entries that could not be read, by the label their key names.
    unreadable: BTreeMap<String, String>,
}

impl Fold for BackupState {
    type Entry = BackupEvent;

    fn apply(&mut self, key: &str, event: BackupEvent) {
        match event {
            BackupEvent::Committed { summary } => {
                self.committed.insert(summary.label.clone(), *summary);
            }
            BackupEvent::Removed { label } => {
                self.removed.insert(label);
            }
            BackupEvent::Pinned { label, pinned } => {
                let newer = self.pins.get(&label).is_none_or(|(k, _)| k.as_str() < key);
                if newer {
                    self.pins.insert(label, (key.to_string(), pinned));
                }
            }
            BackupEvent::Damaged { label, reason } => {
                self.damaged.insert(label, reason);
            }
        }
    }

    fn damaged(&mut self, key: &str, tag: &str, reason: String) {
        self.unreadable
            .insert(tag.to_string(), format!("{key}: {reason}"));
    }
}

/// The backups of a stanza, as the catalog knows them.
#[derive(Debug, Clone, Default)]
pub struct BackupCatalog {
    /// Usable backups, oldest first.
    pub usable: Vec<BackupSummary>,
    pub damaged: Vec<DamagedBackup>,
    /// Labels expire removed whose manifest is still there (a killed expire): expire
    /// finishes removing them.
    pub removed_leftovers: Vec<BackupLabel>,
    /// What reading the catalog worked around.
    pub warnings: Vec<String>,
}

impl BackupCatalog {
    pub fn get(&self, label: &BackupLabel) -> Option<&BackupSummary> {
        self.usable.iter().find(|b| &b.label == label)
    }
}

impl Repository {
    /// Announce a committed backup (right after its manifest is stored).
    pub(crate) async fn announce_backup(
        &self,
        stanza: &StanzaName,
        m: &BackupManifest,
    ) -> Result<(), RepoError> {
        let event = BackupEvent::Committed {
            summary: Box::new(BackupSummary::of(m)),
        };
        self.journal_append(stanza, JournalName::Backups, m.label.as_str(), &event)
            .await?;
        Ok(())
    }

    /// Record a backups-journal event (pin, removal, damage found).
    pub async fn record_backup_event(
        &self,
        stanza: &StanzaName,
        event: &BackupEvent,
    ) -> Result<(), RepoError> {
        let label = match event {
            BackupEvent::Committed { summary } => &summary.label,
            BackupEvent::Removed { label }
            | BackupEvent::Pinned { label, .. }
            | BackupEvent::Damaged { label, .. } => label,
        };
        self.journal_append(stanza, JournalName::Backups, label.as_str(), event)
            .await?;
        Ok(())
    }

    /// Pin or unpin a committed backup. `Err` when the catalog does not list it.
    pub async fn set_pinned(
        &self,
        stanza: &StanzaName,
        label: &BackupLabel,
        pinned: bool,
    ) -> Result<(), RepoError> {
        let catalog = self.backup_catalog(stanza).await?;
        let known =
            catalog.get(label).is_some() || catalog.damaged.iter().any(|d| &d.label == label);
        if !known {
            return Err(RepoError::NoBackup {
                label: label.to_string(),
            });
        }
        self.record_backup_event(
            stanza,
            &BackupEvent::Pinned {
                label: label.clone(),
                pinned,
            },
        )
        .await
    }

    /// The stanza's backups from the catalog, checked against one listing of the backup
    /// directory.
    pub async fn backup_catalog(&self, stanza: &StanzaName) -> Result<BackupCatalog, RepoError> {
        let folded = self
            .journal_fold::<BackupState>(stanza, JournalName::Backups)
            .await?;
        let mut state = folded.state;
        let prefix = layout::backup_prefix(stanza);
        let stored: BTreeSet<BackupLabel> = self
            .backend()
            .list(&prefix, None)
            .await?
            .iter()
            .filter_map(|l| {
                let rest = l.key.strip_prefix(&prefix)?;
                let (label, file) = rest.split_once('/')?;
                (file == "manifest" || file.starts_with("manifest."))
                    .then(|| BackupLabel::new(label).ok())
                    .flatten()
            })
            .collect();
        let mut out = BackupCatalog {
            warnings: folded.warnings,
            ..Default::default()
        };
        // Manifests the journal does not know (an entry that never landed or cannot be
        // read): read them, and announce them again so the next reader need not.
        let unknown: Vec<BackupLabel> = stored
            .iter()
            .filter(|l| !state.committed.contains_key(*l) && !state.removed.contains(*l))
            .cloned()
            .collect();
        let read: Vec<(BackupLabel, Result<BackupManifest, RepoError>)> =
            futures::stream::iter(unknown)
                .map(|label| async move {
                    let m = self.manifest(stanza, &label).await;
                    (label, m)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (label, m) in read {
            match m {
                Ok(m) => {
                    let _ = self.announce_backup(stanza, &m).await;
                    state.committed.insert(label, BackupSummary::of(&m));
                }
                Err(RepoError::BackupDamaged { key, reason, .. }) => {
                    out.damaged.push(DamagedBackup { label, key, reason })
                }
                Err(e) => return Err(e),
            }
        }
        for (label, mut summary) in std::mem::take(&mut state.committed) {
            if state.removed.contains(&label) {
                continue;
            }
            let key = layout::backup_manifest(stanza, label.as_str());
            if !stored.contains(&label) {
                out.damaged.push(DamagedBackup {
                    label,
                    key,
                    reason: "the manifest is missing".into(),
                });
                continue;
            }
            if let Some(reason) = state.damaged.get(&label) {
                out.damaged.push(DamagedBackup {
                    label,
                    key,
                    reason: reason.clone(),
                });
                continue;
            }
            summary.pinned = state.pins.get(&label).is_some_and(|(_, p)| *p);
            out.usable.push(summary);
        }
        for (tag, why) in &state.unreadable {
            out.warnings.push(format!(
                "a backup catalog entry about {tag} cannot be read: {why}"
            ));
        }
        out.removed_leftovers = state
            .removed
            .iter()
            .filter(|l| stored.contains(*l))
            .cloned()
            .collect();
        out.usable
            .sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.label.cmp(&b.label)));
        out.damaged.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::MANIFEST_FORMAT;

    async fn setup() -> (Repository, StanzaName) {
        let repo = Repository::in_memory().await;
        let stanza = StanzaName::new("main").unwrap();
        repo.create_stanza(&stanza, 42, 15).await.unwrap();
        (repo, stanza)
    }

    pub(crate) fn manifest(label: &str, minute: u32) -> BackupManifest {
        let label = BackupLabel::new(label).unwrap();
        BackupManifest {
            format: MANIFEST_FORMAT,
            backup_type: BackupType::Full,
            parent: None,
            db_id: DbId(1),
            system_id: 42,
            pg_major: 15,
            timeline: TimelineId(1),
            start_lsn: Lsn(0x100_0000 * u64::from(minute + 1)),
            stop_lsn: Lsn(0x100_0000 * u64::from(minute + 1) + 0x100),
            start_time: BackupTime::parse(&format!("2026-12-01T10:{minute:02}:00Z")).unwrap(),
            stop_time: BackupTime::parse(&format!("2026-12-01T10:{minute:02}:05Z")).unwrap(),
            incremental_mode: IncrementalMode::Full,
            packs: vec![],
            files: vec![],
            tablespaces: vec![],
            backup_label: String::new(),
            tablespace_map: None,
            pg_manifest: None,
            db_size: 1,
            bytes_received: 1,
            repo_added: 1,
            annotations: [("ticket".to_string(), "OPS-1".to_string())].into(),
            label,
        }
    }

    fn labels(c: &BackupCatalog) -> Vec<&str> {
        c.usable.iter().map(|b| b.label.as_str()).collect()
    }

    #[tokio::test]
    async fn committed_backups_are_listed_with_their_summary() {
        let (repo, s) = setup().await;
        repo.put_manifest(&s, &manifest("20261201-100000F", 0))
            .await
            .unwrap();
        repo.put_manifest(&s, &manifest("20261201-101000F", 10))
            .await
            .unwrap();
        let c = repo.backup_catalog(&s).await.unwrap();
        assert_eq!(labels(&c), ["20261201-100000F", "20261201-101000F"]);
        assert_eq!(c.usable[0].annotations["ticket"], "OPS-1");
        assert!(c.damaged.is_empty() && c.warnings.is_empty());
    }

    #[tokio::test]
    async fn a_manifest_whose_entry_never_landed_is_found_and_a_vanished_one_is_damaged() {
        let (repo, s) = setup().await;
        let m = manifest("20261201-100000F", 0);
        repo.put_manifest(&s, &m).await.unwrap();
        // Killed between the manifest and its journal entry: the entry is gone.
        let prefix = layout::journal_log_prefix(&s, "backups");
        for l in repo.backend().list(&prefix, None).await.unwrap() {
            repo.backend()
                .delete(&crate::ObjectKey::new(l.key).unwrap())
                .await
                .unwrap();
        }
        let c = repo.backup_catalog(&s).await.unwrap();
        assert_eq!(labels(&c), ["20261201-100000F"]);
        // ... and it was announced again.
        assert_eq!(repo.backend().list(&prefix, None).await.unwrap().len(), 1);
        repo.backend()
            .delete(&layout::backup_manifest(&s, m.label.as_str()))
            .await
            .unwrap();
        let c = repo.backup_catalog(&s).await.unwrap();
        assert!(c.usable.is_empty());
        assert_eq!(c.damaged.len(), 1);
        assert_eq!(c.damaged[0].reason, "the manifest is missing");
    }

    #[tokio::test]
    async fn pins_removals_and_damage_found_by_readers() {
        let (repo, s) = setup().await;
        let a = manifest("20261201-100000F", 0);
        let b = manifest("20261201-101000F", 10);
        repo.put_manifest(&s, &a).await.unwrap();
        repo.put_manifest(&s, &b).await.unwrap();
        repo.set_pinned(&s, &a.label, true).await.unwrap();
        assert!(repo.backup_catalog(&s).await.unwrap().usable[0].pinned);
        repo.set_pinned(&s, &a.label, false).await.unwrap();
        assert!(!repo.backup_catalog(&s).await.unwrap().usable[0].pinned);
        let missing = BackupLabel::new("20261201-102000F").unwrap();
        assert!(matches!(
            repo.set_pinned(&s, &missing, true).await,
            Err(RepoError::NoBackup { .. })
        ));
        repo.record_backup_event(
            &s,
            &BackupEvent::Removed {
                label: a.label.clone(),
            },
        )
        .await
        .unwrap();
        let c = repo.backup_catalog(&s).await.unwrap();
        assert_eq!(labels(&c), ["20261201-101000F"]);
        assert_eq!(c.removed_leftovers, vec![a.label.clone()]);
        // A reader that finds a manifest damaged records it; info then shows it.
        let key = layout::backup_manifest(&s, b.label.as_str());
        repo.backend().delete(&key).await.unwrap();
        repo.backend()
            .put_if_absent(&key, bytes::Bytes::from_static(b"truncated"))
            .await
            .unwrap();
        assert!(matches!(
            repo.manifest(&s, &b.label).await,
            Err(RepoError::BackupDamaged { .. })
        ));
        let c = repo.backup_catalog(&s).await.unwrap();
        assert!(c.usable.is_empty());
        assert_eq!(c.damaged[0].label, b.label);
    }

    /// Issue 10, "one catalog fault": a WAL summary and a backup whose writers were slow
    /// (their entries keyed half the journal margin before everything written since) land
    /// after both catalogs were folded into snapshots, and both show up, from the journal.
    #[tokio::test]
    async fn a_summary_and_a_backup_landing_far_behind_the_newest_both_show_up() {
        use cairn_pgformat::builder::WalBuilder;
        use cairn_pgformat::{WalFileName, XLogSegNo, summarize_segment};

        use crate::journal::MARGIN;
        use crate::wal::WalDetail;

        let (repo, s) = setup().await;
        // Newer entries than the late ones, enough for a snapshot of each journal.
        for i in 0..70u32 {
            let label = format!("20261201-{:02}{:02}00F", 10 + i / 60, i % 60);
            repo.put_manifest(&s, &manifest(&label, i % 60))
                .await
                .unwrap();
            let name = WalFileName::History(TimelineId(i + 2));
            let text = format!(
                "{}\t0/{:X}\tno recovery target specified\n",
                i + 1,
                (i + 2) << 24
            );
            let enc = repo
                .encode_wal(&s, DbId(1), &name, text.clone().into())
                .await
                .unwrap();
            repo.push_wal(&s, DbId(1), &name, &enc, WalDetail::History { text })
                .await
                .unwrap();
        }
        assert_eq!(repo.backup_catalog(&s).await.unwrap().usable.len(), 70);
        assert_eq!(repo.wal_catalog(&s).await.unwrap().len(), 70);
        for journal in ["backups", "wal"] {
            let snaps = repo
                .backend()
                .list(&layout::journal_snap_prefix(&s, journal), None)
                .await
                .unwrap();
            assert_eq!(snaps.len(), 1, "the {journal} journal was snapshotted");
        }

        // The slow writers: every entry they write is keyed half the margin ago.
        let slow = repo.clone().with_clock(std::sync::Arc::new(|| {
            time::OffsetDateTime::now_utc() - MARGIN / 2
        }));
        let mut wal = WalBuilder::new(XLogSegNo(1))
            .segment_size(cairn_pgformat::WalSegmentSize::new(1 << 20).unwrap());
        wal.append_commit(700, cairn_pgformat::PgTimestamp(850_000_000_000_000));
        wal.append_switch();
        let bytes = wal.segment(0);
        let summary = summarize_segment(&bytes).unwrap();
        let segment = WalFileName::Segment(wal.segment_name(0));
        let enc = slow
            .encode_wal(&s, DbId(1), &segment, bytes.into())
            .await
            .unwrap();
        slow.push_wal(
            &s,
            DbId(1),
            &segment,
            &enc,
            WalDetail::Segment {
                summary: Box::new(summary),
            },
        )
        .await
        .unwrap();
        let late = manifest("20261130-235900F", 0);
        slow.put_manifest(&s, &late).await.unwrap();
        let log = |journal: &'static str| {
            let repo = repo.clone();
            let s = s.clone();
            async move {
                let prefix = layout::journal_log_prefix(&s, journal);
                repo.backend().list(&prefix, None).await.unwrap()
            }
        };
        let newest = log("backups").await.last().unwrap().key.clone();
        let late_key = log("backups")
            .await
            .into_iter()
            .find(|l| l.key.ends_with(late.label.as_str()))
            .unwrap()
            .key;
        assert!(
            late_key < newest,
            "the backup's entry is keyed before the newest"
        );

        let wal_catalog = repo.wal_catalog(&s).await.unwrap();
        assert_eq!(wal_catalog.len(), 71);
        assert!(
            wal_catalog.entries().any(|e| e.name == segment.to_string()),
            "the late summary shows up"
        );
        let backups = repo.backup_catalog(&s).await.unwrap();
        assert_eq!(backups.usable.len(), 71);
        assert_eq!(
            backups.usable[0].label, late.label,
            "the late backup shows up"
        );
        // From its journal entry, not found by listing and announced again.
        let entries = log("backups")
            .await
            .into_iter()
            .filter(|l| l.key.ends_with(late.label.as_str()))
            .count();
        assert_eq!(entries, 1);
    }
}
