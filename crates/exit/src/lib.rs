//! `cairn-exit`: the one registry of cairn's error kinds and their stable exit codes.
//!
//! Every library error in cairn says which [`ErrorKind`] it is (through [`Classify`]) and,
//! where it helps, a hint. Binaries turn any such error into a [`Failure`] and end with
//! [`Failure::exit`], which prints one line of reason, an optional `HINT:` line, and exits
//! with the kind's code. Scripts may rely on the codes below; they never change meaning.
//!
//! ```
//! use cairn_exit::{ErrorKind, Failure};
//! let f = Failure::new(ErrorKind::Config, "repo.path is missing").with_hint("add [repo] path = \"...\"");
//! assert_eq!(f.kind.code(), 3);
//! assert_eq!(f.to_string(), "repo.path is missing");
//! ```

use std::fmt;
use std::process::ExitCode;

/// What went wrong, in the terms an operator or a script acts on. The discriminant is the
/// process exit code; codes stay below 126 so a shell never confuses them with its own,
/// except [`ErrorKind::Undeliverable`], which is above 125 on purpose: PostgreSQL reads it
/// as a fatal `restore_command` failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// `archive-get`: the archive does not have the requested file. PostgreSQL reads exit
    /// code 1 as "not found" and ends recovery or switches to streaming.
    NotInArchive = 1,
    /// The command line is malformed (clap uses 2 as well).
    Usage = 2,
    /// The configuration file or an environment override is missing, unreadable or wrong.
    Config = 3,
    /// The repository could not be reached or an I/O operation on it failed. Retryable.
    RepoUnavailable = 4,
    /// The passphrase does not open the repository's key.
    WrongPassphrase = 5,
    /// An object in the repository failed its integrity check (truncated, altered, wrong kind).
    Corrupt = 6,
    /// An archived file exists with different content; cairn never overwrites it.
    Conflict = 7,
    /// An input file (WAL segment, history file, pg_control) is not what it claims to be.
    InvalidInput = 8,
    /// The stanza does not exist, or does not match this cluster.
    Stanza = 9,
    /// PostgreSQL could not be reached or refused the request. Often retryable.
    Postgres = 10,
    /// Another cairn process holds a lock this command needs. Retryable.
    Locked = 11,
    /// The requested recovery target cannot be reached with what the repository holds.
    Unreachable = 12,
    /// The command refuses an operation that could destroy data (e.g. restoring over a
    /// running cluster or into a non-empty directory).
    Refused = 13,
    /// A local file operation (outside the repository) failed.
    LocalIo = 14,
    /// The repository's format is newer than this cairn understands.
    Unsupported = 15,
    /// WAL that a command waits for (the segment `cairn check` switched to, the WAL from a
    /// backup's start to its stop) did not reach the repository in time: `archive_command`
    /// is failing or slow. Retryable once archiving catches up.
    ArchiveTimeout = 16,
    /// `cairn check`: a `[health]` threshold is exceeded (the newest backup is older than
    /// `max-backup-age`, or the last archived segment older than `max-archive-lag`). The
    /// message says what is stale. Everything else checked is in order.
    Unhealthy = 17,
    /// `cairn metrics --push`: the Pushgateway could not be reached or refused the
    /// metrics. Retryable.
    PushFailed = 18,
    /// `cairn drill`: the restored copy did not pass: recovery stopped short of its target
    /// or went past it, the server stopped on its own, or a query returned no row.
    DrillFailed = 19,
    /// A bug in cairn.
    Internal = 70,
    /// `archive-get` (not in standby mode): the archive has the requested file but cannot
    /// deliver it intact (it fails its checks, the catalog lists it but the store lacks it,
    /// it is not the file asked for, or the store stays unreachable after bounded retries).
    /// Above 125, so PostgreSQL aborts recovery with FATAL instead of ending it and
    /// promoting short of the archive. A `--standby` restore_command gets the underlying
    /// kind's code instead, so a standby keeps retrying.
    Undeliverable = 126,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// A short stable name, used in JSON output and logs.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotInArchive => "not-in-archive",
            ErrorKind::Usage => "usage",
            ErrorKind::Config => "config",
            ErrorKind::RepoUnavailable => "repo-unavailable",
            ErrorKind::WrongPassphrase => "wrong-passphrase",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Stanza => "stanza",
            ErrorKind::Postgres => "postgres",
            ErrorKind::Locked => "locked",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Refused => "refused",
            ErrorKind::LocalIo => "local-io",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ArchiveTimeout => "archive-timeout",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::PushFailed => "push-failed",
            ErrorKind::DrillFailed => "drill-failed",
            ErrorKind::Internal => "internal",
            ErrorKind::Undeliverable => "undeliverable",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RepoUnavailable
                | ErrorKind::Postgres
                | ErrorKind::Locked
                | ErrorKind::ArchiveTimeout
                | ErrorKind::PushFailed
        )
    }

    /// Every kind, for documentation and tests.
    pub const ALL: [ErrorKind; 21] = [
        ErrorKind::NotInArchive,
        ErrorKind::Usage,
        ErrorKind::Config,
        ErrorKind::RepoUnavailable,
        ErrorKind::WrongPassphrase,
        ErrorKind::Corrupt,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::Stanza,
        ErrorKind::Postgres,
        ErrorKind::Locked,
        ErrorKind::Unreachable,
        ErrorKind::Refused,
        ErrorKind::LocalIo,
        ErrorKind::Unsupported,
        ErrorKind::ArchiveTimeout,
        ErrorKind::Unhealthy,
        ErrorKind::PushFailed,
        ErrorKind::DrillFailed,
        ErrorKind::Internal,
        ErrorKind::Undeliverable,
    ];
}

