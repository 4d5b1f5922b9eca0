//! `cairn-planner`: the restore planner. Pure code: backups + WAL catalog + a target in,
//! a [`Plan`] (which backup and why, which WAL per timeline, which recovery settings) or a
//! one-line refusal with the nearest reachable alternative out. It runs before anything is
//! written, so an unreachable target costs the operator seconds, not a restore.
//!
//! ```
//! use cairn_planner::{Target, parse_target_time};
//! let t = parse_target_time("2026-11-22 14:05:00+01").unwrap();
//! assert_eq!(t.to_pg_setting(), "2026-11-22 13:05:00.000000+00");
//! assert!(parse_target_time("2026-11-22 14:05:00").is_err()); // no offset: refused
//! let _ = Target::Time(t);
//! ```

mod error;
mod plan;
mod target;
mod window;

pub use error::PlanError;
pub use plan::{Plan, PlanRequest, WalRange, plan};
pub use target::{Target, TargetTime, TimelineTarget, parse_target_time};
pub use window::{RecoveryWindow, recoverable_windows};
