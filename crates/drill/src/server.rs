//! The drill's PostgreSQL server: `postgres` run directly as a child of cairn (in its own
//! process group, so a terminal's Ctrl-C reaches cairn, which then shuts it down), with
//! settings on its command line that win over anything in the restored configuration.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::binaries::PgBinaries;
use crate::error::DrillError;
use crate::scratch::Scratch;
use crate::server_log::{self, Finding};

/// Where and how the drill server listens, and what it must not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub port: u16,
    pub socket: PathBuf,
    hba: PathBuf,
    ident: PathBuf,
}

impl ServerSettings {
    pub(crate) fn new(port: u16, scratch: &Scratch) -> ServerSettings {
        ServerSettings {
            port,
            socket: scratch.socket.clone(),
            hba: scratch.hba(),
            ident: scratch.ident(),
        }
    }

    /// The `-c name=value` settings, in order.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("port", self.port.to_string()),
            ("listen_addresses", "127.0.0.1".into()),
            ("unix_socket_directories", list_item(&self.socket)),
            ("unix_socket_permissions", "0700".into()),
            ("hba_file", self.hba.display().to_string()),
            ("ident_file", self.ident.display().to_string()),
            // A drill never archives into the repository (the restore writes this too).
            ("archive_mode", "off".into()),
            // Queries need a hot standby while recovery is paused at a target.
            ("hot_standby", "on".into()),
            // The log goes to the scratch directory, in English, so cairn can read it.
            ("logging_collector", "off".into()),
            ("log_destination", "stderr".into()),
            ("lc_messages", "C".into()),
            ("log_min_messages", "warning".into()),
            // Certificates may not exist on this host; nothing here needs TLS.
            ("ssl", "off".into()),
            // No standby will ever confirm a commit of the copy.
            ("synchronous_standby_names", String::new()),
            ("cluster_name", "cairn-drill".into()),
        ]
    }

    pub(crate) fn args(&self) -> Vec<OsString> {
        self.settings()
            .into_iter()
            .flat_map(|(k, v)| [OsString::from("-c"), OsString::from(format!("{k}={v}"))])
            .collect()
    }

    fn socket_file(&self) -> PathBuf {
        self.socket.join(format!(".s.PGSQL.{}", self.port))
    }
}

