//! [`WalBuilder`]: writes synthetic but valid WAL for tests and fixtures:
//! page headers (long at each segment start), records with correct CRCs and
//! prev-links, continuation flags and `xlp_rem_len` where records cross
//! pages and segments, and XLOG_SWITCH padding.
//!
//! ```
//! use cairn_pgformat::builder::WalBuilder;
//! use cairn_pgformat::{PgTimestamp, XLogSegNo, summarize_segment};
//!
//! let mut wal = WalBuilder::new(XLogSegNo(3));
//! wal.append_commit(740, PgTimestamp(800_000_000_000_000));
//! wal.append_switch();
//! let summary = summarize_segment(&wal.segment(0)).unwrap();
//! assert_eq!(summary.commit_count, 1);
//! assert!(summary.switch);
//! ```

use crate::file_name::SegmentName;
use crate::lsn::{Lsn, XLogSegNo};
use crate::page::{
    LONG_HEADER_LEN, SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER,
    XLogLongPageHeader, XLogPageHeader, page_flag_layout, wal_magic_for_pg_major,
};
use crate::record::rmgr::{RM_XACT_ID, RM_XLOG_ID};
use crate::record::{SIZE_OF_XLOG_RECORD, encode_record, main_data_payload};
use crate::segment::maxalign;
use crate::segment_size::WalSegmentSize;
use crate::timeline::TimelineId;
use crate::timestamp::PgTimestamp;
use crate::xact::{CompletionBody, XactKind};
use crate::xlog::{XLOG_NOOP, XLOG_RESTORE_POINT, XLOG_SWITCH, encode_restore_point};

/// System identifier used unless another is set.
pub const DEFAULT_SYSTEM_IDENTIFIER: u64 = 7_300_000_000_000_000_001;

/// Writes a stream of WAL starting at a segment boundary.
#[derive(Debug, Clone)]
pub struct WalBuilder {
    seg_size: WalSegmentSize,
    page_size: usize,
    system_identifier: u64,
    magic: u16,
    tli: TimelineId,
    first_segment: XLogSegNo,
    /// WAL bytes from the first segment's start.
    buf: Vec<u8>,
    prev: Lsn,
}

impl WalBuilder {
    /// WAL from the start of segment `first_segment`: 16 MiB segments, 8 KiB
    /// pages, PostgreSQL 15's magic, timeline 1.
    pub fn new(first_segment: XLogSegNo) -> Self {
        WalBuilder {
            seg_size: WalSegmentSize::DEFAULT,
            page_size: 8192,
            system_identifier: DEFAULT_SYSTEM_IDENTIFIER,
            magic: wal_magic_for_pg_major(15).expect("known"),
            tli: TimelineId(1),
            first_segment,
            buf: Vec::new(),
            prev: Lsn::INVALID,
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Self)) -> Self {
        assert!(self.buf.is_empty(), "configure the builder before writing");
        f(&mut self);
        self
    }

    /// Segment size (before writing).
    pub fn segment_size(self, seg_size: WalSegmentSize) -> Self {
        self.configure(|b| b.seg_size = seg_size)
    }

    /// WAL page size, a power of two of 1 to 64 KiB (before writing).
    pub fn page_size(self, bytes: u32) -> Self {
        self.configure(|b| b.page_size = bytes as usize)
    }

    /// System identifier for the long headers (before writing).
    pub fn system_identifier(self, id: u64) -> Self {
        self.configure(|b| b.system_identifier = id)
    }

    /// Page magic, i.e. the release to imitate (before writing).
    pub fn magic(self, magic: u16) -> Self {
        self.configure(|b| b.magic = magic)
    }

    /// Timeline for page headers (before writing).
    pub fn timeline(self, tli: TimelineId) -> Self {
        self.configure(|b| b.tli = tli)
    }

    /// Writes later pages with timeline `tli`, as the server does after a
    /// promotion: the new timeline's first segment starts with the parent's
    /// pages and goes on with the new timeline's.
    pub fn continue_on_timeline(&mut self, tli: TimelineId) {
        self.tli = tli;
    }

    /// `xl_prev` of the first record (before writing; default 0/0).
    pub fn prev_link(self, prev: Lsn) -> Self {
        self.configure(|b| b.prev = prev)
    }

    /// The first LSN of the stream.
    pub fn start_lsn(&self) -> Lsn {
        self.first_segment
            .start_lsn(self.seg_size)
            .expect("segment within the WAL space")
    }

    fn lsn_at(&self, offset: usize) -> Lsn {
        Lsn(self.start_lsn().0 + offset as u64)
    }

    fn header_len_at(&self, offset: usize) -> usize {
        if self.lsn_at(offset).segment_offset(self.seg_size) == 0 {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        }
    }

    /// Where the next record will start.
    pub fn next_lsn(&self) -> Lsn {
        let pos = maxalign(self.buf.len());
        if pos.is_multiple_of(self.page_size) {
            self.lsn_at(pos + self.header_len_at(pos))
        } else {
            self.lsn_at(pos)
        }
    }

    /// The LSN just after everything written so far.
    pub fn end_lsn(&self) -> Lsn {
        self.lsn_at(self.buf.len())
    }

    fn page_header(&mut self, rem_len: Option<u32>) {
        let offset = self.buf.len();
        let long = (self.header_len_at(offset) == LONG_HEADER_LEN).then_some(XLogLongPageHeader {
            system_identifier: self.system_identifier,
            seg_size: self.seg_size.bytes(),
            xlog_blcksz: self.page_size as u32,
        });
        // Like the server outside a base backup: XLP_BKP_REMOVABLE on every page.
        let mut info = page_flag_layout(self.magic).bkp_removable.unwrap_or(0);
        if long.is_some() {
            info |= XLP_LONG_HEADER;
        }
        if rem_len.is_some() {
            info |= XLP_FIRST_IS_CONTRECORD;
        }
        let header = XLogPageHeader {
            magic: self.magic,
            info,
            tli: self.tli,
            pageaddr: self.lsn_at(offset),
            rem_len: rem_len.unwrap_or(0),
            long,
        };
        self.buf.extend_from_slice(&header.encode());
    }

