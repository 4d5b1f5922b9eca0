//! A backup assembled by hand in an in-memory repository, and a way to compare trees.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::manifest::MANIFEST_FORMAT;
use cairn_repo::{
    Backend, BackupLabel, BackupManifest, BackupType, ChunkRef, DbId, FileKind, IncrementalMode,
    KdfParams, ManifestFile, OpenOptions, PackId, PackWriter, Repository, StanzaName, StoreBackend,
    TablespaceEntry,
};
use cairn_restore::RecoverySettings;

/// A repository, its stanza and a committed-looking manifest.
pub type Backup = (Repository, StanzaName, BackupManifest);

pub struct Fixture {
    pub repo: Repository,
    pub stanza: StanzaName,
    writer: PackWriter,
    files: Vec<ManifestFile>,
    packs: Vec<PackId>,
    pack_index: HashMap<PackId, u32>,
    tablespaces: Vec<TablespaceEntry>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with_pack_target(4096).await
    }

    pub async fn with_pack_target(pack_target: usize) -> Fixture {
        let backend = Backend::Store(Arc::new(StoreBackend::memory()));
        let opts = OpenOptions {
            kdf: KdfParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            ..Default::default()
        };
        let (repo, _) = Repository::open_or_create(backend, Some("pw"), &opts)
            .await
            .unwrap();
        let stanza = StanzaName::new("main").unwrap();
        // Small packs by default, so one backup spans several.
        let writer = PackWriter::with_target(repo.clone(), stanza.clone(), pack_target);
        Fixture {
            repo,
            stanza,
            writer,
            files: Vec::new(),
            packs: Vec::new(),
            pack_index: HashMap::new(),
            tablespaces: Vec::new(),
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.files.push(entry(path, FileKind::Dir, mode, 0, None));
        self
    }

    pub fn link(&mut self, path: &str, target: &str) -> &mut Self {
        self.files.push(entry(
            path,
            FileKind::Symlink,
            0o777,
            0,
            Some(target.into()),
        ));
        self
    }

    pub fn tablespace(&mut self, oid: u32, location: &Path) -> &mut Self {
        self.tablespaces.push(TablespaceEntry {
            oid,
            location: location.to_str().unwrap().into(),
        });
        self
    }

    /// A file cut into chunks of `chunk` bytes.
    pub async fn file(&mut self, path: &str, mode: u32, content: &[u8], chunk: usize) {
        let mut e = entry(path, FileKind::File, mode, content.len() as u64, None);
        for piece in content.chunks(chunk) {
            let enc = self.repo.encode_chunk(&self.stanza, piece).unwrap();
            let loc = self.writer.add(&enc).await.unwrap();
            let next = self.packs.len() as u32;
            let pack = *self.pack_index.entry(loc.pack.clone()).or_insert_with(|| {
                self.packs.push(loc.pack.clone());
                next
            });
            e.chunks.push(ChunkRef {
                id: enc.content_id,
                pack,
                offset: loc.offset,
                len: loc.len,
                size: loc.size,
            });
        }
        self.files.push(e);
    }

    /// Push a raw entry (for manifests no correct backup would write).
    pub fn raw(&mut self, f: ManifestFile) -> &mut Self {
        self.files.push(f);
        self
    }

    pub async fn manifest(mut self) -> Backup {
        self.writer.flush().await.unwrap();
        let m = BackupManifest {
            format: MANIFEST_FORMAT,
            label: BackupLabel::new("20261122-140500F").unwrap(),
            backup_type: BackupType::Full,
            parent: None,
            db_id: DbId(1),
            system_id: 7_000_000_000_000_000_001,
            pg_major: 15,
            timeline: TimelineId(1),
            start_lsn: Lsn(0x0300_0028),
            stop_lsn: Lsn(0x0300_0100),
            start_time: cairn_repo::BackupTime::parse("2026-11-22T14:05:00Z").unwrap(),
            stop_time: cairn_repo::BackupTime::parse("2026-11-22T14:05:09Z").unwrap(),
            incremental_mode: IncrementalMode::Full,
            db_size: self.files.iter().map(|f| f.size).sum(),
            packs: self.packs,
            files: self.files,
            tablespaces: self.tablespaces,
            backup_label: BACKUP_LABEL.into(),
            tablespace_map: None,
            pg_manifest: None,
            bytes_received: 0,
            repo_added: 0,
            annotations: Default::default(),
        };
        (self.repo, self.stanza, m)
    }
}

pub const BACKUP_LABEL: &str = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
CHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
START TIME: 2026-11-22 14:05:00 UTC\nLABEL: cairn\nSTART TIMELINE: 1\n";

pub fn entry(
    path: &str,
    kind: FileKind,
    mode: u32,
    size: u64,
    link: Option<String>,
) -> ManifestFile {
    ManifestFile {
        path: path.into(),
        kind,
        mode,
        size,
        mtime: 1_790_000_000,
        link,
        chunks: Vec::new(),
    }
}

/// A minimal backup: what every manifest needs (a control file) plus `extra`.
pub async fn minimal(extra: impl FnOnce(&mut Fixture)) -> Backup {
    let mut fx = Fixture::new().await;
    fx.dir("global", 0o700);
    fx.file("global/pg_control", 0o600, &[7u8; 8192], 4096)
        .await;
    fx.file("PG_VERSION", 0o600, b"15\n", 4096).await;
    extra(&mut fx);
    fx.manifest().await
}

pub fn recovery() -> RecoverySettings {
    RecoverySettings {
        target: cairn_target::RecoveryTarget::Immediate,
        action: Some(cairn_target::TargetAction::Promote),
        ..RecoverySettings::new(cairn_restore::RestoreCommand::Custom(
            "cairn-archive-get %f \"%p\"".into(),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Link { target: String },
}

/// Everything under `root`, without following links.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    if std::fs::symlink_metadata(root).is_err() {
        return out;
    }
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let md = std::fs::symlink_metadata(&path).unwrap();
        let mode = md.permissions().mode() & 0o777;
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(
                rel,
                Node::Link {
                    target: target.to_str().unwrap().into(),
                },
            );
        } else if md.is_dir() {
            out.insert(rel, Node::Dir { mode });
            walk(root, &path, out);
        } else {
            out.insert(
                rel,
                Node::File {
                    mode,
                    content: std::fs::read(&path).unwrap(),
                },
            );
        }
    }
}

/// Read a value back the way PostgreSQL's configuration scanner does: `name = 'value'`
/// with `''` and backslash escapes. The last assignment wins.
pub fn parse_setting(conf: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in conf.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let v = v.trim();
        let inner = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))?;
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    assert_eq!(chars.next(), Some('\''), "lone quote in {v}");
                    out.push('\'');
                }
                '\\' => match chars.next().expect("escape") {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        found = Some(out);
    }
    found
}
