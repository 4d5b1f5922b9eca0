//! Backup manifests. A manifest lists every file of a backup with its chunks (and where each
//! chunk is stored), so any backup restores from its manifest alone, whatever happened to
//! the backups before it. It is written last: a backup without a manifest does not exist.

use std::fmt;

use cairn_pgformat::{Lsn, TimelineId};
use serde::{Deserialize, Serialize};

use futures::StreamExt;

use crate::backend::PutOutcome;
use crate::error::RepoError;
use crate::keys::ContentId;
use crate::layout::{self, DbId, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::pack::{ChunkLocation, PackId};
use crate::repository::Repository;
use crate::stanza::StanzaInfo;

/// The manifest format this cairn writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// A backup's label: `20261122-140500F`, and for diff/incr the full's label, `_`, their own
/// time and `D`/`I` (`20261122-140500F_20261122-150000I`), so labels sort by time within
/// a chain and say their type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupLabel(String);

impl BackupLabel {
    pub fn new(s: &str) -> Result<BackupLabel, String> {
        let part_ok = |p: &str, last: bool| {
            let b = p.as_bytes();
            let stamp_ok = b.len() == 16
                && b[..8].iter().all(u8::is_ascii_digit)
                && b[8] == b'-'
                && b[9..15].iter().all(u8::is_ascii_digit);
            stamp_ok
                && (if last {
                    matches!(b[15], b'F' | b'D' | b'I')
                } else {
                    b[15] == b'F'
                })
        };
        let ok = match s.split_once('_') {
            None => part_ok(s, false),
            Some((full, own)) => part_ok(full, false) && part_ok(own, true) && !own.ends_with('F'),
        };
        if ok {
            Ok(BackupLabel(s.to_string()))
        } else {
            Err(format!("'{s}' is not a backup label"))
        }
    }

    /// The label for a backup taken at `time` of `kind`, with `full` as its chain's full.
    pub fn generate(
        time: time::OffsetDateTime,
        kind: BackupType,
        full: Option<&BackupLabel>,
    ) -> BackupLabel {
        let stamp = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second()
        );
        match (kind, full) {
            (BackupType::Full, _) | (_, None) => BackupLabel(format!("{stamp}F")),
            (BackupType::Diff, Some(f)) => BackupLabel(format!("{}_{stamp}D", f.full_part())),
            (BackupType::Incr, Some(f)) => BackupLabel(format!("{}_{stamp}I", f.full_part())),
        }
    }

    fn full_part(&self) -> &str {
        self.0.split('_').next().unwrap_or(&self.0)
    }

    /// The label of the full backup this one's chain starts with (itself for a full).
    pub fn full_label(&self) -> BackupLabel {
        BackupLabel(self.full_part().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BackupLabel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        BackupLabel::new(&s)
    }
}

impl From<BackupLabel> for String {
    fn from(l: BackupLabel) -> String {
        l.0
    }
}

impl fmt::Display for BackupLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        })
    }
}

/// How much of the database crossed the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncrementalMode {
    /// A full: everything was read and stored (chunks already stored are reused).
    Full,
    /// The server sent every file; content addressing stored only new chunks.
    ContentAddressed,
    /// PostgreSQL 17+ WAL summaries: the server sent only changed blocks.
    WalSummaries,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    /// A tablespace link under `pg_tblspc/`.
    Symlink,
}

/// One chunk of a file: its id, and the index into [`BackupManifest::packs`] plus offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ContentId,
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
    pub size: u32,
}

/// One file, directory or link of the backup, by its path relative to the data directory
/// (tablespace content under `pg_tblspc/OID/...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablespaceEntry {
    pub oid: u32,
    pub location: String,
}

/// A time on cairn's clock that a backup recorded (its start, its stop: the backup's
/// consistency point). Stored and shown as RFC 3339, with as many fractional digits as
/// needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupTime(pub time::OffsetDateTime);

impl BackupTime {
    /// Parse RFC 3339 (`None` when it is not).
    pub fn parse(rfc3339: &str) -> Option<BackupTime> {
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(BackupTime)
    }

