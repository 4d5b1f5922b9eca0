//! Taking one backup: stream, chunk, wait for WAL, commit the manifest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_pgformat::{Lsn, TimelineId, WalSegmentSize};
use cairn_repo::lock::LockWatch;
use cairn_repo::{
    BackupEvent, BackupManifest, FileKind, IncrementalMode, ManifestFile, PackWriter, Repository,
    StanzaInfo, TablespaceEntry, manifest::MANIFEST_FORMAT,
};

use crate::chunker::Chunker;
use crate::error::BackupError;
use crate::incremental::{ParentFiles, Reconstruction, Sink, complete_backup_label};
use crate::plan::BackupPlan;
use crate::source::{BackupSource, EntryKind, SourceEvent};
use crate::wal_wait::{segments_between, wait_for_wal};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long to wait for the WAL the backup needs to reach the archive.
    pub archive_timeout: Duration,
    /// WAL segment size of the cluster (to name the segments to wait for).
    pub wal_segment_size: WalSegmentSize,
    /// Print a progress line to stderr at most this often (`None`: quiet).
    pub progress_every: Option<Duration>,
    /// The stream used PostgreSQL 17+ `INCREMENTAL` (only changed blocks were sent).
    pub incremental_mode: Option<IncrementalMode>,
    /// Pack size: what an interrupted backup can lose and has to send again.
    pub pack_target: usize,
    /// The backup lock held for this backup ([`crate::with_lock`]): once it is lost the
    /// backup stops, and it is confirmed against the repository before the manifest.
    pub lock: Option<LockWatch>,
    /// The operator's notes, stored in the manifest (`cairn backup --annotation`; checked
    /// with [`crate::annotation`]).
    pub annotations: BTreeMap<String, String>,
    /// Pin the backup (`cairn backup --pin`): the pin is recorded before the manifest, so
    /// the backup is never listed unpinned.
    pub pin: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            archive_timeout: Duration::from_secs(60),
            wal_segment_size: WalSegmentSize::DEFAULT,
            progress_every: None,
            incremental_mode: None,
            pack_target: cairn_repo::pack::PACK_TARGET,
            lock: None,
            annotations: BTreeMap::new(),
            pin: false,
        }
    }
}

/// Files PostgreSQL writes into the base backup that cairn keeps in the manifest itself.
const LABEL_FILES: [&str; 2] = ["backup_label", "tablespace_map"];

