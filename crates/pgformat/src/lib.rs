//! Every PostgreSQL byte format cairn reads or writes, as plain parsers over
//! `&[u8]`: no I/O happens in this crate.
//!
//! - Positions and names: [`Lsn`] (`0/16B3748`), [`TimelineId`],
//!   [`WalSegmentSize`], [`XLogSegNo`], segment and other archived file
//!   names ([`SegmentName`], [`WalFileName`]), [`PgTimestamp`].
//! - WAL: page headers ([`page`]), records and their CRC ([`record`]), a
//!   reader over one segment file ([`segment`]), records split between two
//!   segments ([`fragment`]), commit/abort and XLOG records ([`xact`],
//!   [`xlog`]), and the per-segment [`summary`] the archive stores so that
//!   recovery can be planned without reading WAL again.
//! - Cluster files: timeline `.history` files ([`history`]), the start of
//!   `pg_control` and `PG_VERSION` ([`control`]).
//! - Base backups: the ustar streams of `BASE_BACKUP` ([`tar`]), `backup_label`
//!   ([`backup_label`]), PostgreSQL's `backup_manifest` ([`backup_manifest`]) and the
//!   PostgreSQL 17+ `INCREMENTAL.*` files ([`incremental`]).
//! - [`builder`]: synthetic WAL for tests of this and other crates.
//!
//! Layouts follow PostgreSQL 15 to 18 (the page magic tells them apart,
//! see [`page::pg_major_for_wal_magic`]); comments name the C function or
//! struct each piece follows.
//!
//! ```
//! use cairn_pgformat::builder::WalBuilder;
//! use cairn_pgformat::{Lsn, PgTimestamp, WalFileName, XLogSegNo, summarize_segment};
//!
//! // A segment with one commit and a restore point, ended by pg_switch_wal().
//! let mut wal = WalBuilder::new(XLogSegNo(1));
//! wal.append_commit(735, "2026-11-22T14:05:00Z".parse::<PgTimestamp>().unwrap());
//! let rp = wal.append_restore_point(PgTimestamp(0), "before-upgrade");
//! wal.append_switch();
//!
//! let name: WalFileName = wal.segment_name(0).to_string().parse().unwrap();
//! assert_eq!(name.to_string(), "000000010000000000000001");
//!
//! let summary = summarize_segment(&wal.segment(0)).unwrap();
//! assert_eq!(summary.start_lsn, "0/1000000".parse::<Lsn>().unwrap());
//! assert_eq!((summary.min_xid, summary.commit_count), (Some(735), 1));
//! assert_eq!(summary.restore_points[0].lsn, rp);
//! assert_eq!(summary.restore_points[0].name, "before-upgrade");
//! assert!(summary.switch && summary.is_complete());
//! ```

pub mod backup_label;
pub mod backup_manifest;
pub mod builder;
pub mod control;
mod error;
mod file_name;
pub mod fragment;
pub mod history;
pub mod incremental;
mod lsn;
pub mod page;
pub mod record;
pub mod segment;
mod segment_size;
pub mod summary;
pub mod tar;
mod timeline;
mod timestamp;
pub mod xact;
pub mod xlog;

pub use error::WalError;
pub use file_name::{NameError, NameProblem, SegmentName, WalFileName};
pub use fragment::{PartialRecord, complete_record};
pub use lsn::{Lsn, LsnParseError, XLogSegNo};
pub use record::WalRecord;
pub use segment::{WalEnd, WalSegmentReader};
pub use segment_size::{SegmentSizeError, WalSegmentSize};
pub use summary::{SegmentSummary, summarize_segment};
pub use timeline::{TimelineId, TimelineParseError};
pub use timestamp::{PgTimestamp, TimestampParseError};
pub use xact::{XactCompletion, XactKind, parse_xact_completion};
pub use xlog::{RestorePoint, parse_restore_point};
