//! Which kind of backup to take, and on top of which parent.

use cairn_repo::{BackupLabel, BackupManifest, BackupType, DbId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPlan {
    pub backup_type: BackupType,
    pub label: BackupLabel,
    pub parent: Option<BackupManifest>,
    /// Set when a diff/incr was asked for but no full exists, so a full is taken.
    pub promoted_to_full: bool,
}

impl BackupPlan {
    /// `requested` (default incr) on top of the backups of generation `db`: a diff's parent
    /// is the newest full, an incr's the newest backup; with no full there is a full.
    pub fn choose(
        requested: Option<BackupType>,
        existing: &[BackupManifest],
        db: DbId,
        now: time::OffsetDateTime,
    ) -> BackupPlan {
        let mine: Vec<&BackupManifest> = existing.iter().filter(|m| m.db_id == db).collect();
        let last_full = mine
            .iter()
            .rev()
            .find(|m| m.backup_type == BackupType::Full)
            .copied();
        let wanted = requested.unwrap_or(BackupType::Incr);
        let (backup_type, parent, promoted) = match (wanted, last_full) {
            (BackupType::Full, _) => (BackupType::Full, None, false),
            (_, None) => (BackupType::Full, None, true),
            (BackupType::Diff, Some(full)) => (BackupType::Diff, Some(full.clone()), false),
            (BackupType::Incr, Some(_)) => {
                (BackupType::Incr, mine.last().map(|m| (*m).clone()), false)
            }
        };
        let full_label = parent.as_ref().map(|p| p.label.full_label());
        let mut label = BackupLabel::generate(now, backup_type, full_label.as_ref());
        // Two backups in the same second: keep labels unique and ordered.
        let mut t = now;
        while existing.iter().any(|m| m.label == label) {
            t += time::Duration::seconds(1);
            label = BackupLabel::generate(t, backup_type, full_label.as_ref());
        }
        BackupPlan {
            backup_type,
            label,
            parent,
            promoted_to_full: promoted,
        }
    }
}