    /// Now, in UTC.
    pub fn now() -> BackupTime {
        BackupTime(time::OffsetDateTime::now_utc())
    }

    /// The instant as PostgreSQL stores commit times (microseconds).
    pub fn pg(&self) -> Option<cairn_pgformat::PgTimestamp> {
        cairn_pgformat::PgTimestamp::from_offset_datetime(self.0)
    }
}

impl fmt::Display for BackupTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .0
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for BackupTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BackupTime::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text}")))
    }
}

/// Everything needed to restore one backup, and what `info` shows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: u32,
    pub label: BackupLabel,
    pub backup_type: BackupType,
    pub parent: Option<BackupLabel>,
    pub db_id: DbId,
    pub system_id: u64,
    pub pg_major: u32,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub start_time: BackupTime,
    pub stop_time: BackupTime,
    pub incremental_mode: IncrementalMode,
    pub packs: Vec<PackId>,
    pub files: Vec<ManifestFile>,
    pub tablespaces: Vec<TablespaceEntry>,
    pub backup_label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace_map: Option<String>,
    /// PostgreSQL's own `backup_manifest` (JSON text), the parent of a later
    /// `INCREMENTAL` backup and input to `pg_verifybackup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_manifest: Option<String>,
    /// Total size of the database files.
    pub db_size: u64,
    /// Bytes received from the server.
    pub bytes_received: u64,
    /// Bytes this backup added to the repository (new chunks only).
    pub repo_added: u64,
    /// The operator's notes (`cairn backup --annotation KEY=VALUE`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl BackupManifest {
    /// The location of a chunk reference.
    pub fn location(&self, c: &ChunkRef) -> Option<ChunkLocation> {
        Some(ChunkLocation {
            pack: self.packs.get(c.pack as usize)?.clone(),
            offset: c.offset,
            len: c.len,
            size: c.size,
        })
    }
}

/// A backup whose manifest cannot be used: it is listed, never restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedBackup {
    pub label: BackupLabel,
    pub key: ObjectKey,
    pub reason: String,
}

/// Every committed backup of a stanza, the usable ones oldest first, and the damaged ones.
#[derive(Debug, Clone, Default)]
pub struct BackupListing {
    pub usable: Vec<BackupManifest>,
    pub damaged: Vec<DamagedBackup>,
}

impl Repository {
    /// Store a backup's manifest: the commit point of the backup.
    pub async fn put_manifest(
        &self,
        stanza: &StanzaName,
        m: &BackupManifest,
    ) -> Result<(), RepoError> {
        let key = layout::backup_manifest(stanza, m.label.as_str());
        match self.put_json(&key, ObjectKind::BackupManifest, m).await? {
            PutOutcome::Created => {}
            PutOutcome::Exists => {
                return Err(RepoError::Concurrent {
                    what: "backup manifest",
                    key,
                });
            }
        }
        // The manifest is the commit point; a catalog that misses this entry (killed right
        // here) finds the manifest by listing the backup directory.
        self.announce_backup(stanza, m).await
    }

    /// The usable backups of the stanza, oldest first. A damaged manifest costs only its
    /// own backup: see [`Repository::backup_listing`] for those.
    pub async fn backups(&self, stanza: &StanzaName) -> Result<Vec<BackupManifest>, RepoError> {
        Ok(self.backup_listing(stanza).await?.usable)
    }

