//! Delta restore: bring an existing data directory to the backup's state, writing only
//! what differs. Before any data is touched, `global/pg_control` is moved aside (so the
//! directory cannot start half-updated) and everything the backup does not have is
//! removed, without following links. Files that remain are then compared chunk by chunk
//! (see [`crate::file`]).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::destination::Destination;
use crate::error::RestoreError;
use crate::layout::{INCOMPLETE_MARKER, Layout, PG_CONTROL, PG_CONTROL_PENDING, Place};
use crate::tree;

/// What an entry of the restored tree must be.
#[derive(Debug)]
enum Expect {
    Dir,
    File,
    Link(PathBuf),
}

/// What cleaning removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: u64,
    pub warnings: Vec<String>,
}

/// Make the existing data directory unable to start: move its control file aside to
/// the name the restored one is written under (and renamed back from, last), and
/// remove any marker of an earlier attempt.
pub fn disarm(pg_data: &Path) -> Result<(), RestoreError> {
    let control = pg_data.join(PG_CONTROL);
    match fs::symlink_metadata(&control) {
        Ok(md) if md.file_type().is_file() => {
            tree::rename_durable(&control, &pg_data.join(PG_CONTROL_PENDING))?
        }
        Ok(md) if md.is_dir() => {
            fs::remove_dir_all(&control).map_err(|e| RestoreError::io("remove", &control, e))?
        }
        Ok(_) => fs::remove_file(&control).map_err(|e| RestoreError::io("remove", &control, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RestoreError::io("inspect", &control, e)),
    }
    let marker = pg_data.join(INCOMPLETE_MARKER);
    match fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RestoreError::io("remove", &marker, e))
        }
        _ => Ok(()),
    }
}

/// Remove from the data directory everything the backup does not have (or has as
/// another kind of entry), and likewise inside the backup's own top-level directories of
/// each existing tablespace directory. Other entries at the top of a tablespace
/// directory (another cluster's `PG_*` directory) are left alone.
pub fn clean(layout: &Layout<'_>, dest: &Destination) -> Result<Cleaned, RestoreError> {
    let mut keep: HashMap<Place, Expect> = HashMap::new();
    for d in &layout.dirs {
        keep.insert(d.place.clone(), Expect::Dir);
    }
    for f in &layout.files {
        let mut place = f.place.clone();
        if place.tablespace.is_none() && place.rel == PG_CONTROL {
            place.rel = PG_CONTROL_PENDING.into();
        }
        keep.insert(place, Expect::File);
    }
    for oid in &layout.tablespaces {
        keep.insert(
            Place {
                tablespace: None,
                rel: format!("pg_tblspc/{oid}"),
            },
            Expect::Link(dest.tablespaces[oid].path.clone()),
        );
    }
    keep.insert(
        Place {
            tablespace: None,
            rel: INCOMPLETE_MARKER.into(),
        },
        Expect::File,
    );
    let mut out = Cleaned::default();
    walk(&dest.pg_data.path, None, "", &keep, true, &mut out)?;
    for (oid, root) in &dest.tablespaces {
        if !root.create {
            walk(&root.path, Some(*oid), "", &keep, false, &mut out)?;
        }
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    tablespace: Option<u32>,
    prefix: &str,
    keep: &HashMap<Place, Expect>,
    remove_unknown: bool,
    out: &mut Cleaned,
) -> Result<(), RestoreError> {
    let entries = fs::read_dir(dir).map_err(|e| RestoreError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RestoreError::io("list", dir, e))?;
        let path = entry.path();
        let md = fs::symlink_metadata(&path).map_err(|e| RestoreError::io("inspect", &path, e))?;
        // A name that is not UTF-8 cannot be in a manifest.
        let rel = entry.file_name().to_str().map(|name| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            }
        });
        let expect = rel.as_ref().and_then(|rel| {
            keep.get(&Place {
                tablespace,
                rel: rel.clone(),
            })
        });
        let ft = md.file_type();
        match (expect, rel) {
            (None, _) if !remove_unknown => continue,
            (Some(Expect::Dir), Some(rel)) if ft.is_dir() => {
                // Writable while restoring; its mode from the backup comes last.
                tree::set_mode(&path, 0o700)?;
                walk(&path, tablespace, &rel, keep, true, out)?;
                continue;
            }
            (Some(Expect::File), _) if ft.is_file() => continue,
            (Some(Expect::Link(target)), _)
                if ft.is_symlink() && fs::read_link(&path).ok().as_ref() == Some(target) =>
            {
                continue;
            }
            (Some(_), _) if ft.is_symlink() => out.warnings.push(format!(
                "{} was a symbolic link to {}; it was replaced as in the backup",
                path.display(),
                fs::read_link(&path).unwrap_or_default().display()
            )),
            _ => {}
        }
        if ft.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(|e| RestoreError::io("remove", &path, e))?;
        out.removed += 1;
    }
    Ok(())
}
