//! `cairn-backup`: takes a base backup into the repository.
//!
//! A [`BackupSource`] yields the files of a base backup as events (the replication
//! client in `cairn-basebackup` is the real one; tests use a scripted one). [`run`] cuts
//! each file into chunks of [`CHUNK_SIZE`] (a multiple of PostgreSQL's 8 KiB page, so a
//! changed page changes one chunk), stores only chunks the stanza does not have yet,
//! packs them, waits until the WAL the backup needs is archived, and writes the manifest
//! last: a backup without its manifest was never taken. When the stream is a PostgreSQL 17+
//! `INCREMENTAL` one ([`RunOptions::incremental_mode`] is `WalSummaries`), each
//! `INCREMENTAL.<file>` is rebuilt on the parent backup's chunks into the complete file, so
//! every manifest stays complete on its own. A backup runs under the stanza's backup lock
//! ([`with_lock`]): one at a time, and no manifest once the lock was lost.
//!
//! Against a live server, a [`Session`] connects, checks the server is the stanza's cluster
//! and negotiates the stream: changed blocks only (PostgreSQL 17+ WAL summaries) when it
//! can, every file otherwise or when the server refuses, reporting the choice through
//! [`StartNotice`]. [`take`] does all of it, lock to manifest, for `cairn backup` and
//! `cairn serve`, telling a [`TakeObserver`] what happens. [`wait_for_wal`] is the one
//! wait for WAL to reach the repository, used by [`run`] and by `cairn check`.
//!
//! ```no_run
//! # async fn demo<S: cairn_backup::BackupSource>(repo: &cairn_repo::Repository, info: &cairn_repo::StanzaInfo, src: &mut S) -> Result<(), cairn_backup::BackupError> {
//! use cairn_backup::{BackupPlan, run};
//! let plan = BackupPlan::prepare(repo, &info.name, None, info.current().db_id, time::OffsetDateTime::now_utc()).await?;
//! let manifest = run(repo, info, &plan, src, &cairn_backup::RunOptions::default()).await?;
//! println!("backup {} stored", manifest.label);
//! # Ok(()) }
//! ```

mod chunker;
mod error;
mod incremental;
mod lock;
mod plan;
mod run;
mod server;
mod session;
mod source;
mod take;
mod wal_wait;

pub use chunker::CHUNK_SIZE;
pub use error::BackupError;
pub use lock::with_lock;
pub use plan::{BackupChoice, BackupPlan};
pub use run::{RunOptions, annotation, run};
pub use server::ServerSource;
pub use session::{Session, StartNotice, Started};
pub use source::{BackupSource, EntryKind, SourceEvent};
pub use take::{Quiet, TakeNotice, TakeObserver, TakeOptions, take};
pub use wal_wait::{segments_between, wait_for_wal};