    /// Every committed backup of the stanza: usable ones oldest first, and damaged ones with
    /// the reason. Each manifest is checked against the label and stanza it is stored
    /// under and the system identifier of its cluster generation.
    pub async fn backup_listing(&self, stanza: &StanzaName) -> Result<BackupListing, RepoError> {
        let info = self.stanza_info(stanza).await?;
        let prefix = layout::backup_prefix(stanza);
        let listed = self.backend().list(&prefix, None).await?;
        // Each backup's manifest revisions (see `crate::revision`), oldest first.
        let mut revisions: std::collections::BTreeMap<BackupLabel, Vec<u64>> = Default::default();
        for l in &listed {
            let Some((label, file)) = l
                .key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if let (Ok(label), Some(rev)) = (
                BackupLabel::new(label),
                layout::parse_manifest_revision(file),
            ) {
                revisions.entry(label).or_default().push(rev);
            }
        }
        let read: Vec<Result<BackupManifest, DamagedBackup>> = futures::stream::iter(revisions)
            .map(|(label, mut revs)| {
                let info = info.as_ref();
                async move {
                    revs.sort_unstable();
                    self.read_newest_manifest(stanza, info, &label, &revs).await
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let mut out = BackupListing::default();
        for r in read {
            match r {
                Ok(m) => out.usable.push(m),
                Err(d) => out.damaged.push(d),
            }
        }
        out.usable
            .sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.label.cmp(&b.label)));
        out.damaged.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    /// One backup's manifest (its newest revision), checked; `Err` says why it cannot be
    /// used.
    pub async fn manifest(
        &self,
        stanza: &StanzaName,
        label: &BackupLabel,
    ) -> Result<BackupManifest, RepoError> {
        let info = self.stanza_info(stanza).await?;
        let revs = self.manifest_revisions(stanza, label).await?;
        match self
            .read_newest_manifest(stanza, info.as_ref(), label, &revs)
            .await
        {
            Ok(m) => Ok(m),
            Err(d) => {
                // Recorded so `info` shows it without reading every manifest; best effort.
                let _ = self
                    .record_backup_event(
                        stanza,
                        &crate::backups::BackupEvent::Damaged {
                            label: d.label.clone(),
                            reason: d.reason.clone(),
                        },
                    )
                    .await;
                Err(RepoError::BackupDamaged {
                    label: d.label.to_string(),
                    key: d.key,
                    reason: d.reason,
                })
            }
        }
    }

    /// One revision of a backup's manifest, checked against its label, stanza and system.
    pub(crate) async fn read_revision(
        &self,
        stanza: &StanzaName,
        info: Option<&StanzaInfo>,
        label: &BackupLabel,
        rev: u64,
    ) -> Result<BackupManifest, DamagedBackup> {
        let key = layout::backup_manifest_revision(stanza, label.as_str(), rev);
        let damaged = |reason: String| DamagedBackup {
            label: label.clone(),
            key: key.clone(),
            reason,
        };
        let m = match self
            .get_json::<BackupManifest>(&key, ObjectKind::BackupManifest, "backup manifest")
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Err(damaged("the manifest is missing".into())),
            Err(RepoError::Object { source, .. }) => return Err(damaged(source.to_string())),
            Err(RepoError::Malformed { message, .. }) => return Err(damaged(message)),
            // The store itself failing is not damage: say so rather than mislabel it.
            Err(e) => return Err(damaged(format!("could not be read: {e}"))),
        };
        if &m.label != label {
            return Err(damaged(format!(
                "the manifest says it is backup {}",
                m.label
            )));
        }
        match info.and_then(|i| i.generation(m.db_id)) {
            Some(g) if g.system_id == m.system_id => Ok(m),
            Some(g) => Err(damaged(format!(
                "the manifest is of system {}, but generation {} of the stanza is system {}",
                m.system_id, m.db_id, g.system_id
            ))),
            None => Err(damaged(format!(
                "the manifest names cluster generation {}, which the stanza does not have",
                m.db_id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let t = time::macros::datetime!(2026-11-22 14:05:09 UTC);
        let full = BackupLabel::generate(t, BackupType::Full, None);
        assert_eq!(full.as_str(), "20261122-140509F");
        let incr = BackupLabel::generate(t, BackupType::Incr, Some(&full));
        assert_eq!(incr.as_str(), "20261122-140509F_20261122-140509I");
        let diff = BackupLabel::generate(t, BackupType::Diff, Some(&incr));
        assert_eq!(diff.as_str(), "20261122-140509F_20261122-140509D");
        for good in [full.as_str(), incr.as_str(), diff.as_str()] {
            assert!(BackupLabel::new(good).is_ok());
        }
        for bad in [
            "",
            "x",
            "20261122-140509X",
            "20261122-140509I",
            "../20261122-140509F",
            "20261122-140509F_20261122-140509F",
        ] {
            assert!(BackupLabel::new(bad).is_err(), "{bad}");
        }
    }
}
