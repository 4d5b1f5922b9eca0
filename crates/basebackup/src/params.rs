//! Where and as whom to connect: [`ConnParams`], and libpq's `sslmode` values as
//! [`SslMode`].

use std::fmt;
use std::str::FromStr;

use crate::error::ReplicationError;

/// Where and as whom to connect.
///
/// Physical replication connections do not connect to a database: the server matches
/// them against `replication` lines of pg_hba.conf, so there is no database name here.
#[derive(Clone)]
pub struct ConnParams {
    /// A socket directory (starts with `/`) or a host name / address.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// libpq's `sslmode` (see [`SslMode`]); unset means `prefer`, libpq's default.
    pub sslmode: Option<String>,
    pub application_name: String,
}

/// Never shows the password.
impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("sslmode", &self.sslmode)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// libpq's `sslmode`, as far as cairn implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Clear text (`allow` means the same to cairn: it never retries with TLS).
    Disable,
    /// TLS when the server offers it, else clear text.
    Prefer,
    /// TLS or fail. Like libpq, the server's certificate is not verified: this protects
    /// against eavesdropping, not against a server impersonated on the network.
    Require,
    /// TLS with a certificate signed by a trusted root (`PGSSLROOTCERT`, else
    /// `~/.postgresql/root.crt`), whatever host it names.
    VerifyCa,
    /// [`SslMode::VerifyCa`], and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SslMode {
    type Err = ReplicationError;

    /// libpq's names; an unknown one is refused rather than guessed at.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" | "allow" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(ReplicationError::UnsupportedSsl {
                mode: other.to_string(),
            }),
        }
    }
}

impl ConnParams {
    /// The configured [`SslMode`]; unset means [`SslMode::Prefer`], as in libpq.
    pub fn ssl_mode(&self) -> Result<SslMode, ReplicationError> {
        self.sslmode
            .as_deref()
            .map_or(Ok(SslMode::Prefer), str::parse)
    }

    /// Whether `host` names a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// What a connection error names: the socket file or `host:port`.
    pub fn target(&self) -> String {
        if self.is_unix_socket() {
            format!("{}/.s.PGSQL.{}", self.host.trim_end_matches('/'), self.port)
        } else if self.host.contains(':') {
            // An IPv6 address.
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(host: &str) -> ConnParams {
        ConnParams {
            host: host.into(),
            port: 5433,
            user: "postgres".into(),
            password: None,
            sslmode: None,
            application_name: "t".into(),
        }
    }

    #[test]
    fn targets_name_the_socket_file_or_the_address() {
        assert_eq!(params("/run/pg/").target(), "/run/pg/.s.PGSQL.5433");
        assert_eq!(params("db.example").target(), "db.example:5433");
        assert_eq!(params("::1").target(), "[::1]:5433");
    }

    #[test]
    fn debug_hides_the_password() {
        let mut p = params("h");
        p.password = Some("s3cret".into());
        let shown = format!("{p:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<hidden>"),
            "{shown}"
        );
    }

    #[test]
    fn sslmodes() {
        let mut p = params("h");
        assert_eq!(p.ssl_mode().unwrap(), SslMode::Prefer);
        for (text, mode) in [
            ("allow", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
        ] {
            p.sslmode = Some(text.into());
            assert_eq!(p.ssl_mode().unwrap(), mode);
        }
        p.sslmode = Some("verify-full".into());
        assert_eq!(p.ssl_mode().unwrap(), SslMode::VerifyFull);
        p.sslmode = Some("verify_full".into());
        assert!(matches!(
            p.ssl_mode(),
            Err(ReplicationError::UnsupportedSsl { .. })
        ));
    }
}
