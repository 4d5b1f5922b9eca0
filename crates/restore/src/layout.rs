//! Where each manifest entry lands, decided (and every unsafe path refused) before
//! anything is written. A path is relative to the data directory; `pg_tblspc/OID/...` of
//! a tablespace the backup lists lands in that tablespace's directory instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_repo::{BackupManifest, FileKind, ManifestFile};

use crate::error::{PathProblem, RestoreError};

/// Names at the top of the data directory that are never restored from the manifest:
/// written by cairn restore itself (`backup_label`, `backup_manifest`), or ones that would
/// change how the restored server starts (a stale `postmaster.pid`, a `tablespace_map`
/// pointing at the original tablespace locations, a signal file cairn did not choose).
pub const NOT_RESTORED: [&str; 7] = [
    "backup_label",
    "backup_manifest",
    "tablespace_map",
    "recovery.signal",
    "standby.signal",
    "postmaster.pid",
    "postmaster.opts",
];

/// Written by cairn restore while it works; never taken from a manifest.
pub const INCOMPLETE_MARKER: &str = "cairn-restore.incomplete";
/// `global/pg_control` is written under this name and renamed into place last.
pub const PG_CONTROL: &str = "global/pg_control";
pub const PG_CONTROL_PENDING: &str = "global/pg_control.cairn-restore";
pub const AUTO_CONF: &str = "postgresql.auto.conf";
pub const AUTO_CONF_PENDING: &str = "postgresql.auto.conf.cairn-restore";

/// A place under one of the restore's roots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// `None`: the data directory; `Some(oid)`: that tablespace's directory.
    pub tablespace: Option<u32>,
    /// Relative to the root, `/`-separated; empty for the root itself.
    pub rel: String,
}

impl Place {
    fn depth(&self) -> usize {
        if self.rel.is_empty() {
            0
        } else {
            self.rel.matches('/').count() + 1
        }
    }
}

/// One directory to create.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub place: Place,
    /// Permission bits; directories missing from the manifest get 0700.
    pub mode: u32,
}

/// One regular file to write.
#[derive(Debug, Clone)]
pub struct FileEntry<'m> {
    pub place: Place,
    pub file: &'m ManifestFile,
}

/// The validated shape of a restore.
#[derive(Debug)]
pub struct Layout<'m> {
    /// Parents before children.
    pub dirs: Vec<DirEntry>,
    pub files: Vec<FileEntry<'m>>,
    /// Tablespace oids: each gets `pg_tblspc/OID` -> its directory.
    pub tablespaces: BTreeSet<u32>,
    /// Manifest paths deliberately not restored.
    pub skipped: Vec<String>,
}

/// Check every path of `manifest` without touching the disk: nothing absolute, no `..`,
/// `.` or empty components, no NUL, no duplicates, nothing under a file, and no symbolic
/// link but the `pg_tblspc/OID` links of the backup's tablespaces.
pub fn check_manifest_paths(manifest: &BackupManifest) -> Result<(), RestoreError> {
    Layout::of(manifest).map(|_| ())
}

