//! A physical replication connection: the socket (Unix or TCP, TLS per `sslmode`), the
//! startup packet with `replication=true`, and the simple-query commands cairn needs.
//! Authentication is in [`crate::auth`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message, NoticeResponseBody};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use cairn_pgformat::{Lsn, TimelineId};

use crate::error::ReplicationError;
use crate::params::{ConnParams, SslMode};

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier, as in `pg_control` and WAL page headers.
    pub system_id: u64,
    /// The server's current timeline.
    pub timeline: TimelineId,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database of a logical replication connection; `None` for physical ones.
    pub dbname: Option<String>,
}

/// How long connecting (socket, TLS, authentication) may take. libpq waits forever by
/// default; a backup started by cron should rather fail and say so.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Notices kept for [`ReplicationConnection::take_notices`]; older ones are dropped.
const MAX_NOTICES: usize = 100;

/// An open replication connection.
pub struct ReplicationConnection {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    /// `ParameterStatus` values (`server_version`, `integer_datetimes`, ...).
    params: HashMap<String, String>,
    notices: VecDeque<String>,
    tls: bool,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("params", &self.params)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The text columns of a data row.
pub(crate) fn row_values(row: &DataRowBody) -> Result<Vec<Option<String>>, ReplicationError> {
    let buf = row.buffer();
    let mut out = Vec::new();
    let mut ranges = row.ranges();
    while let Some(r) = ranges.next().map_err(ReplicationError::Io)? {
        out.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
    }
    Ok(out)
}

/// A message's name, for protocol errors.
pub(crate) fn tag(m: &Message) -> &'static str {
    match m {
        Message::CopyData(_) => "CopyData",
        Message::CopyDone => "CopyDone",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::DataRow(_) => "DataRow",
        Message::RowDescription(_) => "RowDescription",
        Message::CommandComplete(_) => "CommandComplete",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::ErrorResponse(_) => "ErrorResponse",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        _ => "another message",
    }
}

/// `15.10` -> 150010, `17beta2` -> 170000 (the `server_version_num` scheme of 10+).
fn version_num(v: &str) -> Option<u32> {
    let num: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = num.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    major.checked_mul(10000)?.checked_add(minor)
}

/// The socket to speak the protocol on: Unix, or TCP with TLS negotiated per `mode`.
/// Shared by replication connections and SQL sessions ([`crate::connect_sql`]).
pub(crate) async fn open_socket(
    p: &ConnParams,
    mode: SslMode,
) -> Result<(Box<dyn Io>, bool), ReplicationError> {
    let target = p.target();
    let connect_err = |source| ReplicationError::Connect {
        target: target.clone(),
        source,
    };
    if p.is_unix_socket() {
        // libpq does not use TLS over Unix sockets either.
        let s = tokio::net::UnixStream::connect(&target)
            .await
            .map_err(connect_err)?;
        return Ok((Box::new(s), false));
    }
    let s = tokio::net::TcpStream::connect((p.host.as_str(), p.port))
        .await
        .map_err(connect_err)?;
    s.set_nodelay(true)?;
    if mode == SslMode::Disable {
        return Ok((Box::new(s), false));
    }
    crate::tls::negotiate(s, &p.host, mode).await
}

