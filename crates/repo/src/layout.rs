//! Where every object lives in the repository. All keys are built here and nowhere else.

use std::fmt;

use cairn_pgformat::WalFileName;
use serde::{Deserialize, Serialize};

use crate::keys::ContentId;
use crate::lock::LockTarget;

/// A key in the repository: `/`-separated components of `[A-Za-z0-9._-]`, none of them
/// empty, `.` or `..`, so a key can never name something outside the repository root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(s: impl Into<String>) -> Result<ObjectKey, String> {
        let s = s.into();
        if s.is_empty() || s.len() > 1024 {
            return Err(format!("object key '{s}' has a bad length"));
        }
        for part in s.split('/') {
            let ok_chars = part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if part.is_empty() || part == "." || part == ".." || !ok_chars {
                return Err(format!("object key '{s}' has a bad component '{part}'"));
            }
        }
        Ok(ObjectKey(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    // Keys built from validated parts cannot fail; a failure is a bug here.
    fn built(s: String) -> ObjectKey {
        ObjectKey::new(s).expect("layout builds valid keys")
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ObjectKey::new(s)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an object is, as its reader names it. It is bound into the object's encoding
/// (see [`crate::object`]), so an object copied or moved under another key does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(String);

impl Identity {
    /// The identity of the object stored under `key` (most objects).
    pub fn of(key: &ObjectKey) -> Identity {
        Identity(format!("key:{key}"))
    }

    /// A chunk is what it holds: a chunk is the same wherever a repack moves it.
    pub fn chunk(stanza: &StanzaName, id: &ContentId) -> Identity {
        Identity(format!("chunk:{stanza}:{id}"))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stanza's name, as validated by the configuration (letters, digits, `-`, `_`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StanzaName(String);

impl StanzaName {
    pub fn new(s: &str) -> Result<StanzaName, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(StanzaName(s.to_string()))
        } else {
            Err(format!("'{s}' is not a valid stanza name"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StanzaName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        StanzaName::new(&s)
    }
}

impl From<StanzaName> for String {
    fn from(k: StanzaName) -> String {
        k.0
    }
}

impl fmt::Display for StanzaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of a stanza's PostgreSQL cluster generation; it grows on `stanza-upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DbId(pub u32);

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Format 1's key file. Format 2 never writes it; its presence marks a format-1 repository.
pub fn format1_config() -> ObjectKey {
    ObjectKey::built("config".into())
}

/// Where the key files live: `keyring/SEQ` and its second copy `keyring/SEQ.copy`.
pub fn keyring_prefix() -> &'static str {
    "keyring/"
}

/// Generation `seq` of the key file (plain JSON with its own check), or its copy.
pub fn key_file(seq: u64, copy: bool) -> ObjectKey {
    ObjectKey::built(format!(
        "{}{seq:08}{}",
        keyring_prefix(),
        if copy { ".copy" } else { "" }
    ))
}

/// The generation of a key file or stanza info key, and whether it is the copy.
pub fn parse_copy_seq(key: &str) -> Option<(u64, bool)> {
    let name = key.rsplit('/').next()?;
    let (seq, copy) = match name.strip_suffix(".copy") {
        Some(seq) => (seq, true),
        None => (name, false),
    };
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, copy))
}

fn stanza_root(stanza: &StanzaName) -> String {
    format!("stanza/{stanza}")
}

/// Prefix of a stanza's info generations.
pub fn stanza_info_prefix(stanza: &StanzaName) -> String {
    format!("{}/info/", stanza_root(stanza))
}

/// Generation `seq` of a stanza's info. Its second copy is `.copy` beside it, and decodes
/// under the same identity (that of the main key).
pub fn stanza_info(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:08}", stanza_info_prefix(stanza)))
}

pub fn stanza_info_copy(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:08}.copy", stanza_info_prefix(stanza)))
}

/// Everything a stanza owns (for `stanza-delete`).
pub fn stanza_prefix(stanza: &StanzaName) -> String {
    format!("{}/", stanza_root(stanza))
}

fn wal_dir(kind: &str, stanza: &StanzaName, db: DbId, name: &WalFileName) -> String {
    format!(
        "{}/{kind}/{db}/{:08X}",
        stanza_root(stanza),
        name.timeline().0
    )
}

/// One archived WAL file (segment, partial, history or backup history): a single GET.
pub fn wal_file(stanza: &StanzaName, db: DbId, name: &WalFileName) -> ObjectKey {
    ObjectKey::built(format!("{}/{name}", wal_dir("wal", stanza, db, name)))
}

/// Where a good copy of a WAL file waits, durable, while a damaged copy is replaced.
pub fn wal_repair(stanza: &StanzaName, db: DbId, name: &WalFileName) -> ObjectKey {
    ObjectKey::built(format!(
        "{}{name}.{:016x}",
        wal_repair_prefix(stanza, db),
        rand::random::<u64>()
    ))
}

pub fn wal_repair_prefix(stanza: &StanzaName, db: DbId) -> String {
    format!("{}/wal-repair/{db}/", stanza_root(stanza))
}

/// One entry of a stanza's journal `name` (`wal`, `backups`): see [`crate::journal`].
///
/// Entries sit in a directory per day (the first 8 characters of `file`, its date), so a
/// reader that lists the entries after a point lists only the days from it on.
pub fn journal_log(stanza: &StanzaName, name: &str, file: &str) -> ObjectKey {
    let day = file.get(..8).unwrap_or(file);
    ObjectKey::built(format!("{}{day}/{file}", journal_log_prefix(stanza, name)))
}

pub fn journal_log_prefix(stanza: &StanzaName, name: &str) -> String {
    format!("{}/journal/{name}/log/", stanza_root(stanza))
}

/// Snapshot `seq` of a stanza's journal `name`.
pub fn journal_snap(stanza: &StanzaName, name: &str, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:016}", journal_snap_prefix(stanza, name)))
}

