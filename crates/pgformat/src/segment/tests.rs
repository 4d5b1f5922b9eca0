//! Reader tests on WAL from [`WalBuilder`]: page crossings, split headers,
//! segment-spanning records, switches, torn and stale WAL.

use proptest::prelude::*;

use super::*;
use crate::builder::WalBuilder;
use crate::fragment::complete_record;
use crate::lsn::XLogSegNo;
use crate::page::{SHORT_HEADER_LEN, XLP_FIRST_IS_CONTRECORD};
use crate::record::encode_record;
use crate::record::rmgr::RM_XACT_ID;
use crate::timestamp::PgTimestamp;
use crate::xact::{XactKind, parse_xact_completion};
use crate::xlog::XLOG_NOOP;

const PAGE: u64 = 8192;
const SEG: u64 = 16 << 20;

fn t(n: i64) -> PgTimestamp {
    PgTimestamp(700_000_000_000_000 + n)
}

/// What the reader reported after running out, detached from the bytes.
struct Scan {
    end: Option<WalEnd>,
    end_of_wal: Lsn,
    tail: Option<PartialRecord>,
    head: Option<Vec<u8>>,
    head_len: u32,
    switched: bool,
    page_size: u32,
    start: Lsn,
}

impl Scan {
    fn end(&self) -> Option<WalEnd> {
        self.end
    }
    fn end_of_wal(&self) -> Lsn {
        self.end_of_wal
    }
    fn tail(&self) -> Option<&PartialRecord> {
        self.tail.as_ref()
    }
    fn head(&self) -> Option<&[u8]> {
        self.head.as_deref()
    }
    fn head_len(&self) -> u32 {
        self.head_len
    }
    fn switched(&self) -> bool {
        self.switched
    }
    fn page_size(&self) -> u32 {
        self.page_size
    }
    fn start_lsn(&self) -> Lsn {
        self.start
    }
}

fn read_all(bytes: &[u8]) -> (Vec<WalRecord>, Scan) {
    let mut reader = WalSegmentReader::new(bytes).unwrap();
    let records = reader.by_ref().collect();
    let scan = Scan {
        end: reader.end(),
        end_of_wal: reader.end_of_wal(),
        tail: reader.tail().cloned(),
        head: reader.head().map(<[u8]>::to_vec),
        head_len: reader.head_len(),
        switched: reader.switched(),
        page_size: reader.page_size(),
        start: reader.start_lsn(),
    };
    (records, scan)
}

fn lsns(records: &[WalRecord]) -> Vec<Lsn> {
    records.iter().map(|r| r.lsn).collect()
}

fn commit_xid(r: &WalRecord) -> Option<u32> {
    parse_xact_completion(r).map(|c| c.xid)
}

#[test]
fn reads_records_on_one_page() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    let a = wal.append_commit(700, t(1));
    let b = wal.append_noop(100);
    let c = wal.append_commit(701, t(2));
    let bytes = wal.segment(0);
    let (records, reader) = read_all(&bytes);
    assert_eq!(lsns(&records), vec![a, b, c]);
    assert_eq!(a, Lsn(SEG + 40));
    assert_eq!(records[0].end_lsn, b);
    assert_eq!(records[1].prev, a);
    assert_eq!(commit_xid(&records[2]), Some(701));
    assert_eq!(reader.end_of_wal(), records[2].end_lsn);
    assert_eq!(reader.end_of_wal(), wal.next_lsn());
    assert_eq!(
        reader.end(),
        Some(WalEnd::Record {
            at: wal.next_lsn(),
            problem: RecordProblem::Zero
        })
    );
    assert!(reader.tail().is_none() && reader.head().is_none() && !reader.switched());
    assert_eq!(reader.page_size(), 8192);
    assert_eq!(reader.start_lsn(), Lsn(SEG));
}

#[test]
fn records_across_page_boundaries() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    let big = wal.append_noop(20_000); // spans three pages
    let after = wal.append_commit(702, t(3));
    let (records, _) = read_all(&wal.segment(0));
    assert_eq!(lsns(&records), vec![big, after]);
    assert_eq!(records[0].main_data.len(), 20_000 - 24 - 5);
    assert!(records[0].main_data.iter().all(|b| *b == 0xAB));
    // 40 + 20000 bytes of record plus two short headers, MAXALIGNed.
    assert_eq!(records[0].end_lsn, Lsn(SEG + 40 + 20_000 + 2 * 24));
    assert_eq!(commit_xid(&records[1]), Some(702));
}