/// Implemented by every library error: which kind it is and what the operator could do.
pub trait Classify: std::error::Error {
    fn kind(&self) -> ErrorKind;
    fn hint(&self) -> Option<String> {
        None
    }
}

/// A failure on its way out of a binary: one line of reason, an optional hint, a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prefix the message with what was being done, keeping kind and hint.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Build from any classified error, flattening its source chain into one line.
    pub fn from_error<E: Classify + ?Sized>(err: &E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            let s = s.to_string();
            if !message.contains(&s) {
                message.push_str(": ");
                message.push_str(&s);
            }
            source = s_source(source);
        }
        Failure {
            kind: err.kind(),
            message: one_line(&message),
            hint: err.hint(),
        }
    }

    /// Print `PROGRAM: ERROR: reason` and `HINT: ...` to stderr and return the exit code.
    pub fn exit(&self, program: &str) -> ExitCode {
        eprintln!("{program}: ERROR: {}", self.message);
        if let Some(h) = &self.hint {
            eprintln!("HINT: {h}");
        }
        ExitCode::from(self.kind.code())
    }
}

fn s_source<'a>(
    current: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    current.and_then(|c| c.source())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Classify> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::from_error(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_below_126() {
        let mut seen = HashSet::new();
        for k in ErrorKind::ALL {
            let fatal_for_postgres = k == ErrorKind::Undeliverable;
            assert_eq!(k.code() > 125, fatal_for_postgres, "{k:?}");
            assert!(k.code() > 0, "{k:?}");
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert!(seen.len() <= ErrorKind::ALL.len());
        }
        assert_eq!(ErrorKind::NotInArchive.code(), 1);
        // Names are stable too, and as unique as the codes.
        let names: HashSet<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner\nsecond line")]
    struct Inner;
    impl Classify for Outer {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Corrupt
        }
        fn hint(&self) -> Option<String> {
            Some("run cairn verify".into())
        }
    }

    #[test]
    fn failure_flattens_chain_to_one_line() {
        let f: Failure = Outer(Inner).into();
        assert_eq!(f.message, "outer: inner second line");
        assert_eq!(f.kind, ErrorKind::Corrupt);
        assert_eq!(f.hint.as_deref(), Some("run cairn verify"));
    }
}