impl<'m> Layout<'m> {
    pub fn of(manifest: &'m BackupManifest) -> Result<Layout<'m>, RestoreError> {
        let mut tablespaces = BTreeSet::new();
        for ts in &manifest.tablespaces {
            if !tablespaces.insert(ts.oid) {
                return Err(RestoreError::DuplicateTablespace { oid: ts.oid });
            }
        }
        let mut kinds: HashMap<&str, FileKind> = HashMap::with_capacity(manifest.files.len());
        for f in &manifest.files {
            check_path(&f.path)?;
            if kinds.insert(&f.path, f.kind).is_some() {
                return Err(RestoreError::unsafe_path(&f.path, PathProblem::Duplicate));
            }
        }
        let mut dirs: BTreeMap<Place, u32> = BTreeMap::new();
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for f in &manifest.files {
            let link_oid = tablespace_link(&f.path).filter(|o| tablespaces.contains(o));
            match (f.kind, link_oid) {
                (FileKind::Symlink, Some(_)) => {}
                (FileKind::Symlink, None) => {
                    return Err(RestoreError::UnexpectedLink {
                        path: f.path.escape_debug().to_string(),
                        link: f.link.as_deref().unwrap_or("").escape_debug().to_string(),
                    });
                }
                (_, Some(_)) => {
                    return Err(RestoreError::unsafe_path(
                        &f.path,
                        PathProblem::TablespaceLinkNotLink,
                    ));
                }
                (FileKind::Dir, None) | (FileKind::File, None) => {}
            }
            // Ancestors must be directories (or a tablespace link).
            for (i, _) in f.path.match_indices('/') {
                let parent = &f.path[..i];
                match kinds.get(parent) {
                    Some(FileKind::File) => {
                        return Err(RestoreError::unsafe_path(&f.path, PathProblem::UnderFile));
                    }
                    Some(FileKind::Symlink) if tablespace_link(parent).is_none() => {
                        return Err(RestoreError::unsafe_path(&f.path, PathProblem::UnderFile));
                    }
                    _ => {}
                }
            }
            let reserved = NOT_RESTORED.contains(&f.path.as_str())
                || [
                    INCOMPLETE_MARKER,
                    AUTO_CONF,
                    AUTO_CONF_PENDING,
                    PG_CONTROL_PENDING,
                ]
                .contains(&f.path.as_str());
            if reserved && f.kind != FileKind::File {
                return Err(RestoreError::unsafe_path(
                    &f.path,
                    PathProblem::ReservedNotFile,
                ));
            }
            if reserved && f.path != AUTO_CONF {
                skipped.push(f.path.clone());
                continue;
            }
            let place = place_of(&f.path, &tablespaces);
            add_parents(&place, &mut dirs);
            match f.kind {
                FileKind::Dir => {
                    dirs.insert(place, f.mode & 0o777);
                }
                FileKind::File => files.push(FileEntry { place, file: f }),
                FileKind::Symlink => {}
            }
        }
        // Every tablespace gets its link, whether or not the manifest lists one (a backup
        // taken with TABLESPACE_MAP has none).
        for oid in &tablespaces {
            add_parents(
                &place_of(&format!("pg_tblspc/{oid}"), &tablespaces),
                &mut dirs,
            );
        }
        let mut dirs: Vec<DirEntry> = dirs
            .into_iter()
            .filter(|(p, _)| !p.rel.is_empty())
            .map(|(place, mode)| DirEntry { place, mode })
            .collect();
        dirs.sort_by(|a, b| (a.place.depth(), &a.place).cmp(&(b.place.depth(), &b.place)));
        Ok(Layout {
            dirs,
            files,
            tablespaces,
            skipped,
        })
    }
}

/// The oids in PostgreSQL's `tablespace_map` text: one `OID PATH` line per tablespace,
/// a newline escaped with a backslash belonging to the path.
pub fn tablespace_map_oids(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut prev = None;
    for c in text.chars().chain(std::iter::once('\n')) {
        if (c == '\n' || c == '\r') && prev != Some('\\') {
            if let Some(oid) = line.split(' ').next().and_then(|t| t.parse().ok()) {
                out.push(oid);
            }
            line.clear();
        } else {
            line.push(c);
        }
        prev = Some(c);
    }
    out
}

fn check_path(path: &str) -> Result<(), RestoreError> {
    let problem = if path.is_empty() {
        Some(PathProblem::Empty)
    } else if path.contains('\0') {
        Some(PathProblem::Nul)
    } else if path.starts_with('/') {
        Some(PathProblem::Absolute)
    } else {
        path.split('/').find_map(|c| match c {
            "" => Some(PathProblem::EmptyComponent),
            "." => Some(PathProblem::DotComponent),
            ".." => Some(PathProblem::DotDotComponent),
            _ => None,
        })
    };
    match problem {
        Some(p) => Err(RestoreError::unsafe_path(path, p)),
        None => Ok(()),
    }
}

/// The oid of a `pg_tblspc/OID` path.
fn tablespace_link(path: &str) -> Option<u32> {
    let oid = path.strip_prefix("pg_tblspc/")?;
    if oid.is_empty() || !oid.bytes().all(|b| b.is_ascii_digit()) || oid.starts_with('0') {
        return None;
    }
    oid.parse().ok()
}

fn place_of(path: &str, tablespaces: &BTreeSet<u32>) -> Place {
    if let Some(rest) = path.strip_prefix("pg_tblspc/") {
        let (oid, rel) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(oid) = tablespace_link(&format!("pg_tblspc/{oid}"))
            && tablespaces.contains(&oid)
        {
            if rel.is_empty() {
                // The link itself lives in the data directory.
                return Place {
                    tablespace: None,
                    rel: path.to_string(),
                };
            }
            return Place {
                tablespace: Some(oid),
                rel: rel.to_string(),
            };
        }
    }
    Place {
        tablespace: None,
        rel: path.to_string(),
    }
}

/// Record the parent directories of `place` (0700 unless the manifest lists them).
fn add_parents(place: &Place, dirs: &mut BTreeMap<Place, u32>) {
    for (i, _) in place.rel.match_indices('/') {
        dirs.entry(Place {
            tablespace: place.tablespace,
            rel: place.rel[..i].to_string(),
        })
        .or_insert(0o700);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "base",
            "base/1/1259",
            "pg_tblspc/16384/PG_15_1/5/1",
            "a..b",
            ".hidden",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for (bad, p) in [
            ("", PathProblem::Empty),
            ("/etc/passwd", PathProblem::Absolute),
            ("a\0b", PathProblem::Nul),
            ("a//b", PathProblem::EmptyComponent),
            ("a/", PathProblem::EmptyComponent),
            ("./a", PathProblem::DotComponent),
            ("a/./b", PathProblem::DotComponent),
            ("a/../../b", PathProblem::DotDotComponent),
            ("..", PathProblem::DotDotComponent),
        ] {
            match check_path(bad) {
                Err(RestoreError::UnsafePath { problem, .. }) => assert_eq!(problem, p, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn map_oids() {
        assert_eq!(
            tablespace_map_oids("16384 /srv/ts1\n16390 /srv/odd\\\n16391 name\n"),
            vec![16384, 16390]
        );
        assert_eq!(tablespace_map_oids(""), Vec::<u32>::new());
        assert_eq!(tablespace_map_oids("16384 /a\r\n"), vec![16384]);
    }

    #[test]
    fn tablespace_places() {
        let ts: BTreeSet<u32> = [16384].into();
        assert_eq!(
            place_of("pg_tblspc/16384/PG_15_1/5", &ts),
            Place {
                tablespace: Some(16384),
                rel: "PG_15_1/5".into()
            }
        );
        assert_eq!(place_of("pg_tblspc/16384", &ts).tablespace, None);
        assert_eq!(place_of("pg_tblspc/999/x", &ts).tablespace, None);
        assert_eq!(tablespace_link("pg_tblspc/016384"), None);
        assert_eq!(tablespace_link("pg_tblspc/99999999999"), None);
    }
}
