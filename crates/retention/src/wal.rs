//! Which archived WAL the kept backups need, per generation and timeline.
//!
//! Within one generation LSNs are comparable across timelines (a child timeline goes on
//! from its parent's position), so every rule below is an LSN bound. Across generations
//! nothing is compared.
//!
//! For a generation that has backups needing continuous WAL (the "pitr" backups: see
//! [`WalNeed::Continuous`]):
//! - A backup B *reaches* timeline T when T is B's timeline, or T descends from it by a
//!   branch after B's start (T's history lists B's timeline with a switch point above
//!   B's start LSN): recovery from B can follow T.
//! - WAL on T is needed from the start of the oldest pitr backup that reaches T.
//! - A timeline no pitr backup reaches keeps everything from the start of the oldest pitr
//!   backup of the generation on (LSNs are comparable; WAL below that start is useless
//!   to every pitr backup).
//! - In the generation of the newest kept backup, nothing at or after that backup's start
//!   is ever expendable, on any timeline.
//! - Below those bounds, the start-to-stop range of each backup kept only by a tier or a
//!   pin is kept on every timeline that backup reaches (recovery may read the child's
//!   copy of a segment shared with a branch).
//!
//! A generation without pitr backups keeps only those ranges when it is older than the
//! newest kept backup's generation, and keeps everything when it is that generation or
//! newer (a `stanza-upgrade` with no backup yet). When no rule is set, nothing expires.
//!
//! History files: in a generation with kept backups, the `.history` of every timeline at
//! or above the lowest timeline of a kept backup is kept (PostgreSQL looks for the newest
//! timeline by probing `N+1.history`, `N+2.history`, ... and stops at the first gap), and
//! so are the histories of their ancestors.

use std::collections::{BTreeMap, BTreeSet};

use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::{BackupLabel, DbId};

use crate::facts::BackupFacts;
use crate::plan::{RetentionPlan, WalNeed};

/// Each timeline's history, per generation. Timeline 1 (no history file) may be given as
/// [`TimelineHistory::root`] or left out; the ancestors a history lists are filled in.
pub type Histories = BTreeMap<(DbId, TimelineId), TimelineHistory>;

/// A start-to-stop range of a backup kept for consistency only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsnRange {
    pub start: Lsn,
    pub stop: Lsn,
    pub backup: BackupLabel,
}

/// What a generation keeps as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationWal {
    /// Nothing of it expires (no rule set, or the newest generation has no kept backup).
    KeepAll,
    /// Per-timeline bounds from its pitr backups.
    Retained,
    /// An older generation without pitr backups: only consistency ranges are kept.
    RangesOnly,
}

/// What one timeline keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineWal {
    pub generation: GenerationWal,
    /// WAL that ends at or before this LSN is expendable, except for `keep_ranges`.
    /// `Lsn(0)`: nothing is; `Lsn(u64::MAX)`: everything outside the ranges is.
    pub expendable_before: Lsn,
    pub keep_ranges: Vec<LsnRange>,
    /// Whether the timeline's `.history` file is kept.
    pub keep_history: bool,
}

/// The outcome of [`plan_wal`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalPlan {
    timelines: BTreeMap<(DbId, TimelineId), TimelineWal>,
}

impl WalPlan {
    /// Every timeline the plan knows, with what it keeps.
    pub fn timelines(&self) -> impl Iterator<Item = (&(DbId, TimelineId), &TimelineWal)> {
        self.timelines.iter()
    }

    pub fn timeline(&self, db: DbId, tli: TimelineId) -> Option<&TimelineWal> {
        self.timelines.get(&(db, tli))
    }

    /// The LSN before which WAL on this timeline is expendable (outside the ranges);
    /// `Lsn(0)` for a timeline the plan does not know.
    pub fn expendable_before(&self, db: DbId, tli: TimelineId) -> Lsn {
        self.timeline(db, tli)
            .map_or(Lsn::INVALID, |t| t.expendable_before)
    }

    /// Whether the archived file holding WAL `[seg_start, seg_end)` of this timeline (a
    /// segment, `.partial` or `.backup` file) may be deleted. Unknown timelines and empty
    /// or inverted ranges are never expendable.
    pub fn segment_expendable(
        &self,
        db: DbId,
        tli: TimelineId,
        seg_start: Lsn,
        seg_end: Lsn,
    ) -> bool {
        let Some(t) = self.timeline(db, tli) else {
            return false;
        };
        seg_start < seg_end
            && seg_end <= t.expendable_before
            && !t
                .keep_ranges
                .iter()
                .any(|r| seg_start <= r.stop && seg_end > r.start)
    }

    /// Whether this timeline's `.history` file may be deleted (never for an unknown one).
    pub fn history_expendable(&self, db: DbId, tli: TimelineId) -> bool {
        self.timeline(db, tli).is_some_and(|t| !t.keep_history)
    }
}