pub fn journal_snap_prefix(stanza: &StanzaName, name: &str) -> String {
    format!("{}/journal/{name}/snap/", stanza_root(stanza))
}

/// Index `seq` of the stanza's WAL catalog (derived from snapshot `seq`: see
/// `wal_index`).
pub fn wal_index(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:016}", wal_index_prefix(stanza)))
}

pub fn wal_index_prefix(stanza: &StanzaName) -> String {
    format!("{}/journal/wal/index/", stanza_root(stanza))
}

/// A page of WAL summaries, named by generation, timeline, page number and content.
pub fn wal_page(stanza: &StanzaName, db: DbId, timeline: u32, page: u64, id: &str) -> ObjectKey {
    ObjectKey::built(format!(
        "{}{db}-{timeline:08X}-{page:016X}-{id}",
        wal_page_prefix(stanza)
    ))
}

pub fn wal_page_prefix(stanza: &StanzaName) -> String {
    format!("{}/journal/wal/page/", stanza_root(stanza))
}

/// A pack: many encoded chunks appended, written once.
pub fn pack(stanza: &StanzaName, pack: &str) -> ObjectKey {
    ObjectKey::built(format!(
        "{}/pack/{}/{pack}",
        stanza_root(stanza),
        &pack[..2]
    ))
}

/// The index of one pack (which chunks it holds where), written right after the pack.
pub fn pack_index(stanza: &StanzaName, pack: &str) -> ObjectKey {
    ObjectKey::built(format!("{}{pack}", pack_index_prefix(stanza)))
}

pub fn pack_index_prefix(stanza: &StanzaName) -> String {
    format!("{}/pack-index/", stanza_root(stanza))
}

/// Generation `seq` of the chunk index snapshot: its head (which packs it covers, where its
/// parts are), written after the parts.
pub fn chunk_snapshot_head(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:016}", chunk_snapshot_head_prefix(stanza)))
}

pub fn chunk_snapshot_head_prefix(stanza: &StanzaName) -> String {
    format!("{}/chunk-index/head/", stanza_root(stanza))
}

/// Part `part` of the snapshot whose parts are named `id` (random: two writers of the
/// same generation never share a part).
pub fn chunk_snapshot_part(stanza: &StanzaName, id: &str, part: u32) -> ObjectKey {
    ObjectKey::built(format!(
        "{}{part:03}",
        chunk_snapshot_part_prefix(stanza, id)
    ))
}

pub fn chunk_snapshot_part_prefix(stanza: &StanzaName, id: &str) -> String {
    format!("{}/chunk-index/part/{id}/", stanza_root(stanza))
}

/// A backup's manifest: written last, it is the backup's commit point.
pub fn backup_manifest(stanza: &StanzaName, label: &str) -> ObjectKey {
    ObjectKey::built(format!("{}{label}/manifest", backup_prefix(stanza)))
}

pub fn backup_prefix(stanza: &StanzaName) -> String {
    format!("{}/backup/", stanza_root(stanza))
}

/// Everything of one backup: its manifest and the manifest's revisions.
pub fn backup_dir_prefix(stanza: &StanzaName, label: &str) -> String {
    format!("{}{label}/", backup_prefix(stanza))
}

/// Revision `rev` of a backup's manifest: 0 is the manifest the backup wrote
/// ([`backup_manifest`]); a repack writes `manifest.00000001`, `manifest.00000002`, ...
/// pointing its chunks at their new packs. The newest revision is the manifest.
pub fn backup_manifest_revision(stanza: &StanzaName, label: &str, rev: u64) -> ObjectKey {
    if rev == 0 {
        return backup_manifest(stanza, label);
    }
    ObjectKey::built(format!(
        "{}manifest.{rev:08}",
        backup_dir_prefix(stanza, label)
    ))
}

/// The revision a file name under a backup's directory is (`manifest` -> 0,
/// `manifest.00000003` -> 3); `None` for anything else.
pub fn parse_manifest_revision(file: &str) -> Option<u64> {
    if file == "manifest" {
        return Some(0);
    }
    let seq = file.strip_prefix("manifest.")?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok().filter(|r| *r > 0)
}

