//! Throwaway PostgreSQL clusters: `initdb`, configure, start, query, stop, crash.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cluster_options::{BaseBackupOptions, ClusterOptions, WalMethod};
use crate::command;
use crate::error::{Error, Result, tail};
use crate::install::{PgClientTools, PgInstall};
use crate::port::free_port;
use crate::postgres_user::{
    chown_to_postgres, chown_to_postgres_recursive, create_dir_for_postgres, run_as_postgres,
    set_mode,
};
use crate::process::{is_postgres, kill_tree, pid_alive};
use crate::test_dir::TestDir;
use crate::wait::wait_until;

const CONF_BEGIN: &str = "# --- cairn-testkit: begin (rewritten by cairn-testkit) ---";
const CONF_END: &str = "# --- cairn-testkit: end ---";
const HBA_MARKER: &str = "# cairn-testkit";
/// Environment variables that would redirect libpq-based tools elsewhere.
const PG_ENV: [&str; 10] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGOPTIONS",
    "PGDATA",
];

/// A PostgreSQL cluster in a [`TestDir`], run as the `postgres` user, listening on a free
/// port on 127.0.0.1 and on a Unix socket in the test directory.
///
/// Dropping it stops the server immediately (and kills it if that fails): a test never leaves
/// a postmaster behind, even when it panics.
#[derive(Debug)]
pub struct PgCluster {
    install: PgInstall,
    name: String,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    version_major: u32,
    opts: ClusterOptions,
    /// The postmaster pid seen after the last successful start (for Drop, should the data
    /// directory be gone).
    started_pid: Option<u32>,
}

impl PgCluster {
    /// Runs `initdb` into `<dir>/<name>` and writes the kit's configuration (see the crate
    /// docs). The server is not started: call [`PgCluster::start`].
    pub fn init(install: &PgInstall, dir: &TestDir, opts: ClusterOptions) -> Result<PgCluster> {
        let name = opts.name.clone().unwrap_or_else(|| "pg".to_string());
        check_name(&name)?;
        let data_dir = dir.path().join(&name);
        if fs::read_dir(&data_dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Invalid(format!(
                "cannot initdb into {}: it is not empty (give each cluster its own ClusterOptions::name)",
                data_dir.display()
            )));
        }
        create_dir_for_postgres(&data_dir, 0o700)?;
        let cluster = PgCluster::handle(install, dir, name, data_dir, install.major(), opts)?;

