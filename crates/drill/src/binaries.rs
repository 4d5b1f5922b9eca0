//! Finding the PostgreSQL server binaries of the backup's major version: `pg-bin` when the
//! stanza sets it, else the first `postgres` on `PATH` of that version.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::DrillError;

/// A directory with a `postgres` of a known major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub dir: PathBuf,
    pub major: u32,
    /// What `postgres --version` said.
    pub version: String,
}

impl PgBinaries {
    pub fn postgres(&self) -> PathBuf {
        self.dir.join("postgres")
    }

    /// `pg_ctl` beside `postgres`, when it is there (for the `--keep` instructions).
    pub fn pg_ctl(&self) -> Option<PathBuf> {
        Some(self.dir.join("pg_ctl")).filter(|p| p.is_file())
    }

    /// `pg_bin` when given (it must hold PostgreSQL `major`), else the first directory on
    /// `path` (a `PATH` value) whose `postgres` is of version `major`.
    pub async fn find(
        pg_bin: Option<&Path>,
        major: u32,
        path: Option<&OsStr>,
    ) -> Result<PgBinaries, DrillError> {
        if let Some(dir) = pg_bin {
            let postgres = dir.join("postgres");
            let Some((found, version)) = version_of(&postgres).await else {
                return Err(DrillError::NoBinaries {
                    major,
                    searched: format!("pg-bin {} has no runnable postgres", dir.display()),
                    others: Vec::new(),
                    suggestion: debian_dir(major),
                });
            };
            if found != major {
                return Err(DrillError::WrongVersion {
                    path: postgres,
                    found,
                    want: major,
                });
            }
            return Ok(PgBinaries {
                dir: dir.to_path_buf(),
                major,
                version,
            });
        }
        let mut others = Vec::new();
        for dir in std::env::split_paths(path.unwrap_or_default()) {
            if !dir.is_absolute() || !dir.join("postgres").is_file() {
                continue;
            }
            match version_of(&dir.join("postgres")).await {
                Some((found, version)) if found == major => {
                    return Ok(PgBinaries {
                        dir,
                        major,
                        version,
                    });
                }
                Some((found, _)) => others.push((dir, found)),
                None => {}
            }
        }
        let mut searched = "pg-bin is not set; PATH".to_string();
        if !others.is_empty() {
            let seen: Vec<String> = others
                .iter()
                .map(|(d, m)| format!("{} in {}", m, d.display()))
                .collect();
            searched.push_str(&format!(" has only PostgreSQL {}", seen.join(", ")));
        } else {
            searched.push_str(" has no postgres");
        }
        Err(DrillError::NoBinaries {
            major,
            searched,
            others,
            suggestion: debian_dir(major),
        })
    }
}

/// Debian and Ubuntu keep each version's server in its own directory, off `PATH`.
fn debian_dir(major: u32) -> Option<PathBuf> {
    let dir = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    dir.join("postgres").is_file().then_some(dir)
}

/// `postgres --version`: the major version and the whole line.
async fn version_of(postgres: &Path) -> Option<(u32, String)> {
    let out = tokio::process::Command::new(postgres)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    parse_version(&text).map(|m| (m, text))
}

/// The major version in `postgres (PostgreSQL) 15.10 (Debian 15.10-1)` or `... 18beta1`.
pub(crate) fn parse_version(text: &str) -> Option<u32> {
    let rest = text.split("(PostgreSQL)").nth(1)?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|m| *m >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.10 (Debian 15.10-1.pgdg120+1)"),
            Some(15)
        );
        assert_eq!(parse_version("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_version("postgres (PostgreSQL) 17.2"), Some(17));
        assert_eq!(parse_version("postgres (PostgreSQL) 9.6.24"), None);
        assert_eq!(parse_version("something else 15.1"), None);
    }

    fn fake_postgres(dir: &Path, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("postgres");
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn pg_bin_must_match_and_path_is_searched_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fake_postgres(a.path(), "16.4");
        fake_postgres(b.path(), "15.8");
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let found = PgBinaries::find(None, 15, Some(&path)).await.unwrap();
        assert_eq!(found.dir, b.path());
        assert!(found.version.contains("15.8"));
        match PgBinaries::find(None, 17, Some(&path)).await {
            Err(DrillError::NoBinaries {
                others, searched, ..
            }) => {
                assert_eq!(others.len(), 2, "{others:?}");
                assert!(searched.contains("16 in"), "{searched}");
            }
            other => panic!("{other:?}"),
        }
        match PgBinaries::find(Some(a.path()), 15, None).await {
            Err(DrillError::WrongVersion {
                found: 16,
                want: 15,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            PgBinaries::find(Some(empty.path()), 15, None).await,
            Err(DrillError::NoBinaries { .. })
        ));
        assert_eq!(
            PgBinaries::find(Some(b.path()), 15, None)
                .await
                .unwrap()
                .dir,
            b.path()
        );
    }
}
