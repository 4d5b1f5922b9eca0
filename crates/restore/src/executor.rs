//! Restoring one backup set: check everything, then write data, then the files that let
//! PostgreSQL start, `global/pg_control` last.

use std::path::{Path, PathBuf};

use cairn_repo::{BackupManifest, FileKind, IncrementalMode, Repository, StanzaName};
use futures::{StreamExt, TryStreamExt};

use crate::archiving::Archiving;
use crate::delta;
use crate::destination::Destination;
use crate::error::RestoreError;
use crate::file::restore_file;
use crate::layout::{
    AUTO_CONF, AUTO_CONF_PENDING, INCOMPLETE_MARKER, Layout, PG_CONTROL, PG_CONTROL_PENDING,
    tablespace_map_oids,
};
use crate::options::RestoreOptions;
use crate::recovery;
use crate::report::RestoreReport;
use crate::tree;

/// Restore `manifest`'s backup into `opts.pg_data` (and its tablespace directories), and
/// set it up to recover with `opts.recovery`.
///
/// Before anything is written, every path of the manifest, the data directory, each
/// tablespace directory and the recovery settings are checked; a refusal leaves the disk
/// untouched. While data is written, `cairn-restore.incomplete` marks the data directory
/// and `global/pg_control` is kept under another name, so PostgreSQL cannot start on a
/// half-restored directory; `backup_label`, `postgresql.auto.conf` and the signal file
/// come after every data file is durable, and `global/pg_control` last of all.
pub async fn restore_backup(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let (layout, dest) = checked(manifest, opts)?;

    // Nothing has been written up to here.
    let pg_data = dest.pg_data.path.clone();
    let marker = pg_data.join(INCOMPLETE_MARKER);
    let incomplete = |source: RestoreError| RestoreError::Incomplete {
        pg_data: pg_data.clone(),
        marker: marker.clone(),
        source: Box::new(source),
    };
    if dest.pg_data.create {
        tree::create_dir(&pg_data)?;
    } else if opts.delta {
        delta::disarm(&pg_data).map_err(incomplete)?;
    }
    tree::write_new_file(
        &marker,
        format!(
            "cairn restore of backup {} is writing this directory, or stopped before it \
             finished.\nDo not start PostgreSQL on it: remove it and restore again.\n",
            manifest.label
        )
        .as_bytes(),
    )
    // Delta already moved the old control file aside.
    .map_err(|e| if opts.delta { incomplete(e) } else { e })?;
    write(repo, stanza, manifest, opts, &layout, &dest)
        .await
        .map_err(incomplete)
}

/// Every check [`restore_backup`] makes before it writes, and nothing else: the manifest's
/// paths and content, the recovery settings, the data directory and each tablespace
/// directory. `--dry-run` runs this, so it refuses exactly what the real run refuses.
pub fn check_restore(manifest: &BackupManifest, opts: &RestoreOptions) -> Result<(), RestoreError> {
    checked(manifest, opts).map(|_| ())
}