/// `unix_socket_directories` is a list: quote an entry that has a separator in it.
fn list_item(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains([',', ' ', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pid: Option<Pid>,
    pub settings: ServerSettings,
    log: PathBuf,
    /// Where this start's output begins in the log.
    log_offset: u64,
    stopped: bool,
}

/// How long a server gets to bind its sockets, and to stop.
const LISTEN_WITHIN: Duration = Duration::from_secs(60);
const FAST_STOP_WITHIN: Duration = Duration::from_secs(60);
const IMMEDIATE_STOP_WITHIN: Duration = Duration::from_secs(15);

impl Server {
    /// Start `postgres` on `data` and wait until it listens on its socket. A port taken in
    /// the meantime is replaced by another, twice at most.
    pub async fn start(
        bins: &PgBinaries,
        data: &Path,
        scratch: &Scratch,
    ) -> Result<Server, DrillError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let settings = ServerSettings::new(free_port(scratch)?, scratch);
            let mut server = Server::spawn(bins, data, scratch, settings)?;
            match server.wait_listening().await {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let log = server.log_text();
                    let _ = server.stop().await;
                    if attempt < 3 && server_log::finding(&log) == Finding::PortTaken {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn spawn(
        bins: &PgBinaries,
        data: &Path,
        scratch: &Scratch,
        settings: ServerSettings,
    ) -> Result<Server, DrillError> {
        let log = scratch.log();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| DrillError::io("open", &log, e))?;
        let log_offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        let err = file
            .try_clone()
            .map_err(|e| DrillError::io("open", &log, e))?;
        let program = bins.postgres();
        let child = Command::new(&program)
            .arg("-D")
            .arg(data)
            .args(settings.args())
            .current_dir(&scratch.root)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| DrillError::Spawn { program, source })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        Ok(Server {
            child,
            pid,
            settings,
            log,
            log_offset,
            stopped: false,
        })
    }

    /// Poll until the socket file appears (the server then also has its TCP port), or the
    /// server exits.
    async fn wait_listening(&mut self) -> Result<(), DrillError> {
        let deadline = Instant::now() + LISTEN_WITHIN;
        let socket = self.settings.socket_file();
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = self.exited()? {
                return Err(self.stopped_error(status));
            }
            if socket.exists() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: "listen on its socket",
                    waited: LISTEN_WITHIN,
                    log_tail: self.log_tail(),
                });
            }
            tokio::select! {
                status = self.child.wait() => {
                    let status = status.map_err(|e| DrillError::io("wait for", &self.log, e))?;
                    return Err(self.stopped_error(status));
                }
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The exit status, once the server has exited on its own.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, DrillError> {
        self.child
            .try_wait()
            .map_err(|e| DrillError::io("wait for", &self.log, e))
    }

    /// Resolves when the server exits.
    pub async fn wait_exit(&mut self) -> Result<ExitStatus, DrillError> {
        self.child
            .wait()
            .await
            .map_err(|e| DrillError::io("wait for", &self.log, e))
    }

    /// The log of this start.
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = (self.log_offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    pub fn log_tail(&self) -> Vec<String> {
        server_log::tail(&self.log_text(), 20)
    }

    /// Why the server stopped on its own, from its log.
    pub fn stopped_error(&self, status: ExitStatus) -> DrillError {
        let log = self.log_text();
        let log_tail = server_log::tail(&log, 20);
        match server_log::finding(&log) {
            Finding::Undeliverable { segment, detail } => DrillError::WalUndeliverable {
                segment,
                detail,
                log_tail,
            },
            // The caller knows the target, and turns the last segment fetched into the
            // one that was missing.
            Finding::EndedBeforeTarget { last_restored } => DrillError::EndedBeforeTarget {
                target: String::new(),
                missing: last_restored,
                log_tail,
            },
            Finding::PortTaken | Finding::Unknown => DrillError::ServerStopped {
                status: status.to_string(),
                log_tail,
            },
        }
    }

    /// Shut the server down: fast, then immediate, then SIGKILL, each with a deadline, and
    /// reap it. Its children end with it (PostgreSQL's own shutdown waits for them).
    pub async fn stop(&mut self) -> Result<(), DrillError> {
        if self.stopped {
            return Ok(());
        }
        for (signal, within) in [
            (Signal::INT, FAST_STOP_WITHIN),
            (Signal::QUIT, IMMEDIATE_STOP_WITHIN),
        ] {
            if self.exited()?.is_some() {
                self.stopped = true;
                return Ok(());
            }
            if let Some(pid) = self.pid {
                let _ = kill_process(pid, signal);
            }
            if tokio::time::timeout(within, self.child.wait())
                .await
                .is_ok()
            {
                self.stopped = true;
                return Ok(());
            }
        }
        let _ = self.child.start_kill();
        self.wait_exit().await?;
        self.stopped = true;
        Ok(())
    }
}

impl Drop for Server {
    /// A drill cut off mid-way (its future dropped) still takes the server down.
    fn drop(&mut self) {
        if !self.stopped
            && let Some(pid) = self.pid
            && matches!(self.child.try_wait(), Ok(None))
        {
            let _ = kill_process(pid, Signal::QUIT);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago and has no socket file in the scratch
/// socket directory.
fn free_port(scratch: &Scratch) -> Result<u16, DrillError> {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| DrillError::io("bind", &scratch.socket, e))?;
    let port = listener
        .local_addr()
        .map_err(|e| DrillError::io("bind", &scratch.socket, e))?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_the_copy_private_and_off_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::create(
            &crate::ScratchDir::At(dir.path().join("s")),
            &cairn_repo::StanzaName::new("main").unwrap(),
            "x",
        )
        .unwrap();
        let s = ServerSettings::new(54321, &scratch);
        let all = s.settings();
        let get = |k: &str| all.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("archive_mode").as_deref(), Some("off"));
        assert_eq!(get("listen_addresses").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("port").as_deref(), Some("54321"));
        assert_eq!(get("hot_standby").as_deref(), Some("on"));
        assert_eq!(
            get("unix_socket_directories"),
            Some(scratch.socket.display().to_string())
        );
        assert!(s.args().len() == 2 * all.len());
        assert_eq!(list_item(Path::new("/a b/c")), "\"/a b/c\"");
        scratch.remove().unwrap();
    }
}