/// Take the backup `plan` from `source` into the repository. Returns the committed manifest.
pub async fn run<S: BackupSource>(
    repo: &Repository,
    info: &StanzaInfo,
    plan: &BackupPlan,
    source: &mut S,
    opts: &RunOptions,
) -> Result<BackupManifest, BackupError> {
    let stanza = &info.name;
    let generation = info.current();
    let start_time = cairn_repo::BackupTime::now();
    // Chunks of condemned packs are left out (stored again): garbage collection may
    // delete those packs once this backup's lock is gone (decision 014).
    let index = repo.backup_chunk_index(stanza).await?;
    let packs = PackWriter::with_target(repo.clone(), stanza.clone(), opts.pack_target);
    let mut chunker = Chunker::new(repo.chunk_codec(stanza), index, packs);
    let mut files: Vec<ManifestFile> = Vec::new();
    let mut file_chunks: Vec<Option<usize>> = Vec::new();
    let mut tablespaces = Vec::new();
    let mut current_ts: Option<u32> = None;
    let mut open: Option<Open> = None;
    let mut started: Option<(Lsn, TimelineId)> = None;
    let mut finished: Option<(Lsn, TimelineId)> = None;
    let mut pg_manifest = Vec::new();
    let (mut backup_label, mut tablespace_map) = (None, None);
    let mut received = 0u64;
    let clock = Instant::now();
    let mut last_report = Instant::now();
    // PostgreSQL 17+ INCREMENTAL: files sent as changed blocks are rebuilt on the parent.
    let parent_files = match (opts.incremental_mode, &plan.parent) {
        (Some(IncrementalMode::WalSummaries), Some(parent)) => Some(ParentFiles::new(parent)),
        (Some(IncrementalMode::WalSummaries), None) => {
            return Err(BackupError::Protocol(
                "an incremental (WAL summaries) backup needs a parent backup".into(),
            ));
        }
        _ => None,
    };

    loop {
        still_held(opts)?;
        let ev = match source.next_event().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                // Keep what was received: the next attempt will not send it again.
                let _ = chunker.finish().await;
                return Err(e);
            }
        };
        match ev {
            SourceEvent::Started {
                start_lsn,
                timeline,
            } => started = Some((start_lsn, timeline)),
            SourceEvent::Tablespaces(list) => {
                tablespaces = list
                    .into_iter()
                    .map(|(oid, location)| TablespaceEntry { oid, location })
                    .collect()
            }
            SourceEvent::Archive { tablespace } => current_ts = tablespace,
            SourceEvent::Entry {
                path,
                kind,
                mode,
                size,
                mtime,
            } => {
                let path = match current_ts {
                    None => path
                        .trim_start_matches("./")
                        .trim_end_matches('/')
                        .to_string(),
                    Some(oid) => format!(
                        "pg_tblspc/{oid}/{}",
                        path.trim_start_matches("./").trim_end_matches('/')
                    ),
                };
                let (kind, link) = match kind {
                    EntryKind::File => (FileKind::File, None),
                    EntryKind::Dir => (FileKind::Dir, None),
                    EntryKind::Symlink { target } => (FileKind::Symlink, Some(target)),
                };
                let label = LABEL_FILES
                    .iter()
                    .find(|n| current_ts.is_none() && **n == path);
                let incremental = parent_files
                    .as_ref()
                    .filter(|_| kind == FileKind::File)
                    .and_then(|p| {
                        cairn_pgformat::incremental::full_path(&path).map(|full| (p, full))
                    });
                if let Some((parent, full)) = incremental {
                    let parent_file = parent.get(stanza, &full)?;
                    let c = chunker.start_file();
                    open = Some(Open::Incremental {
                        file: files.len(),
                        rebuild: Box::new(Reconstruction::new(full.clone(), c, parent_file)),
                    });
                    files.push(ManifestFile {
                        path: full,
                        kind,
                        mode,
                        // Set when the file is complete: the header says how long it is.
                        size: 0,
                        mtime,
                        link,
                        chunks: Vec::new(),
                    });
                    file_chunks.push(Some(c));
                    continue;
                }
                match (kind, label) {
                    (FileKind::File, Some(name)) => {
                        open = Some(Open::Label {
                            name,
                            text: Vec::new(),
                        })
                    }
                    (FileKind::File, None) => {
                        files.push(ManifestFile {
                            path,
                            kind,
                            mode,
                            size,
                            mtime,
                            link,
                            chunks: Vec::new(),
                        });
                        let c = chunker.start_file();
                        file_chunks.push(Some(c));
                        open = Some(Open::Chunked(c));
                    }
                    _ => {
                        files.push(ManifestFile {
                            path,
                            kind,
                            mode,
                            size: 0,
                            mtime,
                            link,
                            chunks: Vec::new(),
                        });
                        file_chunks.push(None);
                    }
                }
            }
            SourceEvent::Data(data) => {
                received += data.len() as u64;
                match &mut open {
                    Some(Open::Chunked(c)) => chunker.data(*c, &data).await?,
                    Some(Open::Label { text, .. }) => text.extend_from_slice(&data),
                    Some(Open::Incremental { rebuild, .. }) => {
                        let mut sink = Sink {
                            repo,
                            stanza,
                            chunker: &mut chunker,
                        };
                        rebuild.data(&data, &mut sink).await?
                    }
                    None => return Err(BackupError::Protocol("file data outside a file".into())),
                }
                if let Some(every) = opts.progress_every
                    && last_report.elapsed() >= every
                {
                    last_report = Instant::now();
                    let secs = clock.elapsed().as_secs_f64().max(0.001);
                    tracing::info!(
                        "backup {}: {} MiB received ({:.1} MiB/s)",
                        plan.label,
                        received >> 20,
                        received as f64 / secs / 1048576.0
                    );
                }
            }
            SourceEvent::EntryEnd => match open.take() {
                Some(Open::Chunked(c)) => chunker.end_file(c).await?,
                Some(Open::Incremental { file, rebuild }) => {
                    let mut sink = Sink {
                        repo,
                        stanza,
                        chunker: &mut chunker,
                    };
                    files[file].size = rebuild.finish(&mut sink).await?;
                }
                Some(Open::Label { name, text }) => {
                    let text = String::from_utf8_lossy(&text).into_owned();
                    if *name == "backup_label" {
                        backup_label = Some(text);
                    } else {
                        tablespace_map = Some(text);
                    }
                }
                None => {}
            },
            SourceEvent::Manifest(data) => pg_manifest.extend_from_slice(&data),
            SourceEvent::Finished { stop_lsn, timeline } => finished = Some((stop_lsn, timeline)),
        }
    }
    let (start_lsn, timeline) = started.ok_or_else(|| {
        BackupError::Protocol("the stream never said where the backup starts".into())
    })?;
    let (stop_lsn, _) = finished.ok_or_else(|| {
        BackupError::Protocol("the stream ended before the backup finished".into())
    })?;
    let mut backup_label = backup_label
        .ok_or_else(|| BackupError::Protocol("the backup has no backup_label".into()))?;
    if parent_files.is_some() {
        backup_label = complete_backup_label(&backup_label);
    }
    let chunked = chunker.finish().await?;
    for (file, c) in files.iter_mut().zip(&file_chunks) {
        if let Some(c) = c {
            file.chunks = chunked.refs[*c].clone();
        }
    }
    if opts.progress_every.is_some() {
        tracing::info!(
            "backup {}: {} MiB received, {} new chunks ({:.1} MiB stored), {} reused; waiting for WAL up to {stop_lsn}",
            plan.label,
            received >> 20,
            chunked.new_chunks,
            chunked.stored_bytes as f64 / 1048576.0,
            chunked.reused_chunks
        );
    }
    // Without the WAL from start to stop the backup never becomes consistent.
    let needed = segments_between(timeline, start_lsn, stop_lsn, opts.wal_segment_size);
    still_held(opts)?;
    wait_for_wal(repo, stanza, generation.db_id, needed, opts.archive_timeout).await?;
    let manifest = BackupManifest {
        format: MANIFEST_FORMAT,
        label: plan.label.clone(),
        backup_type: plan.backup_type,
        parent: plan.parent.as_ref().map(|p| p.label.clone()),
        db_id: generation.db_id,
        system_id: generation.system_id,
        pg_major: generation.pg_major,
        timeline,
        start_lsn,
        stop_lsn,
        start_time,
        stop_time: cairn_repo::BackupTime::now(),
        incremental_mode: opts.incremental_mode.unwrap_or(match plan.backup_type {
            cairn_repo::BackupType::Full => IncrementalMode::Full,
            _ => IncrementalMode::ContentAddressed,
        }),
        db_size: files.iter().map(|f| f.size).sum(),
        packs: chunked.packs,
        files,
        tablespaces,
        backup_label,
        tablespace_map,
        pg_manifest: (!pg_manifest.is_empty())
            .then(|| String::from_utf8_lossy(&pg_manifest).into_owned()),
        bytes_received: received,
        repo_added: chunked.stored_bytes,
        annotations: opts.annotations.clone(),
    };
    // The commit point: only while the lock is certainly still ours.
    if let Some(lock) = &opts.lock {
        lock.ensure_held().await?;
    }
    if opts.pin {
        repo.record_backup_event(
            &info.name,
            &BackupEvent::Pinned {
                label: manifest.label.clone(),
                pinned: true,
            },
        )
        .await?;
    }
    repo.put_manifest(&info.name, &manifest).await?;
    // The next backup's start reads the snapshot instead of every pack index. Best effort:
    // without it that start reads the pack indexes it does not cover.
    let _ = repo.update_chunk_snapshot(&info.name).await;
    Ok(manifest)
}