/// Works out which archived WAL the plan's kept backups need. `histories` should hold
/// every (generation, timeline) the archive has; pure, like [`crate::plan`].
pub fn plan_wal(plan: &RetentionPlan, histories: &Histories) -> WalPlan {
    let kept: Vec<&BackupFacts> = plan
        .kept()
        .filter(|d| d.wal != WalNeed::None)
        .map(|d| &d.backup)
        .collect();
    let need = |b: &BackupFacts| {
        plan.decision(&b.label)
            .map_or(WalNeed::Continuous, |d| d.wal)
    };
    // The newest kept backup (decisions are oldest first).
    let newest = kept.last().copied();
    let all = with_ancestors(histories, &kept);
    let mut out = WalPlan::default();
    let generations: BTreeSet<DbId> = all.keys().map(|(db, _)| *db).collect();
    for db in generations {
        let gen_kept: Vec<&BackupFacts> = kept.iter().copied().filter(|b| b.db_id == db).collect();
        let pitr: Vec<&BackupFacts> = gen_kept
            .iter()
            .copied()
            .filter(|b| need(b) == WalNeed::Continuous)
            .collect();
        let generation = match newest {
            _ if plan.expires_nothing() => GenerationWal::KeepAll,
            None => GenerationWal::KeepAll,
            Some(_) if !pitr.is_empty() => GenerationWal::Retained,
            Some(n) if db >= n.db_id => GenerationWal::KeepAll,
            Some(_) => GenerationWal::RangesOnly,
        };
        let floor = pitr.iter().map(|b| b.start_lsn).min();
        let newest_start = newest.filter(|n| n.db_id == db).map(|n| n.start_lsn);
        let kept_history = history_keepers(&all, db, &gen_kept);
        for ((_, tli), hist) in all.range((db, TimelineId(0))..=(db, TimelineId(u32::MAX))) {
            let cutoff = match generation {
                GenerationWal::KeepAll => Lsn::INVALID,
                GenerationWal::RangesOnly => Lsn(u64::MAX),
                GenerationWal::Retained => {
                    let reached = pitr
                        .iter()
                        .filter(|b| reaches(b, hist))
                        .map(|b| b.start_lsn)
                        .min();
                    let c = reached.or(floor).unwrap_or(Lsn::INVALID);
                    newest_start.map_or(c, |n| c.min(n))
                }
            };
            let keep_ranges = if generation == GenerationWal::KeepAll {
                Vec::new()
            } else {
                gen_kept
                    .iter()
                    .filter(|b| need(b) == WalNeed::Consistency && b.start_lsn < cutoff)
                    .filter(|b| reaches(b, hist))
                    .map(|b| LsnRange {
                        start: b.start_lsn,
                        stop: b.stop_lsn,
                        backup: b.label.clone(),
                    })
                    .collect()
            };
            let keep_history = generation == GenerationWal::KeepAll || kept_history.contains(tli);
            out.timelines.insert(
                (db, *tli),
                TimelineWal {
                    generation,
                    expendable_before: cutoff,
                    keep_ranges,
                    keep_history,
                },
            );
        }
    }
    out
}

/// Whether recovery from `b` can follow the timeline whose history is `hist`.
fn reaches(b: &BackupFacts, hist: &TimelineHistory) -> bool {
    b.timeline == hist.tli
        || hist
            .switchpoint_of(b.timeline)
            .is_some_and(|sp| sp > b.start_lsn)
}

/// The given histories, plus the ancestors they list and the timelines of kept backups
/// (a timeline whose history is missing gets a root history: it reaches nothing else).
fn with_ancestors(histories: &Histories, kept: &[&BackupFacts]) -> Histories {
    let mut all = histories.clone();
    for ((db, _), h) in histories {
        for (i, e) in h.entries.iter().enumerate() {
            all.entry((*db, e.tli)).or_insert_with(|| TimelineHistory {
                tli: e.tli,
                entries: h.entries[..i].to_vec(),
            });
        }
    }
    for b in kept {
        all.entry((b.db_id, b.timeline))
            .or_insert_with(|| TimelineHistory::root(b.timeline));
    }
    all
}

/// The timelines of generation `db` whose history files are kept.
fn history_keepers(all: &Histories, db: DbId, gen_kept: &[&BackupFacts]) -> BTreeSet<TimelineId> {
    let Some(lowest) = gen_kept.iter().map(|b| b.timeline).min() else {
        return BTreeSet::new();
    };
    let mut keep = BTreeSet::new();
    for ((_, tli), h) in all.range((db, lowest)..=(db, TimelineId(u32::MAX))) {
        keep.insert(*tli);
        keep.extend(h.entries.iter().map(|e| e.tli));
    }
    keep
}
