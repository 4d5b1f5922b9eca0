//! The workspace's own built binaries (`cairn`, `cairn-archive-push`, `cairn-archive-get`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::postgres_user::set_mode;
use crate::test_dir::TestDir;

/// The binaries [`install_bins`] copies.
pub const CAIRN_BINS: [&str; 3] = ["cairn", "cairn-archive-push", "cairn-archive-get"];

/// The target profile directory the running test binary was built into
/// (`<target>/<profile>`, from `target/<profile>/deps/<test>-<hash>`).
fn profile_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty())
            && let Some(profile) = profile_dir.file_name()
        {
            dirs.push(PathBuf::from(target).join(profile));
        }
        dirs.push(profile_dir.to_path_buf());
    }
    dirs.push(
        crate::install::workspace_root()
            .join("target")
            .join("debug"),
    );
    dirs
}

/// Where the workspace binary `name` is (or would be) built for the running test's profile:
/// `<target dir>/<profile>/<name>`, the target dir being found from `current_exe()` (or
/// `$CARGO_TARGET_DIR`). The path may not exist: see [`require_cairn_bin`].
///
/// `cargo test` does not build other packages' binaries: run
/// `cargo build --workspace --bins` first (`scripts/test.sh` does).
pub fn cairn_bin(name: &str) -> PathBuf {
    let dirs = profile_dirs();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dirs[0].join(name))
}

/// [`cairn_bin`], failing with a HINT when the binary is not built.
pub fn require_cairn_bin(name: &str) -> Result<PathBuf> {
    let path = cairn_bin(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            name: name.to_string(),
            path,
        })
    }
}

/// Puts the built [`CAIRN_BINS`] (those that exist) into `<dir>/bin`, where the `postgres`
/// user can run them (the workspace may live where it cannot, e.g. under `/root`), and
/// returns that directory: use it in `archive_command` / `restore_command`. Fails with a HINT
/// when none is built.
pub fn install_bins(dir: &TestDir) -> Result<PathBuf> {
    let bin_dir = dir.subdir("bin")?;
    let mut installed = 0;
    for name in CAIRN_BINS {
        let src = cairn_bin(name);
        if src.is_file() {
            install_one(&src, &bin_dir.join(name))?;
            installed += 1;
        }
    }
    if installed == 0 {
        return Err(Error::BinaryMissing {
            name: CAIRN_BINS.join(", "),
            path: cairn_bin(CAIRN_BINS[0]),
        });
    }
    Ok(bin_dir)
}

/// Hard link when possible (same file system, no copy of a large debug binary), else copy;
/// then readable and executable by everyone.
fn install_one(src: &Path, dest: &Path) -> Result<()> {
    let _ = fs::remove_file(dest);
    if fs::hard_link(src, dest).is_err() {
        fs::copy(src, dest).map_err(|e| Error::io("copy to", dest, e))?;
    }
    let mode = fs::metadata(dest)
        .map_err(|e| Error::io("stat", dest, e))?
        .permissions()
        .mode();
    if mode & 0o555 != 0o555 {
        set_mode(dest, (mode | 0o555) & 0o7777)?;
    }
    Ok(())
}
