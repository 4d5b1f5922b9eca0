//! Records of the XLOG resource manager that matter to archiving and
//! recovery planning: restore points, WAL switches, checkpoints, end of
//! recovery and backup end. Info codes from `src/include/catalog/pg_control.h`,
//! bodies from `xlog_internal.h`.

use crate::lsn::Lsn;
use crate::record::{WalRecord, rmgr::RM_XLOG_ID};
use crate::timeline::TimelineId;
use crate::timestamp::PgTimestamp;

/// Shutdown checkpoint (XLOG_CHECKPOINT_SHUTDOWN).
pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
/// Online checkpoint (XLOG_CHECKPOINT_ONLINE).
pub const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
/// No-op (XLOG_NOOP).
pub const XLOG_NOOP: u8 = 0x20;
/// WAL switch: the rest of the segment is unused (XLOG_SWITCH).
pub const XLOG_SWITCH: u8 = 0x40;
/// End of an online backup (XLOG_BACKUP_END).
pub const XLOG_BACKUP_END: u8 = 0x50;
/// Named restore point (XLOG_RESTORE_POINT).
pub const XLOG_RESTORE_POINT: u8 = 0x70;
/// End of recovery without a checkpoint (XLOG_END_OF_RECOVERY).
pub const XLOG_END_OF_RECOVERY: u8 = 0x90;
/// Replaces a lost continuation record (XLOG_OVERWRITE_CONTRECORD).
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

/// Room for a restore point name, terminating NUL included (MAXFNAMELEN).
pub const MAX_RESTORE_POINT_NAME: usize = 64;
/// sizeof(xl_restore_point): timestamp and name.
const RESTORE_POINT_LEN: usize = 8 + MAX_RESTORE_POINT_NAME;

fn is_xlog(record: &WalRecord, code: u8) -> bool {
    record.rmid == RM_XLOG_ID && record.rmgr_info() == code
}

fn i64_at(data: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A named restore point (xl_restore_point), what
/// `pg_create_restore_point()` writes and `recovery_target_name` stops at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    /// `rp_time`: when it was created.
    pub time: PgTimestamp,
    /// `rp_name`: its name (invalid UTF-8 replaced).
    pub name: String,
}

