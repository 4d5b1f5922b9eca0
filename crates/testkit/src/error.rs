//! The one error type of the kit.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up or driving test fixtures.
///
/// `Debug` prints the same text as `Display` (plus the source chain), so a test that calls
/// `.unwrap()` or returns `Result<(), cairn_testkit::Error>` shows a readable message,
/// including server log tails and `HINT:` lines.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PostgreSQL server install the test asked for is not on this machine.
    #[error(
        "PostgreSQL {major} is not installed: {missing} does not exist\nHINT: run `scripts/install-test-deps.sh`"
    )]
    PgNotInstalled { major: u32, missing: PathBuf },

    /// The kit knows no install source for this major version.
    #[error("PostgreSQL {major} is not supported by cairn-testkit (supported: 15, 16, 17, 18)")]
    UnsupportedMajor { major: u32 },

    /// A helper program (moto_server, the PostgreSQL 18 client tools) is missing.
    #[error(
        "{tool} is not installed: {missing} does not exist\nHINT: run `scripts/install-test-deps.sh`"
    )]
    ToolNotInstalled { tool: String, missing: PathBuf },

    /// The `postgres` OS user PostgreSQL must run as does not exist.
    #[error("the OS user `postgres` does not exist\nHINT: run `scripts/install-test-deps.sh`")]
    NoPostgresUser,

    /// A binary of this workspace has not been built.
    #[error(
        "the workspace binary `{name}` is not built (looked for {path})\nHINT: run `cargo build --workspace --bins` first"
    )]
    BinaryMissing { name: String, path: PathBuf },

    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A program could not be started at all.
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    /// A program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}){}", command_output(.stderr, .stdout))]
    CommandFailed {
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },

    /// `pg_ctl start` failed; `log_tail` holds the end of the server log.
    #[error(
        "PostgreSQL ({data_dir}) did not start: {reason}\n--- last lines of {log} ---\n{log_tail}"
    )]
    StartFailed {
        data_dir: PathBuf,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    /// A helper server (moto_server) did not come up.
    #[error("{server} did not start: {reason}\n--- last lines of its log ---\n{log_tail}")]
    ServerFailed {
        server: String,
        reason: String,
        log_tail: String,
    },

    /// [`wait_until`](crate::wait_until) ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}; last error: {last_error}")]
    Timeout {
        what: String,
        timeout: Duration,
        last_error: String,
    },

    /// An HTTP request to a storage server failed at the transport level or got an unexpected status.
    #[error("HTTP request {method} {target} failed: {reason}")]
    Http {
        method: String,
        target: String,
        reason: String,
    },

    /// The caller asked for something the kit cannot do (e.g. a data directory that is not empty).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// True when trying again later may succeed (a timeout, a transport-level HTTP failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Http { .. })
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            write!(f, "\ncaused by: {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

fn command_output(stderr: &str, stdout: &str) -> String {
    let mut out = String::new();
    for (name, text) in [("stderr", stderr.trim()), ("stdout", stdout.trim())] {
        if !text.is_empty() {
            out.push_str(&format!("\n--- {name} ---\n{}", tail(text, 60)));
        }
    }
    out
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