#[test]
fn record_header_split_across_pages() {
    for before_boundary in [8u64, 16] {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_commit(1, t(0));
        wal.fill_to(Lsn(SEG + 2 * PAGE - before_boundary));
        let split = wal.append_commit(703, t(4));
        let last = wal.append_commit(704, t(5));
        let (records, reader) = read_all(&wal.segment(0));
        assert_eq!(records.len(), 4, "{:?}", reader.end());
        assert_eq!(records[2].lsn, split);
        assert_eq!(commit_xid(&records[2]), Some(703));
        assert_eq!(records[3].lsn, last);
        assert_eq!(records[3].prev, split);
    }
}

#[test]
fn record_ending_exactly_at_a_page_boundary() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    wal.fill_to(Lsn(SEG + PAGE + SHORT_HEADER_LEN as u64));
    let next = wal.append_commit(705, t(6));
    let (records, _) = read_all(&wal.segment(0));
    assert_eq!(records[0].end_lsn, Lsn(SEG + PAGE));
    assert_eq!(records[1].lsn, next);
}

#[test]
fn switch_ends_the_segment() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    wal.append_commit(706, t(7));
    let switch = wal.append_switch();
    let after = wal.append_commit(707, t(8));
    assert_eq!(after, Lsn(2 * SEG + 40));
    let (records, reader) = read_all(&wal.segment(0));
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].lsn, switch);
    assert_eq!(records[1].end_lsn, Lsn(2 * SEG));
    assert!(reader.switched());
    assert_eq!(reader.end(), Some(WalEnd::Switch { lsn: switch }));
    assert_eq!(reader.end_of_wal(), Lsn(2 * SEG));
    let (records, reader) = read_all(&wal.segment(1));
    assert_eq!(lsns(&records), vec![after]);
    assert_eq!(records[0].prev, switch);
    assert!(reader.head().is_none());
}

/// A record whose header is cut by the segment end, then one whose body is.
#[test]
fn records_spanning_segments_stitch() {
    for (start_before_end, xid) in [(16u64, 710u32), (8, 711), (32, 712)] {
        let mut wal = WalBuilder::new(XLogSegNo(1));
        wal.append_commit(1, t(0));
        wal.fill_to(Lsn(2 * SEG - start_before_end));
        let spanning = wal.append_commit(xid, t(9));
        let after = wal.append_commit(xid + 1, t(10));
        let seg0 = wal.segment(0);
        let seg1 = wal.segment(1);
        let (records, reader) = read_all(&seg0);
        assert_eq!(records.len(), 2);
        let tail = reader.tail().expect("tail").clone();
        assert_eq!(tail.lsn, spanning);
        assert_eq!(tail.bytes.len() as u64, start_before_end);
        assert_eq!(reader.end_of_wal(), Lsn(2 * SEG));
        assert_eq!(reader.end(), Some(WalEnd::SegmentEnd));
        let (next_records, next) = read_all(&seg1);
        assert_eq!(lsns(&next_records), vec![after]);
        let head = next.head().expect("head");
        assert_eq!(next.head_len() as usize, head.len());
        assert_eq!(tail.bytes.len() + head.len(), tail.total_len as usize);
        let whole = complete_record(&tail, head).expect("stitched");
        assert_eq!(whole.lsn, spanning);
        assert_eq!(whole.end_lsn, after);
        assert_eq!(commit_xid(&whole), Some(xid));
        assert_eq!(parse_xact_completion(&whole).unwrap().time, t(9));
        // A damaged head does not stitch.
        let mut bad = head.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(complete_record(&tail, &bad).is_none());
        assert!(complete_record(&tail, &head[1..]).is_none());
    }
}

#[test]
fn long_continuation_over_several_pages() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    wal.fill_to(Lsn(2 * SEG - 1000));
    let spanning = wal.append_noop(30_000);
    let after = wal.append_commit(720, t(11));
    let (_, reader) = read_all(&wal.segment(0));
    let tail = reader.tail().unwrap().clone();
    assert_eq!(tail.bytes.len(), 1000);
    let (records, next) = read_all(&wal.segment(1));
    assert_eq!(lsns(&records), vec![after]);
    let whole = complete_record(&tail, next.head().unwrap()).unwrap();
    assert_eq!(whole.lsn, spanning);
    assert_eq!(whole.end_lsn, after);
    assert_eq!(whole.rmid, RM_XLOG_ID);
}

#[test]
fn huge_spanning_record_keeps_only_its_lsn() {
    let seg = WalSegmentSize::new(1 << 20).unwrap();
    let mut wal = WalBuilder::new(XLogSegNo(4)).segment_size(seg);
    wal.fill_to(Lsn((5 << 20) - 50_000));
    let spanning = wal.append_noop(3 << 19); // runs through the next segment
    let after = wal.append_commit(730, t(12));
    let (_, reader) = read_all(&wal.segment(0));
    let tail = reader.tail().unwrap();
    assert_eq!(tail.lsn, spanning);
    assert!(tail.bytes.is_empty());
    // The middle segment is all continuation: no records, valid to its end.
    let (records, middle) = read_all(&wal.segment(1));
    assert!(records.is_empty());
    assert!(middle.head().is_none());
    assert_eq!(middle.end_of_wal(), Lsn(6 << 20));
    let (records, last) = read_all(&wal.segment(2));
    assert_eq!(lsns(&records), vec![after]);
    assert!(last.head().is_none());
    assert!(last.head_len() > 64 * 1024);
}

