//! `cairn-drill`: the restore test (`cairn drill`). A backup that was never restored is
//! untrusted; a drill restores one into a scratch directory, starts PostgreSQL on it,
//! waits for recovery to reach its target, runs a sanity query and the operator's query,
//! records the outcome in the repository and removes what it made.
//!
//! - **Same restore as `cairn restore`.** The target is planned by `cairn-planner` and the
//!   backup restored by `cairn-restore` ([`cairn_restore::RestoreSource`]), with
//!   `archive_mode = off`, every tablespace relocated into the scratch directory and the
//!   `restore_command` the caller gives (`cairn-archive-get`).
//! - **A private server.** `postgres` of the backup's major version (`pg-bin`, else `PATH`)
//!   runs as a child of cairn, as the user running cairn (never root), with its settings on
//!   the command line: a free port on 127.0.0.1, a Unix socket in a 0700 directory, its
//!   own `pg_hba.conf`, `archive_mode = off`, the log in the scratch directory.
//! - **Targets** ([`DrillTarget`], docs/decisions/022-drill.md). To the end of the archive,
//!   PostgreSQL replays every archived segment and promotes the copy (nothing is archived);
//!   the drill checks it got to the last segment and the last commit the catalog lists. At
//!   a time (given, or drawn from a recoverable window), recovery pauses there; the drill
//!   checks no later commit was replayed.
//! - **Failures say why**: the WAL segment the archive could not deliver, the query that
//!   returned nothing, or the end of the server's log ([`DrillError`]).
//! - **Configured** by [`DrillOptions::from_config`] (`pg-bin`, `pg-user`, `pg-database`,
//!   `spool-path`), which `cairn drill` and a scheduler both start from.
//! - **Recorded** as a `drill` record ([`DrillRecord`], [`last_drill`]) for `info`, metrics
//!   and the status page; the server is stopped and the scratch directory removed whatever
//!   happened (also on SIGINT/SIGTERM), unless `keep` leaves it ([`KeptCopy`]).
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository, stanza: &cairn_repo::StanzaName)
//! #     -> Result<(), cairn_drill::DrillError> {
//! use std::time::Duration;
//! use cairn_drill::{ConnectAs, DrillOptions, DrillTarget, ScratchDir, drill};
//! use cairn_restore::RestoreCommand;
//! let opts = DrillOptions {
//!     target: DrillTarget::Random,
//!     sql: Some("SELECT 1 FROM orders LIMIT 1".into()),
//!     keep: false,
//!     scratch: ScratchDir::Under("/var/spool/cairn".into()),
//!     pg_bin: Some("/usr/lib/postgresql/15/bin".into()),
//!     restore_command: RestoreCommand::archive_get(None, "/etc/cairn/cairn.toml".as_ref(), stanza),
//!     connect: ConnectAs { user: "postgres".into(), database: "postgres".into() },
//!     timeout: Duration::from_secs(3600),
//! };
//! let report = drill(repo, stanza, &opts).await?;
//! match &report.failure {
//!     None => println!("passed: reached {:?}", report.record.reached),
//!     Some(why) => println!("failed: {why}"),
//! }
//! # Ok(()) }
//! ```

mod binaries;
mod error;
mod record;
mod run;
mod scratch;
mod server;
mod server_log;
mod session;
mod target;

pub use binaries::PgBinaries;
pub use error::DrillError;
pub use record::{
    DrillRecord, DrillStatus, ReachedPoint, RecoveryEnd, TargetKind, WindowRecord, last_drill,
    last_successful_drill,
};
pub use run::{DEFAULT_TIMEOUT, DrillOptions, DrillReport, KeptCopy, drill};
pub use scratch::ScratchDir;
pub use server::ServerSettings;
pub use session::ConnectAs;
pub use target::DrillTarget;
