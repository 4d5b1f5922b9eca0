//! Which kind of backup to take, and on top of which parent.

use cairn_repo::{
    BackupLabel, BackupManifest, BackupSummary, BackupType, DbId, RepoError, Repository, StanzaName,
};

/// What to take: type, label and parent, chosen from the backup catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupChoice {
    pub backup_type: BackupType,
    pub label: BackupLabel,
    pub parent: Option<BackupLabel>,
    /// Set when a diff/incr was asked for but no full exists, so a full is taken.
    pub promoted_to_full: bool,
}

impl BackupChoice {
    /// `requested` (default incr) on top of the usable backups of generation `db`: a diff's
    /// parent is the newest full, an incr's the newest backup; with no full there is a
    /// full. `taken` are labels in use (usable or not): a new label never repeats one.
    pub fn choose(
        requested: Option<BackupType>,
        usable: &[BackupSummary],
        taken: &[BackupLabel],
        db: DbId,
        now: time::OffsetDateTime,
    ) -> BackupChoice {
        let mine: Vec<&BackupSummary> = usable.iter().filter(|m| m.db_id == db).collect();
        let last_full = mine
            .iter()
            .rev()
            .find(|m| m.backup_type == BackupType::Full)
            .copied();
        let wanted = requested.unwrap_or(BackupType::Incr);
        let (backup_type, parent, promoted) = match (wanted, last_full) {
            (BackupType::Full, _) => (BackupType::Full, None, false),
            (_, None) => (BackupType::Full, None, true),
            (BackupType::Diff, Some(full)) => (BackupType::Diff, Some(full.label.clone()), false),
            (BackupType::Incr, Some(_)) => (
                BackupType::Incr,
                mine.last().map(|m| m.label.clone()),
                false,
            ),
        };
        let full_label = parent.as_ref().map(BackupLabel::full_label);
        let mut label = BackupLabel::generate(now, backup_type, full_label.as_ref());
        // Two backups in the same second: keep labels unique and ordered.
        let mut t = now;
        while usable.iter().any(|m| m.label == label) || taken.contains(&label) {
            t += time::Duration::seconds(1);
            label = BackupLabel::generate(t, backup_type, full_label.as_ref());
        }
        BackupChoice {
            backup_type,
            label,
            parent,
            promoted_to_full: promoted,
        }
    }
}

/// A backup about to be taken, with its parent's manifest read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPlan {
    pub backup_type: BackupType,
    pub label: BackupLabel,
    pub parent: Option<BackupManifest>,
    /// Set when a diff/incr was asked for but no full exists, so a full is taken.
    pub promoted_to_full: bool,
    /// Parents passed over because their manifest is damaged (for the operator).
    pub passed_over: Vec<String>,
}

impl BackupPlan {
    /// Choose from the backup catalog and read the parent's manifest. A parent whose
    /// manifest turns out damaged is passed over (and recorded as damaged by the read): a
    /// damaged backup costs only itself, new backups still run.
    pub async fn prepare(
        repo: &Repository,
        stanza: &StanzaName,
        requested: Option<BackupType>,
        db: DbId,
        now: time::OffsetDateTime,
    ) -> Result<BackupPlan, RepoError> {
        let catalog = repo.backup_catalog(stanza).await?;
        let mut taken: Vec<BackupLabel> = catalog.damaged.iter().map(|d| d.label.clone()).collect();
        taken.extend(catalog.removed_leftovers.iter().cloned());
        let mut usable = catalog.usable;
        let mut passed_over = Vec::new();
        loop {
            let choice = BackupChoice::choose(requested, &usable, &taken, db, now);
            let parent = match &choice.parent {
                None => None,
                Some(label) => match repo.manifest(stanza, label).await {
                    Ok(m) => Some(m),
                    Err(RepoError::BackupDamaged { reason, .. }) => {
                        passed_over.push(format!("{label} ({reason})"));
                        usable.retain(|b| &b.label != label);
                        taken.push(label.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            return Ok(BackupPlan {
                backup_type: choice.backup_type,
                label: choice.label,
                parent,
                promoted_to_full: choice.promoted_to_full,
                passed_over,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_pgformat::{Lsn, TimelineId};
    use cairn_repo::IncrementalMode;
    use cairn_repo::manifest::MANIFEST_FORMAT;

    fn manifest(label: &str, backup_type: BackupType) -> BackupSummary {
        BackupSummary::of(&BackupManifest {
            format: MANIFEST_FORMAT,
            label: BackupLabel::new(label).unwrap(),
            backup_type,
            parent: None,
            db_id: DbId(1),
            system_id: 1,
            pg_major: 15,
            timeline: TimelineId(1),
            start_lsn: Lsn(0x100_0028),
            stop_lsn: Lsn(0x100_0100),
            start_time: cairn_repo::BackupTime::parse(&format!("{}-01-01T00:00:00Z", &label[..4]))
                .unwrap(),
            stop_time: cairn_repo::BackupTime::parse(&format!("{}-01-01T00:00:01Z", &label[..4]))
                .unwrap(),
            incremental_mode: IncrementalMode::Full,
            packs: vec![],
            files: vec![],
            tablespaces: vec![],
            backup_label: String::new(),
            tablespace_map: None,
            pg_manifest: None,
            db_size: 0,
            bytes_received: 0,
            repo_added: 0,
            annotations: Default::default(),
        })
    }

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-22 14:05:09 UTC);

    #[test]
    fn a_full_in_a_taken_second_moves_to_the_next_free_one() {
        let mut existing = vec![];
        let mut labels = vec![];
        // Three fulls started within the same second get three labels, in order.
        for _ in 0..3 {
            let plan = BackupChoice::choose(Some(BackupType::Full), &existing, &[], DbId(1), NOW);
            labels.push(plan.label.to_string());
            existing.push(manifest(plan.label.as_str(), BackupType::Full));
        }
        assert_eq!(
            labels,
            ["20261122-140509F", "20261122-140510F", "20261122-140511F"]
        );
    }

    #[test]
    fn an_incr_in_a_taken_second_moves_on_and_other_types_do_not_collide() {
        let full = manifest("20261122-140500F", BackupType::Full);
        let incr = manifest("20261122-140500F_20261122-140509I", BackupType::Incr);
        let existing = vec![full, incr];
        let plan = BackupChoice::choose(Some(BackupType::Incr), &existing, &[], DbId(1), NOW);
        assert_eq!(plan.label.as_str(), "20261122-140500F_20261122-140510I");
        assert_eq!(
            plan.parent.unwrap().as_str(),
            "20261122-140500F_20261122-140509I"
        );
        // A diff in the same second has a label of its own already.
        let plan = BackupChoice::choose(Some(BackupType::Diff), &existing, &[], DbId(1), NOW);
        assert_eq!(plan.label.as_str(), "20261122-140500F_20261122-140509D");
    }
}
