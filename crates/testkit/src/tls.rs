//! TLS for test servers: [`TestCertificates`] makes a throwaway CA, a server certificate it
//! signed for `localhost` (a name, not an address), and a second CA that signed nothing,
//! with the `openssl` command-line tool; [`PgCluster::enable_tls`] installs the server pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::PgCluster;
use crate::command::run;
use crate::error::{Error, Result};
use crate::postgres_user::{chown_to_postgres, set_mode};

/// Certificates in one directory: `ca.crt`, `other-ca.crt`, `server.crt`, `server.key`.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("openssl").current_dir(dir).args(args), None).map(|_| ())
}

impl TestCertificates {
    /// Make the certificates in `dir` (which must exist), valid for two days.
    pub fn generate(dir: &Path) -> Result<TestCertificates> {
        for ca in ["ca", "other-ca"] {
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-x509",
                    "-days",
                    "2",
                    "-nodes",
                    "-newkey",
                    "rsa:2048",
                    "-subj",
                    &format!("/CN=cairn test {ca}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                ],
            )?;
        }
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        )?;
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| Error::io("write", &ext, e))?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        )?;
        Ok(TestCertificates {
            dir: dir.to_path_buf(),
        })
    }

    /// The CA that signed the server certificate (PEM): what a client should trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing the server has: a client trusting only it must refuse.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The server certificate, for `localhost`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server certificate's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

impl PgCluster {
    /// Install the server certificate and key in the data directory (owned by `postgres`,
    /// mode 0600, as PostgreSQL demands) and set `ssl = on`, for the next start or reload.
    pub fn enable_tls(&self, certs: &TestCertificates) -> Result<()> {
        for (from, name) in [
            (certs.server_cert(), "server.crt"),
            (certs.server_key(), "server.key"),
        ] {
            let to = self.data_dir().join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io("copy", &from, e))?;
            chown_to_postgres(&to)?;
            set_mode(&to, 0o600)?;
        }
        self.set_conf("ssl", "on")
    }
}
