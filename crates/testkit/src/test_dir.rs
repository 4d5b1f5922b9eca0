//! Throwaway directories that the `postgres` user can use.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::postgres_user::{chown_to_postgres, create_dir_for_postgres, set_mode};

/// Where the kit puts temporary things: `$CAIRN_TEST_TMP`, else `/tmp`.
///
/// Not `std::env::temp_dir()`: `$TMPDIR` may point somewhere the `postgres` user cannot reach,
/// and Unix socket paths must stay short.
pub fn test_tmp_root() -> PathBuf {
    std::env::var_os("CAIRN_TEST_TMP")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// A temporary directory under [`test_tmp_root`], owned by `postgres`, mode 0755, removed with
/// everything in it when dropped.
///
/// Set `CAIRN_KEEP_TEST_DIRS=1` to keep it (its path is printed to stderr) for a post-mortem.
/// Declare it before the clusters and servers that live in it, so that they are dropped (and
/// stopped) first.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A new directory named `cairn-test-XXXXXX`.
    pub fn new() -> Result<TestDir> {
        TestDir::with_prefix("cairn-test-")
    }

    /// A new directory whose name starts with `prefix`.
    pub fn with_prefix(prefix: &str) -> Result<TestDir> {
        let root = test_tmp_root();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&root)
            .map_err(|e| Error::io("create a temporary directory in", &root, e))?;
        let path = dir.path().to_path_buf();
        set_mode(&path, 0o755)?;
        chown_to_postgres(&path)?;
        Ok(TestDir {
            dir: Some(dir),
            path,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path().join(name)`, created (with missing parents) owned by `postgres`, mode 0755.
    /// An existing directory is returned as it is.
    pub fn subdir(&self, name: impl AsRef<Path>) -> Result<PathBuf> {
        let name = name.as_ref();
        if name.is_absolute() || name.components().any(|c| c.as_os_str() == "..") {
            return Err(Error::Invalid(format!(
                "TestDir::subdir wants a relative path inside the test directory, got {}",
                name.display()
            )));
        }
        let path = self.path.join(name);
        create_dir_for_postgres(&path, 0o755)?;
        Ok(path)
    }

    /// Writes `contents` to `path().join(name)` (parent directories created as by
    /// [`subdir`](Self::subdir)), owned by `postgres`, mode 0644; returns the path. For files
    /// the server or the archive commands must read, such as a cairn configuration.
    pub fn write_file(
        &self,
        name: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
    ) -> Result<PathBuf> {
        let name = name.as_ref();
        if let Some(parent) = name.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.subdir(parent)?;
        } else if name.is_absolute() {
            return Err(Error::Invalid(format!(
                "TestDir::write_file wants a relative path, got {}",
                name.display()
            )));
        }
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(|e| Error::io("write", &path, e))?;
        set_mode(&path, 0o644)?;
        chown_to_postgres(&path)?;
        Ok(path)
    }

    /// Keeps the directory on disk after the `TestDir` is gone; returns its path.
    pub fn keep(mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::env::var("CAIRN_KEEP_TEST_DIRS").is_ok_and(|v| v == "1") {
            eprintln!(
                "cairn-testkit: keeping test directory {}",
                dir.keep().display()
            );
        }
        // else: TempDir's own drop removes it (errors ignored)
    }
}
