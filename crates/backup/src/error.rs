use std::time::Duration;

use cairn_exit::{Classify, ErrorKind};
use cairn_pgformat::SegmentName;
use cairn_repo::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The server or the connection failed; the source's own error, classified.
    #[error("{message}")]
    Source {
        message: String,
        hint: Option<String>,
        kind: ErrorKind,
    },
    #[error("the base backup stream is not what cairn expects: {0}")]
    Protocol(String),
    #[error("the server is system {found}, but stanza '{stanza}' belongs to system {expected}")]
    WrongSystem {
        stanza: String,
        found: u64,
        expected: u64,
    },
    #[error(
        "WAL segment {segment} (needed to make the backup consistent) was not archived within {waited:?}"
    )]
    WalNotArchived {
        segment: SegmentName,
        waited: Duration,
    },
    /// The server reports a setting cairn cannot use.
    #[error("unexpected {name} '{value}' reported by the server")]
    UnexpectedSetting { name: &'static str, value: String },
    /// PostgreSQL 17+ sent a file as `INCREMENTAL.` that the parent backup does not have.
    #[error(
        "the server sent {path} as changed blocks only, but parent backup {parent} has no such file"
    )]
    NotInParent { path: String, parent: String },
    /// A `--annotation` the backup cannot store.
    #[error("{0}")]
    Annotation(String),
    /// An `INCREMENTAL.` file from the server is not what PostgreSQL writes.
    /// The one who started the backup gave it up (`cairn serve` shutting down): no
    /// manifest was written, so the backup is not listed.
    #[error("the backup was abandoned before its manifest was written")]
    Abandoned,
    #[error("incremental file for {path}: {source}")]
    Incremental {
        path: String,
        #[source]
        source: cairn_pgformat::incremental::IncrementalError,
    },
}

impl Classify for BackupError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Repo(e) => e.kind(),
            BackupError::Source { kind, .. } => *kind,
            BackupError::Protocol(_) | BackupError::UnexpectedSetting { .. } => ErrorKind::Postgres,
            BackupError::WrongSystem { .. } => ErrorKind::Stanza,
            BackupError::Annotation(_) => ErrorKind::Usage,
            BackupError::WalNotArchived { .. } => ErrorKind::ArchiveTimeout,
            BackupError::NotInParent { .. } | BackupError::Incremental { .. } => {
                ErrorKind::Postgres
            }
            BackupError::Abandoned => ErrorKind::Refused,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BackupError::Repo(e) => e.hint(),
            BackupError::Source { hint, .. } => hint.clone(),
            BackupError::WrongSystem { .. } => Some("check [stanza.*] pg-host/pg-port: they must reach the stanza's cluster".into()),
            BackupError::WalNotArchived { .. } => Some(
                "check archive_command (cairn check) and pg_stat_archiver; the backup is not listed and its chunks are reused next time".into(),
            ),
            BackupError::NotInParent { .. } => Some(
                "the parent's PostgreSQL backup_manifest does not match its cairn manifest; take a full backup (cairn backup --type full)".into(),
            ),
            BackupError::Abandoned => Some(
                "the backup is not listed; its chunks already stored are reused by the next backup".into(),
            ),
            BackupError::Annotation(_) => {
                Some("for example: cairn backup --annotation ticket=OPS-1234".into())
            }
            BackupError::Protocol(_)
            | BackupError::UnexpectedSetting { .. }
            | BackupError::Incremental { .. } => None,
        }
    }
}
