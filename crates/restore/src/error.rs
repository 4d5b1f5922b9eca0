use std::fmt;
use std::path::PathBuf;

use cairn_exit::{Classify, ErrorKind};
use cairn_planner::PlanError;
use cairn_repo::RepoError;

/// Why a manifest path cannot be restored as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Absolute,
    Nul,
    EmptyComponent,
    DotComponent,
    DotDotComponent,
    /// The same path appears twice.
    Duplicate,
    /// An ancestor of the path is a regular file (or a link) in the manifest.
    UnderFile,
    /// `pg_tblspc/OID` of a tablespace must be its link, not a file or directory.
    TablespaceLinkNotLink,
    /// A name cairn restore writes itself (`postgresql.auto.conf`) is not a regular file.
    ReservedNotFile,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "is empty",
            PathProblem::Absolute => "is absolute",
            PathProblem::Nul => "contains a NUL byte",
            PathProblem::EmptyComponent => "has an empty component",
            PathProblem::DotComponent => "has a '.' component",
            PathProblem::DotDotComponent => "has a '..' component",
            PathProblem::Duplicate => "appears more than once",
            PathProblem::UnderFile => "lies under an entry that is not a directory",
            PathProblem::TablespaceLinkNotLink => "names a tablespace but is not its link",
            PathProblem::ReservedNotFile => "must be a regular file",
        })
    }
}

/// Why a tablespace's target directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TablespaceProblem {
    Relative,
    NotEmpty,
    NotDirectory,
    InsidePgData,
    ContainsPgData,
    /// Two tablespaces would share (or nest) one directory.
    Overlaps {
        other: u32,
    },
}

impl fmt::Display for TablespaceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TablespaceProblem::Relative => f.write_str("is not an absolute path"),
            TablespaceProblem::NotEmpty => f.write_str("exists and is not empty"),
            TablespaceProblem::NotDirectory => f.write_str("exists and is not a directory"),
            TablespaceProblem::InsidePgData => f.write_str("is inside the data directory"),
            TablespaceProblem::ContainsPgData => f.write_str("contains the data directory"),
            TablespaceProblem::Overlaps { other } => {
                write!(f, "overlaps the directory of tablespace {other}")
            }
        }
    }
}

/// Everything a restore can report. Refusals (`Refused`, `InvalidInput`) happen before
/// anything is written; a failure while writing is wrapped in [`RestoreError::Incomplete`].
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("backup manifest path '{path}' {problem}; refusing to restore it")]
    UnsafePath { path: String, problem: PathProblem },
    #[error(
        "backup manifest has a symbolic link '{path}' -> '{link}'; only pg_tblspc/OID links of \
         the backup's tablespaces are restored"
    )]
    UnexpectedLink { path: String, link: String },
    #[error("the backup manifest is inconsistent at '{path}': {message}")]
    Inconsistent { path: String, message: String },
    #[error("{} exists and is not empty; refusing to restore over it", pg_data.display())]
    PgDataNotEmpty { pg_data: PathBuf },
    #[error(
        "{} contains postmaster.pid: a PostgreSQL server may be running on it; refusing to restore",
        pg_data.display()
    )]
    PostmasterPid { pg_data: PathBuf },
    #[error(
        "{} is not empty and does not look like a PostgreSQL data directory (no PG_VERSION); \
         --delta refuses to remove its content",
        pg_data.display()
    )]
    NotADataDirectory { pg_data: PathBuf },
    #[error("{} exists and is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("the parent directory of {} does not exist", path.display())]
    MissingParent { path: PathBuf },
    #[error("tablespace {oid}: target directory {} {problem}", target.display())]
    Tablespace {
        oid: u32,
        target: PathBuf,
        problem: TablespaceProblem,
    },
    #[error(
        "--tablespace-map names tablespace {oid}, which the backup does not have (it has: {known})"
    )]
    UnknownTablespace { oid: u32, known: String },
    #[error("backup manifest lists tablespace {oid} twice")]
    DuplicateTablespace { oid: u32 },
    #[error("recovery setting '{name}' {message}")]
    BadSetting { name: String, message: String },
    #[error("{path}: {source}")]
    Repo {
        path: String,
        #[source]
        source: Box<RepoError>,
    },
    #[error("{path}: chunk {index} holds {found} bytes, the manifest says {expected}")]
    ChunkSize {
        path: String,
        index: usize,
        expected: u64,
        found: u64,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// The target cannot be reached with what the repository holds.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reading the stanza, its catalogs or the chosen manifest failed.
    #[error(transparent)]
    Catalog(Box<RepoError>),
    #[error(
        "restore into {} stopped half-way and the directory is incomplete (marked by {}; \
         global/pg_control is withheld, so PostgreSQL cannot start on it): {source}",
        pg_data.display(), marker.display()
    )]
    Incomplete {
        pg_data: PathBuf,
        marker: PathBuf,
        #[source]
        source: Box<RestoreError>,
    },
}