#[test]
fn bad_crc_ends_valid_wal() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    let a = wal.append_commit(740, t(13));
    let b = wal.append_commit(741, t(14));
    wal.append_commit(742, t(15));
    let mut bytes = wal.segment(0);
    let at = (b.0 - SEG) as usize + 30;
    bytes[at] ^= 0x01;
    let (records, reader) = read_all(&bytes);
    assert_eq!(lsns(&records), vec![a]);
    assert_eq!(reader.end_of_wal(), b);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Record { at, problem: RecordProblem::Crc { .. } }) if at == b
    ));
}

#[test]
fn prev_link_and_rmgr_are_checked() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    wal.append_commit(750, t(16));
    let b = wal.append_commit(751, t(17));
    let mut bytes = wal.segment(0);
    let at = (b.0 - SEG) as usize;
    bytes[at + 8] ^= 0x08; // xl_prev
    let (records, reader) = read_all(&bytes);
    assert_eq!(records.len(), 1);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Record {
            problem: RecordProblem::PrevLink { .. },
            ..
        })
    ));
    let mut bytes = wal.segment(0);
    bytes[at + 17] = 99; // xl_rmid
    let (_, reader) = read_all(&bytes);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Record {
            problem: RecordProblem::Rmgr { rmid: 99 },
            ..
        })
    ));
    // The first record in a segment may only point backwards.
    let mut wal = WalBuilder::new(XLogSegNo(1)).prev_link(Lsn(3 * SEG));
    wal.append_commit(752, t(18));
    let (records, _) = read_all(&wal.segment(0));
    assert!(records.is_empty());
}

#[test]
fn stale_recycled_pages_end_valid_wal() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    wal.fill_to(Lsn(SEG + PAGE - 200));
    let spanning = wal.append_noop(400);
    let mut bytes = wal.segment(0);
    // Page 1 as a recycled segment leaves it: an old address.
    bytes[8 + PAGE as usize..16 + PAGE as usize].copy_from_slice(&(PAGE).to_le_bytes());
    let (records, reader) = read_all(&bytes);
    assert_eq!(records.len(), 1);
    assert_eq!(reader.end_of_wal(), spanning);
    assert_eq!(
        reader.end(),
        Some(WalEnd::Page {
            page: Lsn(SEG + PAGE),
            problem: PageProblem::PageAddr {
                expected: Lsn(SEG + PAGE),
                found: Lsn(PAGE)
            }
        })
    );
    assert!(reader.tail().is_none());
}

#[test]
fn later_pages_must_agree() {
    let mut wal = WalBuilder::new(XLogSegNo(1)).timeline(TimelineId(3));
    wal.fill_to(Lsn(SEG + PAGE - 200));
    wal.append_noop(400);
    let page1 = PAGE as usize;
    let mut bytes = wal.segment(0);
    bytes[page1 + 4..page1 + 8].copy_from_slice(&2u32.to_le_bytes());
    let (_, reader) = read_all(&bytes);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Page {
            problem: PageProblem::TimelineBackwards { .. },
            ..
        })
    ));
    let mut bytes = wal.segment(0);
    bytes[page1] ^= 1;
    let (_, reader) = read_all(&bytes);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Page {
            problem: PageProblem::Magic { .. },
            ..
        })
    ));
    let mut bytes = wal.segment(0);
    bytes[page1 + 2] &= !(XLP_FIRST_IS_CONTRECORD as u8);
    let (_, reader) = read_all(&bytes);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Record {
            problem: RecordProblem::NoContrecord { .. },
            ..
        })
    ));
    let mut bytes = wal.segment(0);
    bytes[page1 + 16] ^= 1; // xlp_rem_len
    let (_, reader) = read_all(&bytes);
    assert!(matches!(
        reader.end(),
        Some(WalEnd::Record {
            problem: RecordProblem::ContrecordLength { .. },
            ..
        })
    ));
}

