//! Transaction completion records (RM_XACT_ID): commits and aborts, with
//! their timestamps and transaction ids, which is what `recovery_target_time`
//! and `recovery_target_xid` stop on. Layouts from `src/include/access/xact.h`,
//! walked as ParseCommitRecord() and ParseAbortRecord() do.

use crate::lsn::Lsn;
use crate::page::pg_major_for_wal_magic;
use crate::record::{RelFileLocator, WalRecord, rmgr::RM_XACT_ID};
use crate::timestamp::PgTimestamp;

pub use crate::xlog::{RestorePoint, parse_restore_point};

/// Top-level commit (XLOG_XACT_COMMIT).
pub const XLOG_XACT_COMMIT: u8 = 0x00;
/// Two-phase prepare (XLOG_XACT_PREPARE).
pub const XLOG_XACT_PREPARE: u8 = 0x10;
/// Abort, top-level or subtransaction (XLOG_XACT_ABORT).
pub const XLOG_XACT_ABORT: u8 = 0x20;
/// COMMIT PREPARED (XLOG_XACT_COMMIT_PREPARED).
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
/// ROLLBACK PREPARED (XLOG_XACT_ABORT_PREPARED).
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// Operation bits of `xl_info` (XLOG_XACT_OPMASK).
pub const XLOG_XACT_OPMASK: u8 = 0x70;
/// An `xinfo` word follows the timestamp (XLOG_XACT_HAS_INFO).
pub const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// `xinfo`: database and tablespace follow (XACT_XINFO_HAS_DBINFO).
pub const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
/// `xinfo`: subtransaction ids follow (XACT_XINFO_HAS_SUBXACTS).
pub const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
/// `xinfo`: dropped relation files follow (XACT_XINFO_HAS_RELFILELOCATORS).
pub const XACT_XINFO_HAS_RELFILELOCATORS: u32 = 1 << 2;
/// `xinfo`: invalidation messages follow, commits only (XACT_XINFO_HAS_INVALS).
pub const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
/// `xinfo`: the prepared transaction's xid follows (XACT_XINFO_HAS_TWOPHASE).
pub const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
/// `xinfo`: replication origin follows (XACT_XINFO_HAS_ORIGIN).
pub const XACT_XINFO_HAS_ORIGIN: u32 = 1 << 5;
/// `xinfo`: the transaction held AccessExclusive locks (XACT_XINFO_HAS_AE_LOCKS).
pub const XACT_XINFO_HAS_AE_LOCKS: u32 = 1 << 6;
/// `xinfo`: the prepared transaction's GID follows (XACT_XINFO_HAS_GID).
pub const XACT_XINFO_HAS_GID: u32 = 1 << 7;
/// `xinfo`: dropped statistics entries follow (XACT_XINFO_HAS_DROPPED_STATS, 15+).
pub const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;

/// sizeof(RelFileLocator).
const REL_FILE_LOCATOR_LEN: usize = 12;
/// sizeof(SharedInvalidationMessage).
const INVAL_MSG_LEN: usize = 16;

/// sizeof(xl_xact_stats_item): 12 bytes in 15 to 17 (kind, dboid, objoid);
/// 18 widened the object id to 64 bits, stored as two uint32 (16 bytes).
/// Releases newer than we know get the newest layout.
fn stats_item_len(wal_magic: u16) -> usize {
    match pg_major_for_wal_magic(wal_magic) {
        Some(15..=17) => 12,
        _ => 16,
    }
}

/// Commit or abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XactKind {
    /// COMMIT or COMMIT PREPARED.
    Commit,
    /// ABORT (also of a subtransaction) or ROLLBACK PREPARED.
    Abort,
}

/// The end of a transaction, as a recovery target sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XactCompletion {
    /// Commit or abort.
    pub kind: XactKind,
    /// The transaction: `xl_xid`, or for the *_PREPARED kinds the prepared
    /// transaction's xid from the record body.
    pub xid: u32,
    /// `xact_time`: the commit or abort timestamp.
    pub time: PgTimestamp,
    /// Whether it finished a prepared (two-phase) transaction.
    pub prepared: bool,
}

/// Reads little-endian fields of a record body, `None` past the end.
struct Body<'a> {
    data: &'a [u8],
    at: usize,
}

impl Body<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// An `int` count followed by that many `size`-byte items.
    fn skip_array(&mut self, size: usize) -> Option<()> {
        let n = usize::try_from(self.u32()? as i32).ok()?;
        self.bytes(n.checked_mul(size)?).map(|_| ())
    }
}

