//! `cairn-archive-get`: what PostgreSQL's `restore_command` runs for every WAL file
//! recovery needs. One GET, then the object is authenticated and decompressed straight into
//! a temporary file beside the destination (no buffer of the segment's size), checked
//! against its name by its first page, and renamed into place, so PostgreSQL never sees a
//! partial file.
//!
//! With `[archive] async = true` the next segments are fetched ahead into the spool by a
//! background worker ([`prefetch`]), and a call finds its segment there.
//!
//! Exit codes follow PostgreSQL's expectations: 0 when the file was written, 1 only when
//! the archive does not have it (recovery then ends or switches to streaming). When the
//! archive has the file but cannot deliver it intact (damaged, listed but missing, not the
//! file asked for, the store unreachable after bounded retries) it exits 126, above 125, so
//! PostgreSQL aborts recovery instead of promoting short of the archive; with `--standby`
//! such errors keep their own codes (below 126), so a standby retries. Every file is
//! checked against its name before it is written ([`delivery`]).
//!
//! ```no_run
//! # async fn demo(cfg: &cairn_config::Config) -> Result<(), cairn_exit::Failure> {
//! let got = cairn_archive_get::get(cfg, None, "000000010000000000000002", "pg_wal/RECOVERYXLOG".as_ref(), cairn_archive_get::Mode::Recovery, None).await?;
//! # Ok(()) }
//! ```

pub mod delivery;
pub mod prefetch;
pub mod report;
mod staged;

use std::path::{Path, PathBuf};

use cairn_exit::{Classify, ErrorKind, Failure};
use cairn_pgformat::{WalFileName, WalSegmentSize};
use cairn_repo::{DbId, DeliverError, Repository, StanzaInfo, StanzaName};

use crate::prefetch::Prefetch;
use crate::staged::StagedFile;

/// What `archive-get` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOutcome {
    Written,
    NotInArchive,
}

/// How `archive-get` reports that the archive has a file it cannot deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Recovery that must not end short of the archive: exit 126, PostgreSQL stops.
    #[default]
    Recovery,
    /// A standby: keep the underlying error's code (below 126), PostgreSQL retries.
    Standby,
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("'{name}' is not a WAL file name")]
    BadName { name: String },
    #[error("{name} could not be restored from the archive: {cause}")]
    Undeliverable {
        name: String,
        cause: String,
        /// The kind of the underlying failure (a standby exits with its code).
        underlying: ErrorKind,
        mode: Mode,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for GetError {
    fn kind(&self) -> ErrorKind {
        match self {
            GetError::BadName { .. } => ErrorKind::InvalidInput,
            GetError::Write { .. } => ErrorKind::LocalIo,
            GetError::Undeliverable {
                mode: Mode::Recovery,
                ..
            } => ErrorKind::Undeliverable,
            GetError::Undeliverable { underlying, .. } => *underlying,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            GetError::BadName { .. } => {
                Some("restore_command should be 'cairn-archive-get %f \"%p\"'".into())
            }
            GetError::Write { .. } => None,
            GetError::Undeliverable { mode, .. } => Some(match mode {
                Mode::Recovery => "recovery stopped here rather than end short of the archive; \
                                   run `cairn verify` to see what is damaged, then restore to a \
                                   target before this segment or repair the repository"
                    .into(),
                Mode::Standby => "the standby retries; run `cairn verify` if this persists".into(),
            }),
        }
    }
}

/// The failure `archive-get` exits with. In recovery, anything but "not in the archive"
/// means the archive may have the file but cannot deliver it (the configuration does not
/// load, the store is unreachable, the key does not open, the object is damaged): 126, so
/// PostgreSQL stops instead of promoting. A standby keeps each failure's own code.
pub fn exit_failure(name: &str, mode: Mode, f: Failure) -> Failure {
    if f.kind == ErrorKind::Undeliverable || mode == Mode::Standby {
        return f;
    }
    named(name, mode, f)
}

/// The failure for a file the archive has but cannot deliver.
fn undeliverable(name: &WalFileName, mode: Mode, f: Failure) -> Failure {
    named(&name.to_string(), mode, f)
}

/// `f` as a failure to deliver `name`: exit 126 in recovery, `f`'s own code on a standby.
fn named(name: &str, mode: Mode, f: Failure) -> Failure {
    let mut out = Failure::from_error(&GetError::Undeliverable {
        name: name.to_string(),
        cause: f.message,
        underlying: f.kind,
        mode,
    });
    // The underlying hint says what to fix (a passphrase, a configuration); ours says why
    // recovery stopped.
    if let Some(h) = f.hint {
        out.hint = Some(match mode {
            Mode::Recovery => {
                format!("{h}; recovery stopped (exit 126) rather than end short of the archive")
            }
            Mode::Standby => h,
        });
    }
    out
}

/// Fetch `wal`, decoding it straight into a file beside `dest`, check it against its name
/// and rename it into place. `Ok(None)` only when the archive does not have it; otherwise
/// the size written.
async fn deliver(
    repo: &Repository,
    info: &StanzaInfo,
    wal: &WalFileName,
    dest: &Path,
    mode: Mode,
) -> Result<Option<u64>, Failure> {
    let write_error = |source| GetError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let staged = StagedFile::beside(dest).map_err(write_error)?;
    let got = match repo.get_wal_into(info, wal, staged.file()).await {
        Ok(got) => got,
        Err(DeliverError::Sink(e)) => return Err(write_error(e).into()),
        Err(DeliverError::Repo(e)) => {
            return Err(undeliverable(wal, mode, Failure::from_error(&e)));
        }
    };
    let Some((len, _)) = got else {
        // Not under its key: it is "not in the archive" only if the catalog agrees.
        return match repo.wal_listed(info, wal).await {
            Ok(false) => Ok(None),
            Ok(true) => Err(undeliverable(
                wal,
                mode,
                Failure::new(
                    ErrorKind::Corrupt,
                    "the WAL catalog lists it, but the repository does not have the object",
                ),
            )),
            Err(e) => Err(undeliverable(wal, mode, Failure::from_error(&e))),
        };
    };
    let head = staged
        .head(delivery::head_len(wal, len))
        .map_err(write_error)?;
    delivery::check_delivered(wal, &head, len, info).map_err(|why| {
        undeliverable(
            wal,
            mode,
            Failure::new(
                ErrorKind::Corrupt,
                format!("it is not the file asked for: {why}"),
            ),
        )
    })?;
    staged.finish(dest).map_err(write_error)?;
    Ok(Some(len))
}

/// Fetch `name` with an opened repository and write it at `dest`.
pub async fn get_with(
    repo: &Repository,
    info: &StanzaInfo,
    name: &str,
    dest: &Path,
    mode: Mode,
) -> Result<GetOutcome, Failure> {
    let wal: WalFileName = name.parse().map_err(|_| GetError::BadName {
        name: name.to_string(),
    })?;
    Ok(match deliver(repo, info, &wal, dest, mode).await? {
        Some(_) => GetOutcome::Written,
        None => GetOutcome::NotInArchive,
    })
}

/// Like [`get_with`], but a segment comes from the prefetch spool when the worker has it,
/// and the worker is told to fetch what follows. Trouble with the spool never fails the
/// call: it falls back to fetching and says why in the log (PostgreSQL's, by default).
pub async fn get_prefetching(
    repo: &Repository,
    info: &StanzaInfo,
    prefetch: &Prefetch,
    name: &str,
    dest: &Path,
    worker: (Option<&Path>, &str),
    mode: Mode,
) -> Result<GetOutcome, Failure> {
    let Ok(WalFileName::Segment(segment)) = name.parse::<WalFileName>() else {
        return get_with(repo, info, name, dest, mode).await;
    };
    let taken = match prefetch.take(repo.keys(), info, name, dest) {
        Ok(t) => t,
        Err(f) => {
            tracing::warn!("prefetch spool: {} (fetching directly)", f.message);
            None
        }
    };
    let size = match taken {
        Some(size) => size,
        None => {
            let wal = WalFileName::Segment(segment);
            let Some(size) = deliver(repo, info, &wal, dest, mode).await? else {
                return Ok(GetOutcome::NotInArchive);
            };
            size
        }
    };
    // A segment's size is the cluster's wal_segment_size.
    if let Ok(seg) = WalSegmentSize::new(size as u32)
        && let Err(f) = prefetch.request(&segment, seg, worker.0, worker.1)
    {
        tracing::warn!("cannot prefetch: {}", f.message);
    }
    Ok(GetOutcome::Written)
}

/// Write beside `dest` and rename, so `dest` is either absent or whole.
pub(crate) fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), GetError> {
    cairn_spool::write_whole(dest, bytes).map_err(|source| GetError::Write {
        path: dest.to_path_buf(),
        source,
    })
}

