//! The inputs: what retention needs to know about each backup, and the rules.

use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::{BackupLabel, BackupType, DbId};
use time::OffsetDateTime;

/// What retention reads of one backup (from its manifest and the pin list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    pub label: BackupLabel,
    pub backup_type: BackupType,
    pub parent: Option<BackupLabel>,
    /// The stanza generation (grows on `stanza-upgrade`).
    pub db_id: DbId,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub start_time: OffsetDateTime,
    pub stop_time: OffsetDateTime,
    /// Pinned backups never expire.
    pub pinned: bool,
    /// `false`: the manifest is damaged. Such a backup counts toward no rule, is kept
    /// (reported), and goes only by `expire --set`.
    pub usable: bool,
}

impl BackupFacts {
    /// The facts of a readable manifest; `None` when its times are not RFC 3339 (treat
    /// the backup as damaged then).
    pub fn from_manifest(m: &cairn_repo::BackupManifest, pinned: bool) -> Option<BackupFacts> {
        Some(BackupFacts {
            label: m.label.clone(),
            backup_type: m.backup_type,
            parent: m.parent.clone(),
            db_id: m.db_id,
            timeline: m.timeline,
            start_lsn: m.start_lsn,
            stop_lsn: m.stop_lsn,
            start_time: m.start_time.0,
            stop_time: m.stop_time.0,
            pinned,
            usable: true,
        })
    }

    /// Facts for a backup whose manifest cannot be read: type and times come from the
    /// label, the rest are placeholders (retention reads only `label`, `pinned` and
    /// `usable` of an unusable backup).
    pub fn damaged(label: BackupLabel, db_id: DbId, pinned: bool) -> BackupFacts {
        let backup_type = label_type(&label).unwrap_or(BackupType::Incr);
        let time = label_time(&label).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        BackupFacts {
            label,
            backup_type,
            parent: None,
            db_id,
            timeline: TimelineId::FIRST,
            start_lsn: Lsn::INVALID,
            stop_lsn: Lsn::INVALID,
            start_time: time,
            stop_time: time,
            pinned,
            usable: false,
        }
    }
}

/// The type a label says (its last letter: `F`, `D` or `I`).
pub(crate) fn label_type(label: &BackupLabel) -> Option<BackupType> {
    match label.as_str().as_bytes().last() {
        Some(b'F') => Some(BackupType::Full),
        Some(b'D') => Some(BackupType::Diff),
        Some(b'I') => Some(BackupType::Incr),
        _ => None,
    }
}

/// The start time a label names (its own `YYYYMMDD-HHMMSS` part, UTC).
fn label_time(label: &BackupLabel) -> Option<OffsetDateTime> {
    let own = label.as_str().rsplit('_').next()?;
    let num = |r: std::ops::Range<usize>| own.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(num(0..4)?).ok()?,
        month,
        u8::try_from(num(6..8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc())
}

/// The `[retention]` rules. A backup is kept when any rule keeps it; with no rule set,
/// nothing expires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRules {
    /// Keep the N newest fulls, each with the diffs and incrs that hang on it.
    pub full: Option<u32>,
    /// With `full`: keep at most N diffs per kept full (and the incrs that hang on them).
    pub diff: Option<u32>,
    /// Keep the newest backup that stopped at or before `now - window`, and every
    /// backup after it.
    pub recovery_window: Option<std::time::Duration>,
    /// Keep the newest backup of each of the N most recent UTC days that have one.
    pub keep_daily: Option<u32>,
    /// ... of each of the N most recent ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// ... of each of the N most recent calendar months that have one.
    pub keep_monthly: Option<u32>,
    /// ... of each of the N most recent calendar years that have one.
    pub keep_yearly: Option<u32>,
}

impl RetentionRules {
    /// Whether no rule is set (then nothing expires).
    pub fn is_empty(&self) -> bool {
        self.full.is_none()
            && self.diff.is_none()
            && self.recovery_window.is_none()
            && self.tiers().iter().all(|(_, n)| n.is_none())
    }

    /// Whether a rule that needs continuous WAL (full, diff, recovery-window) is set.
    pub fn has_pitr_rule(&self) -> bool {
        self.full.is_some() || self.recovery_window.is_some()
    }

    pub(crate) fn tiers(&self) -> [(crate::Tier, Option<u32>); 4] {
        use crate::Tier;
        [
            (Tier::Daily, self.keep_daily),
            (Tier::Weekly, self.keep_weekly),
            (Tier::Monthly, self.keep_monthly),
            (Tier::Yearly, self.keep_yearly),
        ]
    }

    /// Refuses rules that would mean nothing or everything: a count of 0, and `diff`
    /// without `full`.
    pub fn validate(&self) -> Result<(), RulesError> {
        let counts = [
            ("full", self.full),
            ("diff", self.diff),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
            ("keep-yearly", self.keep_yearly),
        ];
        if let Some((rule, _)) = counts.iter().find(|(_, n)| *n == Some(0)) {
            return Err(RulesError::Zero { rule });
        }
        if self.diff.is_some() && self.full.is_none() {
            return Err(RulesError::DiffWithoutFull);
        }
        Ok(())
    }
}

/// Rules or inputs retention refuses to plan with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("retention.{rule} = 0 would keep nothing; remove the rule or give at least 1")]
    Zero { rule: &'static str },
    #[error("retention.diff limits the diffs kept per full, so it needs retention.full")]
    DiffWithoutFull,
    #[error("backup {0} is listed twice")]
    DuplicateLabel(BackupLabel),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_facts_come_from_the_label() {
        let l = BackupLabel::new("20261122-140500F_20261123-010203D").unwrap();
        let f = BackupFacts::damaged(l, DbId(1), true);
        assert_eq!(f.backup_type, BackupType::Diff);
        assert_eq!(
            f.start_time,
            time::macros::datetime!(2026-11-23 01:02:03 UTC)
        );
        assert!(!f.usable && f.pinned);
    }

    #[test]
    fn manifest_times() {
        let t = |s: &str| cairn_repo::BackupTime::parse(s).map(|t| t.0);
        assert_eq!(
            t("2026-11-22T14:05:00Z"),
            Some(time::macros::datetime!(2026-11-22 14:05 UTC))
        );
        assert_eq!(
            t("2026-11-22T15:05:00+01:00"),
            Some(time::macros::datetime!(2026-11-22 14:05 UTC))
        );
        assert_eq!(t("2026-11-22 14:05"), None);
    }

    #[test]
    fn validation() {
        assert!(RetentionRules::default().is_empty());
        let r = RetentionRules {
            full: Some(0),
            ..Default::default()
        };
        assert_eq!(r.validate(), Err(RulesError::Zero { rule: "full" }));
        let r = RetentionRules {
            diff: Some(2),
            ..Default::default()
        };
        assert_eq!(r.validate(), Err(RulesError::DiffWithoutFull));
        assert!(!r.is_empty());
    }
}
