//! The drill's scratch directory: everything a drill writes lives under it (and, when its
//! path is too long for a Unix socket, one socket directory under the system's temporary
//! directory), owned by the user running cairn, mode 0700, and removed at the end.
//!
//! ```text
//! <spool>/drill/<stanza>-<stamp>/     or --scratch DIR
//!     data/                  the restored data directory
//!     tablespaces/OID/       each tablespace of the backup
//!     socket/                the server's private Unix socket directory
//!     pg_hba.conf            who may connect (see `access_files`)
//!     pg_ident.conf          empty
//!     server.log             the server's output
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_repo::StanzaName;

use crate::error::DrillError;

/// Where the scratch directory goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchDir {
    /// A new directory `drill/<stanza>-<stamp>` under this one (the spool).
    Under(PathBuf),
    /// Exactly this directory: it must not exist (its parent must) or be empty.
    At(PathBuf),
}

/// `sun_path` holds 108 bytes with its terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

#[derive(Debug)]
pub(crate) struct Scratch {
    pub root: PathBuf,
    /// Whether the drill created `root` (else it only empties it at the end).
    created_root: bool,
    pub socket: PathBuf,
    /// The socket directory lies outside `root` (its path was too long inside).
    socket_outside: bool,
}

fn mkdir_private(path: &Path) -> Result<(), DrillError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| DrillError::io("create directory", path, e))
}

impl Scratch {
    pub fn create(
        at: &ScratchDir,
        stanza: &StanzaName,
        stamp: &str,
    ) -> Result<Scratch, DrillError> {
        let (root, created_root) = match at {
            ScratchDir::Under(spool) => {
                let parent = spool.join("drill");
                match std::fs::DirBuilder::new()
                    .mode(0o700)
                    .recursive(true)
                    .create(&parent)
                {
                    Ok(()) => {}
                    Err(e) => return Err(DrillError::io("create directory", parent, e)),
                }
                let mut n = 1;
                loop {
                    let name = match n {
                        1 => format!("{stanza}-{stamp}"),
                        n => format!("{stanza}-{stamp}-{n}"),
                    };
                    let root = parent.join(name);
                    match std::fs::DirBuilder::new().mode(0o700).create(&root) {
                        Ok(()) => break (root, true),
                        // Another drill of this stanza in the same second.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                            n += 1
                        }
                        Err(e) => return Err(DrillError::io("create directory", root, e)),
                    }
                }
            }
            ScratchDir::At(dir) => {
                let dir =
                    std::path::absolute(dir).map_err(|e| DrillError::io("resolve", dir, e))?;
                match std::fs::symlink_metadata(&dir) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        mkdir_private(&dir)?;
                        (dir, true)
                    }
                    Err(e) => return Err(DrillError::io("inspect", dir, e)),
                    Ok(m) if m.is_dir() => {
                        let mut entries = std::fs::read_dir(&dir)
                            .map_err(|e| DrillError::io("read directory", &dir, e))?;
                        if entries.next().is_some() {
                            return Err(DrillError::ScratchInUse { path: dir });
                        }
                        (dir, false)
                    }
                    Ok(_) => return Err(DrillError::ScratchInUse { path: dir }),
                }
            }
        };
        let mut scratch = Scratch {
            socket: root.join("socket"),
            root,
            created_root,
            socket_outside: false,
        };
        // `.s.PGSQL.65535` is the longest name the server puts there.
        if scratch.socket.as_os_str().len() + "/.s.PGSQL.65535".len() > SOCKET_PATH_MAX {
            let name = format!("cairn-drill-{stanza}-{stamp}-{:08x}", rand::random::<u32>());
            scratch.socket = std::env::temp_dir().join(name);
            scratch.socket_outside = true;
        }
        if let Err(e) = mkdir_private(&scratch.socket) {
            let _ = scratch.remove();
            return Err(e);
        }
        Ok(scratch)
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    pub fn hba(&self) -> PathBuf {
        self.root.join("pg_hba.conf")
    }

    pub fn ident(&self) -> PathBuf {
        self.root.join("pg_ident.conf")
    }

    pub fn tablespace(&self, oid: u32) -> PathBuf {
        self.root.join("tablespaces").join(oid.to_string())
    }

    /// Write the files that say who may connect: the socket (in a 0700 directory, so only
    /// this user) without a password; loopback TCP only with the copy's own passwords.
    pub fn write_access_files(&self) -> Result<(), DrillError> {
        let hba = "# Written by cairn drill.\n\
                   local all all trust\n\
                   host all all 127.0.0.1/32 md5\n";
        for (path, text) in [
            (self.hba(), hba),
            (self.ident(), "# Written by cairn drill.\n"),
        ] {
            std::fs::write(&path, text).map_err(|e| DrillError::io("write", &path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| DrillError::io("chmod", &path, e))?;
        }
        Ok(())
    }

    fn tablespace_root(&self) -> PathBuf {
        self.root.join("tablespaces")
    }

    /// Create `tablespaces/` (the parent of every relocated tablespace).
    pub fn prepare_tablespaces(&self) -> Result<(), DrillError> {
        mkdir_private(&self.tablespace_root())
    }

    /// Remove everything the drill made: the whole root when it created it, else its
    /// content; and an outside socket directory.
    pub fn remove(self) -> Result<(), DrillError> {
        if self.socket_outside {
            remove_tree(&self.socket)?;
        }
        if self.created_root {
            remove_tree(&self.root)
        } else {
            let entries = std::fs::read_dir(&self.root)
                .map_err(|e| DrillError::io("read directory", &self.root, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| DrillError::io("read directory", &self.root, e))?;
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    remove_tree(&path)?;
                } else {
                    std::fs::remove_file(&path).map_err(|e| DrillError::io("remove", &path, e))?;
                }
            }
            Ok(())
        }
    }
}