/// `WARNING: text` from a `NoticeResponse`.
fn notice_text(body: &NoticeResponseBody) -> String {
    let (mut severity, mut message) = (String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'S' => severity = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    format!("{severity}: {message}")
}

impl ReplicationConnection {
    /// Connect, authenticate and wait until the server is ready for commands, within
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect(p: &ConnParams) -> Result<ReplicationConnection, ReplicationError> {
        let mode = p.ssl_mode()?;
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_now(p, mode)).await {
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

    async fn connect_now(
        p: &ConnParams,
        mode: SslMode,
    ) -> Result<ReplicationConnection, ReplicationError> {
        let (io, tls) = open_socket(p, mode).await?;
        let mut conn = ReplicationConnection::over(io, tls);
        let mut buf = BytesMut::new();
        frontend::startup_message(
            [
                ("user", p.user.as_str()),
                // Physical replication: "true", not "database" (that would be logical).
                ("replication", "true"),
                ("application_name", p.application_name.as_str()),
            ],
            &mut buf,
        )?;
        conn.send(&buf).await?;
        conn.authenticate(p).await?;
        Ok(conn)
    }

    /// A connection over an established stream, before the startup packet.
    pub(crate) fn over(io: Box<dyn Io>, tls: bool) -> ReplicationConnection {
        ReplicationConnection {
            io,
            rbuf: BytesMut::with_capacity(256 * 1024),
            params: HashMap::new(),
            notices: VecDeque::new(),
            tls,
        }
    }

    /// End the session politely (`Terminate`), so the server logs no lost connection.
    /// Dropping the connection closes it too, just less politely.
    pub async fn close(mut self) -> Result<(), ReplicationError> {
        let mut buf = BytesMut::new();
        frontend::terminate(&mut buf);
        self.send(&buf).await?;
        self.io.shutdown().await?;
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub(crate) async fn send(&mut self, buf: &[u8]) -> Result<(), ReplicationError> {
        self.io.write_all(buf).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next message; notices and parameter changes, which may come at any time, are
    /// kept aside rather than returned.
    pub(crate) async fn recv(&mut self) -> Result<Message, ReplicationError> {
        loop {
            match Message::parse(&mut self.rbuf)? {
                Some(Message::NoticeResponse(body)) => {
                    if self.notices.len() == MAX_NOTICES {
                        self.notices.pop_front();
                    }
                    self.notices.push_back(notice_text(&body));
                    continue;
                }
                Some(Message::ParameterStatus(body)) => {
                    self.params
                        .insert(body.name()?.to_string(), body.value()?.to_string());
                    continue;
                }
                Some(m) => return Ok(m),
                None => {}
            }
            if self.rbuf.capacity() - self.rbuf.len() < 8192 {
                self.rbuf.reserve(256 * 1024);
            }
            let n = self.io.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ReplicationError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
        }
    }

    /// [`recv`](Self::recv) once the server may have reported `error`: a `FATAL` error
    /// is followed by the server hanging up, and the error says more than the hang-up.
    pub(crate) async fn recv_after(
        &mut self,
        error: &mut Option<ReplicationError>,
    ) -> Result<Message, ReplicationError> {
        match self.recv().await {
            Ok(m) => Ok(m),
            Err(e) => Err(error.take().unwrap_or(e)),
        }
    }

    /// Read until `ReadyForQuery`; the first `ErrorResponse` on the way is the result.
    pub(crate) async fn finish_command(&mut self) -> Result<(), ReplicationError> {
        let mut error = None;
        loop {
            match self.recv_after(&mut error).await? {
                Message::ErrorResponse(body) => {
                    error.get_or_insert(ReplicationError::from_response(&body));
                }
                Message::ReadyForQuery(_) => return error.map_or(Ok(()), Err),
                _ => {}
            }
        }
    }

    /// The notices (warnings) the server sent since the last call, oldest first, e.g.
    /// `WARNING: checksum verification failed in file "./base/5/16384", block 0: ...`.
    /// At most the last 100 are kept.
    pub fn take_notices(&mut self) -> Vec<String> {
        self.notices.drain(..).collect()
    }

    /// A `ParameterStatus` value the server reported, e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `server_version_num` (e.g. 170002), from the `server_version` the server reported.
    pub fn server_version_num(&self) -> Option<u32> {
        version_num(self.parameter("server_version")?)
    }

    /// Run a replication command; return the rows of all its result sets as text.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ReplicationError> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf)?;
        self.send(&buf).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv_after(&mut error).await? {
                Message::DataRow(row) => rows.push(row_values(&row)?),
                Message::ErrorResponse(body) => {
                    error.get_or_insert(ReplicationError::from_response(&body));
                }
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
                // A command that copies would leave the connection mid-stream.
                m @ (Message::CopyInResponse(_) | Message::CopyOutResponse(_)) => {
                    return Err(ReplicationError::Protocol(format!(
                        "{sql}: {} is not a simple query",
                        tag(&m)
                    )));
                }
                _ => {}
            }
        }
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, ReplicationError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| ReplicationError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let bad = |what: &str| {
            ReplicationError::Protocol(format!("IDENTIFY_SYSTEM: bad {what} in {row:?}"))
        };
        Ok(IdentifySystem {
            system_id: col(0).parse().map_err(|_| bad("systemid"))?,
            timeline: col(1).parse().map_err(|_| bad("timeline"))?,
            xlogpos: col(2).parse().map_err(|_| bad("xlogpos"))?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// `SHOW name` over the replication connection (a setting's value, with its unit).
    pub async fn show(&mut self, name: &str) -> Result<String, ReplicationError> {
        // SHOW takes an identifier, not a literal: keep only what a GUC name can contain.
        let ident: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let rows = self.simple_query(&format!("SHOW {ident}")).await?;
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(
            version_num("15.10 (Debian 15.10-1.pgdg120+1)"),
            Some(150010)
        );
        assert_eq!(version_num("17.2"), Some(170002));
        assert_eq!(version_num("18beta1"), Some(180000));
        assert_eq!(version_num("devel"), None);
    }
}
