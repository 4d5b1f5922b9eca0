//! The retention plan: for every backup, keep or drop, every reason that keeps it, and
//! what WAL it needs.

use std::collections::HashSet;
use std::fmt;

use cairn_repo::{BackupLabel, DbId};
use time::OffsetDateTime;

use crate::facts::{BackupFacts, RetentionRules, RulesError};
use crate::tiers::{self, Period};

/// Why a backup is kept. A kept backup lists every reason that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// One of the `full = N` newest usable fulls (rank 1 is the newest).
    FullCount { rank: u32 },
    /// A diff or incr of a full that `full = N` keeps (without a `diff` limit, or an
    /// incr whose diff the limit keeps).
    ChainOfKeptFull { full: BackupLabel },
    /// One of the `diff = N` newest diffs of a kept full.
    DiffCount { full: BackupLabel, rank: u32 },
    /// A diff or incr whose full is damaged or gone, newer than the oldest full that
    /// `full = N` keeps (or kept because fewer than N usable fulls exist).
    OrphanOfKeptRange,
    /// The newest backup that stopped at or before the recovery window's start: PITR to
    /// the window's first moment starts from it.
    RecoveryWindowStart,
    /// A backup after [`KeepReason::RecoveryWindowStart`] (or, when no backup stopped
    /// before the window, any backup).
    RecoveryWindow,
    /// The newest backup of a tier's period (`keep-daily`, ...).
    Tier(Period),
    /// Pinned: never expires.
    Pinned,
    /// The manifest is damaged: counted by no rule, dropped only by `expire --set`.
    Damaged,
    /// No retention rule is set, so nothing expires.
    NoRules,
}

impl KeepReason {
    /// Whether this reason asks for continuous WAL from the backup's start on.
    fn needs_pitr(&self) -> bool {
        matches!(
            self,
            KeepReason::FullCount { .. }
                | KeepReason::ChainOfKeptFull { .. }
                | KeepReason::DiffCount { .. }
                | KeepReason::OrphanOfKeptRange
                | KeepReason::RecoveryWindowStart
                | KeepReason::RecoveryWindow
                | KeepReason::NoRules
        )
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::FullCount { rank } => write!(f, "full #{rank}"),
            KeepReason::ChainOfKeptFull { full } => write!(f, "chain of kept full {full}"),
            KeepReason::DiffCount { full, rank } => write!(f, "diff #{rank} of {full}"),
            KeepReason::OrphanOfKeptRange => {
                f.write_str("its full is damaged or gone; newer than the oldest kept full")
            }
            KeepReason::RecoveryWindowStart => f.write_str("recovery window start"),
            KeepReason::RecoveryWindow => f.write_str("recovery window"),
            KeepReason::Tier(p @ Period::Day(_)) => write!(f, "daily {p}"),
            KeepReason::Tier(p @ Period::Week { .. }) => write!(f, "weekly {p}"),
            KeepReason::Tier(p @ Period::Month { .. }) => write!(f, "monthly {p}"),
            KeepReason::Tier(p @ Period::Year(_)) => write!(f, "yearly {p}"),
            KeepReason::Pinned => f.write_str("pinned"),
            KeepReason::Damaged => f.write_str("damaged (only expire --set drops it)"),
            KeepReason::NoRules => f.write_str("no retention rule set"),
        }
    }
}

/// What archived WAL a kept backup needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalNeed {
    /// Dropped, or damaged: nothing.
    None,
    /// Its start to its stop, to reach consistency (kept only by tiers or a pin).
    Consistency,
    /// Everything from its start on, for point-in-time recovery.
    Continuous,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub backup: BackupFacts,
    /// Empty: the backup is dropped.
    pub reasons: Vec<KeepReason>,
    pub wal: WalNeed,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The outcome of [`plan`]: one decision per backup, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    decisions: Vec<Decision>,
    expires_nothing: bool,
}