/// Fails once the backup lock was lost (as the heartbeat last saw it).
fn still_held(opts: &RunOptions) -> Result<(), BackupError> {
    match &opts.lock {
        Some(lock) => Ok(lock.check()?),
        None => Ok(()),
    }
}

/// The file whose data is arriving.
enum Open {
    /// A database file, cut into chunks (its position in the chunker).
    Chunked(usize),
    /// `backup_label` or `tablespace_map`, kept whole in the manifest.
    Label {
        name: &'static &'static str,
        text: Vec<u8>,
    },
    /// A PostgreSQL 17+ `INCREMENTAL.` file, rebuilt into `files[file]`.
    Incremental {
        file: usize,
        rebuild: Box<Reconstruction>,
    },
}

/// Longest annotation key and value.
const ANNOTATION_KEY_MAX: usize = 64;
const ANNOTATION_VALUE_MAX: usize = 1024;

/// Parse `KEY=VALUE` (`cairn backup --annotation`): a key of letters, digits, `.`, `_` and
/// `-` (at most 64), a value of at most 1024 characters without control characters.
pub fn annotation(text: &str) -> Result<(String, String), BackupError> {
    let bad = |why: &str| BackupError::Annotation(why.to_string());
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| bad("an annotation is KEY=VALUE"))?;
    if key.is_empty()
        || key.len() > ANNOTATION_KEY_MAX
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad(
            "an annotation key is 1 to 64 letters, digits, '.', '_' or '-'",
        ));
    }
    if value.chars().count() > ANNOTATION_VALUE_MAX || value.chars().any(char::is_control) {
        return Err(bad(&format!(
            "the value of annotation '{key}' must be at most 1024 characters, without control characters"
        )));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations() {
        assert_eq!(
            annotation("ticket=OPS-1 = before the migration").unwrap(),
            ("ticket".into(), "OPS-1 = before the migration".into())
        );
        assert_eq!(annotation("k=").unwrap(), ("k".into(), String::new()));
        for bad in [
            "novalue",
            "=x",
            "a b=c",
            "k=line\nbreak",
            &format!("{}=x", "k".repeat(65)),
        ] {
            assert!(annotation(bad).is_err(), "{bad:?}");
        }
        assert!(annotation(&format!("k={}", "v".repeat(1025))).is_err());
    }
}
