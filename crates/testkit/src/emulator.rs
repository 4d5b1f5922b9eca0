//! A storage emulator process on a free port of 127.0.0.1 (Azurite, fake-gcs-server): found
//! under `$CAIRN_TEST_CACHE/bin`, started with its log in a temporary file, awaited until it
//! answers HTTP, and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result, tail};
use crate::http::request;
use crate::install::test_cache_dir;
use crate::port::free_port;
use crate::test_dir::test_tmp_root;
use crate::wait::wait_until;

/// A running emulator; its state lives in `work` (or in memory) and goes with it.
#[derive(Debug)]
pub(crate) struct Emulator {
    child: Option<Child>,
    pub(crate) port: u16,
    log: tempfile::NamedTempFile,
    _work: tempfile::TempDir,
}

/// `$<override_var>`, else `$CAIRN_TEST_CACHE/bin/<tool>` (put there by
/// `scripts/install-test-deps.sh`), else `PATH`.
pub(crate) fn find_tool(tool: &str, override_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let cached = test_cache_dir().join("bin").join(tool);
    let mut candidates = vec![cached.clone()];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(tool)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(Error::ToolNotInstalled {
            tool: tool.into(),
            missing: cached,
        })
}

impl Emulator {
    /// Start `program` with the arguments `args(port, work_dir)` returns, and wait until
    /// `GET ready_path` gets any HTTP answer. A bind race with another process is retried
    /// on a new port.
    pub(crate) fn start(
        name: &str,
        program: &Path,
        args: impl Fn(u16, &Path) -> Vec<String>,
        ready_path: &str,
    ) -> Result<Emulator> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let work = tempfile::Builder::new()
                .prefix(&format!("cairn-{name}-"))
                .tempdir_in(test_tmp_root())
                .map_err(|e| Error::io("create a directory in", test_tmp_root(), e))?;
            let log = tempfile::Builder::new()
                .prefix(&format!("cairn-{name}-"))
                .suffix(".log")
                .tempfile_in(test_tmp_root())
                .map_err(|e| Error::io("create a log file in", test_tmp_root(), e))?;
            let out = log.reopen().map_err(|e| Error::io("open", log.path(), e))?;
            let err = log.reopen().map_err(|e| Error::io("open", log.path(), e))?;
            let child = Command::new(program)
                .args(args(port, work.path()))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .current_dir(work.path())
                .spawn()
                .map_err(|source| Error::Spawn {
                    program: program.display().to_string(),
                    source,
                })?;
            let mut emulator = Emulator {
                child: Some(child),
                port,
                log,
                _work: work,
            };
            let up = wait_until(
                &format!("{name} to answer HTTP"),
                Duration::from_secs(60),
                || {
                    let child = emulator.child.as_mut().expect("child is set until drop");
                    if let Some(status) = child
                        .try_wait()
                        .map_err(|e| Error::io("wait for", program, e))?
                    {
                        return Ok(Some(Err(format!("exited with {status}"))));
                    }
                    request(port, "GET", ready_path, &[], b"").map(|_| Some(Ok(())))
                },
            );
            let reason = match up {
                Ok(Ok(())) => return Ok(emulator),
                Ok(Err(exited)) => exited,
                Err(e) => e.to_string(),
            };
            let log_tail = emulator.log_tail(30);
            emulator.kill();
            let bind_race = ["EADDRINUSE", "address already in use"]
                .iter()
                .any(|s| log_tail.to_lowercase().contains(&s.to_lowercase()));
            if attempt < 3 && bind_race {
                continue;
            }
            return Err(Error::ServerFailed {
                server: format!("{} on 127.0.0.1:{port}", program.display()),
                reason,
                log_tail,
            });
        }
    }

    /// The last `lines` lines of the emulator's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(self.log.path()).unwrap_or_default(),
            lines,
        )
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Percent-encodes `s` for a URL: keeps RFC 3986 unreserved bytes, and `/` when `keep_slash`.
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_slashes_only_when_asked() {
        assert_eq!(percent_encode("a/b c", true), "a/b%20c");
        assert_eq!(percent_encode("a/b c", false), "a%2Fb%20c");
    }
}
