//! The authentication exchange after the startup packet (protocol 3.0, "Start-up" in the
//! PostgreSQL docs): trust, cleartext password, md5 and SCRAM-SHA-256 (the client side of
//! src/interfaces/libpq/fe-auth.c and fe-auth-scram.c, here from `postgres-protocol`).

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::conn::{ReplicationConnection, tag};
use crate::error::ReplicationError;
use crate::params::ConnParams;

impl ReplicationConnection {
    /// Answer the server's authentication requests until it is ready for queries.
    pub(crate) async fn authenticate(&mut self, p: &ConnParams) -> Result<(), ReplicationError> {
        let password = || p.password.as_deref().ok_or(ReplicationError::NoPassword);
        let mut scram: Option<ScramSha256> = None;
        loop {
            let mut out = BytesMut::new();
            match self.recv().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(p.user.as_bytes(), password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                Message::AuthenticationSasl(body) => {
                    let pass = password()?;
                    let mut mechanisms = body.mechanisms();
                    let mut offered = Vec::new();
                    while let Some(m) = mechanisms.next()? {
                        offered.push(m.to_string());
                    }
                    // Channel binding (SCRAM-SHA-256-PLUS) needs the TLS certificate's
                    // hash; libpq's default `channel_binding=prefer` also falls back to
                    // plain SCRAM, which every server offering PLUS offers too.
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(ReplicationError::UnsupportedAuth {
                            method: format!("SASL {}", offered.join(", ")),
                        });
                    }
                    let s = ScramSha256::new(pass.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL continue before SASL start".into())
                    })?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    // Checks the server's signature: a server that does not know the
                    // password cannot pretend to.
                    let s = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASL final before SASL start".into())
                    })?;
                    s.finish(body.data())?;
                }
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationGssContinue(_)
                | Message::AuthenticationScmCredential
                | Message::AuthenticationSspi => {
                    return Err(ReplicationError::UnsupportedAuth {
                        method: "GSSAPI/SSPI/Kerberos".into(),
                    });
                }
                Message::BackendKeyData(_) => {}
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(ReplicationError::from_response(&body)),
                other => {
                    return Err(ReplicationError::Protocol(format!(
                        "during startup: {}",
                        tag(&other)
                    )));
                }
            }
            if !out.is_empty() {
                self.send(&out).await?;
            }
        }
    }
}
