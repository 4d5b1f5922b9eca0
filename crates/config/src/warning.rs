//! [`ConfigWarning`]: what the configuration should not be, but does not stop a command:
//! secrets in files that other users can read.

use std::fmt;
use std::path::{Path, PathBuf};

/// A warning the binaries print (one line each) before they go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A file that holds only a secret (`cipher-pass-file`, `token-file`) is readable by
    /// its group or by others.
    SecretFileReadable {
        key: String,
        path: PathBuf,
        mode: u32,
    },
    /// The configuration file holds secrets (`keys`) and is readable by others.
    ConfigReadable {
        path: PathBuf,
        keys: Vec<String>,
        mode: u32,
    },
}

impl ConfigWarning {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            ConfigWarning::SecretFileReadable { path, .. }
            | ConfigWarning::ConfigReadable { path, .. } => {
                format!("chmod 600 {}", path.display())
            }
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::SecretFileReadable { key, path, mode } => write!(
                f,
                "{key} {} is readable by other users (mode {:04o})",
                path.display(),
                mode & 0o7777
            ),
            ConfigWarning::ConfigReadable { path, keys, mode } => write!(
                f,
                "configuration file {} holds {} and is readable by every user (mode {:04o})",
                path.display(),
                keys.join(", "),
                mode & 0o7777
            ),
        }
    }
}

/// The mode of `path` when it grants any of `bits`; `None` when it does not, or
/// cannot be read (the command that reads the file reports that).
pub(crate) fn mode_with(path: &Path, bits: u32) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & bits != 0).then_some(mode)
}

/// Group or others may read.
pub(crate) const GROUP_OR_OTHERS: u32 = 0o044;
/// Others may read.
pub(crate) const OTHERS: u32 = 0o004;

/// A warning for a secret-only file readable by group or others.
pub(crate) fn secret_file(key: &str, path: &Path) -> Option<ConfigWarning> {
    mode_with(path, GROUP_OR_OTHERS).map(|mode| ConfigWarning::SecretFileReadable {
        key: key.to_string(),
        path: path.to_path_buf(),
        mode,
    })
}