/// The commit or abort recorded by `record`, if it is one.
pub fn parse_xact_completion(record: &WalRecord) -> Option<XactCompletion> {
    if record.rmid != RM_XACT_ID {
        return None;
    }
    let (kind, prepared) = match record.info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => (XactKind::Commit, false),
        XLOG_XACT_COMMIT_PREPARED => (XactKind::Commit, true),
        XLOG_XACT_ABORT => (XactKind::Abort, false),
        XLOG_XACT_ABORT_PREPARED => (XactKind::Abort, true),
        _ => return None,
    };
    let mut body = Body {
        data: &record.main_data,
        at: 0,
    };
    let time = PgTimestamp(body.i64()?);
    let xinfo = if record.info & XLOG_XACT_HAS_INFO != 0 {
        body.u32()?
    } else {
        0
    };
    // Field order of ParseCommitRecord(); ParseAbortRecord() is the same
    // without invalidations.
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        body.bytes(8)?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        body.skip_array(4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILELOCATORS != 0 {
        body.skip_array(REL_FILE_LOCATOR_LEN)?;
    }
    if xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        body.skip_array(stats_item_len(record.wal_magic))?;
    }
    if kind == XactKind::Commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        body.skip_array(INVAL_MSG_LEN)?;
    }
    let twophase_xid = if xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        Some(body.u32()?)
    } else {
        None
    };
    let xid = if prepared { twophase_xid? } else { record.xid };
    Some(XactCompletion {
        kind,
        xid,
        time,
        prepared,
    })
}

/// The parts of a commit or abort body, for writing test WAL: the inverse
/// of [`parse_xact_completion`]. Array entries other than subxact ids are
/// written as zeroes of the right size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionBody {
    /// `xact_time`.
    pub time: PgTimestamp,
    /// Database and tablespace OIDs.
    pub db: Option<(u32, u32)>,
    /// Subtransaction ids.
    pub subxacts: Vec<u32>,
    /// Relation files dropped.
    pub rels: Vec<RelFileLocator>,
    /// Number of dropped statistics entries.
    pub dropped_stats: u32,
    /// Number of invalidation messages (commits only).
    pub invals: u32,
    /// The prepared transaction's xid.
    pub twophase_xid: Option<u32>,
    /// The prepared transaction's GID.
    pub gid: Option<String>,
    /// Replication origin LSN and timestamp.
    pub origin: Option<(Lsn, PgTimestamp)>,
}

