//! [`WalSegmentReader`]: walks the records of one WAL segment file, the way
//! XLogDecodeNextRecord() reads them, without any I/O.
//!
//! The reader yields every valid record whose header begins in the segment.
//! The continuation of a record begun in the previous segment is skipped (and
//! kept as the *head* fragment); a record that runs into the next segment is
//! kept as the *tail* fragment, so two consecutive segments can be stitched
//! with [`crate::fragment::complete_record`]. The first record that fails
//! validation ends the segment's valid WAL: that is how a `.partial` file or
//! a segment still being written ends, so it is reported as a [`WalEnd`],
//! not an error.

use crate::error::WalError;
use crate::fragment::{MAX_FRAGMENT_LEN, PartialRecord};
use crate::lsn::Lsn;
use crate::page::{
    LONG_HEADER_LEN, MagicExpectation, PageFlagLayout, PageProblem, XLP_LONG_HEADER,
    XLogPageHeader, is_plausible_wal_magic, page_flag_layout,
};
use crate::record::{
    RecordProblem, SIZE_OF_XLOG_RECORD, WalRecord, XLogRecord, main_data_of, record_crc,
    rmgr::RM_XLOG_ID, rmgr_id_is_valid,
};
use crate::segment_size::WalSegmentSize;
use crate::timeline::TimelineId;
use crate::xlog::XLOG_SWITCH;

/// MAXALIGN on the platforms PostgreSQL runs on: records start on 8 bytes.
pub(crate) const MAXALIGN: usize = 8;

pub(crate) fn maxalign(n: usize) -> usize {
    (n + MAXALIGN - 1) & !(MAXALIGN - 1)
}

/// Why the valid WAL of a segment ended where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalEnd {
    /// Records ran to the end of the segment (possibly into the next one).
    SegmentEnd,
    /// An XLOG_SWITCH record at `lsn`; the rest of the segment is padding.
    Switch {
        /// The switch record.
        lsn: Lsn,
    },
    /// No record at `at`: zeroes or an invalid record. For a `.partial`
    /// file or the segment being written this is the normal end.
    Record {
        /// Where a record was expected.
        at: Lsn,
        /// What was found.
        problem: RecordProblem,
    },
    /// A page header that does not belong: typically the stale contents of
    /// a recycled segment after the last page written.
    Page {
        /// The page.
        page: Lsn,
        /// What is wrong with its header.
        problem: PageProblem,
    },
}

/// A record found in the segment, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Where it starts.
    pub lsn: Lsn,
    /// Where it ends (see [`WalRecord::end_lsn`]).
    pub end_lsn: Lsn,
    /// The fixed header.
    pub header: XLogRecord,
    /// The whole record, page headers removed.
    pub bytes: &'a [u8],
    /// Its main data.
    pub main_data: &'a [u8],
}

impl RecordRef<'_> {
    /// An owned copy, tagged with the segment's page magic.
    pub fn to_record(&self, wal_magic: u16) -> WalRecord {
        WalRecord {
            lsn: self.lsn,
            end_lsn: self.end_lsn,
            prev: self.header.prev,
            xid: self.header.xid,
            rmid: self.header.rmid,
            info: self.header.info,
            main_data: self.main_data.to_vec(),
            wal_magic,
        }
    }
}

/// Reads the records of one whole segment (or `.partial`) file.
///
/// Iterate it (or call [`next_record`](Self::next_record) to avoid copies);
/// once exhausted, [`end`](Self::end), [`end_of_wal`](Self::end_of_wal),
/// [`tail`](Self::tail) and [`switched`](Self::switched) describe how the
/// segment ended.
#[derive(Debug)]
pub struct WalSegmentReader<'a> {
    bytes: &'a [u8],
    first_page: XLogPageHeader,
    seg_size: WalSegmentSize,
    page_size: usize,
    start: Lsn,
    magic: u16,
    flags: PageFlagLayout,
    /// Offset of the next record, or of a page boundary.
    pos: usize,
    /// Start of the last valid record, for the xl_prev check.
    prev: Option<Lsn>,
    last_tli: TimelineId,
    head: Option<Vec<u8>>,
    head_len: u32,
    tail: Option<PartialRecord>,
    end: Option<WalEnd>,
    end_of_wal: Lsn,
    scratch: Vec<u8>,
}