/// The restore point recorded by `record`, if it is one.
pub fn parse_restore_point(record: &WalRecord) -> Option<RestorePoint> {
    if !is_xlog(record, XLOG_RESTORE_POINT) || record.main_data.len() < RESTORE_POINT_LEN {
        return None;
    }
    let time = PgTimestamp(i64_at(&record.main_data, 0)?);
    let raw = &record.main_data[8..RESTORE_POINT_LEN];
    let name = raw.split(|b| *b == 0).next().unwrap_or_default();
    Some(RestorePoint {
        time,
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

/// The main data of a restore point record; the name is cut to 63 bytes
/// as strlcpy() into `rp_name` would.
pub fn encode_restore_point(time: PgTimestamp, name: &str) -> Vec<u8> {
    let mut out = vec![0u8; RESTORE_POINT_LEN];
    out[..8].copy_from_slice(&time.0.to_le_bytes());
    let name = &name.as_bytes()[..name.len().min(MAX_RESTORE_POINT_NAME - 1)];
    out[8..8 + name.len()].copy_from_slice(name);
    out
}

/// Whether `record` is XLOG_SWITCH.
pub fn is_switch(record: &WalRecord) -> bool {
    is_xlog(record, XLOG_SWITCH)
}

/// The stable start of a checkpoint record's body (CheckPoint): the fields
/// whose offsets are the same in 15 to 18.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Shutdown (true) or online checkpoint.
    pub shutdown: bool,
    /// `redo`: where replay must start for this checkpoint.
    pub redo: Lsn,
    /// `ThisTimeLineID`.
    pub tli: TimelineId,
    /// `PrevTimeLineID`: differs from `tli` on the first checkpoint of a timeline.
    pub prev_tli: TimelineId,
}

/// The checkpoint recorded by `record`, if it is one.
pub fn parse_checkpoint(record: &WalRecord) -> Option<Checkpoint> {
    let shutdown = if is_xlog(record, XLOG_CHECKPOINT_SHUTDOWN) {
        true
    } else if is_xlog(record, XLOG_CHECKPOINT_ONLINE) {
        false
    } else {
        return None;
    };
    let d = &record.main_data;
    Some(Checkpoint {
        shutdown,
        redo: Lsn(i64_at(d, 0)? as u64),
        tli: TimelineId(u32_at(d, 8)?),
        prev_tli: TimelineId(u32_at(d, 12)?),
    })
}

/// End of recovery on a new timeline (xl_end_of_recovery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndOfRecovery {
    /// `end_time`.
    pub time: PgTimestamp,
    /// `ThisTimeLineID`: the new timeline.
    pub tli: TimelineId,
    /// `PrevTimeLineID`: the timeline it forked from.
    pub prev_tli: TimelineId,
}

/// The end-of-recovery record, if `record` is one.
pub fn parse_end_of_recovery(record: &WalRecord) -> Option<EndOfRecovery> {
    if !is_xlog(record, XLOG_END_OF_RECOVERY) {
        return None;
    }
    let d = &record.main_data;
    Some(EndOfRecovery {
        time: PgTimestamp(i64_at(d, 0)?),
        tli: TimelineId(u32_at(d, 8)?),
        prev_tli: TimelineId(u32_at(d, 12)?),
    })
}

/// The start LSN of the backup that XLOG_BACKUP_END closes, if `record` is one.
pub fn parse_backup_end(record: &WalRecord) -> Option<Lsn> {
    if !is_xlog(record, XLOG_BACKUP_END) {
        return None;
    }
    Some(Lsn(i64_at(&record.main_data, 0)? as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn xlog_record(info: u8, main_data: Vec<u8>) -> WalRecord {
        WalRecord {
            lsn: Lsn(0x100_0028),
            end_lsn: Lsn(0x100_0070),
            prev: Lsn(0x100_0000),
            xid: 0,
            rmid: RM_XLOG_ID,
            info,
            main_data,
            wal_magic: 0xD110,
        }
    }

    #[test]
    fn restore_point_round_trip() {
        let rec = xlog_record(
            XLOG_RESTORE_POINT,
            encode_restore_point(PgTimestamp(5), "before-upgrade"),
        );
        let rp = parse_restore_point(&rec).unwrap();
        assert_eq!(rp.name, "before-upgrade");
        assert_eq!(rp.time, PgTimestamp(5));
        let long = "x".repeat(100);
        let rec = xlog_record(
            XLOG_RESTORE_POINT,
            encode_restore_point(PgTimestamp(5), &long),
        );
        assert_eq!(parse_restore_point(&rec).unwrap().name.len(), 63);
        assert!(parse_restore_point(&xlog_record(XLOG_SWITCH, vec![])).is_none());
        assert!(parse_restore_point(&xlog_record(XLOG_RESTORE_POINT, vec![0; 10])).is_none());
        assert!(is_switch(&xlog_record(XLOG_SWITCH, vec![])));
    }

    #[test]
    fn checkpoint_and_end_of_recovery() {
        let mut body = 0x300_0028u64.to_le_bytes().to_vec();
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&[0; 72]);
        let cp = parse_checkpoint(&xlog_record(XLOG_CHECKPOINT_ONLINE, body.clone())).unwrap();
        assert_eq!(
            (cp.shutdown, cp.redo, cp.tli, cp.prev_tli),
            (false, Lsn(0x300_0028), TimelineId(2), TimelineId(1))
        );
        let eor = parse_end_of_recovery(&xlog_record(XLOG_END_OF_RECOVERY, body.clone())).unwrap();
        assert_eq!(eor.tli, TimelineId(2));
        assert_eq!(
            parse_backup_end(&xlog_record(XLOG_BACKUP_END, body)),
            Some(Lsn(0x300_0028))
        );
    }

    proptest! {
        #[test]
        fn restore_point_names_round_trip(name in "[a-zA-Z0-9 _.-]{0,63}", t: i64) {
            let rec = xlog_record(XLOG_RESTORE_POINT, encode_restore_point(PgTimestamp(t), &name));
            let rp = parse_restore_point(&rec).unwrap();
            prop_assert_eq!(rp.name, name);
            prop_assert_eq!(rp.time, PgTimestamp(t));
        }
    }
}
