//! A physical replication connection: startup with `replication=true`, authentication
//! (trust, password, md5, SCRAM-SHA-256), and the simple-query commands cairn needs.

use std::collections::HashMap;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use cairn_pgformat::{Lsn, TimelineId};

use crate::error::ReplicationError;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// A socket directory (starts with `/`) or a host name / address.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// `disable`/`allow` (clear), `prefer` (TLS if the server offers it), `require` (TLS or
    /// fail; the certificate is not verified, as in libpq). `verify-*` are refused.
    pub sslmode: Option<String>,
    pub application_name: String,
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Off,
    Prefer,
    Require,
}

/// The result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    pub system_id: u64,
    pub timeline: TimelineId,
    pub xlogpos: Lsn,
}

/// An open replication connection.
pub struct ReplicationConnection {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    params: HashMap<String, String>,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

pub(crate) fn server_error(body: &ErrorResponseBody) -> ReplicationError {
    let (mut code, mut message, mut detail, mut hint) = (String::new(), String::new(), None, None);
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

impl ReplicationConnection {
    /// Connect, authenticate and wait until the server is ready for commands.
    pub async fn connect(p: &ConnParams) -> Result<ReplicationConnection, ReplicationError> {
        let tls = match p.sslmode.as_deref() {
            None | Some("disable") | Some("allow") => Tls::Off,
            Some("prefer") => Tls::Prefer,
            Some("require") => Tls::Require,
            Some(other) => {
                return Err(ReplicationError::UnsupportedSsl {
                    mode: other.to_string(),
                });
            }
        };
        let io: Box<dyn Io> = if p.host.starts_with('/') {
            // libpq does not use TLS over Unix sockets either.
            let path = format!("{}/.s.PGSQL.{}", p.host, p.port);
            let s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|source| ReplicationError::Connect {
                    target: path.clone(),
                    source,
                })?;
            Box::new(s)
        } else {
            let target = format!("{}:{}", p.host, p.port);
            let mut s = tokio::net::TcpStream::connect(&target)
                .await
                .map_err(|source| ReplicationError::Connect {
                    target: target.clone(),
                    source,
                })?;
            s.set_nodelay(true)?;
            if tls == Tls::Off {
                Box::new(s)
            } else {
                // SSLRequest; the server answers one byte: 'S' (go ahead) or 'N'.
                let mut buf = BytesMut::new();
                frontend::ssl_request(&mut buf);
                s.write_all(&buf).await?;
                let mut answer = [0u8; 1];
                s.read_exact(&mut answer).await?;
                match (answer[0], tls) {
                    (b'S', _) => Box::new(
                        crate::tls::connector()
                            .connect(crate::tls::server_name(&p.host), s)
                            .await?,
                    ),
                    (b'N', Tls::Prefer) => Box::new(s),
                    (b'N', _) => return Err(ReplicationError::TlsRefused),
                    (other, _) => {
                        return Err(ReplicationError::Protocol(format!(
                            "SSLRequest answered {:?}",
                            other as char
                        )));
                    }
                }
            }
        };
        let mut conn = ReplicationConnection {
            io,
            rbuf: BytesMut::with_capacity(64 * 1024),
            params: HashMap::new(),
        };
        let mut buf = BytesMut::new();
        frontend::startup_message(
            [
                ("user", p.user.as_str()),
                ("replication", "true"),
                ("application_name", p.application_name.as_str()),
            ],
            &mut buf,
        )?;
        conn.send(&buf).await?;
        conn.authenticate(p).await?;
        Ok(conn)
    }

    async fn authenticate(&mut self, p: &ConnParams) -> Result<(), ReplicationError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let mut out = BytesMut::new();
            match self.recv().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let pass = p.password.as_deref().ok_or(ReplicationError::NoPassword)?;
                    frontend::password_message(pass.as_bytes(), &mut out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pass = p.password.as_deref().ok_or(ReplicationError::NoPassword)?;
                    let hash = md5_hash(p.user.as_bytes(), pass.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                Message::AuthenticationSasl(body) => {
                    let pass = p.password.as_deref().ok_or(ReplicationError::NoPassword)?;
                    let mut mechs = body.mechanisms();
                    let mut found = false;
                    while let Some(m) = mechs.next()? {
                        found |= m == SCRAM_SHA_256;
                    }
                    if !found {
                        return Err(ReplicationError::UnsupportedAuth {
                            method: "SASL without SCRAM-SHA-256".into(),
                        });
                    }
                    let s = ScramSha256::new(pass.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL continue before start".into())
                    })?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL final before start".into())
                    })?;
                    s.finish(body.data())?;
                }
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationSspi => {
                    return Err(ReplicationError::UnsupportedAuth {
                        method: "GSSAPI/SSPI".into(),
                    });
                }
                Message::ParameterStatus(body) => {
                    self.params
                        .insert(body.name()?.to_string(), body.value()?.to_string());
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "during startup: message {}",
                        tag(&other)
                    )));
                }
            }
            if !out.is_empty() {
                self.send(&out).await?;
            }
        }
    }

    pub(crate) async fn send(&mut self, buf: &[u8]) -> Result<(), ReplicationError> {
        self.io.write_all(buf).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub(crate) async fn recv(&mut self) -> Result<Message, ReplicationError> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 8192 {
                self.rbuf.reserve(64 * 1024);
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

    /// `server_version_num` (e.g. 170002), from the startup parameters.
    pub fn server_version_num(&self) -> Option<u32> {
        let v = self.params.get("server_version")?;
        let num: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = num.split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(major * 10000 + minor)
    }

    /// Run a replication command; return the rows of all its result sets.
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
            match self.recv().await? {
                Message::DataRow(row) => rows.push(row_values(&row)?),
                Message::ErrorResponse(body) => error = Some(server_error(&body)),
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
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
        let bad = |what: &str| ReplicationError::Protocol(format!("IDENTIFY_SYSTEM: bad {what}"));
        Ok(IdentifySystem {
            system_id: col(0).parse().map_err(|_| bad("systemid"))?,
            timeline: TimelineId(col(1).parse().map_err(|_| bad("timeline"))?),
            xlogpos: col(2).parse().map_err(|_| bad("xlogpos"))?,
        })
    }

    /// `SHOW name` over the replication connection.
    pub async fn show(&mut self, name: &str) -> Result<String, ReplicationError> {
        let ident: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let rows = self.simple_query(&format!("SHOW {ident}")).await?;
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default())
    }
}

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
        _ => "other",
    }
}