impl<'a> WalSegmentReader<'a> {
    /// Checks the first page's long header and that `bytes` is exactly one
    /// segment, then skips the continuation of the previous segment's last
    /// record.
    pub fn new(bytes: &'a [u8]) -> Result<Self, WalError> {
        let first_page = XLogPageHeader::parse(bytes)?;
        let first = |problem| WalError::FirstPage { problem };
        if !is_plausible_wal_magic(first_page.magic) {
            return Err(first(PageProblem::Magic {
                found: first_page.magic,
                expected: MagicExpectation::AnyWal,
            }));
        }
        let flags = page_flag_layout(first_page.magic);
        if first_page.info & !flags.all != 0 {
            return Err(first(PageProblem::InfoBits {
                info: first_page.info,
            }));
        }
        let long = first_page.long.ok_or(first(PageProblem::NotLong {
            info: first_page.info,
        }))?;
        let seg_size = WalSegmentSize::new(long.seg_size)?;
        let blcksz = long.xlog_blcksz;
        if !blcksz.is_power_of_two()
            || !(1024..=65536).contains(&blcksz)
            || blcksz > seg_size.bytes()
        {
            return Err(WalError::BlockSize { size: blcksz });
        }
        if bytes.len() != seg_size.bytes() as usize {
            return Err(WalError::FileSize {
                expected: seg_size.bytes(),
                found: bytes.len(),
            });
        }
        if first_page.pageaddr.segment_offset(seg_size) != 0 {
            return Err(first(PageProblem::NotSegmentStart {
                pageaddr: first_page.pageaddr,
            }));
        }
        if first_page.tli.0 == 0 {
            return Err(first(PageProblem::ZeroTimeline));
        }
        let mut reader = WalSegmentReader {
            bytes,
            first_page,
            seg_size,
            page_size: blcksz as usize,
            start: first_page.pageaddr,
            magic: first_page.magic,
            flags,
            pos: LONG_HEADER_LEN,
            prev: None,
            last_tli: first_page.tli,
            head: None,
            head_len: 0,
            tail: None,
            end: None,
            end_of_wal: first_page.pageaddr,
            scratch: Vec::new(),
        };
        reader.skip_head();
        Ok(reader)
    }

    /// The first page's header.
    pub fn first_page(&self) -> &XLogPageHeader {
        &self.first_page
    }

    /// The highest `xlp_tli` among the pages read so far. The first segment
    /// of a new timeline starts with a copy of its parent's last segment, page
    /// headers included, so its first pages (possibly all of them, in a
    /// `.partial` file) carry the parent's timeline: only the file name tells
    /// a segment's timeline for sure.
    pub fn last_page_timeline(&self) -> TimelineId {
        self.last_tli
    }

    /// The segment size from the long header.
    pub fn seg_size(&self) -> WalSegmentSize {
        self.seg_size
    }

    /// The WAL page size from the long header.
    pub fn page_size(&self) -> u32 {
        self.page_size as u32
    }

    /// The first LSN of the segment.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The continuation of the previous segment's last record, when the
    /// whole remainder is at most 64 KiB and intact.
    pub fn head(&self) -> Option<&[u8]> {
        self.head.as_deref()
    }

    /// Bytes of the previous segment's last record that continue here
    /// (`xlp_rem_len` of the first page; 0 when the segment starts with a record).
    pub fn head_len(&self) -> u32 {
        self.head_len
    }

    /// The record that begins here and continues in the next segment.
    /// Known once the reader is exhausted.
    pub fn tail(&self) -> Option<&PartialRecord> {
        self.tail.as_ref()
    }

    /// Why the valid WAL ended, once the reader is exhausted.
    pub fn end(&self) -> Option<WalEnd> {
        self.end
    }

