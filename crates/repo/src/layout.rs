//! Where every object lives in the repository. All keys are built here and nowhere else.

use std::fmt;

use cairn_pgformat::WalFileName;
use serde::{Deserialize, Serialize};

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

/// The repository's own configuration (key wrap, format). Plain JSON, never encrypted.
pub fn repo_config() -> ObjectKey {
    ObjectKey::built("config".into())
}

fn stanza_root(stanza: &StanzaName) -> String {
    format!("stanza/{stanza}")
}

/// Prefix of a stanza's info generations.
pub fn stanza_info_prefix(stanza: &StanzaName) -> String {
    format!("{}/info/", stanza_root(stanza))
}

pub fn stanza_info(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:08}", stanza_info_prefix(stanza)))
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

/// The planner's summary of one archived WAL file, written right after the file.
pub fn wal_summary(stanza: &StanzaName, db: DbId, name: &WalFileName) -> ObjectKey {
    ObjectKey::built(format!("{}/{name}", wal_dir("walsum", stanza, db, name)))
}

pub fn wal_summary_prefix(stanza: &StanzaName) -> String {
    format!("{}/walsum/", stanza_root(stanza))
}

/// Parse a summary key back into its database id and file name.
pub fn parse_wal_summary(stanza: &StanzaName, key: &str) -> Option<(DbId, WalFileName)> {
    let rest = key.strip_prefix(&wal_summary_prefix(stanza))?;
    let mut parts = rest.split('/');
    let db = DbId(parts.next()?.parse().ok()?);
    let _tli = parts.next()?;
    let name = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((db, name))
}

pub fn wal_catalog_prefix(stanza: &StanzaName) -> String {
    format!("{}/catalog/wal/", stanza_root(stanza))
}

pub fn wal_catalog(stanza: &StanzaName, seq: u64) -> ObjectKey {
    ObjectKey::built(format!("{}{seq:016}", wal_catalog_prefix(stanza)))
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

/// A backup's manifest: written last, it is the backup's commit point.
pub fn backup_manifest(stanza: &StanzaName, label: &str) -> ObjectKey {
    ObjectKey::built(format!("{}{label}/manifest", backup_prefix(stanza)))
}

pub fn backup_prefix(stanza: &StanzaName) -> String {
    format!("{}/backup/", stanza_root(stanza))
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
    fn summary_keys_round_trip() {
        let s = StanzaName::new("main").unwrap();
        let name: WalFileName = "000000020000000100000003".parse().unwrap();
        let key = wal_summary(&s, DbId(3), &name);
        assert_eq!(
            key.as_str(),
            "stanza/main/walsum/3/00000002/000000020000000100000003"
        );
        assert_eq!(parse_wal_summary(&s, key.as_str()), Some((DbId(3), name)));
        assert_eq!(parse_seq(stanza_info(&s, 12).as_str()), Some(12));
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
