use std::path::PathBuf;
use std::time::Duration;

use cairn_exit::{Classify, ErrorKind};
use cairn_pgformat::{Lsn, PgTimestamp};
use cairn_repo::RepoError;
use cairn_restore::RestoreError;

/// Why a drill could not run, or why the restored copy did not pass. Refusals come before
/// anything is written; every kind that involves the running copy is
/// [`ErrorKind::DrillFailed`].
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("cairn drill runs as root, and PostgreSQL refuses to run as root")]
    RunningAsRoot,
    #[error("no PostgreSQL {major} server binaries found ({searched})")]
    NoBinaries {
        major: u32,
        /// Where cairn looked, in words.
        searched: String,
        /// Other versions seen on the way: (directory, major).
        others: Vec<(PathBuf, u32)>,
        /// A directory that has them, when one is known (Debian's layout).
        suggestion: Option<PathBuf>,
    },
    #[error("{} is PostgreSQL {found}, but the backup is of PostgreSQL {want}", path.display())]
    WrongVersion {
        path: PathBuf,
        found: u32,
        want: u32,
    },
    #[error(
        "--random needs a recoverable window with a commit after its start, and the stanza has none"
    )]
    NoWindow,
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("{} exists and is not an empty directory; refusing to use it as the drill's scratch directory", path.display())]
    ScratchInUse { path: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "recovery stopped: the archive could not deliver WAL segment {segment}{}",
        detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    WalUndeliverable {
        segment: String,
        /// What `cairn-archive-get` said about it, from the server's log.
        detail: Option<String>,
        log_tail: Vec<String>,
    },
    #[error(
        "recovery ended before reaching {target}{}",
        missing.as_deref().map(|m| format!(": WAL segment {m} was not in the archive")).unwrap_or_default()
    )]
    EndedBeforeTarget {
        target: String,
        /// The segment recovery asked for next and did not get.
        missing: Option<String>,
        log_tail: Vec<String>,
    },
    #[error(
        "PostgreSQL stopped on its own ({status}); its log ends: {}",
        last_lines(log_tail)
    )]
    ServerStopped {
        status: String,
        log_tail: Vec<String>,
    },
    #[error("PostgreSQL did not {what} within {}s; its log ends: {}", waited.as_secs(), last_lines(log_tail))]
    Timeout {
        what: &'static str,
        waited: Duration,
        log_tail: Vec<String>,
    },
    #[error(
        "recovery ended at {reached} (last commit {}), short of the archive's end: the catalog lists WAL to {wal_end}{}",
        opt_time(*reached_commit),
        expected_commit.map(|c| format!(" and a commit at {c}")).unwrap_or_default()
    )]
    ShortOfArchive {
        reached: Lsn,
        reached_commit: Option<PgTimestamp>,
        wal_end: Lsn,
        expected_commit: Option<PgTimestamp>,
        log_tail: Vec<String>,
    },
    #[error("recovery replayed a commit at {commit}, past the target {target}")]
    PastTarget { commit: PgTimestamp, target: String },
    #[error("recovery ended and the server promoted instead of pausing at {target}")]
    NotPaused {
        target: String,
        log_tail: Vec<String>,
    },
    #[error("{what}: {message}")]
    Sql { what: String, message: String },
    #[error("the --sql query returned no row: {sql}")]
    NoRow { sql: String },
    #[error("the sanity query found no relation in pg_class")]
    EmptyCatalog,
    #[error("interrupted by {signal}; the drill was stopped and cleaned up")]
    Interrupted { signal: &'static str },
}

fn last_lines(tail: &[String]) -> String {
    let meaningful: Vec<&str> = tail
        .iter()
        .map(String::as_str)
        .filter(|l| ["FATAL", "PANIC", "ERROR"].iter().any(|k| l.contains(k)))
        .collect();
    let pick: Vec<&str> = if meaningful.is_empty() {
        tail.iter()
            .rev()
            .take(2)
            .rev()
            .map(String::as_str)
            .collect()
    } else {
        meaningful.into_iter().rev().take(2).rev().collect()
    };
    if pick.is_empty() {
        "(nothing)".into()
    } else {
        pick.join(" | ")
    }
}

