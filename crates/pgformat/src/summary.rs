//! [`SegmentSummary`]: what a restore planner needs to know about a WAL
//! segment without reading it again: who wrote it, which records it holds,
//! the commit and abort timestamps and xids, restore points, and the record
//! fragments shared with its neighbours.
//!
//! A record that begins in one segment and ends in the next is summarised
//! with the *earlier* segment, by [`SegmentSummary::absorb_stitched`]: its
//! LSN lies there, recovery targets are judged by a record's start, and
//! recovery needs both segments for it either way.

use serde::{Deserialize, Serialize};

use crate::error::WalError;
use crate::fragment::{PartialRecord, base64_opt, complete_record};
use crate::lsn::Lsn;
use crate::record::WalRecord;
use crate::record::rmgr::{RM_XACT_ID, RM_XLOG_ID};
use crate::segment::WalSegmentReader;
use crate::segment_size::WalSegmentSize;
use crate::timeline::TimelineId;
use crate::timestamp::PgTimestamp;
use crate::xact::{XactKind, parse_xact_completion};
use crate::xlog::parse_restore_point;

/// A restore point and where it lies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePointAt {
    /// Start of the restore point record.
    pub lsn: Lsn,
    /// Its end, which is what `pg_create_restore_point()` returns.
    pub end_lsn: Lsn,
    /// When it was created.
    pub time: PgTimestamp,
    /// Its name.
    pub name: String,
}

/// Facts about one WAL segment file, small enough to store beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// System identifier from the long page header.
    pub system_identifier: u64,
    /// Segment size from the long page header.
    pub seg_size: WalSegmentSize,
    /// WAL page size from the long page header.
    pub xlog_blcksz: u32,
    /// `xlp_tli` of the first page. For the first segment of a new timeline
    /// this is the parent's: the server starts the new timeline's segment
    /// with a copy of the parent's, page headers included. Only the file name
    /// says for sure which timeline a segment belongs to; expect
    /// `timeline <= last_timeline <= ` the name's timeline.
    pub timeline: TimelineId,
    /// Highest `xlp_tli` of the pages read.
    pub last_timeline: TimelineId,
    /// Address of the first page: the segment's first LSN.
    pub start_lsn: Lsn,
    /// Page magic, identifying the major release.
    pub magic: u16,
    /// First record beginning in the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_record: Option<Lsn>,
    /// Last complete record beginning in the segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_record: Option<Lsn>,
    /// End of the valid WAL: the segment's end for a complete segment, less
    /// for a `.partial` file or one still being written.
    pub end_of_wal: Lsn,
    /// Complete records beginning in the segment.
    pub record_count: u64,
    /// Commits (plain and prepared).
    pub commit_count: u64,
    /// Aborts (plain, subtransaction and prepared).
    pub abort_count: u64,
    /// Earliest commit or abort timestamp: recovery_target_time stops on either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_commit_time: Option<PgTimestamp>,
    /// Latest commit or abort timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_time: Option<PgTimestamp>,
    /// Smallest xid that committed or aborted here (numerically; xids wrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_xid: Option<u32>,
    /// Largest xid that committed or aborted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_xid: Option<u32>,
    /// Restore points, in WAL order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_points: Vec<RestorePointAt>,
    /// Whether the segment ends with XLOG_SWITCH.
    #[serde(default)]
    pub switch: bool,
    /// Bytes of the previous segment's last record continued here (0 if none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head_len: u32,
    /// Those bytes, when at most 64 KiB.
    #[serde(with = "base64_opt", default, skip_serializing_if = "Option::is_none")]
    pub head_fragment: Option<Vec<u8>>,
    /// A record beginning here and continuing in the next segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_fragment: Option<PartialRecord>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// What [`SegmentSummary::absorb_stitched`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StitchOutcome {
    /// No record runs from this segment into the next.
    NoTail,
    /// `next` is not the segment that follows this one.
    NotConsecutive,
    /// The spanning record is too large to have been kept; it is no
    /// commit, abort or restore point.
    TooLarge,
    /// `next` does not hold the record's remainder intact.
    NoHead,
    /// The joined record is not valid.
    Invalid,
    /// The record at `lsn` was completed and folded into this summary.
    Stitched {
        /// Its start.
        lsn: Lsn,
    },
}

impl SegmentSummary {
    /// The segment size as a [`WalSegmentSize`].
    pub fn seg_size(&self) -> WalSegmentSize {
        self.seg_size
    }

