//! `cairn-restore`: the restore executor. Given one backup's manifest, it writes the
//! backup into a data directory (and its tablespace directories) and sets it up for
//! PostgreSQL to recover: `backup_label`, recovery settings in `postgresql.auto.conf`,
//! and `recovery.signal` or `standby.signal`. Which backup to restore, and which WAL it
//! needs, is the planner's business (`cairn-planner`); [`RestoreSource`] reads what the
//! planner works on (stanza info, backup and WAL catalogs) once, plans, and fetches the
//! chosen manifest, passing over one found damaged: `cairn restore` and `cairn drill`
//! both plan through it.
//!
//! Safety comes first, because an operator runs this on a bad day:
//!
//! - **Refuse before writing.** Every manifest path ([`check_manifest_paths`]), the data
//!   directory (missing or empty, no `postmaster.pid`), every tablespace directory
//!   (absolute, missing or empty, outside the data directory) and the recovery settings
//!   are checked first; a refusal leaves the disk as it was.
//! - **Write only where told.** Only the data directory and the tablespace directories are
//!   written, whatever the manifest says; no link is followed while writing, and the
//!   only links created are `pg_tblspc/OID` (decision 006).
//! - **Verify everything.** Each chunk is authenticated and checked against its content
//!   id by the repository; chunk and file sizes are checked against the manifest.
//! - **No half-restored cluster can start.** Data first (each file fsynced, then every
//!   directory), then `backup_label`, `postgresql.auto.conf` and the signal file, and
//!   `global/pg_control` last; until then `cairn-restore.incomplete` marks the directory.
//!
//! Files are restored concurrently with chunks fetched and decoded on other tasks, so
//! every core works, while memory stays bounded: a file is written chunk by chunk.
//!
//! With [`RestoreOptions::delta`], an existing (stopped) data directory is brought to the
//! backup's state instead: its control file is moved aside first, whatever the backup
//! lacks is removed, and only chunks whose content id differs from what is on disk are
//! fetched and written.
//!
//! The recovery settings are typed ([`RecoverySettings`]: a `cairn-target` target, action
//! and timeline, a [`RestoreCommand`], an [`ArchiveMode`]); this crate renders and quotes
//! them. [`check_restore`] runs every check without writing, for `--dry-run`;
//! [`RestoreSource`] chooses the backup (through the planner) and [`DryRun`] is the plan's
//! JSON document.
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository, stanza: &cairn_repo::StanzaName)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_restore::{ArchiveMode, RecoverySettings, RestoreCommand, RestoreOptions, restore_backup};
//! use cairn_target::{RecoveryTarget, TargetAction};
//! let manifest = repo.backups(stanza).await?.pop().expect("a backup");
//! let command = RestoreCommand::archive_get(None, "/etc/cairn/cairn.toml".as_ref(), stanza);
//! let recovery = RecoverySettings {
//!     target: RecoveryTarget::Immediate,
//!     action: Some(TargetAction::Promote),
//!     archive_mode: ArchiveMode::Off,
//!     ..RecoverySettings::new(command)
//! };
//! let mut opts = RestoreOptions::new("/var/lib/postgresql/15/restored", recovery);
//! opts.tablespace_map.insert(16384, "/srv/restored-ts".into());
//! cairn_restore::check_restore(&manifest, &opts)?; // what --dry-run does
//! let report = restore_backup(repo, stanza, &manifest, &opts).await?;
//! println!("{} files, {} bytes", report.files, report.bytes_written);
//! # Ok(()) }
//! ```

mod archiving;
mod delta;
mod destination;
mod dry_run;
mod error;
mod executor;
mod file;
mod layout;
mod options;
mod recovery;
mod report;
mod restore_command;
mod source;
mod tree;

pub use archiving::{ArchiveMode, Archiving};
pub use dry_run::{DryRun, PlanDoc, TimeDoc, WalRangeDoc, archive_mode_name};
pub use error::{PathProblem, RestoreError, TablespaceProblem};
pub use executor::{check_restore, restore_backup};
pub use file::READ_AHEAD;
pub use layout::{INCOMPLETE_MARKER, NOT_RESTORED, check_manifest_paths};
pub use options::{RestoreOptions, RestoreProgress};
pub use recovery::{MARKER as AUTO_CONF_MARKER, RecoverySettings, quote as quote_setting};
pub use report::RestoreReport;
pub use restore_command::{RestoreCommand, sh_quote};
pub use source::{PlannedRestore, RestoreSource};
