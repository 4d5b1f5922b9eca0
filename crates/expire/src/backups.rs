//! Which backups go: `[retention]` (crate `cairn-retention`), or exactly `--set`, plus the
//! leftovers of a killed run. Pure.

use cairn_repo::{BackupCatalog, BackupLabel, BackupSummary, BackupType, DbId, StanzaName};
use cairn_retention::{BackupFacts, RetentionPlan, RetentionRules};
use time::OffsetDateTime;

use crate::error::ExpireError;

/// Why a backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// No retention rule keeps it.
    Retention,
    /// `expire --set` names it.
    Set,
    /// A killed `expire` recorded its removal but did not finish deleting its manifest.
    Leftover,
}

/// One backup as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLine {
    pub label: BackupLabel,
    pub backup_type: BackupType,
    pub damaged: bool,
    pub pinned: bool,
    /// `None`: kept, with these reasons. `Some`: dropped.
    pub drop: Option<DropReason>,
    pub reasons: Vec<String>,
}

/// The backup part of the plan.
#[derive(Debug, Clone)]
pub struct BackupDecisions {
    /// Every backup (usable, damaged and leftovers), oldest first.
    pub lines: Vec<BackupLine>,
    /// What goes, in deletion order: leftovers, then newest first (an incr before the diff
    /// and full it hangs on).
    pub drop: Vec<BackupLabel>,
    /// The plan WAL expiry follows: with `--set`, every remaining backup kept for
    /// point-in-time recovery.
    pub retention: RetentionPlan,
}

impl BackupDecisions {
    pub fn dropped(&self, label: &BackupLabel) -> bool {
        self.drop.contains(label)
    }
}

/// What retention reads of a catalog entry; `None` when its times are not RFC 3339.
pub(crate) fn facts_of(s: &BackupSummary) -> Option<BackupFacts> {
    Some(BackupFacts {
        label: s.label.clone(),
        backup_type: s.backup_type,
        parent: s.parent.clone(),
        db_id: s.db_id,
        timeline: s.timeline,
        start_lsn: s.start_lsn,
        stop_lsn: s.stop_lsn,
        start_time: s.start_time.0,
        stop_time: s.stop_time.0,
        pinned: s.pinned,
        usable: true,
    })
}

fn type_of(label: &BackupLabel) -> BackupType {
    match label.as_str().as_bytes().last() {
        Some(b'D') => BackupType::Diff,
        Some(b'I') => BackupType::Incr,
        _ => BackupType::Full,
    }
}

/// Decide which backups go. `current` is the stanza's current generation (damaged
/// backups are counted in it).
pub fn decide(
    stanza: &StanzaName,
    catalog: &BackupCatalog,
    rules: &RetentionRules,
    set: Option<&BackupLabel>,
    current: DbId,
    now: OffsetDateTime,
) -> Result<BackupDecisions, ExpireError> {
    rules.validate()?;
    let mut facts: Vec<BackupFacts> = Vec::new();
    for s in &catalog.usable {
        facts.push(
            facts_of(s).unwrap_or_else(|| BackupFacts::damaged(s.label.clone(), s.db_id, s.pinned)),
        );
    }
    for d in &catalog.damaged {
        facts.push(BackupFacts::damaged(d.label.clone(), current, false));
    }
    let leftovers: Vec<BackupLabel> = catalog
        .removed_leftovers
        .iter()
        .filter(|l| !facts.iter().any(|f| &f.label == *l))
        .cloned()
        .collect();
    let (retention, named) = match set {
        None => (cairn_retention::plan(&facts, rules, now)?, None),
        Some(label) => match facts.iter().find(|f| &f.label == label) {
            Some(f) if f.pinned => {
                return Err(ExpireError::Pinned {
                    label: label.clone(),
                });
            }
            Some(_) => {
                let rest: Vec<BackupFacts> = facts
                    .iter()
                    .filter(|f| &f.label != label)
                    .cloned()
                    .collect();
                (keep_all(&rest, now)?, Some(label.clone()))
            }
            // Already being removed: finishing that is all `--set` can do.
            None if leftovers.contains(label) => (keep_all(&facts, now)?, None),
            None => {
                return Err(ExpireError::NoSuchSet {
                    stanza: stanza.to_string(),
                    label: label.clone(),
                });
            }
        },
    };
    let mut lines: Vec<BackupLine> = Vec::new();
    let mut drop: Vec<(OffsetDateTime, BackupLabel)> = Vec::new();
    for f in &facts {
        let decision = retention.decision(&f.label);
        let (dropped, reasons) = match (&named, decision) {
            (Some(n), _) if n == &f.label => (Some(DropReason::Set), Vec::new()),
            (Some(_), _) => (None, vec!["not named by --set".to_string()]),
            (None, Some(d)) if d.keep() => {
                (None, d.reasons.iter().map(|r| r.to_string()).collect())
            }
            (None, Some(_)) => (Some(DropReason::Retention), Vec::new()),
            (None, None) => (None, vec!["not planned".to_string()]),
        };
        if dropped.is_some() {
            drop.push((f.start_time, f.label.clone()));
        }
        lines.push(BackupLine {
            label: f.label.clone(),
            backup_type: f.backup_type,
            damaged: !f.usable,
            pinned: f.pinned,
            drop: dropped,
            reasons,
        });
    }
    for l in &leftovers {
        lines.push(BackupLine {
            label: l.clone(),
            backup_type: type_of(l),
            damaged: false,
            pinned: false,
            drop: Some(DropReason::Leftover),
            reasons: Vec::new(),
        });
    }
    lines.sort_by(|a, b| a.label.cmp(&b.label));
    // Newest first, so an incr goes before what it hangs on.
    drop.sort_by(|a, b| b.cmp(a));
    let drop = leftovers
        .into_iter()
        .chain(drop.into_iter().map(|(_, l)| l))
        .collect();
    Ok(BackupDecisions {
        lines,
        drop,
        retention,
    })
}

/// A plan that keeps every backup given, each for point-in-time recovery: the WAL before
/// the oldest of them (per generation) is all that goes.
fn keep_all(facts: &[BackupFacts], now: OffsetDateTime) -> Result<RetentionPlan, ExpireError> {
    let every = RetentionRules {
        full: Some(u32::MAX),
        ..Default::default()
    };
    Ok(cairn_retention::plan(facts, &every, now)?)
}
