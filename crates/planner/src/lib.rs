//! `cairn-planner`: the restore planner. Pure code: backups + WAL catalog + a target in,
//! a [`Plan`] (which backup and why, which WAL per timeline, where recovery stops and on
//! which timeline) or a one-line refusal with the nearest reachable alternative out. It
//! runs before anything is written, so an unreachable target costs the operator seconds,
//! not a restore. Targets are `cairn-target`'s types; `cairn-restore` turns the plan's
//! target and timeline into PostgreSQL settings.
//!
//! ```
//! use cairn_planner::{PlanError, PlanRequest, plan};
//! use cairn_repo::{DbId, WalCatalog};
//! use cairn_target::{RecoveryTarget, TimelineTarget};
//! let request = PlanRequest {
//!     target: RecoveryTarget::Time("2026-11-22 14:05:00+01".parse().unwrap()),
//!     timeline: TimelineTarget::Latest,
//!     set: None,
//!     db_id: DbId(1),
//! };
//! // No backups: refused, with a hint to take one.
//! let refused = plan(&[], &WalCatalog::from_entries(vec![]), &request);
//! assert!(matches!(refused, Err(PlanError::NoBackups)));
//! ```

mod error;
mod plan;
mod window;

pub use cairn_repo::BackupTime;
pub use error::{PageNotLoaded, PlanError};
pub use plan::{Plan, PlanRequest, WalRange, plan};
pub use window::{CommitSpan, RecoveryWindow, commit_spans, recoverable_windows};