/// Generation `seq` of the stanza's garbage-collection state (see `crate::gc`).
pub fn gc_state(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:08}", gc_prefix(stanza)))
}

pub fn gc_prefix(stanza: &StanzaName) -> String {
    format!("{}/gc/", stanza_root(stanza))
}

/// Where the objects of one lock live: `stanza/<S>/lock/backup/`, `stanza/<S>/lock/maintenance/`
/// or, repository-wide, `lock/keys/`. The holder is the highest sequence number.
pub fn lock_prefix(target: &LockTarget) -> String {
    match target {
        LockTarget::Backup(s) => format!("{}/lock/backup/", stanza_root(s)),
        LockTarget::Maintenance(s) => format!("{}/lock/maintenance/", stanza_root(s)),
        LockTarget::Keys => "lock/keys/".into(),
    }
}

/// One generation of a lock, created only if absent.
pub fn lock(target: &LockTarget, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:08}", lock_prefix(target)))
}

/// Where a stanza's records of one kind live (`verify`, `drill`, ...): see [`crate::record`].
pub fn record_prefix(stanza: &StanzaName, kind: &str) -> String {
    format!("{}/record/{kind}/", stanza_root(stanza))
}

/// Every record of a stanza, of any kind.
pub fn records_prefix(stanza: &StanzaName) -> String {
    format!("{}/record/", stanza_root(stanza))
}

/// One record: `stanza/S/record/KIND/STAMP-RAND`, written once.
pub fn record(stanza: &StanzaName, kind: &str, name: &str) -> ObjectKey {
    ObjectKey::built(format!("{}{name}", record_prefix(stanza, kind)))
}

/// Where packs live (`stanza/S/pack/XX/PACKID`).
pub fn pack_prefix(stanza: &StanzaName) -> String {
    format!("{}/pack/", stanza_root(stanza))
}

/// Where good copies wait during a WAL repair, in every cluster generation.
pub fn wal_repair_root(stanza: &StanzaName) -> String {
    format!("{}/wal-repair/", stanza_root(stanza))
}

/// The sequence number at the end of a generation key (`.../00000003` -> 3).
pub fn parse_seq(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", "..", ".", "a/b c", "a\\b", "ä",
        ] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ObjectKey::new("stanza/main/wal/1/00000001/000000010000000000000001").is_ok());
    }

    #[test]
    fn generation_keys_round_trip() {
        let s = StanzaName::new("main").unwrap();
        let name: WalFileName = "000000020000000100000003".parse().unwrap();
        assert_eq!(
            wal_file(&s, DbId(3), &name).as_str(),
            "stanza/main/wal/3/00000002/000000020000000100000003"
        );
        assert_eq!(parse_seq(stanza_info(&s, 12).as_str()), Some(12));
        assert_eq!(
            parse_copy_seq(stanza_info(&s, 12).as_str()),
            Some((12, false))
        );
        assert_eq!(
            parse_copy_seq(stanza_info_copy(&s, 12).as_str()),
            Some((12, true))
        );
        assert_eq!(parse_copy_seq(key_file(3, true).as_str()), Some((3, true)));
        assert_eq!(parse_copy_seq("keyring/3.copy"), None);
    }

    #[test]
    fn manifest_revisions() {
        let s = StanzaName::new("main").unwrap();
        let l = "20261201-100000F";
        assert_eq!(backup_manifest_revision(&s, l, 0), backup_manifest(&s, l));
        let r3 = backup_manifest_revision(&s, l, 3);
        assert_eq!(
            r3.as_str(),
            "stanza/main/backup/20261201-100000F/manifest.00000003"
        );
        assert!(r3.as_str().starts_with(&backup_dir_prefix(&s, l)));
        assert_eq!(parse_manifest_revision(r3.file_name()), Some(3));
        assert_eq!(parse_manifest_revision("manifest"), Some(0));
        for bad in [
            "manifest.3",
            "manifest.00000000",
            "manifest.0000000x",
            "other",
        ] {
            assert_eq!(parse_manifest_revision(bad), None, "{bad}");
        }
        assert_eq!(gc_state(&s, 7).as_str(), "stanza/main/gc/00000007");
        assert_eq!(parse_seq(gc_state(&s, 7).as_str()), Some(7));
    }

    #[test]
    fn lock_keys() {
        let s = StanzaName::new("main").unwrap();
        let backup = lock(&LockTarget::Backup(s.clone()), 7);
        assert_eq!(backup.as_str(), "stanza/main/lock/backup/00000007");
        assert!(
            backup
                .as_str()
                .starts_with(&lock_prefix(&LockTarget::Backup(s.clone())))
        );
        assert_eq!(
            lock(&LockTarget::Maintenance(s), 1).as_str(),
            "stanza/main/lock/maintenance/00000001"
        );
        assert_eq!(lock(&LockTarget::Keys, 2).as_str(), "lock/keys/00000002");
        assert_eq!(parse_seq(backup.as_str()), Some(7));
    }
}