fn opt_time(t: Option<PgTimestamp>) -> String {
    t.map_or_else(|| "none".into(), |t| t.to_string())
}

impl DrillError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DrillError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The end of the server's log, when the failure involves the running server.
    pub fn log_tail(&self) -> &[String] {
        match self {
            DrillError::WalUndeliverable { log_tail, .. }
            | DrillError::EndedBeforeTarget { log_tail, .. }
            | DrillError::ServerStopped { log_tail, .. }
            | DrillError::Timeout { log_tail, .. }
            | DrillError::ShortOfArchive { log_tail, .. }
            | DrillError::NotPaused { log_tail, .. } => log_tail,
            _ => &[],
        }
    }
}

impl Classify for DrillError {
    fn kind(&self) -> ErrorKind {
        match self {
            DrillError::RunningAsRoot | DrillError::ScratchInUse { .. } => ErrorKind::Refused,
            DrillError::NoBinaries { .. } | DrillError::WrongVersion { .. } => ErrorKind::Config,
            DrillError::NoWindow => ErrorKind::Unreachable,
            DrillError::Repo(e) => e.kind(),
            DrillError::Restore(e) => e.kind(),
            DrillError::Io { .. } | DrillError::Spawn { .. } => ErrorKind::LocalIo,
            DrillError::WalUndeliverable { .. }
            | DrillError::EndedBeforeTarget { .. }
            | DrillError::ServerStopped { .. }
            | DrillError::Timeout { .. }
            | DrillError::ShortOfArchive { .. }
            | DrillError::PastTarget { .. }
            | DrillError::NotPaused { .. }
            | DrillError::Sql { .. }
            | DrillError::NoRow { .. }
            | DrillError::EmptyCatalog
            | DrillError::Interrupted { .. } => ErrorKind::DrillFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DrillError::RunningAsRoot => Some(
                "run it as the user PostgreSQL runs as, e.g. `runuser -u postgres -- cairn drill` \
                 or `sudo -u postgres cairn drill`"
                    .into(),
            ),
            DrillError::NoBinaries {
                major, suggestion, ..
            } => Some(match suggestion {
                Some(dir) => format!(
                    "set pg-bin = \"{}\" in the stanza's section of the configuration",
                    dir.display()
                ),
                None => format!(
                    "install the PostgreSQL {major} server, then set pg-bin to the directory \
                     holding its `postgres` in the stanza's section, or put it on PATH"
                ),
            }),
            DrillError::WrongVersion { want, .. } => Some(format!(
                "set pg-bin to the directory of PostgreSQL {want}'s server binaries"
            )),
            DrillError::NoWindow => Some(
                "take a backup and let transactions commit after it; `cairn info` shows the \
                 recoverable windows"
                    .into(),
            ),
            DrillError::Repo(e) => e.hint(),
            DrillError::Restore(e) => e.hint(),
            DrillError::ScratchInUse { .. } => Some(
                "give --scratch a directory that does not exist yet or is empty, or omit it to \
                 use the spool"
                    .into(),
            ),
            DrillError::WalUndeliverable { .. } => Some(
                "run `cairn verify` to see what else is damaged or missing; backups taken after \
                 that segment still restore"
                    .into(),
            ),
            DrillError::EndedBeforeTarget { .. } | DrillError::ShortOfArchive { .. } => Some(
                "run `cairn verify`: WAL the catalog lists is missing from the repository".into(),
            ),
            DrillError::ServerStopped { .. } | DrillError::Timeout { .. } => Some(
                "the server's log is above; run again with --keep to inspect the restored copy"
                    .into(),
            ),
            DrillError::NoRow { .. } => Some(
                "the query must return at least one row in the restored copy (it runs in the \
                 stanza's pg-database)"
                    .into(),
            ),
            DrillError::Sql { .. } => Some(
                "at a target time the copy is paused in recovery, so only read-only queries run"
                    .into(),
            ),
            _ => None,
        }
    }
}