impl RestoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RestoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsafe_path(path: &str, problem: PathProblem) -> Self {
        RestoreError::UnsafePath {
            path: path.escape_debug().to_string(),
            problem,
        }
    }

    /// The error underneath an [`RestoreError::Incomplete`] wrapper (itself otherwise).
    pub fn root(&self) -> &RestoreError {
        match self {
            RestoreError::Incomplete { source, .. } => source.root(),
            other => other,
        }
    }
}

impl Classify for RestoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::UnsafePath { .. }
            | RestoreError::UnexpectedLink { .. }
            | RestoreError::MissingParent { .. }
            | RestoreError::NotDirectory { .. }
            | RestoreError::UnknownTablespace { .. }
            | RestoreError::DuplicateTablespace { .. }
            | RestoreError::BadSetting { .. } => ErrorKind::InvalidInput,
            RestoreError::Tablespace { problem, .. } => match problem {
                TablespaceProblem::NotEmpty => ErrorKind::Refused,
                _ => ErrorKind::InvalidInput,
            },
            RestoreError::PgDataNotEmpty { .. }
            | RestoreError::PostmasterPid { .. }
            | RestoreError::NotADataDirectory { .. } => ErrorKind::Refused,
            RestoreError::Inconsistent { .. } | RestoreError::ChunkSize { .. } => {
                ErrorKind::Corrupt
            }
            RestoreError::Repo { source, .. } => source.kind(),
            RestoreError::Io { .. } => ErrorKind::LocalIo,
            RestoreError::Internal(_) => ErrorKind::Internal,
            RestoreError::Plan(e) => e.kind(),
            RestoreError::Catalog(e) => e.kind(),
            RestoreError::Incomplete { source, .. } => source.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RestoreError::PgDataNotEmpty { .. } => Some(
                "restore into an empty or new directory, or use --delta to restore over an \
                 existing data directory"
                    .into(),
            ),
            RestoreError::PostmasterPid { pg_data } => Some(format!(
                "stop the server (pg_ctl -D {} stop); if none is running, the file is stale: \
                 remove it, or restore into an empty directory",
                pg_data.display()
            )),
            RestoreError::Tablespace {
                problem: TablespaceProblem::NotEmpty,
                oid,
                ..
            } => Some(format!(
                "empty that directory, or relocate the tablespace with --tablespace-map \
                 {oid}=DIR (--delta reuses it only when the data directory's pg_tblspc/{oid} \
                 already links to it)"
            )),
            RestoreError::Tablespace { oid, .. } => Some(format!(
                "relocate the tablespace with --tablespace-map {oid}=DIR (an absolute path \
                 outside the data directory)"
            )),
            RestoreError::MissingParent { .. } => Some("create the parent directory first".into()),
            RestoreError::UnsafePath { .. }
            | RestoreError::UnexpectedLink { .. }
            | RestoreError::Inconsistent { .. } => Some(
                "this manifest was not written by a correct cairn backup; run `cairn verify`, \
                 and restore another backup with --set"
                    .into(),
            ),
            RestoreError::NotADataDirectory { .. } => Some(
                "check --pg-data; to restore into this directory anyway, empty it first".into(),
            ),
            RestoreError::Repo { source, .. } => source.hint(),
            RestoreError::Plan(e) => e.hint(),
            RestoreError::Catalog(e) => e.hint(),
            RestoreError::Incomplete {
                pg_data, source, ..
            } => {
                let again = format!(
                    "remove {} (and any tablespace directories the restore created) and \
                     restore again",
                    pg_data.display()
                );
                Some(match source.hint() {
                    Some(h) => format!("{h}; then {again}"),
                    None => again,
                })
            }
            _ => None,
        }
    }
}