    /// Whether the segment ended with XLOG_SWITCH.
    pub fn switched(&self) -> bool {
        matches!(self.end, Some(WalEnd::Switch { .. }))
    }

    /// The end of the valid WAL seen so far: the end of the last valid
    /// record (the segment's end after XLOG_SWITCH or when a record runs
    /// into the next segment). The segment's contents are valid WAL from its
    /// start up to here.
    pub fn end_of_wal(&self) -> Lsn {
        self.end_of_wal
    }

    fn lsn_at(&self, offset: usize) -> Lsn {
        Lsn(self.start.0 + offset as u64)
    }

    fn seg_end(&self) -> Lsn {
        self.lsn_at(self.bytes.len())
    }

    /// Validates the header of the page at `offset` (not the first page) as
    /// XLogReaderValidatePageHeader() does.
    fn page_at(&mut self, offset: usize) -> Result<XLogPageHeader, PageProblem> {
        let h = XLogPageHeader::parse(&self.bytes[offset..])
            .map_err(|_| PageProblem::NotLong { info: 0 })?;
        if h.magic != self.magic {
            return Err(PageProblem::Magic {
                found: h.magic,
                expected: MagicExpectation::Same(self.magic),
            });
        }
        if h.info & !self.flags.all != 0 {
            return Err(PageProblem::InfoBits { info: h.info });
        }
        if h.info & XLP_LONG_HEADER != 0 && h.long != self.first_page.long {
            return Err(PageProblem::LongHeaderMismatch);
        }
        let expected = self.lsn_at(offset);
        if h.pageaddr != expected {
            return Err(PageProblem::PageAddr {
                expected,
                found: h.pageaddr,
            });
        }
        if h.tli < self.last_tli {
            return Err(PageProblem::TimelineBackwards {
                found: h.tli,
                after: self.last_tli,
            });
        }
        self.last_tli = h.tli;
        Ok(h)
    }

    fn stop(&mut self, end: WalEnd) {
        self.end = Some(end);
    }

    /// Skips the continuation at the segment start, as XLogFindNextRecord()
    /// does, keeping its bytes when small enough.
    fn skip_head(&mut self) {
        let first = self.first_page;
        self.end_of_wal = self.lsn_at(LONG_HEADER_LEN);
        if !first.is_contrecord() || first.rem_len == 0 {
            return;
        }
        self.head_len = first.rem_len;
        let mut keep = (first.rem_len as usize <= MAX_FRAGMENT_LEN).then(Vec::new);
        let mut remaining = first.rem_len as usize;
        let mut data_start = LONG_HEADER_LEN;
        let mut page = 0;
        loop {
            let n = remaining.min(self.page_size - (data_start - page));
            if let Some(buf) = keep.as_mut() {
                buf.extend_from_slice(&self.bytes[data_start..data_start + n]);
            }
            remaining -= n;
            if remaining == 0 {
                self.pos = maxalign(data_start + n);
                self.end_of_wal = self.lsn_at(self.pos);
                self.head = keep;
                return;
            }
            page += self.page_size;
            if page >= self.bytes.len() {
                // The record spans the whole segment.
                self.pos = self.bytes.len();
                self.end_of_wal = self.seg_end();
                return;
            }
            let h = match self.page_at(page) {
                Ok(h) => h,
                Err(problem) => {
                    self.stop(WalEnd::Page {
                        page: self.lsn_at(page),
                        problem,
                    });
                    return;
                }
            };
            if h.info & self.flags.overwrite_contrecord != 0 || !h.is_contrecord() {
                // The continuation was abandoned; records restart on this page.
                self.pos = page;
                self.end_of_wal = self.lsn_at(page);
                return;
            }
            if h.rem_len as usize != remaining {
                // Trust the page, as XLogFindNextRecord() does, but the
                // fragment is no longer the record's true remainder.
                keep = None;
                remaining = h.rem_len as usize;
                if remaining == 0 {
                    self.pos = page;
                    self.end_of_wal = self.lsn_at(page);
                    return;
                }
            }
            data_start = page + h.size();
        }
    }