    /// The first LSN after the segment.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(self.start_lsn.0.saturating_add(self.seg_size.as_u64()))
    }

    /// Whether valid WAL fills the segment to its end (a whole segment, not
    /// one cut short).
    pub fn is_complete(&self) -> bool {
        self.end_of_wal == self.end_lsn()
    }

    fn observe(&mut self, record: &WalRecord) {
        if let Some(c) = parse_xact_completion(record) {
            match c.kind {
                XactKind::Commit => self.commit_count += 1,
                XactKind::Abort => self.abort_count += 1,
            }
            self.first_commit_time = Some(self.first_commit_time.map_or(c.time, |t| t.min(c.time)));
            self.last_commit_time = Some(self.last_commit_time.map_or(c.time, |t| t.max(c.time)));
            self.min_xid = Some(self.min_xid.map_or(c.xid, |x| x.min(c.xid)));
            self.max_xid = Some(self.max_xid.map_or(c.xid, |x| x.max(c.xid)));
        } else if let Some(rp) = parse_restore_point(record) {
            self.restore_points.push(RestorePointAt {
                lsn: record.lsn,
                end_lsn: record.end_lsn,
                time: rp.time,
                name: rp.name,
            });
        }
    }

    /// Completes the record that runs from this segment into `next` (the
    /// following segment's summary) and folds it in here, as if it had been
    /// wholly in this segment: counted, and if it is a commit, abort or
    /// restore point, recorded. The tail fragment is dropped once folded, so
    /// absorbing twice changes nothing.
    pub fn absorb_stitched(&mut self, next: &SegmentSummary) -> StitchOutcome {
        let Some(tail) = self.tail_fragment.as_ref() else {
            return StitchOutcome::NoTail;
        };
        if next.start_lsn != self.end_lsn() || next.seg_size != self.seg_size {
            return StitchOutcome::NotConsecutive;
        }
        if tail.bytes.is_empty() {
            return StitchOutcome::TooLarge;
        }
        let Some(head) = next.head_fragment.as_deref() else {
            return StitchOutcome::NoHead;
        };
        let Some(record) = complete_record(tail, head) else {
            return StitchOutcome::Invalid;
        };
        self.tail_fragment = None;
        self.record_count += 1;
        self.first_record.get_or_insert(record.lsn);
        self.last_record = Some(record.lsn);
        self.observe(&record);
        StitchOutcome::Stitched { lsn: record.lsn }
    }
}

