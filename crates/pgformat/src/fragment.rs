//! Records split between two segment files: the *tail* that begins in one
//! segment ([`PartialRecord`]) and the *head* that ends in the next, and
//! [`complete_record`] that joins them.
//!
//! Both parts are kept only when small (at most [`MAX_FRAGMENT_LEN`]): the
//! records that matter for recovery targets (commits, aborts, restore points)
//! are tiny, and summaries must stay small.

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;
use crate::page::{LONG_HEADER_LEN, SHORT_HEADER_LEN};
use crate::record::{
    SIZE_OF_XLOG_RECORD, WalRecord, XLogRecord, main_data_of, record_crc, rmgr::RM_XLOG_ID,
    rmgr_id_is_valid,
};
use crate::segment::maxalign;
use crate::segment_size::WalSegmentSize;
use crate::xlog::XLOG_SWITCH;

/// Largest record (or record remainder) kept as a fragment: 64 KiB.
pub const MAX_FRAGMENT_LEN: usize = 64 * 1024;

/// The start of a record that continues in the next segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    /// Where the record starts.
    pub lsn: Lsn,
    /// `xl_tot_len` of the whole record.
    pub total_len: u32,
    /// The record's bytes found in this segment, page headers removed;
    /// empty when `total_len` exceeds [`MAX_FRAGMENT_LEN`].
    #[serde(with = "base64_bytes", default, skip_serializing_if = "Vec::is_empty")]
    pub bytes: Vec<u8>,
    /// Start of the record before it in the same segment, to check `xl_prev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Lsn>,
    /// Page magic of the segment.
    pub wal_magic: u16,
    /// WAL page size, to place the record's end in the next segment.
    pub xlog_blcksz: u32,
    /// Segment size.
    pub seg_size: WalSegmentSize,
}

/// Joins the tail of a record with its head from the next segment (the
/// [`crate::segment::WalSegmentReader::head`] of that segment) and validates the
/// result as ValidXLogRecordHeader() and ValidXLogRecord() would. `None`
/// when the tail was too large to keep or the parts do not form a valid
/// record.
pub fn complete_record(tail: &PartialRecord, head: &[u8]) -> Option<WalRecord> {
    let total = tail.total_len as usize;
    if tail.bytes.is_empty() || tail.bytes.len() >= total || tail.bytes.len() + head.len() != total
    {
        return None;
    }
    let mut record = Vec::with_capacity(total);
    record.extend_from_slice(&tail.bytes);
    record.extend_from_slice(head);
    let header = XLogRecord::parse(&record).ok()?;
    let prev_ok = match tail.prev {
        Some(prev) => header.prev == prev,
        None => header.prev < tail.lsn,
    };
    if header.tot_len != tail.total_len
        || total < SIZE_OF_XLOG_RECORD
        || !prev_ok
        || !rmgr_id_is_valid(header.rmid, tail.wal_magic)
        || record_crc(&record) != header.crc
    {
        return None;
    }
    let main_data = main_data_of(&record).ok()?.to_vec();
    let next_start = tail
        .lsn
        .segment_start(tail.seg_size)
        .checked_add(tail.seg_size.as_u64())?;
    let mut end_lsn =
        next_start.checked_add(head_end_offset(head.len(), tail.xlog_blcksz) as u64)?;
    if header.rmid == RM_XLOG_ID && header.rmgr_info() == XLOG_SWITCH {
        let seg = tail.seg_size.as_u64();
        end_lsn = Lsn(end_lsn.0.div_ceil(seg) * seg);
    }
    Some(WalRecord {
        lsn: tail.lsn,
        end_lsn,
        prev: header.prev,
        xid: header.xid,
        rmid: header.rmid,
        info: header.info,
        main_data,
        wal_magic: tail.wal_magic,
    })
}

/// Offset in the next segment just past `len` continuation bytes (after the
/// long header of the first page and the short headers of later ones),
/// MAXALIGNed as EndRecPtr is.
fn head_end_offset(len: usize, blcksz: u32) -> usize {
    let blcksz = blcksz as usize;
    let first_cap = blcksz - LONG_HEADER_LEN;
    if len <= first_cap {
        return maxalign(LONG_HEADER_LEN + len);
    }
    let rest = len - first_cap;
    let cap = blcksz - SHORT_HEADER_LEN;
    let full_pages = (rest - 1) / cap;
    maxalign(blcksz * (1 + full_pages) + SHORT_HEADER_LEN + (rest - full_pages * cap))
}

/// Serde for fragment bytes as standard base64 text.
pub(crate) mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Serde for optional fragment bytes as standard base64 text.
pub(crate) mod base64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::base64_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::base64_bytes")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_offsets() {
        assert_eq!(head_end_offset(1, 8192), 48);
        assert_eq!(head_end_offset(8152, 8192), 8192);
        assert_eq!(head_end_offset(8153, 8192), 8192 + 24 + 8);
        assert_eq!(head_end_offset(8152 + 8168, 8192), 16384);
        assert_eq!(head_end_offset(8152 + 8168 + 1, 8192), 16384 + 24 + 8);
    }

    #[test]
    fn partial_record_serde() {
        let p = PartialRecord {
            lsn: Lsn(0xFFFFF8),
            total_len: 100,
            bytes: vec![1, 2, 3],
            prev: Some(Lsn(0xFFFF00)),
            wal_magic: 0xD110,
            xlog_blcksz: 8192,
            seg_size: WalSegmentSize::DEFAULT,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"AQID\""), "{json}");
        assert_eq!(serde_json::from_str::<PartialRecord>(&json).unwrap(), p);
        assert_eq!(complete_record(&p, &[0; 97]), None);
        assert_eq!(complete_record(&p, &[0; 3]), None);
    }
}
