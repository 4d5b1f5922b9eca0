//! The directories a restore writes into: the data directory and one per tablespace.
//! [`Destination::check`] only looks; nothing is created before every check passed.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use cairn_repo::BackupManifest;

use crate::error::{RestoreError, TablespaceProblem};
use crate::layout::{INCOMPLETE_MARKER, Place};
use crate::options::RestoreOptions;
use crate::tree;

/// One root directory of the restore.
#[derive(Debug, Clone)]
pub struct Root {
    /// Absolute, with every existing component resolved.
    pub path: PathBuf,
    /// It does not exist yet: the restore creates it (its parent exists).
    pub create: bool,
}

/// The data directory and the tablespace directories, checked.
#[derive(Debug, Clone)]
pub struct Destination {
    pub pg_data: Root,
    pub tablespaces: BTreeMap<u32, Root>,
}

impl Destination {
    /// Check `opts.pg_data` and every tablespace target, writing nothing.
    pub fn check(
        manifest: &BackupManifest,
        opts: &RestoreOptions,
    ) -> Result<Destination, RestoreError> {
        for oid in opts.tablespace_map.keys() {
            if !manifest.tablespaces.iter().any(|t| t.oid == *oid) {
                let known: Vec<String> = manifest
                    .tablespaces
                    .iter()
                    .map(|t| t.oid.to_string())
                    .collect();
                return Err(RestoreError::UnknownTablespace {
                    oid: *oid,
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let pg_data = check_pg_data(&opts.pg_data, opts.delta)?;
        let mut tablespaces: BTreeMap<u32, Root> = BTreeMap::new();
        for ts in &manifest.tablespaces {
            let given = opts
                .tablespace_map
                .get(&ts.oid)
                .cloned()
                .unwrap_or_else(|| PathBuf::from(&ts.location));
            let problem = |problem| RestoreError::Tablespace {
                oid: ts.oid,
                target: given.clone(),
                problem,
            };
            if !given.is_absolute() {
                return Err(problem(TablespaceProblem::Relative));
            }
            let path = resolve(&given).map_err(|e| RestoreError::io("resolve", &given, e))?;
            if path.starts_with(&pg_data.path) {
                return Err(problem(TablespaceProblem::InsidePgData));
            }
            if pg_data.path.starts_with(&path) {
                return Err(problem(TablespaceProblem::ContainsPgData));
            }
            if let Some((other, _)) = tablespaces
                .iter()
                .find(|(_, r)| r.path.starts_with(&path) || path.starts_with(&r.path))
            {
                return Err(problem(TablespaceProblem::Overlaps { other: *other }));
            }
            let create = match state(&path).map_err(|e| RestoreError::io("inspect", &path, e))? {
                State::Missing => {
                    require_parent(&path)?;
                    true
                }
                State::NotDirectory => return Err(problem(TablespaceProblem::NotDirectory)),
                State::Empty => false,
                // Delta cleans the backup's own directories in there, so only in the
                // directory this data directory already uses for the tablespace: never
                // in one another cluster may be using.
                State::NotEmpty if opts.delta && links_to(&pg_data.path, ts.oid, &path) => false,
                State::NotEmpty => return Err(problem(TablespaceProblem::NotEmpty)),
            };
            tablespaces.insert(ts.oid, Root { path, create });
        }
        Ok(Destination {
            pg_data,
            tablespaces,
        })
    }

    /// The absolute path of `place`.
    pub fn path(&self, place: &Place) -> PathBuf {
        let root = match place.tablespace {
            None => &self.pg_data.path,
            Some(oid) => &self.tablespaces[&oid].path,
        };
        if place.rel.is_empty() {
            root.clone()
        } else {
            root.join(&place.rel)
        }
    }

    /// Every root, the data directory first.
    pub fn roots(&self) -> impl Iterator<Item = &Root> {
        std::iter::once(&self.pg_data).chain(self.tablespaces.values())
    }

    /// Create the tablespace directories that do not exist yet (0700) and set the data
    /// directory's mode, which PostgreSQL checks at startup. The data directory itself
    /// is created first, by the caller, to hold the incomplete-restore marker.
    pub fn create(&self, pg_data_mode: u32) -> Result<(), RestoreError> {
        for root in self.tablespaces.values() {
            if root.create {
                tree::create_dir(&root.path)?;
            }
        }
        tree::set_mode(&self.pg_data.path, pg_data_mode)
    }
}

fn check_pg_data(given: &Path, delta: bool) -> Result<Root, RestoreError> {
    let path = resolve(given).map_err(|e| RestoreError::io("resolve", given, e))?;
    match state(&path).map_err(|e| RestoreError::io("inspect", &path, e))? {
        State::Missing => {
            require_parent(&path)?;
            Ok(Root { path, create: true })
        }
        State::NotDirectory => Err(RestoreError::NotDirectory {
            path: given.to_path_buf(),
        }),
        State::Empty => Ok(Root {
            path,
            create: false,
        }),
        State::NotEmpty => {
            let pg_data = given.to_path_buf();
            if fs::symlink_metadata(path.join("postmaster.pid")).is_ok() {
                return Err(RestoreError::PostmasterPid { pg_data });
            }
            if !delta {
                return Err(RestoreError::PgDataNotEmpty { pg_data });
            }
            // Delta removes what the backup lacks: only ever in a data directory (or
            // what an earlier cairn restore left), never in a mistyped path.
            let is_file = |name: &str| {
                fs::symlink_metadata(path.join(name)).is_ok_and(|m| m.file_type().is_file())
            };
            if !is_file("PG_VERSION") && !is_file(INCOMPLETE_MARKER) {
                return Err(RestoreError::NotADataDirectory { pg_data });
            }
            Ok(Root {
                path,
                create: false,
            })
        }
    }
}

/// Whether `pg_data/pg_tblspc/OID` is a link to `target` (both resolved).
fn links_to(pg_data: &Path, oid: u32, target: &Path) -> bool {
    let link = pg_data.join("pg_tblspc").join(oid.to_string());
    fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink())
        && resolve(&link).is_ok_and(|p| p == target)
}

fn require_parent(path: &Path) -> Result<(), RestoreError> {
    match path.parent().map(fs::metadata) {
        Some(Ok(m)) if m.is_dir() => Ok(()),
        Some(Ok(_)) => Err(RestoreError::NotDirectory {
            path: path.parent().unwrap_or(path).to_path_buf(),
        }),
        Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => {
            Err(RestoreError::io("inspect", path, e))
        }
        _ => Err(RestoreError::MissingParent {
            path: path.to_path_buf(),
        }),
    }
}

enum State {
    Missing,
    NotDirectory,
    Empty,
    NotEmpty,
}

/// What is at `path` (a link to a directory counts as that directory: the operator named it).
fn state(path: &Path) -> io::Result<State> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A dangling link is not "missing": creating a directory there would fail.
            if fs::symlink_metadata(path).is_ok() {
                Ok(State::NotDirectory)
            } else {
                Ok(State::Missing)
            }
        }
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => Ok(State::NotDirectory),
        Ok(_) => Ok(if fs::read_dir(path)?.next().is_none() {
            State::Empty
        } else {
            State::NotEmpty
        }),
    }
}

/// `path` made absolute with every existing component resolved (links followed), the
/// rest appended, so two spellings of one directory compare equal.
pub(crate) fn resolve(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut out = PathBuf::new();
    let mut existing = true;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
                existing = fs::symlink_metadata(&out).is_ok();
            }
            Component::Normal(n) => {
                out.push(n);
                if existing {
                    match fs::canonicalize(&out) {
                        Ok(p) => out = p,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => existing = false,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_and_dots() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let canon = fs::canonicalize(&real).unwrap();
        assert_eq!(resolve(&dir.path().join("link")).unwrap(), canon);
        assert_eq!(
            resolve(&dir.path().join("link/new/../x")).unwrap(),
            canon.join("x")
        );
        assert_eq!(
            resolve(&dir.path().join("real/./a/b")).unwrap(),
            canon.join("a/b")
        );
    }
}