/// Open the configured repository and stanza, then fetch `name` into `dest`. With
/// `generation`, only that cluster generation's WAL is looked at (the restore of a backup
/// taken before a `stanza-upgrade`); the prefetch spool serves the current one only.
pub async fn get(
    cfg: &cairn_config::Config,
    stanza: Option<&str>,
    name: &str,
    dest: &Path,
    mode: Mode,
    generation: Option<DbId>,
) -> Result<GetOutcome, Failure> {
    let (sname, _) = cfg.stanza(stanza)?;
    let stanza = StanzaName::new(sname).map_err(|m| Failure::new(ErrorKind::Config, m))?;
    // A store that does not answer fails here: the message names the file either way.
    let opened = async {
        let repo = cairn_startup::open_repo(cfg).await?;
        let info = repo.require_stanza(&stanza).await?;
        Ok::<_, Failure>((repo, info))
    };
    let (repo, info) = opened.await.map_err(|f| named(name, mode, f))?;
    if let Some(db) = generation {
        let only = info.only(db).ok_or_else(|| {
            Failure::new(
                ErrorKind::Stanza,
                format!("stanza '{stanza}' has no cluster generation {db}"),
            )
            .with_hint("`cairn info` lists the stanza's generations (db ids)")
        })?;
        return get_with(&repo, &only, name, dest, mode).await;
    }
    if cfg.archive.async_ {
        let pf = prefetch_spool(cfg, &repo, &info);
        return get_prefetching(
            &repo,
            &info,
            &pf,
            name,
            dest,
            (Some(&cfg.source), sname),
            mode,
        )
        .await;
    }
    get_with(&repo, &info, name, dest, mode).await
}

fn prefetch_spool(cfg: &cairn_config::Config, repo: &Repository, info: &StanzaInfo) -> Prefetch {
    Prefetch::new(
        &cfg.archive.spool_path,
        &info.name,
        repo.repo_id(),
        info.current().db_id,
        cfg.archive.get_queue_max.0,
    )
}

/// The prefetch worker's entry point (`cairn-archive-get --prefetch-worker`).
pub async fn prefetch_worker(
    cfg: &cairn_config::Config,
    stanza: Option<&str>,
) -> Result<(), Failure> {
    let (sname, _) = cfg.stanza(stanza)?;
    let stanza = StanzaName::new(sname).map_err(|m| Failure::new(ErrorKind::Config, m))?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&stanza).await?;
    let pf = prefetch_spool(cfg, &repo, &info);
    prefetch::run_worker(repo, info, pf, cfg.archive.process_max).await
}
