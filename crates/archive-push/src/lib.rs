//! `cairn-archive-push`: what PostgreSQL's `archive_command` runs for every finished WAL
//! file. It checks that the file is what its name says and belongs to the stanza's
//! cluster, stores it with its summary, and returns only once it is durable: exit 0 is
//! the promise PostgreSQL relies on before it recycles the segment.
//!
//! ```no_run
//! # async fn demo(cfg: &cairn_config::Config) -> Result<(), cairn_exit::Failure> {
//! let outcome = cairn_archive_push::push(cfg, None, "pg_wal/000000010000000000000001".as_ref()).await?;
//! # Ok(()) }
//! ```

pub mod report;
pub mod spool;
mod validate;

use std::path::Path;

use bytes::Bytes;
use cairn_exit::{Classify, ErrorKind, Failure};
use cairn_pgformat::WalFileName;
use cairn_repo::{PushOutcome, Repository, StanzaInfo, StanzaName};

pub use validate::{ValidateError, validate};

/// Why a push failed before reaching the repository.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("'{name}' is not a WAL file name PostgreSQL archives")]
    NotWalName { name: String },
    #[error("refusing {name}: {source}")]
    Invalid {
        name: String,
        #[source]
        source: ValidateError,
    },
}

impl Classify for PushError {
    fn kind(&self) -> ErrorKind {
        match self {
            PushError::Read { .. } => ErrorKind::LocalIo,
            PushError::NotWalName { .. } => ErrorKind::InvalidInput,
            PushError::Invalid { source, .. } => source.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            PushError::NotWalName { .. } => {
                Some("archive_command should be 'cairn-archive-push %p'".into())
            }
            PushError::Invalid { source, .. } => source.hint(),
            PushError::Read { .. } => None,
        }
    }
}

/// Push one file with an already opened repository and stanza.
pub async fn push_with(
    repo: &Repository,
    info: &StanzaInfo,
    path: &Path,
) -> Result<PushOutcome, Failure> {
    let name = wal_name(path)?;
    let bytes = read(path)?;
    push_bytes(repo, info, &name, bytes).await
}

/// The WAL file name of `path`, as PostgreSQL gave it.
fn wal_name(path: &Path) -> Result<WalFileName, PushError> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    file_name.parse().map_err(|_| PushError::NotWalName {
        name: file_name.to_string(),
    })
}

/// Push the file `name` whose content is `bytes`.
async fn push_bytes(
    repo: &Repository,
    info: &StanzaInfo,
    name: &WalFileName,
    bytes: Bytes,
) -> Result<PushOutcome, Failure> {
    let generation = info.current();
    // Encoding (both cores) runs while this thread validates; nothing is stored until the
    // file has passed validation.
    let encoding = {
        let repo = repo.clone();
        let bytes = bytes.clone();
        let (stanza, db_id, name) = (info.name.clone(), generation.db_id, *name);
        tokio::spawn(async move { repo.encode_wal(&stanza, db_id, &name, bytes).await })
    };
    let detail = validate(name, &bytes, generation).map_err(|source| PushError::Invalid {
        name: name.to_string(),
        source,
    });
    let encoded = encoding
        .await
        .map_err(|e| Failure::new(ErrorKind::Internal, format!("encoding task failed: {e}")))??;
    let outcome = repo
        .push_wal(&info.name, generation.db_id, name, &encoded, detail?)
        .await?;
    Ok(outcome)
}

fn read(path: &Path) -> Result<Bytes, PushError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| PushError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Open the configured repository and stanza, then push `path` (or, with
/// `[archive] async = true`, wait for the async worker to have pushed it).
pub async fn push(
    cfg: &cairn_config::Config,
    stanza: Option<&str>,
    path: &Path,
) -> Result<PushOutcome, Failure> {
    let (name, _) = cfg.stanza(stanza)?;
    let stanza_name = StanzaName::new(name).map_err(|m| Failure::new(ErrorKind::Config, m))?;
    if cfg.archive.async_ {
        let spool = spool::Spool::new(&cfg.archive.spool_path, &stanza_name);
        let config = Some(cfg.source.as_path());
        spool.await_segment(path, config, name)?;
        return Ok(PushOutcome::Stored);
    }
    let wal = wal_name(path)?;
    // The segment is read while the repository opens.
    let reading = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || read(&path))
    };
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&stanza_name).await?;
    let bytes = reading
        .await
        .map_err(|e| Failure::new(ErrorKind::Internal, format!("reading task failed: {e}")))??;
    push_bytes(&repo, &info, &wal, bytes).await
}

/// The async worker's entry point (`cairn-archive-push --async-worker PG_WAL`).
pub async fn async_worker(
    cfg: &cairn_config::Config,
    stanza: Option<&str>,
    pg_wal: &Path,
) -> Result<(), Failure> {
    let (name, _) = cfg.stanza(stanza)?;
    let stanza_name = StanzaName::new(name).map_err(|m| Failure::new(ErrorKind::Config, m))?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&stanza_name).await?;
    let spool = spool::Spool::new(&cfg.archive.spool_path, &stanza_name);
    spool::run_worker(
        repo,
        info,
        spool,
        pg_wal.to_path_buf(),
        cfg.archive.process_max,
    )
    .await
}