fn checked<'m>(
    manifest: &'m BackupManifest,
    opts: &RestoreOptions,
) -> Result<(Layout<'m>, Destination), RestoreError> {
    let layout = Layout::of(manifest)?;
    check_content(manifest, &layout)?;
    opts.recovery.validate()?;
    let dest = Destination::check(manifest, opts)?;
    Ok((layout, dest))
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// Everything after the checks; an error here leaves the marker in place.
async fn write(
    repo: &Repository,
    stanza: &StanzaName,
    manifest: &BackupManifest,
    opts: &RestoreOptions,
    layout: &Layout<'_>,
    dest: &Destination,
) -> Result<RestoreReport, RestoreError> {
    let pg_data = &dest.pg_data.path;
    dest.create(pg_data_mode(manifest))?;
    let cleaned = if opts.delta {
        delta::clean(layout, dest)?
    } else {
        delta::Cleaned::default()
    };
    for d in &layout.dirs {
        let path = dest.path(&d.place);
        match tree::create_dir(&path) {
            // Delta kept it (a real directory, made writable while cleaning).
            Err(_) if opts.delta && is_real_dir(&path) => {}
            other => other?,
        }
    }
    for oid in &layout.tablespaces {
        let link = pg_data.join(format!("pg_tblspc/{oid}"));
        // Delta kept only a link that already points at the right directory.
        if !(opts.delta && std::fs::symlink_metadata(&link).is_ok()) {
            tree::symlink(&dest.tablespaces[oid].path, &link)?;
        }
    }

    // Largest first, so the last file to finish is a small one.
    let mut files: Vec<_> = layout.files.iter().collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.file.size));
    let (mut bytes, mut kept, mut chunks) = (0u64, 0u64, 0u64);
    let mut restored = futures::stream::iter(files.iter().map(|f| {
        let path = if f.place.tablespace.is_none() && f.place.rel == PG_CONTROL {
            pg_data.join(PG_CONTROL_PENDING)
        } else {
            dest.path(&f.place)
        };
        restore_file(repo, stanza, manifest, f.file, path, opts.delta)
    }))
    .buffer_unordered(opts.concurrency.max(1));
    while let Some(w) = restored.try_next().await? {
        bytes += w.written;
        kept += w.kept;
        chunks += w.chunks_read;
        opts.progress.file_done(w.written + w.kept);
    }
    drop(restored);

    // Directory modes last (a 0500 directory was still filled), deepest first, then
    // make every entry durable, as `pg_basebackup --sync` does.
    for d in layout.dirs.iter().rev() {
        let path = dest.path(&d.place);
        tree::set_mode(&path, d.mode)?;
        tree::fsync_dir(&path)?;
    }
    for root in dest.roots() {
        tree::fsync_dir(&root.path)?;
        if root.create {
            tree::fsync_dir(root.path.parent().unwrap_or(Path::new("/")))?;
        }
    }

    // The files that let PostgreSQL start, now that the data is durable.
    tree::write_new_file(
        &pg_data.join("backup_label"),
        manifest.backup_label.as_bytes(),
    )?;
    // PostgreSQL's own manifest, where pg_basebackup leaves it, so `pg_verifybackup` can
    // check the restored files independently of cairn. Not for a WAL-summaries backup: its
    // manifest lists the INCREMENTAL files the server sent, not the complete files restored.
    if let Some(pg_manifest) = &manifest.pg_manifest
        && manifest.incremental_mode != IncrementalMode::WalSummaries
    {
        tree::write_new_file(&pg_data.join("backup_manifest"), pg_manifest.as_bytes())?;
    }
    let auto_conf = manifest
        .files
        .iter()
        .find(|f| f.path == AUTO_CONF && f.kind == FileKind::File);
    let existing = match auto_conf {
        Some(_) => Some(tree::read_file(&pg_data.join(AUTO_CONF))?),
        None => None,
    };
    let content = opts
        .recovery
        .auto_conf(existing.as_deref(), &manifest.label)?;
    let pending = pg_data.join(AUTO_CONF_PENDING);
    tree::write_new_file(&pending, &content)?;
    tree::set_mode(&pending, auto_conf.map_or(0o600, |f| f.mode))?;
    tree::rename_durable(&pending, &pg_data.join(AUTO_CONF))?;
    let conf = restored_conf(manifest, pg_data)?;
    let archiving = Archiving::of(opts.recovery.archive_mode, conf.as_deref(), &content);
    let mut warnings = cleaned.warnings;
    warnings.extend(conflicts(conf.as_deref()));
    let signal = opts.recovery.signal_file();
    tree::write_new_file(&pg_data.join(signal), b"")?;
    tree::fsync_dir(pg_data)?;

    // The commit point: from here PostgreSQL can start on the directory.
    tree::rename_durable(&pg_data.join(PG_CONTROL_PENDING), &pg_data.join(PG_CONTROL))?;
    let marker = pg_data.join(INCOMPLETE_MARKER);
    std::fs::remove_file(&marker).map_err(|e| RestoreError::io("remove", &marker, e))?;
    tree::fsync_dir(pg_data)?;

    Ok(RestoreReport {
        label: manifest.label.clone(),
        pg_data: pg_data.clone(),
        files: layout.files.len() as u64,
        directories: layout.dirs.len() as u64,
        links: layout.tablespaces.len() as u64,
        bytes_written: bytes,
        bytes_unchanged: kept,
        removed: cleaned.removed,
        chunks,
        tablespaces: dest
            .tablespaces
            .iter()
            .map(|(oid, r)| (*oid, r.path.clone()))
            .collect(),
        skipped: layout.skipped.clone(),
        warnings,
        signal_file: signal,
        archiving,
    })
}

