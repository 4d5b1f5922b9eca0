//! The report of one verify run: what was checked, every problem with the object's key,
//! the kind of damage and what it affects, and what was cleaned up. It serializes as the
//! JSON of `cairn verify --output json` (docs/verify-json.md: fields are only ever added).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use cairn_repo::{BackupLabel, Damage, ObjectError, StanzaName};
use serde::{Deserialize, Serialize};

/// Version of the JSON document; bumped only for incompatible changes.
pub const REPORT_FORMAT: u32 = 1;

/// The outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing damaged (there may be warnings).
    Ok,
    /// At least one problem of severity `damage`.
    Damaged,
}

/// How bad a problem is: damage makes the run fail; a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Damage,
    Warning,
}

/// What kind of object a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectClass {
    KeyFile,
    StanzaInfo,
    JournalSnapshot,
    JournalEntry,
    Manifest,
    PackIndex,
    Pack,
    WalFile,
    WalRepairCopy,
    Record,
    Lock,
    Stray,
}

impl ObjectClass {
    pub fn name(self) -> &'static str {
        match self {
            ObjectClass::KeyFile => "key file",
            ObjectClass::StanzaInfo => "stanza info",
            ObjectClass::JournalSnapshot => "catalog snapshot",
            ObjectClass::JournalEntry => "catalog entry",
            ObjectClass::Manifest => "manifest",
            ObjectClass::PackIndex => "pack index",
            ObjectClass::Pack => "pack",
            ObjectClass::WalFile => "WAL file",
            ObjectClass::WalRepairCopy => "WAL repair copy",
            ObjectClass::Record => "record",
            ObjectClass::Lock => "lock",
            ObjectClass::Stray => "unknown object",
        }
    }
}

/// The kind of damage, as a stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// Not stored (deleted, or never written).
    Missing,
    Truncated,
    /// Bytes after the object's end.
    Trailing,
    BadMagic,
    /// A format version this cairn does not read.
    Version,
    WrongKind,
    /// The header fails its check.
    Header,
    /// A frame fails authentication (altered bytes, or the wrong key).
    Auth,
    Decompress,
    /// The content does not hash to its content id.
    Hash,
    /// A valid object stored under another key than its own (copied or moved).
    Misplaced,
    /// Encrypted, but the repository has no key.
    NeedsKey,
    /// It decodes, but what it holds is wrong.
    Malformed,
    /// It is whole, but not what the catalog or index says (another content id, location).
    Mismatch,
    /// WAL missing from a timeline between archived segments.
    Gap,
    /// Left behind by an interrupted writer; nothing uses it.
    Leftover,
}

impl DamageKind {
    pub fn of(d: &Damage) -> DamageKind {
        match d {
            Damage::Missing => DamageKind::Missing,
            Damage::Content(_) => DamageKind::Malformed,
            Damage::Object(e) => match e {
                ObjectError::BadMagic => DamageKind::BadMagic,
                ObjectError::Version { .. } => DamageKind::Version,
                ObjectError::WrongKind { .. } => DamageKind::WrongKind,
                ObjectError::Truncated { .. } => DamageKind::Truncated,
                ObjectError::Trailing { .. } => DamageKind::Trailing,
                ObjectError::Auth { .. } => DamageKind::Auth,
                ObjectError::NeedsKey => DamageKind::NeedsKey,
                ObjectError::Decompress { .. } => DamageKind::Decompress,
                ObjectError::Hash => DamageKind::Hash,
                ObjectError::Header { .. } => DamageKind::Header,
                ObjectError::Misplaced => DamageKind::Misplaced,
            },
        }
    }
}

/// What a problem costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EffectKind {
    /// A backup cannot be restored (`backup` names it).
    BackupUnrestorable,
    /// Recovery on a timeline stops short (`timeline`, `segment`, `windows_end`).
    RecoveryWindow,
    /// One of two copies is lost; the other is in use.
    Redundancy,
    /// The stanza cannot be used at all.
    Stanza,
    /// A catalog reads slower or lacks an entry; see the text.
    Catalog,
    /// New backups are affected (they reuse damaged chunks, or store known ones again).
    NewBackups,
    /// Nothing uses the object.
    Nothing,
}

/// One consequence of a problem, for people (`text`) and machines (the other fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub kind: EffectKind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The last commit a restore can reach on `timeline` (`None`: no commit after the backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_end: Option<String>,
}

impl Effect {
    pub fn new(kind: EffectKind, text: impl Into<String>) -> Effect {
        Effect {
            kind,
            text: text.into(),
            backup: None,
            timeline: None,
            segment: None,
            windows_end: None,
        }
    }

    pub fn backup(label: &BackupLabel, why: &str) -> Effect {
        Effect {
            backup: Some(label.clone()),
            ..Effect::new(
                EffectKind::BackupUnrestorable,
                format!("backup {label} cannot be restored{why}"),
            )
        }
    }
}