    /// Checks what of the header is present in `prefix` (at least the
    /// length field), as ValidXLogRecordHeader().
    fn check_header(&self, prefix: &[u8], lsn: Lsn) -> Result<(), RecordProblem> {
        let tot_len = u32::from_le_bytes(prefix[0..4].try_into().expect("4"));
        if tot_len == 0 {
            return Err(RecordProblem::Zero);
        }
        if (tot_len as usize) < SIZE_OF_XLOG_RECORD {
            return Err(RecordProblem::Length { tot_len });
        }
        if prefix.len() >= 16 {
            let found = Lsn(u64::from_le_bytes(prefix[8..16].try_into().expect("8")));
            match self.prev {
                Some(expected) if found != expected => {
                    return Err(RecordProblem::PrevLink { expected, found });
                }
                // Reading from a segment start is random access: the link can
                // only be checked to point backwards.
                None if found >= lsn => {
                    return Err(RecordProblem::PrevLink {
                        expected: lsn,
                        found,
                    });
                }
                _ => {}
            }
        }
        if prefix.len() >= 18 && !rmgr_id_is_valid(prefix[17], self.magic) {
            return Err(RecordProblem::Rmgr { rmid: prefix[17] });
        }
        Ok(())
    }

    /// The next valid record, borrowing its bytes from the segment or from
    /// the reader's buffer.
    pub fn next_record(&mut self) -> Option<RecordRef<'_>> {
        let (lsn, tot_len, end_pos, assembled) = self.locate_next()?;
        let record: &[u8] = if assembled {
            &self.scratch
        } else {
            let at = (lsn.0 - self.start.0) as usize;
            &self.bytes[at..at + tot_len]
        };
        let header = XLogRecord::parse(record).expect("header checked");
        let computed = record_crc(record);
        if computed != header.crc {
            self.end = Some(WalEnd::Record {
                at: lsn,
                problem: RecordProblem::Crc {
                    stored: header.crc,
                    computed,
                },
            });
            return None;
        }
        let main_data = match main_data_of(record) {
            Ok(m) => m,
            Err(problem) => {
                self.end = Some(WalEnd::Record { at: lsn, problem });
                return None;
            }
        };
        let mut end_lsn = self.lsn_at(maxalign(end_pos));
        if header.rmid == RM_XLOG_ID && header.rmgr_info() == XLOG_SWITCH {
            // As XLogDecodeNextRecord(): pretend it extends to the segment end.
            end_lsn = self.seg_end();
            self.end = Some(WalEnd::Switch { lsn });
        }
        self.prev = Some(lsn);
        self.end_of_wal = end_lsn;
        self.pos = maxalign(end_pos);
        Some(RecordRef {
            lsn,
            end_lsn,
            header,
            bytes: record,
            main_data,
        })
    }

    /// Finds the next record and gathers it if it spans pages. Returns its
    /// start, length, the offset just past its last byte and whether it was
    /// assembled into `scratch`.
    fn locate_next(&mut self) -> Option<(Lsn, usize, usize, bool)> {
        'restart: loop {
            if self.end.is_some() {
                return None;
            }
            let mut pos = self.pos;
            if pos >= self.bytes.len() {
                self.stop(WalEnd::SegmentEnd);
                return None;
            }
            if pos.is_multiple_of(self.page_size) {
                let h = match self.page_at(pos) {
                    Ok(h) => h,
                    Err(problem) => {
                        self.stop(WalEnd::Page {
                            page: self.lsn_at(pos),
                            problem,
                        });
                        return None;
                    }
                };
                if h.is_contrecord() {
                    self.stop(WalEnd::Record {
                        at: self.lsn_at(pos),
                        problem: RecordProblem::UnexpectedContrecord {
                            page: self.lsn_at(pos),
                        },
                    });
                    return None;
                }
                pos += h.size();
            }
            let lsn = self.lsn_at(pos);
            let on_page = self.page_size - pos % self.page_size;
            let prefix = &self.bytes[pos..pos + on_page.min(SIZE_OF_XLOG_RECORD)];
            if let Err(problem) = self.check_header(prefix, lsn) {
                self.stop(WalEnd::Record { at: lsn, problem });
                return None;
            }
            let tot_len = u32::from_le_bytes(prefix[0..4].try_into().expect("4")) as usize;
            if tot_len <= on_page {
                return Some((lsn, tot_len, pos + tot_len, false));
            }
            // The record spans pages: gather it, checking every page header.
            // Copy only what can be used: the whole record when it can end in
            // this segment, a small tail otherwise.
            let may_complete = tot_len <= self.bytes.len() - pos;
            let keep = may_complete || tot_len <= MAX_FRAGMENT_LEN;
            self.scratch.clear();
            if keep {
                self.scratch
                    .extend_from_slice(&self.bytes[pos..pos + on_page]);
            }
            let mut got = on_page;
            let mut header_checked = on_page >= SIZE_OF_XLOG_RECORD;
            let mut page = pos + on_page;
            while got < tot_len {
                if page >= self.bytes.len() {
                    self.keep_tail(lsn, tot_len, keep);
                    return None;
                }
                let h = match self.page_at(page) {
                    Ok(h) => h,
                    Err(problem) => {
                        self.stop(WalEnd::Page {
                            page: self.lsn_at(page),
                            problem,
                        });
                        return None;
                    }
                };
                if h.info & self.flags.overwrite_contrecord != 0 {
                    // The rest of this record was lost and overwritten: start
                    // afresh on this page, as XLogDecodeNextRecord() does.
                    self.pos = page;
                    self.prev = None;
                    continue 'restart;
                }
                let page_lsn = self.lsn_at(page);
                if !h.is_contrecord() {
                    let problem = RecordProblem::NoContrecord { page: page_lsn };
                    self.stop(WalEnd::Record { at: lsn, problem });
                    return None;
                }
                let expected = (tot_len - got) as u32;
                if h.rem_len != expected {
                    let problem = RecordProblem::ContrecordLength {
                        page: page_lsn,
                        expected,
                        found: h.rem_len,
                    };
                    self.stop(WalEnd::Record { at: lsn, problem });
                    return None;
                }
                let data = page + h.size();
                let n = (tot_len - got).min(self.page_size - h.size());
                if keep {
                    self.scratch.extend_from_slice(&self.bytes[data..data + n]);
                }
                got += n;
                if !header_checked && got >= SIZE_OF_XLOG_RECORD && keep {
                    if let Err(problem) =
                        self.check_header(&self.scratch[..SIZE_OF_XLOG_RECORD], lsn)
                    {
                        self.stop(WalEnd::Record { at: lsn, problem });
                        return None;
                    }
                    header_checked = true;
                }
                if got == tot_len {
                    return Some((lsn, tot_len, data + n, true));
                }
                page += self.page_size;
            }
            unreachable!("the loop returns once the record is complete");
        }
    }

    fn keep_tail(&mut self, lsn: Lsn, tot_len: usize, kept: bool) {
        let bytes = if kept && tot_len <= MAX_FRAGMENT_LEN {
            std::mem::take(&mut self.scratch)
        } else {
            Vec::new()
        };
        self.tail = Some(PartialRecord {
            lsn,
            total_len: tot_len as u32,
            bytes,
            prev: self.prev,
            wal_magic: self.magic,
            xlog_blcksz: self.page_size as u32,
            seg_size: self.seg_size,
        });
        self.end_of_wal = self.seg_end();
        self.stop(WalEnd::SegmentEnd);
    }
}

impl Iterator for WalSegmentReader<'_> {
    type Item = WalRecord;

    fn next(&mut self) -> Option<WalRecord> {
        let magic = self.magic;
        self.next_record().map(|r| r.to_record(magic))
    }
}

#[cfg(test)]
mod tests;
