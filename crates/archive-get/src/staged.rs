//! The temporary file a WAL file is decoded into, beside its destination: created new (never
//! an existing file), removed unless it is renamed into place, so PostgreSQL sees either
//! nothing or the whole, checked file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct StagedFile {
    path: PathBuf,
    file: File,
    done: bool,
}

impl StagedFile {
    /// A new empty file in `dest`'s directory, named after it (`.NAME.cairn.PID.N`).
    pub(crate) fn beside(dest: &Path) -> io::Result<StagedFile> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let path = dir.join(format!(
            ".{name}.cairn.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(StagedFile {
            path,
            file,
            done: false,
        })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The first `len` bytes written.
    pub(crate) fn head(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Rename into place at `dest`.
    pub(crate) fn finish(mut self, dest: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_finished_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("000000010000000000000001");
        {
            let s = StagedFile::beside(&dest).unwrap();
            s.file().write_all_at(b"half", 0).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let s = StagedFile::beside(&dest).unwrap();
        s.file().write_all_at(b"whole file", 0).unwrap();
        assert_eq!(s.head(5).unwrap(), b"whole");
        s.finish(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole file");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
