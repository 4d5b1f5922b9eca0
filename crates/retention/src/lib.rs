//! `cairn-retention`: which backups and which archived WAL `[retention]` keeps. Pure
//! functions, no I/O and no clock: `expire` gathers the facts, calls [`plan`] and
//! [`plan_wal`], prints the plan for `--dry-run`, and only then deletes.
//!
//! - [`plan`] takes every backup's [`BackupFacts`], the [`RetentionRules`] and `now`,
//!   and returns a [`RetentionPlan`]: keep or drop for each backup, with every
//!   [`KeepReason`] that keeps it, and the [`WalNeed`] of each kept one.
//! - [`plan_wal`] turns the plan and each timeline's history into a [`WalPlan`]: per
//!   generation and timeline, the LSN before which WAL is expendable, the start-to-stop
//!   ranges that stay for backups kept only by a tier or a pin, and which `.history`
//!   files stay. [`WalPlan::segment_expendable`] answers per archived file.
//!
//! A backup is kept when any rule keeps it; with no rule set nothing expires; pinned
//! backups never expire; damaged ones count toward no rule and go only by
//! `expire --set`. The rules in detail: docs/decisions/013-retention-rules.md.
//!
//! ```
//! use cairn_pgformat::{Lsn, TimelineId};
//! use cairn_repo::{BackupLabel, BackupType, DbId};
//! use cairn_retention::{BackupFacts, RetentionRules, plan, plan_wal};
//! use time::macros::datetime;
//!
//! let backup = |label: &str, kind, parent: Option<&str>, lsn: u64, at| BackupFacts {
//!     label: BackupLabel::new(label).unwrap(),
//!     backup_type: kind,
//!     parent: parent.map(|p| BackupLabel::new(p).unwrap()),
//!     db_id: DbId(1),
//!     timeline: TimelineId(1),
//!     start_lsn: Lsn(lsn),
//!     stop_lsn: Lsn(lsn + 100),
//!     start_time: at,
//!     stop_time: at,
//!     pinned: false,
//!     usable: true,
//! };
//! let backups = [
//!     backup("20261101-010000F", BackupType::Full, None, 1000, datetime!(2026-11-01 01:00 UTC)),
//!     backup("20261108-010000F", BackupType::Full, None, 2000, datetime!(2026-11-08 01:00 UTC)),
//!     backup("20261108-010000F_20261109-010000I", BackupType::Incr,
//!            Some("20261108-010000F"), 3000, datetime!(2026-11-09 01:00 UTC)),
//! ];
//! let rules = RetentionRules { full: Some(1), ..Default::default() };
//! let p = plan(&backups, &rules, datetime!(2026-11-10 00:00 UTC)).unwrap();
//! let dropped: Vec<_> = p.dropped().map(|d| d.backup.label.as_str()).collect();
//! assert_eq!(dropped, ["20261101-010000F"]);
//!
//! // WAL on timeline 1 is needed from the kept full's start on.
//! let wal = plan_wal(&p, &Default::default());
//! assert_eq!(wal.expendable_before(DbId(1), TimelineId(1)), Lsn(2000));
//! assert!(wal.segment_expendable(DbId(1), TimelineId(1), Lsn(0), Lsn(2000)));
//! assert!(!wal.segment_expendable(DbId(1), TimelineId(1), Lsn(1999), Lsn(2100)));
//! ```

mod count;
mod facts;
mod plan;
mod tiers;
mod wal;

pub use facts::{BackupFacts, RetentionRules, RulesError};
pub use plan::{Decision, KeepReason, RetentionPlan, WalNeed, plan};
pub use tiers::{Period, Tier};
pub use wal::{GenerationWal, Histories, LsnRange, TimelineWal, WalPlan, plan_wal};
