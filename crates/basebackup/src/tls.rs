//! TLS for replication connections, with libpq's `sslmode` meanings
//! (`pqsecure_open_client()` / `verify_peer_name_matches_certificate()` in
//! src/interfaces/libpq):
//!
//! - `prefer` tries TLS and falls back to clear text when the server has none;
//! - `require` insists on encryption but does not check the certificate;
//! - `verify-ca` checks that a trusted root signed the server's certificate;
//! - `verify-full` checks that too, and that the certificate names the host connected to.
//!
//! The trusted roots come from where libpq takes them: the PEM file named by
//! `PGSSLROOTCERT`, else `~/.postgresql/root.crt`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// `verify-ca`: the chain must lead to a trusted root, whatever names the certificate has.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The name is checked after the chain, so this error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Where libpq looks for trusted roots: `PGSSLROOTCERT`, else `~/.postgresql/root.crt`.
pub(crate) fn root_cert_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PGSSLROOTCERT") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".postgresql").join("root.crt")
}

fn trusted_roots() -> Result<(Arc<RootCertStore>, PathBuf), ReplicationError> {
    let path = root_cert_path();
    let bad = |why: String| ReplicationError::RootCert {
        path: path.clone(),
        why,
    };
    let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate cannot be used as a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    Ok((Arc::new(roots), path))
}

/// The connector for `mode`, and the root file it trusts (verifying modes only).
fn connector(
    mode: SslMode,
) -> Result<(tokio_rustls::TlsConnector, Option<PathBuf>), ReplicationError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (verifier, roots): (Arc<dyn ServerCertVerifier>, _) = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            (Arc::new(EncryptOnly(provider.clone())), None)
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let (roots, path) = trusted_roots()?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| ReplicationError::RootCert {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            if mode == SslMode::VerifyFull {
                (webpki as Arc<dyn ServerCertVerifier>, Some(path))
            } else {
                (
                    Arc::new(ChainOnly(webpki)) as Arc<dyn ServerCertVerifier>,
                    Some(path),
                )
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), roots))
}

/// `SSLRequest`, then the TLS handshake if the server agrees: returns the stream to speak
/// the protocol on, and whether it is encrypted.
pub(crate) async fn negotiate(
    mut s: tokio::net::TcpStream,
    host: &str,
    mode: SslMode,
) -> Result<(Box<dyn Io>, bool), ReplicationError> {
    // Before anything is sent: a missing root file is a configuration error, not a
    // connection one.
    let (connector, roots) = connector(mode)?;
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    s.write_all(&buf).await?;
    // One byte: 'S' (go ahead with TLS) or 'N'. Nothing may follow it before the
    // handshake (CVE-2021-23222), so read exactly one.
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await?;
    match (answer[0], mode) {
        (b'S', _) => {
            let name = ServerName::try_from(host.to_string()).map_err(|_| {
                ReplicationError::Protocol(format!("{host:?} is not a host name for TLS"))
            })?;
            let tls = connector
                .connect(name, s)
                .await
                .map_err(|source| ReplicationError::Tls { roots, source })?;
            Ok((Box::new(tls), true))
        }
        (b'N', SslMode::Prefer) => Ok((Box::new(s), false)),
        (b'N', mode) => Err(ReplicationError::TlsRefused { mode }),
        (other, _) => Err(ReplicationError::Protocol(format!(
            "SSLRequest answered {:?}",
            other as char
        ))),
    }
}
