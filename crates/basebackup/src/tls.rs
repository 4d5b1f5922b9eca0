//! TLS for replication connections, with libpq's `sslmode` meanings: `prefer` tries TLS
//! and falls back to clear text when the server has no TLS; `require` insists on
//! encryption but, like libpq, does not verify the certificate (`verify-ca` and
//! `verify-full` are refused until cairn can be given a root certificate).

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::conn::Io;
use crate::error::ReplicationError;
use crate::params::SslMode;

/// Accepts any certificate, but still checks the handshake signatures: encryption without
/// authentication of the server, which is what `sslmode=require` means.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `SSLRequest`, then the TLS handshake if the server agrees (`pqsecure_open_client()` in
/// libpq): returns the stream to speak the protocol on, and whether it is encrypted.
pub(crate) async fn negotiate(
    mut s: tokio::net::TcpStream,
    host: &str,
    mode: SslMode,
) -> Result<(Box<dyn Io>, bool), ReplicationError> {
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    s.write_all(&buf).await?;
    // One byte: 'S' (go ahead with TLS) or 'N'. Nothing else may follow before the
    // handshake (CVE-2021-23222), so read exactly one.
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await?;
    match (answer[0], mode) {
        (b'S', _) => {
            let tls = connector().connect(server_name(host), s).await?;
            Ok((Box::new(tls), true))
        }
        (b'N', SslMode::Prefer) => Ok((Box::new(s), false)),
        (b'N', _) => Err(ReplicationError::TlsRefused),
        (other, _) => Err(ReplicationError::Protocol(format!(
            "SSLRequest answered {:?}",
            other as char
        ))),
    }
}

fn connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"))
}