        let mut cmd = Command::new(install.bin("initdb"));
        cmd.arg("-D").arg(&cluster.data_dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]);
        if cluster.opts.data_checksums {
            cmd.arg("--data-checksums");
        } else if install.major() >= 18 {
            cmd.arg("--no-data-checksums");
        }
        if let Some(mb) = cluster.opts.wal_segsize_mb {
            cmd.arg(format!("--wal-segsize={mb}"));
        }
        cluster.postgres_command(&mut cmd)?;
        command::run(&mut cmd, None)?;

        cluster.write_conf_block()?;
        cluster.write_hba()?;
        Ok(cluster)
    }

    /// [`PgCluster::init`] followed by [`PgCluster::start`].
    pub fn start_new(
        install: &PgInstall,
        dir: &TestDir,
        opts: ClusterOptions,
    ) -> Result<PgCluster> {
        let mut cluster = PgCluster::init(install, dir, opts)?;
        cluster.start()?;
        Ok(cluster)
    }

    /// Adopts a data directory that another tool filled (a restore, `pg_basebackup`), so the
    /// test can start it: gives it to `postgres` (recursively, mode 0700), and writes the
    /// kit's configuration block with a new port and socket directory (replacing the block
    /// copied from the original cluster; other settings, `postgresql.auto.conf`,
    /// `recovery.signal` and `standby.signal` are left as they are). Not started. Its name
    /// (socket directory, log) is the data directory's own name.
    pub fn from_existing_data_dir(
        install: &PgInstall,
        dir: &TestDir,
        data_dir: impl Into<PathBuf>,
    ) -> Result<PgCluster> {
        PgCluster::from_existing_data_dir_with(install, dir, data_dir, ClusterOptions::default())
    }

    /// [`from_existing_data_dir`](Self::from_existing_data_dir) with options (`wal_segsize_mb`
    /// and `data_checksums` do not apply: they are the data directory's own).
    pub fn from_existing_data_dir_with(
        install: &PgInstall,
        dir: &TestDir,
        data_dir: impl Into<PathBuf>,
        opts: ClusterOptions,
    ) -> Result<PgCluster> {
        let data_dir: PathBuf = data_dir.into();
        let version_file = data_dir.join("PG_VERSION");
        let version =
            fs::read_to_string(&version_file).map_err(|e| Error::io("read", &version_file, e))?;
        let major: u32 = version.trim().parse().map_err(|_| {
            Error::Invalid(format!(
                "{}: not a major version: {version:?}",
                version_file.display()
            ))
        })?;
        if major != install.major() {
            return Err(Error::Invalid(format!(
                "{} holds a PostgreSQL {major} cluster, but the install given is PostgreSQL {}",
                data_dir.display(),
                install.major()
            )));
        }
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => data_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "restored".into()),
        };
        check_name(&name)?;
        chown_to_postgres_recursive(&data_dir)?;
        set_mode(&data_dir, 0o700)?;
        let cluster = PgCluster::handle(install, dir, name, data_dir, major, opts)?;
        cluster.write_conf_block()?;
        cluster.write_hba()?;
        Ok(cluster)
    }

    fn handle(
        install: &PgInstall,
        dir: &TestDir,
        name: String,
        data_dir: PathBuf,
        version_major: u32,
        opts: ClusterOptions,
    ) -> Result<PgCluster> {
        let socket_dir = dir.subdir(format!("{name}.sock"))?;
        let port = free_port()?;
        // The socket path (<dir>/.s.PGSQL.<port>) must fit in sockaddr_un (107 bytes).
        let socket_len = socket_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_len > 107 {
            return Err(Error::Invalid(format!(
                "the Unix socket path under {} would be too long ({socket_len} > 107 bytes)\nHINT: set CAIRN_TEST_TMP to a shorter directory",
                socket_dir.display()
            )));
        }
        Ok(PgCluster {
            install: install.clone(),
            log_path: dir.path().join(format!("{name}.log")),
            name,
            data_dir,
            socket_dir,
            port,
            version_major,
            opts,
            started_pid: None,
        })
    }

    /// Sets the working directory, switches to `postgres` and clears libpq environment.
    fn postgres_command<'a>(&self, cmd: &'a mut Command) -> Result<&'a mut Command> {
        cmd.current_dir(self.log_path.parent().unwrap_or(Path::new("/")));
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        run_as_postgres(cmd)
    }

    fn write_conf_block(&self) -> Result<()> {
        let path = self.data_dir.join("postgresql.conf");
        let old = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut text = strip_block(&old);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(CONF_BEGIN);
        text.push('\n');
        let socket_dir = self.socket_dir.to_string_lossy();
        let fixed: [(&str, String); 14] = [
            ("listen_addresses", quote("127.0.0.1")),
            ("port", self.port().to_string()),
            ("unix_socket_directories", quote(&socket_dir)),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("fsync", if self.opts.fsync { "on" } else { "off" }.into()),
            ("shared_buffers", quote("16MB")),
            ("max_connections", "30".into()),
            ("logging_collector", "off".into()),
            ("log_line_prefix", quote("%m [%p] ")),
            ("log_checkpoints", "on".into()),
            ("timezone", quote("UTC")),
            ("log_timezone", quote("UTC")),
        ];
        for (key, value) in fixed {
            text.push_str(&format!("{key} = {value}\n"));
        }
        for (key, value) in &self.opts.conf {
            check_conf_key(key)?;
            text.push_str(&format!("{key} = {}\n", conf_value(value)));
        }
        text.push_str(CONF_END);
        text.push('\n');
        write_postgres_file(&path, text.as_bytes())
    }

    fn write_hba(&self) -> Result<()> {
        let path = self.data_dir.join("pg_hba.conf");
        let old = fs::read_to_string(&path).unwrap_or_default();
        if old.contains(HBA_MARKER) {
            return Ok(());
        }
        let mut text = old;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{HBA_MARKER}\n\
             local   all           all                  trust\n\
             host    all           all   127.0.0.1/32   trust\n\
             local   replication   all                  trust\n\
             host    replication   all   127.0.0.1/32   trust\n"
        ));
        write_postgres_file(&path, text.as_bytes())
    }

    /// Appends `key = 'value'` to `postgresql.auto.conf` (which overrides `postgresql.conf`,
    /// as `ALTER SYSTEM` does). `value` is quoted as a PostgreSQL string literal, unless it
    /// already is one (`'...'`, inner quotes doubled), in which case it is written as it is.
    /// Takes effect at the next [`start`](Self::start), [`reload`](Self::reload) or
    /// [`restart`](Self::restart), as PostgreSQL decides for that setting.
    pub fn set_conf(&self, key: &str, value: &str) -> Result<()> {
        check_conf_key(key)?;
        let path = self.data_dir.join("postgresql.auto.conf");
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        writeln!(file, "{key} = {}", conf_value(value))
            .map_err(|e| Error::io("write", &path, e))?;
        if !existed {
            set_mode(&path, 0o600)?;
            chown_to_postgres(&path)?;
        }
        Ok(())
    }

    /// `pg_ctl start -w`: returns once the server accepts connections (or, in recovery with
    /// `hot_standby`, once it is consistent). When the port was taken in the meantime it picks
    /// another and tries again. On failure the error holds the end of the server log.
    pub fn start(&mut self) -> Result<()> {
        self.start_inner(true)
    }

    /// `pg_ctl start` without waiting: for a server expected to shut itself down (e.g.
    /// `recovery_target_action = 'shutdown'`); poll with [`wait_until`].
    pub fn start_no_wait(&mut self) -> Result<()> {
        self.start_inner(false)
    }

    fn start_inner(&mut self, wait: bool) -> Result<()> {
        if self.is_running() {
            return Err(Error::Invalid(format!(
                "cluster {} is already running",
                self.data_dir.display()
            )));
        }
        self.clear_stale_lock_files();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            let mut cmd = Command::new(self.install.bin("pg_ctl"));
            cmd.arg("start")
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_path)
                .arg("-s");
            if wait {
                cmd.arg("-w").arg("-t").arg(self.timeout_secs());
            } else {
                cmd.arg("-W");
            }
            for (key, value) in &self.opts.server_env {
                cmd.env(key, value);
            }
            self.postgres_command(&mut cmd)?;
            let out = command::run_unchecked(&mut cmd, None)?;
            if out.status.success() {
                self.started_pid = self.postmaster_pid();
                return Ok(());
            }
            let new_log = read_from(&self.log_path, log_offset);
            let port_taken = [
                "could not bind",
                "Address already in use",
                "could not create any TCP/IP sockets",
            ]
            .iter()
            .any(|s| new_log.contains(s));
            if port_taken && attempt < 4 && !self.is_running() {
                self.port = free_port()?;
                self.write_conf_block()?;
                continue;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Error::StartFailed {
                data_dir: self.data_dir.clone(),
                reason: format!("pg_ctl start {}: {}", out.status, stderr.trim()),
                log: self.log_path.clone(),
                log_tail: self.log_tail(40),
            });
        }
    }

    /// `pg_ctl stop -m fast -w`, then waits until the postmaster process is gone; Ok when the
    /// server is not running.
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// `pg_ctl stop -m immediate -w`: no shutdown checkpoint, so the next start runs crash
    /// recovery. Ok when the server is not running.
    pub fn stop_immediate(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        let Some(pid) = self.postmaster_pid().filter(|&p| pid_alive(p)) else {
            return Ok(());
        };
        let mut cmd = Command::new(self.install.bin("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-s", "-w", "-m", mode, "-t"])
            .arg(self.timeout_secs());
        self.postgres_command(&mut cmd)?;
        let out = command::run_unchecked(&mut cmd, None)?;
        if !out.status.success() && self.is_running() {
            return Err(command::failed(&cmd, &out));
        }
        // pg_ctl returns once postmaster.pid is gone; the process itself exits a moment later.
        wait_until(
            &format!("postmaster {pid} to exit"),
            self.opts.timeout,
            || Ok::<_, Error>((!pid_alive(pid)).then_some(())),
        )
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// `pg_ctl reload`: re-reads the configuration files.
    pub fn reload(&self) -> Result<()> {
        let mut cmd = Command::new(self.install.bin("pg_ctl"));
        cmd.arg("reload").arg("-s").arg("-D").arg(&self.data_dir);
        self.postgres_command(&mut cmd)?;
        command::run(&mut cmd, None).map(|_| ())
    }

    /// `pg_ctl promote -w`: ends recovery of a standby or a paused recovery target.
    pub fn promote(&self) -> Result<()> {
        let mut cmd = Command::new(self.install.bin("pg_ctl"));
        cmd.arg("promote")
            .arg("-s")
            .arg("-w")
            .arg("-t")
            .arg(self.timeout_secs())
            .arg("-D")
            .arg(&self.data_dir);
        self.postgres_command(&mut cmd)?;
        command::run(&mut cmd, None).map(|_| ())
    }

    /// Simulates a crash: SIGKILL to the postmaster and all its children at once, then waits
    /// until they are gone. The data directory is left as a power loss would leave it; the
    /// next [`start`](Self::start) runs crash recovery.
    pub fn kill_postmaster(&mut self) -> Result<()> {
        let Some(pid) = self.postmaster_pid().filter(|&p| pid_alive(p)) else {
            return Err(Error::Invalid(format!(
                "cluster {} is not running",
                self.data_dir.display()
            )));
        };
        kill_tree(pid)
    }

    /// True when the postmaster named in `postmaster.pid` is alive.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(pid_alive)
    }

    /// The postmaster's pid from `postmaster.pid`, if that file exists.
    pub fn postmaster_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Removes `postmaster.pid` and socket lock files naming a process that is gone or a
    /// zombie. (PostgreSQL removes stale lock files of dead processes itself, but this
    /// machine's init may never reap a killed postmaster, and PostgreSQL takes a zombie for
    /// a live server.)
    fn clear_stale_lock_files(&self) {
        let mut files = vec![self.data_dir.join("postmaster.pid")];
        if let Ok(entries) = fs::read_dir(&self.socket_dir) {
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "lock")),
            );
        }
        for file in files {
            let pid = fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
            if let Some(pid) = pid
                && !pid_alive(pid)
            {
                let _ = fs::remove_file(&file);
            }
        }
    }

    /// Runs `sql` (one or more statements) in database `postgres` with
    /// `psql -X -A -t -q -v ON_ERROR_STOP=1` as `postgres` over the Unix socket; returns the
    /// trimmed output (one line per row, columns separated by `|`). The error holds psql's
    /// stderr.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_db("postgres", sql)
    }

    /// [`psql`](Self::psql) in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(psql_path());
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port().to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .env("PGCONNECT_TIMEOUT", "30")
            .env("PGAPPNAME", "cairn-testkit");
        self.postgres_command(&mut cmd)?;
        let out = command::run(&mut cmd, Some(sql.as_bytes()))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until the server answers `SELECT 1`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("{} to accept connections", self.name),
            timeout,
            || self.psql("SELECT 1").map(|_| Some(())),
        )
    }

    /// `SELECT pg_is_in_recovery()`.
    pub fn is_in_recovery(&self) -> Result<bool> {
        Ok(self.psql("SELECT pg_is_in_recovery()")? == "t")
    }

    /// `pg_switch_wal()`; returns the name of the segment it closed (the next one to be
    /// archived), e.g. `000000010000000000000003`.
    pub fn switch_wal(&self) -> Result<String> {
        self.psql("SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// `pg_current_wal_lsn()` as PostgreSQL prints it (`0/16B3748`).
    pub fn current_wal_lsn(&self) -> Result<String> {
        self.psql("SELECT pg_current_wal_lsn()")
    }

    /// `pg_basebackup -D dest -X none -c fast` (see [`basebackup_into_with`](Self::basebackup_into_with)).
    pub fn basebackup_into(&self, dest: &Path) -> Result<()> {
        self.basebackup_into_with(dest, &BaseBackupOptions::default())
    }

    /// Takes a base backup into `dest` (which must not exist or be empty) with
    /// `pg_basebackup`: Debian's for PostgreSQL 15, the PostgreSQL 18 client tools' for 16–18.
    /// `dest` is given to `postgres` (mode 0700) afterwards, so
    /// [`PgCluster::from_existing_data_dir`] can start it.
    pub fn basebackup_into_with(&self, dest: &Path, opts: &BaseBackupOptions) -> Result<()> {
        let program = if self.version_major == 15 {
            PathBuf::from("/usr/lib/postgresql/15/bin/pg_basebackup")
        } else {
            PgClientTools::find()?.bin("pg_basebackup")
        };
        let mut cmd = Command::new(program);
        cmd.arg("-D")
            .arg(dest)
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port().to_string())
            .args(["-U", "postgres", "--no-sync", "-X"])
            .arg(match opts.wal {
                WalMethod::None => "none",
                WalMethod::Fetch => "fetch",
                WalMethod::Stream => "stream",
            });
        if opts.tar {
            cmd.args(["-F", "tar"]);
        }
        if opts.fast_checkpoint {
            cmd.args(["-c", "fast"]);
        }
        if let Some(manifest) = &opts.incremental_from {
            cmd.arg(format!("--incremental={}", manifest.display()));
        }
        cmd.args(&opts.extra_args);
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd.current_dir("/");
        // Runs as the test's own user (the tools may live where `postgres` cannot reach);
        // the result is handed to `postgres` afterwards.
        command::run(&mut cmd, None)?;
        chown_to_postgres_recursive(dest)?;
        if !opts.tar {
            set_mode(dest, 0o700)?;
        }
        Ok(())
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&read_from(&self.log_path, 0), lines)
    }

    /// `libpq` connection string over the Unix socket, user and database `postgres`.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port()
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// The Unix socket directory (what `pg-host` / `PGHOST` should be).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
    /// The TCP port on 127.0.0.1 (also the Unix socket's number). It may change when
    /// [`start`](Self::start) found the chosen port taken.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The server log (written by `pg_ctl -l`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// The cluster's major version (from `PG_VERSION`).
    pub fn version_major(&self) -> u32 {
        self.version_major
    }
    /// The install the cluster runs with.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }
    /// The name given in [`ClusterOptions::name`] (or its default).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn timeout_secs(&self) -> String {
        self.opts.timeout.as_secs().max(1).to_string()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.stop_immediate();
        }
        // Still alive, or its data directory (and so postmaster.pid) is already gone: kill the
        // postmaster this handle started, if it still is one.
        let pid = self.postmaster_pid().or(self.started_pid);
        if let Some(pid) = pid.filter(|&p| pid_alive(p) && is_postgres(p)) {
            let _ = kill_tree(pid);
        }
    }
}