impl RetentionPlan {
    /// Every decision, oldest backup first (by start time, then label).
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    pub fn decision(&self, label: &BackupLabel) -> Option<&Decision> {
        self.decisions.iter().find(|d| &d.backup.label == label)
    }

    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep())
    }

    pub fn dropped(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep())
    }

    /// `true` when no rule is set: no backup and no WAL expires.
    pub fn expires_nothing(&self) -> bool {
        self.expires_nothing
    }

    /// The oldest backup of generation `db` that needs continuous WAL: archived WAL of
    /// that generation is kept from its start on (see [`crate::plan_wal`]).
    pub fn pitr_base(&self, db: DbId) -> Option<&BackupLabel> {
        self.decisions
            .iter()
            .find(|d| d.wal == WalNeed::Continuous && d.backup.db_id == db)
            .map(|d| &d.backup.label)
    }
}

/// Decides which backups `rules` keep at time `now`. Pure: no I/O, no clock.
///
/// - `full = N`, `diff = N`: see the `count` rules (chains of the N newest fulls).
/// - `recovery-window = D`: the newest usable backup whose stop time is at or before
///   `now - D`, and every backup after it; all of them when none stopped that early.
/// - tiers: the newest backup of each of the N most recent periods that have one.
/// - Pinned backups are always kept; damaged ones are kept, counted by no rule.
/// - Rules count over the whole stanza, across generations: after `stanza-upgrade` the
///   old generation's backups age out as the new one's arrive.
pub fn plan(
    backups: &[BackupFacts],
    rules: &RetentionRules,
    now: OffsetDateTime,
) -> Result<RetentionPlan, RulesError> {
    rules.validate()?;
    let mut seen = HashSet::new();
    if let Some(b) = backups.iter().find(|b| !seen.insert(&b.label)) {
        return Err(RulesError::DuplicateLabel(b.label.clone()));
    }
    let mut sorted: Vec<&BackupFacts> = backups.iter().collect();
    sorted.sort_by(|a, b| (a.start_time, &a.label).cmp(&(b.start_time, &b.label)));
    let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); sorted.len()];

    let expires_nothing = rules.is_empty();
    if expires_nothing {
        for r in reasons.iter_mut() {
            r.push(KeepReason::NoRules);
        }
    }
    if let Some(n) = rules.full {
        crate::count::apply(&sorted, n, rules.diff, &mut reasons);
    }
    if let Some(window) = rules.recovery_window {
        recovery_window(&sorted, window, now, &mut reasons);
    }
    for (tier, n) in rules.tiers() {
        if let Some(n) = n {
            tiers::apply(&sorted, tier, n, &mut reasons);
        }
    }
    for (b, r) in sorted.iter().zip(reasons.iter_mut()) {
        if b.pinned {
            r.push(KeepReason::Pinned);
        }
        if !b.usable {
            r.push(KeepReason::Damaged);
        }
    }

    let mut decisions: Vec<Decision> = sorted
        .iter()
        .zip(reasons)
        .map(|(b, reasons)| {
            let wal = if !b.usable || reasons.is_empty() {
                WalNeed::None
            } else if reasons.iter().any(KeepReason::needs_pitr) {
                WalNeed::Continuous
            } else {
                WalNeed::Consistency
            };
            Decision {
                backup: (*b).clone(),
                reasons,
                wal,
            }
        })
        .collect();
    // Without a rule that asks for PITR, the newest backup is still its base: WAL after
    // it is what any later backup or recovery to the end needs.
    if !rules.has_pitr_rule()
        && let Some(newest) = decisions
            .iter_mut()
            .rev()
            .find(|d| d.keep() && d.backup.usable)
    {
        newest.wal = WalNeed::Continuous;
    }
    Ok(RetentionPlan {
        decisions,
        expires_nothing,
    })
}

fn recovery_window(
    sorted: &[&BackupFacts],
    window: std::time::Duration,
    now: OffsetDateTime,
    reasons: &mut [Vec<KeepReason>],
) {
    let boundary = time::Duration::try_from(window)
        .ok()
        .and_then(|w| now.checked_sub(w));
    let anchor = boundary.and_then(|start| {
        (0..sorted.len())
            .rev()
            .find(|&i| sorted[i].usable && sorted[i].stop_time <= start)
    });
    for (i, b) in sorted.iter().enumerate() {
        if !b.usable {
            continue;
        }
        match anchor {
            Some(a) if i == a => reasons[i].push(KeepReason::RecoveryWindowStart),
            Some(a) if i < a => {}
            _ => reasons[i].push(KeepReason::RecoveryWindow),
        }
    }
}
