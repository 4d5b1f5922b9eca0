//! [`ReplicationError`]: why a replication connection, an SQL session or a base backup
//! failed, with the server's SQLSTATE kept and a hint for the problems operators meet most.

use std::path::PathBuf;

use cairn_exit::{Classify, ErrorKind};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorResponseBody;

use crate::params::SslMode;

/// Which kind of session the server refused: pg_hba.conf matches them on different lines,
/// so the hints differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// A physical replication connection (`replication` lines of pg_hba.conf).
    Replication,
    /// An ordinary SQL session on a database ([`crate::connect_sql`]).
    Sql,
}

/// A replication connection, SQL session or base backup failure.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// No connection: the server is not running, or pg-host / pg-port point elsewhere.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to PostgreSQL lost: {0}")]
    Io(#[from] std::io::Error),
    /// An `ErrorResponse` (`FATAL` during startup, `ERROR` for a command).
    #[error("PostgreSQL: {message} (SQLSTATE {code})")]
    Server {
        /// The SQLSTATE, e.g. `28P01`.
        code: String,
        message: String,
        detail: Option<String>,
        /// The server's own `HINT`, if it gave one.
        server_hint: Option<String>,
        /// The session the server answered in.
        session: Session,
    },
    #[error("PostgreSQL asks for a password and none is configured")]
    NoPassword,
    #[error("authentication method {method} is not supported by cairn")]
    UnsupportedAuth { method: String },
    #[error(
        "pg-sslmode '{mode}' is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    UnsupportedSsl { mode: String },
    #[error("the server does not accept TLS, and pg-sslmode is {mode}")]
    TlsRefused { mode: SslMode },
    /// The trusted roots for `verify-ca` / `verify-full` cannot be read.
    #[error("cannot use {} as trusted root certificates: {why}", path.display())]
    RootCert { path: PathBuf, why: String },
    /// The TLS handshake failed, e.g. the server's certificate did not verify.
    #[error("TLS with the server failed: {source}")]
    Tls {
        /// The root file the certificate was checked against, in verifying modes.
        roots: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL {version} is not supported: {why}")]
    UnsupportedServer { version: String, why: &'static str },
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    #[error("base backup archive {archive}: {source}")]
    Tar {
        archive: String,
        #[source]
        source: cairn_pgformat::tar::TarError,
    },
}

impl ReplicationError {
    /// The error of an `ErrorResponse` message.
    pub(crate) fn from_response(body: &ErrorResponseBody) -> ReplicationError {
        let (mut code, mut message, mut detail, mut hint) =
            (String::new(), String::new(), None, None);
        let mut fields = body.fields();
        while let Ok(Some(f)) = fields.next() {
            let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
            match f.type_() {
                b'C' => code = v,
                b'M' => message = v,
                b'D' => detail = Some(v),
                b'H' => hint = Some(v),
                _ => {}
            }
        }
        ReplicationError::Server {
            code,
            message,
            detail,
            server_hint: hint,
            session: Session::Replication,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplicationError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed without anyone changing anything: lost or
    /// refused connections, a server starting or stopping, WAL sender slots all taken.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplicationError::Connect { .. } | ReplicationError::Io(_) => true,
            ReplicationError::Server { code, .. } => {
                code.starts_with("08")
                    || matches!(code.as_str(), "53300" | "57P01" | "57P02" | "57P03")
            }
            _ => false,
        }
    }
}

impl Classify for ReplicationError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::UnsupportedSsl { .. }
            | ReplicationError::NoPassword
            | ReplicationError::RootCert { .. } => ErrorKind::Config,
            _ => ErrorKind::Postgres,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ReplicationError::Connect { .. } => Some(
                "is PostgreSQL running? check pg-host (a socket directory or host name) and pg-port in the stanza section"
                    .into(),
            ),
            // A reject line matched a connection without TLS (e.g. `hostnossl ... reject`).
            ReplicationError::Server { code, message, .. }
                if code == "28000"
                    && message.contains("rejects connection")
                    && message.contains("no encryption") =>
            {
                Some(
                    "pg_hba.conf rejects this connection without TLS: if it accepts the user over TLS (hostssl), set pg-sslmode = \"verify-full\" (or \"require\")"
                        .into(),
                )
            }
            ReplicationError::Server {
                code,
                server_hint,
                session: Session::Sql,
                ..
            } => match code.as_str() {
                "28P01" => Some(
                    "check pg-password in the stanza section (cairn does not read ~/.pgpass)"
                        .into(),
                ),
                "28000" => Some(
                    "add a line allowing this user to connect to pg-database at the top of pg_hba.conf, e.g. \
                     'host postgres USER 127.0.0.1/32 scram-sha-256', then reload PostgreSQL"
                        .into(),
                ),
                "3D000" => Some(
                    "set pg-database in the stanza section to a database that exists (default postgres)"
                        .into(),
                ),
                "53300" => Some(
                    "all connection slots are in use: raise max_connections or end other sessions"
                        .into(),
                ),
                "57P01" | "57P02" | "57P03" => Some(
                    "PostgreSQL is starting up or shutting down: try again once it accepts connections"
                        .into(),
                ),
                _ => server_hint.clone(),
            },
            ReplicationError::Server {
                code, server_hint, ..
            } => match code.as_str() {
                "28P01" => Some(
                    "check pg-password in the stanza section (cairn does not read ~/.pgpass)"
                        .into(),
                ),
                "28000" => Some(
                    "add a line allowing replication for this user at the top of pg_hba.conf, e.g. \
                     'host replication USER 127.0.0.1/32 scram-sha-256', then reload PostgreSQL"
                        .into(),
                ),
                "42501" => Some(
                    "the role needs the REPLICATION attribute: ALTER ROLE USER REPLICATION".into(),
                ),
                "53300" => Some(
                    "all WAL sender slots are in use: raise max_wal_senders (a restart) or end other replication connections"
                        .into(),
                ),
                "57P01" | "57P02" | "57P03" => Some(
                    "PostgreSQL is starting up or shutting down: try again once it accepts connections"
                        .into(),
                ),
                _ => server_hint.clone(),
            },
            ReplicationError::NoPassword => Some(
                "set pg-password in the stanza section or CAIRN_STANZA_<NAME>_PG_PASSWORD".into(),
            ),
            ReplicationError::UnsupportedSsl { .. } => Some(
                "use pg-sslmode = \"require\" (encrypted, certificate not verified), \"verify-full\" (verified against PGSSLROOTCERT or ~/.postgresql/root.crt) or \"prefer\""
                    .into(),
            ),
            ReplicationError::TlsRefused { .. } => Some(
                "turn on ssl in postgresql.conf, or set pg-sslmode = \"prefer\"".into(),
            ),
            ReplicationError::RootCert { .. } => Some(
                "put the certificate of the CA that signed the server's certificate there (PEM), or point PGSSLROOTCERT at it"
                    .into(),
            ),
            ReplicationError::Tls { roots: Some(roots), .. } => Some(format!(
                "the server's certificate must be signed by a CA in {} and, with verify-full, name the host in pg-host",
                roots.display()
            )),
            ReplicationError::UnsupportedServer { .. } => {
                Some("cairn takes base backups from PostgreSQL 15 and later".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> ReplicationError {
        ReplicationError::Server {
            code: code.into(),
            message: "m".into(),
            detail: None,
            server_hint: Some("from the server".into()),
            session: Session::Replication,
        }
    }

    #[test]
    fn common_refusals_get_a_hint_and_say_whether_to_retry() {
        assert!(server("28P01").hint().unwrap().contains("pg-password"));
        assert!(server("28000").hint().unwrap().contains("host replication"));
        assert!(server("53300").hint().unwrap().contains("max_wal_senders"));
        assert!(server("53300").is_retryable());
        assert!(!server("28P01").is_retryable());
        assert_eq!(server("XX000").hint().as_deref(), Some("from the server"));
        assert_eq!(server("28P01").sqlstate(), Some("28P01"));
        assert_eq!(server("28P01").kind(), ErrorKind::Postgres);
        assert_eq!(ReplicationError::NoPassword.kind(), ErrorKind::Config);
    }

    #[test]
    fn sql_sessions_get_hints_for_sql_sessions() {
        let sql = |code: &str| ReplicationError::Server {
            code: code.into(),
            message: "m".into(),
            detail: None,
            server_hint: None,
            session: Session::Sql,
        };
        let tls_only = ReplicationError::Server {
            code: "28000".into(),
            message: "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"u\", database \"postgres\", no encryption".into(),
            detail: None,
            server_hint: None,
            session: Session::Replication,
        };
        assert!(tls_only.hint().unwrap().contains("pg-sslmode"));
        let no_line = ReplicationError::Server {
            code: "28000".into(),
            message: "no pg_hba.conf entry for replication connection from host \"127.0.0.1\", user \"u\", no encryption".into(),
            detail: None,
            server_hint: None,
            session: Session::Replication,
        };
        assert!(no_line.hint().unwrap().contains("host replication"));
        let hba = sql("28000").hint().unwrap();
        assert!(!hba.contains("replication"), "{hba}");
        assert!(hba.contains("pg_hba.conf"), "{hba}");
        assert!(sql("3D000").hint().unwrap().contains("pg-database"));
        assert!(sql("28P01").hint().unwrap().contains("pg-password"));
        assert!(!sql("53300").hint().unwrap().contains("max_wal_senders"));
    }
}