#[test]
fn overwritten_contrecord_restarts_on_that_page() {
    let mut wal = WalBuilder::new(XLogSegNo(1));
    let first = wal.append_commit(760, t(19));
    wal.append_noop(10_000); // torn: its continuation was lost
    let mut bytes = wal.segment(0);
    let page1 = PAGE as usize;
    bytes[page1 + 2..page1 + 4]
        .copy_from_slice(&crate::page::XLP_FIRST_IS_OVERWRITE_CONTRECORD.to_le_bytes());
    bytes[page1 + 16..page1 + 20].copy_from_slice(&0u32.to_le_bytes());
    bytes[page1 + 24..2 * page1].fill(0);
    let rec = encode_record(
        0,
        first,
        XLOG_NOOP,
        RM_XLOG_ID,
        &crate::record::main_data_payload(b"x"),
    );
    bytes[page1 + 24..page1 + 24 + rec.len()].copy_from_slice(&rec);
    let (records, _) = read_all(&bytes);
    assert_eq!(lsns(&records), vec![first, Lsn(SEG + PAGE + 24)]);
}

#[test]
fn whole_segment_checks() {
    let wal = {
        let mut w = WalBuilder::new(XLogSegNo(1));
        w.append_commit(1, t(0));
        w
    };
    let bytes = wal.segment(0);
    assert!(matches!(
        WalSegmentReader::new(&bytes[..SEG as usize - 1]),
        Err(WalError::FileSize { expected, found }) if expected == SEG as u32 && found == SEG as usize - 1
    ));
    assert!(matches!(
        WalSegmentReader::new(&bytes[..10]),
        Err(WalError::Truncated { .. })
    ));
    let mut b = bytes.clone();
    b[2] &= !0x02; // no XLP_LONG_HEADER
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::FirstPage {
            problem: PageProblem::NotLong { .. }
        })
    ));
    let mut b = bytes.clone();
    b[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::FirstPage {
            problem: PageProblem::Magic { .. }
        })
    ));
    let mut b = bytes.clone();
    b[32..36].copy_from_slice(&12345u32.to_le_bytes());
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::SegmentSize(_))
    ));
    let mut b = bytes.clone();
    b[36..40].copy_from_slice(&3000u32.to_le_bytes());
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::BlockSize { size: 3000 })
    ));
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&(SEG + PAGE).to_le_bytes());
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::FirstPage {
            problem: PageProblem::NotSegmentStart { .. }
        })
    ));
    let mut b = bytes;
    b[2] |= 0x10;
    assert!(matches!(
        WalSegmentReader::new(&b),
        Err(WalError::FirstPage {
            problem: PageProblem::InfoBits { .. }
        })
    ));
}

#[test]
fn other_page_and_segment_sizes() {
    let seg = WalSegmentSize::new(1 << 20).unwrap();
    let mut wal = WalBuilder::new(XLogSegNo(7))
        .segment_size(seg)
        .page_size(1024)
        .magic(0xD118);
    let mut expected = Vec::new();
    for i in 0..200 {
        expected.push(wal.append_commit(1000 + i, t(i64::from(i))));
        if i % 7 == 0 {
            wal.append_noop(1500);
        }
    }
    let (records, reader) = read_all(&wal.segment(0));
    let commits: Vec<Lsn> = records
        .iter()
        .filter(|r| r.rmid == RM_XACT_ID)
        .map(|r| r.lsn)
        .collect();
    assert_eq!(commits, expected);
    assert_eq!(reader.page_size(), 1024);
    assert!(records.iter().all(|r| r.wal_magic == 0xD118));
    let kinds: Vec<XactKind> = records
        .iter()
        .filter_map(parse_xact_completion)
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds.len(), 200);
}

fn sample_segment() -> Vec<u8> {
    let seg = WalSegmentSize::new(1 << 20).unwrap();
    let mut wal = WalBuilder::new(XLogSegNo(2))
        .segment_size(seg)
        .page_size(1024);
    for i in 0..40 {
        wal.append_commit(500 + i, t(i64::from(i)));
        wal.append_noop(24 + (i as usize * 37) % 3000);
        wal.append_restore_point(t(0), "rp");
    }
    wal.segment(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn never_panics_on_mutated_segments(
        edits in proptest::collection::vec((0usize..40_000, any::<u8>()), 1..20),
    ) {
        let mut bytes = sample_segment();
        for (at, v) in edits {
            bytes[at] = v;
        }
        if let Ok(mut reader) = WalSegmentReader::new(&bytes) {
            let mut last = Lsn::INVALID;
            while let Some(r) = reader.next_record() {
                prop_assert!(r.lsn > last);
                last = r.lsn;
            }
            prop_assert!(reader.end().is_some());
        }
        let _ = crate::summary::summarize_segment(&bytes);
    }

    #[test]
    fn never_panics_on_garbage_after_a_valid_header(
        garbage in proptest::collection::vec(any::<u8>(), 0..5000),
        at in 40usize..2000,
    ) {
        let mut bytes = sample_segment();
        let end = (at + garbage.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&garbage[..end - at]);
        if let Ok(reader) = WalSegmentReader::new(&bytes) {
            let _ = reader.count();
        }
    }
}
