//! `cairn-status`: one model of a stanza's operational state, for `cairn metrics`,
//! `cairn check`, and `cairn serve`'s `/healthz`, `/metrics` and status page.
//!
//! [`stanza_status`] reads only catalog objects (stanza info, the backup and WAL
//! catalogs, the newest `verify` and `drill` records), never WAL, manifests or packs, so
//! it is cheap enough to run every minute. From the resulting [`StanzaStatus`]:
//!
//! - [`StanzaStatus::health`] holds it against [`Thresholds`] (`[health]`) and says, one
//!   line per [`Problem`], what is stale;
//! - [`metrics::render`] writes the Prometheus text format ([`metrics::METRICS`] lists
//!   the families, documented in `docs/metrics.md`).
//!
//! `StanzaStatus` and `Health` serialize to JSON (times as RFC 3339) for APIs.
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository, cfg: &cairn_config::Config) -> Result<(), cairn_status::StatusError> {
//! use cairn_status::{Thresholds, UtcTime};
//! let stanza = cairn_repo::StanzaName::new("main").unwrap();
//! let status = cairn_status::stanza_status(repo, &stanza).await?;
//! let health = status.health(&Thresholds::from_config(&cfg.health), UtcTime::now());
//! for reason in health.reasons() {
//!     println!("unhealthy: {reason}");
//! }
//! print!("{}", cairn_status::metrics::render(&[(&status, &health)]));
//! # Ok(()) }
//! ```

mod health;
pub mod metrics;
mod model;
mod records;
mod time;

pub use health::{Health, Problem, ProblemDoc, Thresholds};
pub use model::{
    ArchiveStats, ArchivedSegment, BACKUP_TYPES, BackupStats, LastBackup, StanzaStatus,
    StatusError, TimeSpan, TypeStats, backup_age, stanza_status,
};
pub use records::{RunHistory, RunOutcome, run_history};
pub use time::{UtcTime, human_age};