/// Reads a whole segment (or `.partial`) file and summarises it.
pub fn summarize_segment(bytes: &[u8]) -> Result<SegmentSummary, WalError> {
    let mut reader = WalSegmentReader::new(bytes)?;
    let first = *reader.first_page();
    let long = first.long.expect("the reader checked the long header");
    let mut summary = SegmentSummary {
        system_identifier: long.system_identifier,
        seg_size: reader.seg_size(),
        xlog_blcksz: long.xlog_blcksz,
        timeline: first.tli,
        last_timeline: first.tli,
        start_lsn: first.pageaddr,
        magic: first.magic,
        first_record: None,
        last_record: None,
        end_of_wal: reader.end_of_wal(),
        record_count: 0,
        commit_count: 0,
        abort_count: 0,
        first_commit_time: None,
        last_commit_time: None,
        min_xid: None,
        max_xid: None,
        restore_points: Vec::new(),
        switch: false,
        head_len: reader.head_len(),
        head_fragment: reader.head().map(<[u8]>::to_vec),
        tail_fragment: None,
    };
    while let Some(r) = reader.next_record() {
        summary.record_count += 1;
        summary.first_record.get_or_insert(r.lsn);
        summary.last_record = Some(r.lsn);
        // Only transaction and XLOG records carry what a summary keeps;
        // copying the others would be wasted work.
        if r.header.rmid == RM_XACT_ID || r.header.rmid == RM_XLOG_ID {
            let record = r.to_record(first.magic);
            summary.observe(&record);
        }
    }
    summary.end_of_wal = reader.end_of_wal();
    summary.last_timeline = reader.last_page_timeline();
    summary.switch = reader.switched();
    summary.tail_fragment = reader.tail().cloned();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::WalBuilder;
    use crate::lsn::XLogSegNo;
    use crate::xact::CompletionBody;

    const SEG: u64 = 16 << 20;

    fn t(n: i64) -> PgTimestamp {
        PgTimestamp(800_000_000_000_000 + n)
    }

    #[test]
    fn summarises_commits_aborts_and_restore_points() {
        let mut wal = WalBuilder::new(XLogSegNo(1)).system_identifier(42);
        let first = wal.append_commit(900, t(50));
        wal.append_xact(
            XactKind::Abort,
            false,
            905,
            &CompletionBody {
                time: t(10),
                ..Default::default()
            },
        );
        let body = CompletionBody {
            time: t(90),
            twophase_xid: Some(880),
            gid: Some("g".into()),
            ..Default::default()
        };
        wal.append_xact(XactKind::Commit, true, 0, &body);
        let rp = wal.append_restore_point(t(60), "nightly");
        let rp_end = wal.next_lsn();
        let last = wal.append_noop(64);
        let s = summarize_segment(&wal.segment(0)).unwrap();
        assert_eq!(s.system_identifier, 42);
        assert_eq!(s.start_lsn, Lsn(SEG));
        assert_eq!(s.timeline, TimelineId(1));
        assert_eq!(s.magic, 0xD110);
        assert_eq!(s.xlog_blcksz, 8192);
        assert_eq!((s.first_record, s.last_record), (Some(first), Some(last)));
        assert_eq!((s.record_count, s.commit_count, s.abort_count), (5, 2, 1));
        assert_eq!(
            (s.first_commit_time, s.last_commit_time),
            (Some(t(10)), Some(t(90)))
        );
        assert_eq!((s.min_xid, s.max_xid), (Some(880), Some(905)));
        assert_eq!(
            s.restore_points,
            vec![RestorePointAt {
                lsn: rp,
                end_lsn: rp_end,
                time: t(60),
                name: "nightly".into()
            }]
        );
        assert!(!s.switch && !s.is_complete());
        assert_eq!(s.end_of_wal, wal.next_lsn());
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            !json.contains("tail_fragment") && !json.contains("head_fragment"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<SegmentSummary>(&json).unwrap(), s);
    }

    #[test]
    fn stitches_a_commit_across_segments() {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_commit(1, t(0));
        wal.fill_to(Lsn(2 * SEG - 16));
        let spanning = wal.append_commit(950, t(99));
        wal.append_commit(951, t(100));
        let mut first = summarize_segment(&wal.segment(0)).unwrap();
        let second = summarize_segment(&wal.segment(1)).unwrap();
        assert!(first.is_complete());
        assert_eq!(first.commit_count, 1);
        assert!(first.tail_fragment.is_some());
        assert_eq!(second.head_len, 18);
        let json = serde_json::to_string(&first).unwrap();
        let mut first_again: SegmentSummary = serde_json::from_str(&json).unwrap();
        let second_again: SegmentSummary =
            serde_json::from_str(&serde_json::to_string(&second).unwrap()).unwrap();

        let itself = first.clone();
        assert_eq!(
            first.absorb_stitched(&itself),
            StitchOutcome::NotConsecutive
        );
        assert_eq!(
            first.absorb_stitched(&second),
            StitchOutcome::Stitched { lsn: spanning }
        );
        assert_eq!(first.commit_count, 2);
        assert_eq!(first.last_record, Some(spanning));
        assert_eq!(first.max_xid, Some(950));
        assert_eq!(first.last_commit_time, Some(t(99)));
        assert_eq!(first.absorb_stitched(&second), StitchOutcome::NoTail);
        // Summaries read back from storage stitch the same way.
        assert_eq!(
            first_again.absorb_stitched(&second_again),
            StitchOutcome::Stitched { lsn: spanning }
        );
        assert_eq!(first_again, first);

        let mut no_head = second.clone();
        no_head.head_fragment = None;
        let mut again = summarize_segment(&wal.segment(0)).unwrap();
        assert_eq!(again.absorb_stitched(&no_head), StitchOutcome::NoHead);
        let mut corrupt = second;
        corrupt.head_fragment.as_mut().unwrap()[0] ^= 0xFF;
        assert_eq!(again.absorb_stitched(&corrupt), StitchOutcome::Invalid);
    }

    #[test]
    fn large_spanning_records_are_not_kept() {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.fill_to(Lsn(2 * SEG - 1024));
        wal.append_noop(100_000);
        wal.append_commit(3, t(1));
        let mut first = summarize_segment(&wal.segment(0)).unwrap();
        let second = summarize_segment(&wal.segment(1)).unwrap();
        assert!(first.tail_fragment.as_ref().unwrap().bytes.is_empty());
        assert!(second.head_fragment.is_none());
        assert_eq!(second.commit_count, 1);
        assert_eq!(first.absorb_stitched(&second), StitchOutcome::TooLarge);
        assert!(serde_json::to_string(&first).unwrap().len() < 600);
    }

    #[test]
    fn timeline_of_first_and_last_pages() {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_commit(6, t(6));
        wal.fill_to(Lsn(SEG + 8192 + 24));
        wal.continue_on_timeline(TimelineId(2));
        wal.append_noop(20_000);
        let s = summarize_segment(&wal.segment(0)).unwrap();
        assert_eq!(
            (s.timeline, s.last_timeline),
            (TimelineId(1), TimelineId(2))
        );
    }

    #[test]
    fn switch_makes_a_complete_segment() {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_commit(5, t(5));
        wal.append_switch();
        let s = summarize_segment(&wal.segment(0)).unwrap();
        assert!(s.switch && s.is_complete());
        assert_eq!(s.end_of_wal, s.end_lsn());
        assert_eq!(s.seg_size(), WalSegmentSize::DEFAULT);
    }
}
