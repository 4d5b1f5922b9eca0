//! [`WalError`]: why bytes are not a usable WAL segment, page or record.
//!
//! None of these are retryable: the same bytes give the same answer. The
//! problems that merely end the valid WAL inside a segment (a torn record in
//! a `.partial` file, zeroes after the last record) are not errors; the
//! segment reader reports them as [`crate::segment::WalEnd`].

use crate::lsn::Lsn;
use crate::page::PageProblem;
use crate::record::RecordProblem;
use crate::segment_size::SegmentSizeError;

/// Bytes that are not a WAL segment, page header or record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// Fewer bytes than the structure needs.
    #[error("{what} needs {needed} bytes, found {found}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes available.
        found: usize,
    },
    /// The first page header is not a valid long header of a segment start.
    #[error("not a WAL segment: first page header: {problem}")]
    FirstPage {
        /// What is wrong with it.
        problem: PageProblem,
    },
    /// The segment size in the long page header is not one PostgreSQL allows.
    #[error("not a WAL segment: {0}")]
    SegmentSize(#[from] SegmentSizeError),
    /// The WAL block size in the long page header is not one PostgreSQL allows.
    #[error(
        "not a WAL segment: WAL block size {size} is not a power of two from 1 KiB to 64 KiB dividing the segment size"
    )]
    BlockSize {
        /// `xlp_xlog_blcksz` as found.
        size: u32,
    },
    /// The file is not exactly one segment long.
    #[error("WAL segment is {found} bytes, but its header says segments are {expected} bytes")]
    FileSize {
        /// Segment size from the header.
        expected: u32,
        /// Length of the bytes given.
        found: usize,
    },
    /// A record that cannot be decoded.
    #[error("WAL record at {lsn}: {problem}")]
    Record {
        /// Where the record starts.
        lsn: Lsn,
        /// What is wrong with it.
        problem: RecordProblem,
    },
}

impl WalError {
    /// Always `false`: reading the same bytes again gives the same error.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