/// Debian's psql 15 (it talks to servers 15–18 fine for plain SQL).
fn psql_path() -> PathBuf {
    ["/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::Invalid(format!("bad cluster name {name:?}")));
    }
    Ok(())
}

fn check_conf_key(key: &str) -> Result<()> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::Invalid(format!(
            "bad configuration parameter name {key:?}"
        )));
    }
    Ok(())
}

/// A PostgreSQL configuration string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `value` as a configuration value: quoted, unless it already is a quoted literal.
fn conf_value(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value.to_string()
    } else {
        quote(value)
    }
}

/// `text` without the kit's block (every line from CONF_BEGIN to CONF_END).
fn strip_block(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.lines() {
        if line == CONF_BEGIN {
            inside = true;
        } else if line == CONF_END {
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn write_postgres_file(path: &Path, contents: &[u8]) -> Result<()> {
    let existed = path.exists();
    fs::write(path, contents).map_err(|e| Error::io("write", path, e))?;
    if !existed {
        set_mode(path, 0o600)?;
        chown_to_postgres(path)?;
    }
    Ok(())
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_block_removes_only_the_kit_block() {
        let text = format!("a = 1\n{CONF_BEGIN}\nport = 5\n{CONF_END}\nb = 2\n");
        assert_eq!(strip_block(&text), "a = 1\nb = 2\n");
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(conf_value("8MB"), "'8MB'");
        assert_eq!(conf_value("'x ''y'''"), "'x ''y'''");
        assert_eq!(conf_value("'"), "''''");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn conf_keys_are_checked() {
        assert!(check_conf_key("archive_command").is_ok());
        assert!(check_conf_key("cairn.x").is_ok());
        assert!(check_conf_key("a = 1\nb").is_err());
    }
}