    /// Appends a record whose bytes after the 24-byte header are `payload`
    /// (block headers, data headers and data). Returns its LSN.
    pub fn append(&mut self, rmid: u8, info: u8, xid: u32, payload: &[u8]) -> Lsn {
        let lsn = self.next_lsn();
        let record = encode_record(xid, self.prev, info, rmid, payload);
        self.buf.resize(maxalign(self.buf.len()), 0);
        let mut written = 0;
        while written < record.len() {
            if self.buf.len().is_multiple_of(self.page_size) {
                let rem = (written > 0).then(|| (record.len() - written) as u32);
                self.page_header(rem);
            }
            let room = self.page_size - self.buf.len() % self.page_size;
            let n = room.min(record.len() - written);
            self.buf.extend_from_slice(&record[written..written + n]);
            written += n;
        }
        self.prev = lsn;
        lsn
    }

    /// Appends a record with only main data.
    pub fn append_main_data(&mut self, rmid: u8, info: u8, xid: u32, main_data: &[u8]) -> Lsn {
        self.append(rmid, info, xid, &main_data_payload(main_data))
    }

    /// Appends a plain commit of `xid` at `time`.
    pub fn append_commit(&mut self, xid: u32, time: PgTimestamp) -> Lsn {
        let body = CompletionBody {
            time,
            ..CompletionBody::default()
        };
        self.append_xact(XactKind::Commit, false, xid, &body)
    }

    /// Appends a commit or abort record laid out for this builder's release.
    pub fn append_xact(
        &mut self,
        kind: XactKind,
        prepared: bool,
        xid: u32,
        body: &CompletionBody,
    ) -> Lsn {
        let (info, data) = body.encode(kind, prepared, self.magic);
        self.append_main_data(RM_XACT_ID, info, xid, &data)
    }

    /// Appends a restore point.
    pub fn append_restore_point(&mut self, time: PgTimestamp, name: &str) -> Lsn {
        let data = encode_restore_point(time, name);
        self.append_main_data(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &data)
    }

    /// Appends an XLOG_NOOP record of `tot_len` bytes (at least 24, not 25).
    pub fn append_noop(&mut self, tot_len: usize) -> Lsn {
        let payload = tot_len
            .checked_sub(SIZE_OF_XLOG_RECORD)
            .expect("a record is at least 24 bytes");
        let bytes = match payload {
            0 => Vec::new(),
            1 => panic!("a 25-byte record cannot be built"),
            n if n - 2 <= 255 => main_data_payload(&vec![0xAB; n - 2]),
            n => {
                let mut long = main_data_payload(&vec![0xAB; 256]);
                long.resize(n, 0xAB);
                long[1..5].copy_from_slice(&((n - 5) as u32).to_le_bytes());
                long
            }
        };
        self.append(RM_XLOG_ID, XLOG_NOOP, 0, &bytes)
    }

    /// Appends one XLOG_NOOP record sized so that the next record starts at
    /// `target`. Panics when `target` cannot be reached that way (it must
    /// be at least 24 bytes ahead, on a record boundary).
    pub fn fill_to(&mut self, target: Lsn) {
        let start = self.next_lsn();
        let (from, to) = (
            (start.0 - self.start_lsn().0) as usize,
            (target.0 - self.start_lsn().0) as usize,
        );
        // Page headers between here and the target take room from the record.
        let mut headers = 0;
        let mut boundary = (from / self.page_size + 1) * self.page_size;
        while boundary < to {
            headers += self.header_len_at(boundary);
            boundary += self.page_size;
        }
        let len = to - from - headers;
        self.append_noop(len);
        assert_eq!(self.next_lsn(), target, "cannot fill exactly to {target}");
    }

    /// Appends XLOG_SWITCH and pads the rest of its segment with empty
    /// pages, as the server does. Returns the switch record's LSN.
    pub fn append_switch(&mut self) -> Lsn {
        let lsn = self.append(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
        let seg = self.seg_size.bytes() as usize;
        let end = self.buf.len().div_ceil(seg) * seg;
        while self.buf.len() < end {
            if self.buf.len().is_multiple_of(self.page_size) {
                self.page_header(None);
            }
            let next_page = (self.buf.len() / self.page_size + 1) * self.page_size;
            self.buf.resize(next_page, 0);
        }
        lsn
    }

    /// Number of segments the stream touches.
    pub fn segment_count(&self) -> usize {
        self.buf
            .len()
            .div_ceil(self.seg_size.bytes() as usize)
            .max(1)
    }

    /// Segment `index` of the stream as a file: whole size, zero-filled after
    /// the last byte written (like a segment still being written, or a
    /// `.partial` file).
    pub fn segment(&self, index: usize) -> Vec<u8> {
        let seg = self.seg_size.bytes() as usize;
        let from = (index * seg).min(self.buf.len());
        let to = ((index + 1) * seg).min(self.buf.len());
        let mut out = self.buf[from..to].to_vec();
        out.resize(seg, 0);
        out
    }

    /// The file name of segment `index`.
    pub fn segment_name(&self, index: usize) -> SegmentName {
        SegmentName::from_segno(
            self.tli,
            XLogSegNo(self.first_segment.0 + index as u64),
            self.seg_size,
        )
    }
}
