//! The unprivileged `postgres` OS user that every server process runs as.
//!
//! PostgreSQL refuses to run as root. When the test process is root, the kit switches child
//! processes to `postgres` (uid, gid, no supplementary groups, `HOME`/`USER`/`LOGNAME` set)
//! and gives the files those processes need to `postgres`. When the test process is not root
//! (a developer running as an ordinary user), nothing is switched or chowned: PostgreSQL then
//! simply runs as that user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Identity of the `postgres` OS user, read from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUser {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl PostgresUser {
    /// Looks the user up (once per process).
    pub fn get() -> Result<&'static PostgresUser> {
        static USER: OnceLock<Option<PostgresUser>> = OnceLock::new();
        USER.get_or_init(|| {
            let passwd = fs::read_to_string("/etc/passwd").ok()?;
            passwd.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 6 && f[0] == "postgres" {
                    Some(PostgresUser {
                        uid: f[2].parse().ok()?,
                        gid: f[3].parse().ok()?,
                        home: PathBuf::from(f[5]),
                    })
                } else {
                    None
                }
            })
        })
        .as_ref()
        .ok_or(Error::NoPostgresUser)
    }
}

/// True when this process runs with effective uid 0.
pub fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        // `Uid:` real effective saved fs
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
            })
            .unwrap_or(false)
    })
}

/// Makes `cmd` run as the `postgres` user when this process is root (a no-op otherwise).
///
/// This switches uid/gid in the child directly (the same effect as `runuser -u postgres --`,
/// without a PAM session or an extra process, so the child's pid is the program's pid). It
/// also sets `HOME`, `USER` and `LOGNAME`, and, when `cmd` has no working directory yet, `/`,
/// so that the program does not fail on an unreadable current directory (e.g. under `/root`).
pub fn run_as_postgres(cmd: &mut Command) -> Result<&mut Command> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir("/");
    }
    if !is_root() {
        return Ok(cmd);
    }
    let user = PostgresUser::get()?;
    Ok(cmd
        .uid(user.uid)
        .gid(user.gid)
        .env("HOME", &user.home)
        .env("USER", "postgres")
        .env("LOGNAME", "postgres"))
}

/// Gives `path` (not its contents) to the `postgres` user; a no-op when not root.
pub fn chown_to_postgres(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let user = PostgresUser::get()?;
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| Error::io("chown to postgres", path, e))
}

/// Gives `path` and everything below it to the `postgres` user; a no-op when not root.
pub fn chown_to_postgres_recursive(path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    chown_to_postgres(path)?;
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
            let entry = entry.map_err(|e| Error::io("list", path, e))?;
            chown_to_postgres_recursive(&entry.path())?;
        }
    }
    Ok(())
}

/// Creates `path` (and missing parents) owned by `postgres` with the given mode.
pub(crate) fn create_dir_for_postgres(path: &Path, mode: u32) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = path;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))?;
    for dir in missing.iter().rev() {
        set_mode(dir, mode)?;
        chown_to_postgres(dir)?;
    }
    Ok(())
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

/// True when the `postgres` user can reach `path`: every ancestor directory is searchable
/// by it, and `path` itself has the execute bit for it (a program or a directory).
pub(crate) fn postgres_can_execute(path: &Path) -> bool {
    if !is_root() {
        return true; // the processes run as ourselves
    }
    let Ok(user) = PostgresUser::get() else {
        return false;
    };
    path.ancestors().all(|p| match fs::metadata(p) {
        Ok(m) => {
            let mode = m.mode();
            if m.uid() == user.uid {
                mode & 0o100 != 0
            } else if m.gid() == user.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        }
        Err(_) => false,
    })
}