/// `remove_dir_all`, and if a directory without write permission (a backup may restore
/// one) stops it, make the tree writable and try once more. Links are never followed.
fn remove_tree(path: &Path) -> Result<(), DrillError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            std::fs::remove_dir_all(path).map_err(|e| DrillError::io("remove", path, e))
        }
    }
}

fn make_writable(dir: &Path) {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        make_writable(&entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza() -> StanzaName {
        StanzaName::new("main").unwrap()
    }

    #[test]
    fn under_the_spool_a_new_private_directory_each_time_removed_whole() {
        let spool = tempfile::tempdir().unwrap();
        let at = ScratchDir::Under(spool.path().to_path_buf());
        let a = Scratch::create(&at, &stanza(), "20261201T101500Z").unwrap();
        let b = Scratch::create(&at, &stanza(), "20261201T101500Z").unwrap();
        assert_ne!(a.root, b.root);
        assert!(a.root.starts_with(spool.path().join("drill")));
        let mode = std::fs::metadata(&a.root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(a.socket.starts_with(&a.root) && a.socket.is_dir());
        // A read-only directory inside does not stop the removal.
        let ro = a.data().join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ro.join("f"), b"x").unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let root = a.root.clone();
        a.remove().unwrap();
        assert!(!root.exists());
        b.remove().unwrap();
        assert!(
            spool.path().join("drill").is_dir(),
            "the drill/ parent stays"
        );
    }

    #[test]
    fn an_exact_directory_must_be_new_or_empty_and_an_existing_one_is_only_emptied() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("scratch");
        let s = Scratch::create(&ScratchDir::At(dir.clone()), &stanza(), "x").unwrap();
        s.remove().unwrap();
        assert!(!dir.exists(), "created by the drill: removed");
        std::fs::create_dir(&dir).unwrap();
        let s = Scratch::create(&ScratchDir::At(dir.clone()), &stanza(), "x").unwrap();
        std::fs::write(s.log(), b"log").unwrap();
        s.remove().unwrap();
        assert!(dir.is_dir(), "the operator's directory stays");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::write(dir.join("precious"), b"x").unwrap();
        assert!(matches!(
            Scratch::create(&ScratchDir::At(dir.clone()), &stanza(), "x"),
            Err(DrillError::ScratchInUse { .. })
        ));
        assert!(dir.join("precious").exists());
    }

    #[test]
    fn a_socket_directory_too_long_for_a_socket_path_goes_to_the_temporary_directory() {
        let parent = tempfile::tempdir().unwrap();
        let deep = parent.path().join("d".repeat(100));
        let s = Scratch::create(&ScratchDir::At(deep.clone()), &stanza(), "x").unwrap();
        assert!(!s.socket.starts_with(&deep));
        assert!(s.socket.as_os_str().len() + 15 <= SOCKET_PATH_MAX);
        let socket = s.socket.clone();
        assert!(socket.is_dir());
        s.remove().unwrap();
        assert!(!socket.exists() && !deep.exists());
    }
}