impl CompletionBody {
    /// The record's `xl_info` and main data for a commit or abort, laid out
    /// as the release with page magic `wal_magic` writes it.
    pub fn encode(&self, kind: XactKind, prepared: bool, wal_magic: u16) -> (u8, Vec<u8>) {
        let op = match (kind, prepared) {
            (XactKind::Commit, false) => XLOG_XACT_COMMIT,
            (XactKind::Commit, true) => XLOG_XACT_COMMIT_PREPARED,
            (XactKind::Abort, false) => XLOG_XACT_ABORT,
            (XactKind::Abort, true) => XLOG_XACT_ABORT_PREPARED,
        };
        let commit = kind == XactKind::Commit;
        let flags = [
            (self.db.is_some(), XACT_XINFO_HAS_DBINFO),
            (!self.subxacts.is_empty(), XACT_XINFO_HAS_SUBXACTS),
            (!self.rels.is_empty(), XACT_XINFO_HAS_RELFILELOCATORS),
            (self.dropped_stats > 0, XACT_XINFO_HAS_DROPPED_STATS),
            (commit && self.invals > 0, XACT_XINFO_HAS_INVALS),
            (self.twophase_xid.is_some(), XACT_XINFO_HAS_TWOPHASE),
            (
                self.twophase_xid.is_some() && self.gid.is_some(),
                XACT_XINFO_HAS_GID,
            ),
            (self.origin.is_some(), XACT_XINFO_HAS_ORIGIN),
        ];
        let xinfo = flags
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |acc, (_, f)| acc | f);
        let mut out = self.time.0.to_le_bytes().to_vec();
        if xinfo != 0 {
            out.extend_from_slice(&xinfo.to_le_bytes());
        }
        if let Some((db, ts)) = self.db {
            out.extend_from_slice(&db.to_le_bytes());
            out.extend_from_slice(&ts.to_le_bytes());
        }
        let count = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as i32).to_le_bytes());
        if !self.subxacts.is_empty() {
            count(&mut out, self.subxacts.len());
            self.subxacts
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        if !self.rels.is_empty() {
            count(&mut out, self.rels.len());
            for r in &self.rels {
                for v in [r.spc_oid, r.db_oid, r.rel_number] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        if self.dropped_stats > 0 {
            count(&mut out, self.dropped_stats as usize);
            let len = self.dropped_stats as usize * stats_item_len(wal_magic);
            out.resize(out.len() + len, 0);
        }
        if xinfo & XACT_XINFO_HAS_INVALS != 0 {
            count(&mut out, self.invals as usize);
            out.resize(out.len() + self.invals as usize * INVAL_MSG_LEN, 0);
        }
        if let Some(xid) = self.twophase_xid {
            out.extend_from_slice(&xid.to_le_bytes());
            if let Some(gid) = &self.gid {
                out.extend_from_slice(gid.as_bytes());
                out.push(0);
            }
        }
        if let Some((lsn, ts)) = self.origin {
            out.extend_from_slice(&lsn.0.to_le_bytes());
            out.extend_from_slice(&ts.0.to_le_bytes());
        }
        let info = op | if xinfo != 0 { XLOG_XACT_HAS_INFO } else { 0 };
        (info, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(xid: u32, info: u8, main_data: Vec<u8>, wal_magic: u16) -> WalRecord {
        WalRecord {
            lsn: Lsn(0x100_0028),
            end_lsn: Lsn(0x100_0060),
            prev: Lsn(0x100_0000),
            xid,
            rmid: RM_XACT_ID,
            info,
            main_data,
            wal_magic,
        }
    }

    #[test]
    fn plain_commit_uses_record_xid() {
        let (info, data) = CompletionBody {
            time: PgTimestamp(77),
            ..Default::default()
        }
        .encode(XactKind::Commit, false, 0xD110);
        assert_eq!(info, XLOG_XACT_COMMIT);
        assert_eq!(data.len(), 8);
        let c = parse_xact_completion(&record(735, info, data, 0xD110)).unwrap();
        assert_eq!(
            c,
            XactCompletion {
                kind: XactKind::Commit,
                xid: 735,
                time: PgTimestamp(77),
                prepared: false
            }
        );
    }

    #[test]
    fn commit_prepared_takes_twophase_xid_after_stats() {
        let body = CompletionBody {
            time: PgTimestamp(9),
            db: Some((5, 1663)),
            subxacts: vec![801, 802],
            rels: vec![RelFileLocator {
                spc_oid: 1663,
                db_oid: 5,
                rel_number: 16400,
            }],
            dropped_stats: 3,
            invals: 2,
            twophase_xid: Some(800),
            gid: Some("tx1".into()),
            origin: None,
        };
        for magic in [0xD110, 0xD113, 0xD116, 0xD118] {
            let (info, data) = body.encode(XactKind::Commit, true, magic);
            let c = parse_xact_completion(&record(0, info, data.clone(), magic)).unwrap();
            assert_eq!(
                (c.xid, c.kind, c.prepared),
                (800, XactKind::Commit, true),
                "{magic:#X}"
            );
            // Read with the wrong release's layout, the xid is garbage: the
            // magic really matters.
            let other = if magic == 0xD118 { 0xD110 } else { 0xD118 };
            let wrong = parse_xact_completion(&record(0, info, data, other));
            assert_ne!(wrong.map(|c| c.xid), Some(800));
        }
        let (info, data) = body.encode(XactKind::Abort, true, 0xD110);
        let c = parse_xact_completion(&record(0, info, data, 0xD110)).unwrap();
        assert_eq!((c.xid, c.kind), (800, XactKind::Abort));
    }

    #[test]
    fn ignores_other_records() {
        let (info, data) = CompletionBody::default().encode(XactKind::Commit, false, 0xD110);
        let mut r = record(1, info, data, 0xD110);
        r.rmid = 10;
        assert!(parse_xact_completion(&r).is_none());
        r.rmid = RM_XACT_ID;
        r.info = XLOG_XACT_PREPARE;
        assert!(parse_xact_completion(&r).is_none());
        r.info = XLOG_XACT_COMMIT;
        r.main_data.truncate(4);
        assert!(parse_xact_completion(&r).is_none());
        // A prepared commit without the two-phase part is malformed.
        let (info, data) = CompletionBody::default().encode(XactKind::Commit, true, 0xD110);
        assert!(parse_xact_completion(&record(0, info, data, 0xD110)).is_none());
        // A negative count is malformed, not a panic.
        let mut data = 5i64.to_le_bytes().to_vec();
        data.extend_from_slice(&XACT_XINFO_HAS_SUBXACTS.to_le_bytes());
        data.extend_from_slice(&(-1i32).to_le_bytes());
        assert!(parse_xact_completion(&record(1, XLOG_XACT_HAS_INFO, data, 0xD110)).is_none());
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(
            time: i64,
            xid in 3u32..,
            subxacts in proptest::collection::vec(any::<u32>(), 0..5),
            nrels in 0usize..4,
            dropped_stats in 0u32..4,
            invals in 0u32..4,
            twophase in proptest::option::of(3u32..),
            db: Option<(u32, u32)>,
            origin: Option<(u64, i64)>,
            abort: bool,
            magic in prop_oneof![Just(0xD110u16), Just(0xD113), Just(0xD116), Just(0xD118)],
        ) {
            let body = CompletionBody {
                time: PgTimestamp(time),
                db,
                subxacts,
                rels: vec![RelFileLocator { spc_oid: 1663, db_oid: 1, rel_number: 2 }; nrels],
                dropped_stats,
                invals,
                twophase_xid: twophase,
                gid: twophase.map(|x| format!("gid-{x}")),
                origin: origin.map(|(l, t)| (Lsn(l), PgTimestamp(t))),
            };
            let kind = if abort { XactKind::Abort } else { XactKind::Commit };
            let prepared = twophase.is_some();
            let (info, data) = body.encode(kind, prepared, magic);
            let c = parse_xact_completion(&record(xid, info, data, magic)).unwrap();
            prop_assert_eq!(c.kind, kind);
            prop_assert_eq!(c.time, PgTimestamp(time));
            prop_assert_eq!(c.prepared, prepared);
            prop_assert_eq!(c.xid, twophase.unwrap_or(xid));
        }

        #[test]
        fn parse_never_panics(info: u8, xid: u32, data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_xact_completion(&record(xid, info, data, 0xD118));
        }
    }
}