/// One problem: an object, what is wrong with it, what that affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub severity: Severity,
    pub object: ObjectClass,
    pub key: String,
    pub damage: DamageKind,
    pub detail: String,
    pub affects: Vec<Effect>,
}

impl Problem {
    pub fn damage(object: ObjectClass, key: impl Into<String>, d: &Damage) -> Problem {
        Problem {
            severity: Severity::Damage,
            object,
            key: key.into(),
            damage: DamageKind::of(d),
            detail: d.to_string(),
            affects: Vec::new(),
        }
    }

    pub fn with(mut self, effect: Effect) -> Problem {
        self.affects.push(effect);
        self
    }

    pub fn warning(mut self) -> Problem {
        self.severity = Severity::Warning;
        self
    }

    /// The backups this problem makes unrestorable.
    pub fn backups(&self) -> impl Iterator<Item = &BackupLabel> {
        self.affects.iter().filter_map(|e| e.backup.as_ref())
    }
}

/// How much was read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// Objects read from the store, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    pub key_files: u64,
    pub stanza_info: u64,
    pub journal_snapshots: u64,
    pub journal_entries: u64,
    pub records: u64,
    pub manifests: u64,
    pub pack_indexes: u64,
    pub packs: u64,
    /// Chunks decoded inside the packs (each once, however many backups use it).
    pub chunks: u64,
    pub wal_files: u64,
    /// Backups whose WAL from start to stop was checked.
    pub backups: u64,
}

/// Something verify removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub key: String,
    pub bytes: u64,
    pub reason: String,
}

/// The result of one verify run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub format: u32,
    pub repository: String,
    pub stanza: StanzaName,
    /// The one backup checked (`--set`), or `None` for everything.
    pub set: Option<BackupLabel>,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    pub status: Status,
    pub checked: Checked,
    /// Damage first, then warnings; by object kind and key within each.
    pub problems: Vec<Problem>,
    /// Backups some problem makes unrestorable, sorted.
    pub unrestorable: Vec<BackupLabel>,
    pub removed: Vec<Removed>,
    /// What the run itself could not do (e.g. record its result).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Problems of severity damage.
    pub fn damage_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Damage)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.problems.len() - self.damage_count()
    }

    /// Sort problems, fill in `unrestorable` and `status`.
    pub(crate) fn finish(&mut self) {
        self.problems
            .sort_by(|a, b| (a.severity, a.object, &a.key).cmp(&(b.severity, b.object, &b.key)));
        let labels: BTreeSet<BackupLabel> = self
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Damage)
            .flat_map(|p| p.backups().cloned())
            .collect();
        self.unrestorable = labels.into_iter().collect();
        self.status = if self.damage_count() > 0 {
            Status::Damaged
        } else {
            Status::Ok
        };
    }

    /// The one summary line printed at the end of a run.
    pub fn summary(&self) -> String {
        let scope = match &self.set {
            Some(l) => format!("backup {l} of stanza {}", self.stanza),
            None => format!("stanza {}", self.stanza),
        };
        let mut s = format!(
            "verify {scope}: {} objects, {} checked in {:.1}s",
            self.checked.objects,
            human_bytes(self.checked.bytes),
            self.duration_seconds
        );
        match self.status {
            Status::Ok => s.push_str(": ok"),
            Status::Damaged => {
                let n = self.damage_count();
                let _ = write!(s, ": {n} damaged object{}", if n == 1 { "" } else { "s" });
                if !self.unrestorable.is_empty() {
                    let _ = write!(
                        s,
                        "; backups that cannot be restored: {}",
                        self.unrestorable
                            .iter()
                            .map(|l| l.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        let w = self.warning_count();
        if w > 0 {
            let _ = write!(s, " ({w} warning{})", if w == 1 { "" } else { "s" });
        }
        if !self.removed.is_empty() {
            let _ = write!(s, "; removed {} leftover(s)", self.removed.len());
        }
        s
    }

    /// The report for people: each problem with its effects, removals, notes (no summary).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for p in &self.problems {
            let sev = match p.severity {
                Severity::Damage => "DAMAGED",
                Severity::Warning => "WARNING",
            };
            let _ = writeln!(s, "{sev} {} {}: {}", p.object.name(), p.key, p.detail);
            for e in &p.affects {
                let _ = writeln!(s, "    -> {}", e.text);
            }
        }
        for r in &self.removed {
            let _ = writeln!(
                s,
                "removed {} ({}): {}",
                r.key,
                human_bytes(r.bytes),
                r.reason
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_kinds_and_sizes_read_well() {
        assert_eq!(
            DamageKind::of(&Damage::Object(ObjectError::Auth { frame: 3 })),
            DamageKind::Auth
        );
        assert_eq!(
            serde_json::to_string(&DamageKind::BadMagic).unwrap(),
            "\"bad-magic\""
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
