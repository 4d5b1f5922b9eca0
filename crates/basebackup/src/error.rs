use cairn_exit::{Classify, ErrorKind};

/// A replication connection or base backup failure.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to PostgreSQL lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("PostgreSQL: {message} (SQLSTATE {code})")]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
        server_hint: Option<String>,
    },
    #[error("PostgreSQL asks for a password and none is configured")]
    NoPassword,
    #[error("authentication method {method} is not supported by cairn")]
    UnsupportedAuth { method: String },
    #[error("pg-sslmode '{mode}' is not supported (certificate verification is not built yet)")]
    UnsupportedSsl { mode: String },
    #[error("the server does not accept TLS, and pg-sslmode is require")]
    TlsRefused,
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    #[error("base backup archive: {0}")]
    Tar(#[from] cairn_pgformat::tar::TarError),
}

impl Classify for ReplicationError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplicationError::UnsupportedSsl { .. } | ReplicationError::NoPassword => {
                ErrorKind::Config
            }
            _ => ErrorKind::Postgres,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ReplicationError::Connect { .. } => {
                Some("is PostgreSQL running? check pg-host and pg-port in the stanza section".into())
            }
            ReplicationError::Server { code, server_hint, .. } => match code.as_str() {
                "28P01" => Some("check pg-password (or ~/.pgpass is not read by cairn: set pg-password)".into()),
                "28000" => Some(
                    "pg_hba.conf needs a line allowing replication for this user, e.g. \
                     'host replication postgres 127.0.0.1/32 scram-sha-256', and the role needs REPLICATION"
                        .into(),
                ),
                "53300" => Some("all WAL senders are busy: raise max_wal_senders".into()),
                "42501" => Some("the role needs the REPLICATION attribute: ALTER ROLE ... REPLICATION".into()),
                _ => server_hint.clone(),
            },
            ReplicationError::NoPassword => Some("set pg-password in the stanza section or CAIRN_STANZA_<NAME>_PG_PASSWORD".into()),
            ReplicationError::UnsupportedSsl { .. } => Some("use pg-sslmode = \"require\" (encrypted, certificate not verified) or \"prefer\"".into()),
            ReplicationError::TlsRefused => Some("turn on ssl in postgresql.conf, or set pg-sslmode = \"prefer\"".into()),
            _ => None,
        }
    }
}