/// What the manifest promises about content, checked before writing: every chunk names a
/// listed pack, chunk sizes add up to the file size, and `global/pg_control` is there.
fn check_content(manifest: &BackupManifest, layout: &Layout<'_>) -> Result<(), RestoreError> {
    let inconsistent = |path: &str, message: String| RestoreError::Inconsistent {
        path: path.escape_debug().to_string(),
        message,
    };
    for f in &layout.files {
        let f = f.file;
        let mut sum = 0u64;
        for (i, c) in f.chunks.iter().enumerate() {
            if c.pack as usize >= manifest.packs.len() {
                return Err(inconsistent(
                    &f.path,
                    format!(
                        "chunk {i} names pack {} of {} listed",
                        c.pack,
                        manifest.packs.len()
                    ),
                ));
            }
            sum += u64::from(c.size);
        }
        if sum != f.size {
            return Err(inconsistent(
                &f.path,
                format!("its chunks hold {sum} bytes, the file {}", f.size),
            ));
        }
    }
    if let Some(map) = &manifest.tablespace_map {
        for oid in tablespace_map_oids(map) {
            if !layout.tablespaces.contains(&oid) {
                return Err(inconsistent(
                    "tablespace_map",
                    format!("names tablespace {oid}, which the manifest does not list"),
                ));
            }
        }
    }
    let has_control = layout
        .files
        .iter()
        .any(|f| f.place.tablespace.is_none() && f.place.rel == PG_CONTROL);
    if !has_control {
        return Err(inconsistent(
            PG_CONTROL,
            "the backup has no control file; PostgreSQL cannot start without it".into(),
        ));
    }
    Ok(())
}

/// The data directory's mode: 0750 when the cluster allows group access (its `global`
/// directory does), else 0700; PostgreSQL refuses to start with anything else.
fn pg_data_mode(manifest: &BackupManifest) -> u32 {
    let group = manifest
        .files
        .iter()
        .any(|f| f.path == "global" && f.kind == FileKind::Dir && f.mode & 0o070 != 0);
    if group { 0o750 } else { 0o700 }
}

/// The restored `postgresql.conf`, when the backup has one.
fn restored_conf(
    manifest: &BackupManifest,
    pg_data: &Path,
) -> Result<Option<Vec<u8>>, RestoreError> {
    let has_conf = manifest
        .files
        .iter()
        .any(|f| f.path == "postgresql.conf" && f.kind == FileKind::File);
    if !has_conf {
        return Ok(None);
    }
    let conf: PathBuf = pg_data.join("postgresql.conf");
    tree::read_file(&conf).map(Some)
}

/// Settings in the restored `postgresql.conf` that may fight the recovery settings.
fn conflicts(conf: Option<&[u8]>) -> Vec<String> {
    recovery::conflicting_settings(conf.unwrap_or_default())
        .into_iter()
        .map(|name| {
            format!(
                "postgresql.conf sets {name}; postgresql.auto.conf overrides it, but if it \
                 names a different kind of recovery target PostgreSQL refuses to start \
                 (\"multiple recovery targets\"): comment it out"
            )
        })
        .collect()
}
