//! How a test cluster is set up ([`ClusterOptions`]) and how `pg_basebackup` copies it
//! ([`BaseBackupOptions`]).

use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use crate::{cluster::PgCluster, test_dir::TestDir};

/// How [`PgCluster::init`] sets a cluster up. `ClusterOptions::default()` gives a small,
/// fast, throwaway cluster; the builder methods change one thing each.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Names the data directory (`<test dir>/<name>`), the socket directory
    /// (`<test dir>/<name>.sock`) and the log (`<test dir>/<name>.log`). Default `pg` for
    /// [`PgCluster::init`], the data directory's own name for
    /// [`PgCluster::from_existing_data_dir`]. Give every cluster of one [`TestDir`] its own.
    pub name: Option<String>,
    /// `initdb --data-checksums` (default false; on PostgreSQL 18, where initdb enables them by
    /// default, false passes `--no-data-checksums`).
    pub data_checksums: bool,
    /// `initdb --wal-segsize` in MiB (a power of two, 1..=1024); default PostgreSQL's 16.
    pub wal_segsize_mb: Option<u32>,
    /// `fsync` (default **off**: these clusters are throwaway and the machine does not crash;
    /// [`PgCluster::kill_postmaster`] still exercises crash recovery, since the OS keeps the
    /// written pages). Turn it on where a test is about PostgreSQL's own durability.
    pub fsync: bool,
    /// More `postgresql.conf` settings, written in the kit's block (after its defaults, so
    /// they win), e.g. `("archive_mode", "on")`; values are quoted as in
    /// [`PgCluster::set_conf`].
    pub conf: Vec<(String, String)>,
    /// Environment variables for the server process (and so for `archive_command` and
    /// `restore_command`), e.g. `("CAIRN_CONFIG", "/tmp/.../cairn.toml")`.
    pub server_env: Vec<(String, String)>,
    /// How long `pg_ctl start`/`stop` may wait (default 120 s).
    pub timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            name: None,
            data_checksums: false,
            wal_segsize_mb: None,
            fsync: false,
            conf: Vec::new(),
            server_env: Vec::new(),
            timeout: Duration::from_secs(120),
        }
    }
}

impl ClusterOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`ClusterOptions::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets [`ClusterOptions::data_checksums`].
    pub fn data_checksums(mut self, on: bool) -> Self {
        self.data_checksums = on;
        self
    }
    /// Sets [`ClusterOptions::wal_segsize_mb`].
    pub fn wal_segsize_mb(mut self, mb: u32) -> Self {
        self.wal_segsize_mb = Some(mb);
        self
    }
    /// Sets [`ClusterOptions::fsync`].
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }
    /// Adds one `postgresql.conf` setting.
    pub fn conf(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.conf.push((key.into(), value.into()));
        self
    }
    /// Adds one environment variable for the server process.
    pub fn server_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.server_env.push((key.into(), value.into()));
        self
    }
    /// Sets [`ClusterOptions::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// `pg_basebackup -X` (what WAL the backup itself carries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WalMethod {
    /// `-X none`: no WAL; restoring needs the archive (cairn's own situation).
    #[default]
    None,
    /// `-X fetch`.
    Fetch,
    /// `-X stream`.
    Stream,
}

/// Options of [`PgCluster::basebackup_into_with`].
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// `-X` (default `none`).
    pub wal: WalMethod,
    /// `-F tar` instead of plain (default plain).
    pub tar: bool,
    /// `-c fast` (default true) rather than waiting for a spread checkpoint.
    pub fast_checkpoint: bool,
    /// `--incremental=<manifest>` (PostgreSQL 17+, needs `summarize_wal = on`).
    pub incremental_from: Option<PathBuf>,
    /// Anything else to pass.
    pub extra_args: Vec<String>,
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        BaseBackupOptions {
            wal: WalMethod::None,
            tar: false,
            fast_checkpoint: true,
            incremental_from: None,
            extra_args: Vec::new(),
        }
    }
}
