//! Builds made-up backup histories for the retention tests.
#![allow(dead_code)]

use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::{BackupLabel, BackupType, DbId};
use cairn_retention::BackupFacts;
use time::OffsetDateTime;

/// 16 MiB: one WAL segment, the LSN distance between made-up backups.
pub const SEG: u64 = 16 << 20;

/// A stanza's backups as `cairn backup` would label them: a diff's parent is the last
/// full, an incr's the last backup.
#[derive(Debug, Clone)]
pub struct Stanza {
    pub backups: Vec<BackupFacts>,
    pub db: DbId,
    pub tli: TimelineId,
    pub lsn: u64,
    last_full: Option<BackupLabel>,
    last: Option<BackupLabel>,
}

impl Default for Stanza {
    fn default() -> Self {
        Stanza::new()
    }
}

impl Stanza {
    pub fn new() -> Stanza {
        Stanza {
            backups: Vec::new(),
            db: DbId(1),
            tli: TimelineId(1),
            lsn: SEG,
            last_full: None,
            last: None,
        }
    }

    fn add(&mut self, kind: BackupType, at: OffsetDateTime) -> BackupLabel {
        let full = match kind {
            BackupType::Full => None,
            _ => self.last_full.as_ref(),
        };
        let label = BackupLabel::generate(at, kind, full);
        let parent = match kind {
            BackupType::Full => None,
            BackupType::Diff => self.last_full.clone(),
            BackupType::Incr => self.last.clone(),
        };
        self.backups.push(BackupFacts {
            label: label.clone(),
            backup_type: kind,
            parent,
            db_id: self.db,
            timeline: self.tli,
            start_lsn: Lsn(self.lsn),
            stop_lsn: Lsn(self.lsn + SEG / 2),
            start_time: at,
            stop_time: at + time::Duration::minutes(10),
            pinned: false,
            usable: true,
        });
        self.lsn += 2 * SEG;
        if kind == BackupType::Full {
            self.last_full = Some(label.clone());
        }
        self.last = Some(label.clone());
        label
    }

    pub fn full(&mut self, at: OffsetDateTime) -> BackupLabel {
        self.add(BackupType::Full, at)
    }
    pub fn diff(&mut self, at: OffsetDateTime) -> BackupLabel {
        self.add(BackupType::Diff, at)
    }
    pub fn incr(&mut self, at: OffsetDateTime) -> BackupLabel {
        self.add(BackupType::Incr, at)
    }

    /// `stanza-upgrade`: a new generation whose LSNs start over.
    pub fn upgrade(&mut self) {
        self.db = DbId(self.db.0 + 1);
        self.tli = TimelineId(1);
        self.lsn = SEG;
        self.last_full = None;
        self.last = None;
    }

    pub fn get_mut(&mut self, l: &BackupLabel) -> &mut BackupFacts {
        self.backups
            .iter_mut()
            .find(|b| &b.label == l)
            .expect("label in the history")
    }

    pub fn get(&self, l: &BackupLabel) -> &BackupFacts {
        self.backups
            .iter()
            .find(|b| &b.label == l)
            .expect("label in the history")
    }

    pub fn remove(&mut self, l: &BackupLabel) {
        self.backups.retain(|b| &b.label != l);
    }
}
