//! Ordinary SQL sessions (`tokio-postgres`) over the same socket and TLS setup as
//! replication connections, so `pg-sslmode` means one thing for every connection cairn
//! opens: this module opens the socket and negotiates TLS with [`crate::tls`], then hands
//! the ready stream to `tokio-postgres` for the startup and authentication.

use tokio_postgres::NoTls;

use crate::conn::{CONNECT_TIMEOUT, open_socket};
use crate::error::{ReplicationError, Session};
use crate::params::ConnParams;

/// Connect to `database` for SQL, authenticate, and spawn the connection's task on the
/// current tokio runtime, within [`CONNECT_TIMEOUT`].
///
/// TLS follows [`ConnParams::ssl_mode`] exactly as [`crate::ReplicationConnection::connect`]
/// does (same roots, same verification); refusals carry the server's SQLSTATE and a hint.
pub async fn connect_sql(
    p: &ConnParams,
    database: &str,
) -> Result<tokio_postgres::Client, ReplicationError> {
    let mode = p.ssl_mode()?;
    let attempt = async {
        let (io, _tls) = open_socket(p, mode).await?;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&p.user)
            .dbname(database)
            .application_name(&p.application_name)
            // The stream is already encrypted (or not) as `mode` asks.
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        if let Some(password) = &p.password {
            config.password(password);
        }
        let (client, connection) = config
            .connect_raw(io, NoTls)
            .await
            .map_err(|e| from_sql(&e, p))?;
        tokio::spawn(async move {
            // Ends when the client is dropped; a lost connection shows in the next query.
            let _ = connection.await;
        });
        Ok(client)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ReplicationError::Connect {
            target: p.target(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
        }),
    }
}

/// A `tokio-postgres` startup failure as the replication client would report it.
fn from_sql(e: &tokio_postgres::Error, p: &ConnParams) -> ReplicationError {
    if let Some(db) = e.as_db_error() {
        return ReplicationError::Server {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            server_hint: db.hint().map(str::to_string),
            session: Session::Sql,
        };
    }
    // tokio-postgres reports a missing password only as a configuration error.
    if p.password.is_none() && e.to_string().starts_with("invalid configuration") {
        return ReplicationError::NoPassword;
    }
    let mut text = e.to_string();
    let mut io_kind = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        io_kind = io_kind.or(s.downcast_ref::<std::io::Error>().map(std::io::Error::kind));
        source = s.source();
    }
    match io_kind {
        Some(kind) => ReplicationError::Io(std::io::Error::new(kind, text)),
        None => ReplicationError::Protocol(text),
    }
}
