use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::cron::CronSchedule;
use crate::duration::HumanDuration;
use crate::store::{AzureConfig, GcsConfig, StoreIo};
use crate::warning::ConfigWarning;

/// A secret string (passphrase, password, key) that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The whole configuration, after environment overrides.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub repo: RepoConfig,
    pub archive: ArchiveConfig,
    pub retention: RetentionConfig,
    pub health: HealthConfig,
    pub serve: ServeConfig,
    pub schedule: ScheduleConfig,
    pub log: LogConfig,
    pub stanzas: BTreeMap<String, StanzaConfig>,
    /// Things to tell the operator that do not stop the command (files with secrets that
    /// others can read). Binaries print them.
    pub warnings: Vec<ConfigWarning>,
}

/// Where the repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A local directory.
    Path(PathBuf),
    /// An object-store URL: `s3://`, `gs://`, `az://`, `file://`.
    Url(String),
}

#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub location: RepoLocation,
    /// `None`: the repository is not encrypted (content is still authenticated by hash).
    pub cipher_pass: Option<Secret>,
    pub compress_level: i32,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
    /// Request timeout and retries of every object store (not of a local `path`).
    pub io: StoreIo,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchiveConfig {
    #[serde(default, rename = "async")]
    pub async_: bool,
    #[serde(default = "default_spool")]
    pub spool_path: PathBuf,
    #[serde(default = "default_process_max")]
    pub process_max: usize,
    /// With `async`: how much WAL `archive-get` fetches ahead into the spool.
    #[serde(default = "default_get_queue_max")]
    pub get_queue_max: ByteSize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            async_: false,
            spool_path: default_spool(),
            process_max: default_process_max(),
            get_queue_max: default_get_queue_max(),
        }
    }
}

fn default_get_queue_max() -> ByteSize {
    ByteSize(128 << 20)
}

/// A size: a number of bytes, or a number with a unit (`128MiB`, `1GiB`, `512kB`; every
/// unit is a power of 1024, as in PostgreSQL's own settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{text}' is not a size (e.g. 128MiB)"))?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "kB" | "KB" | "KiB" => 10,
            "MB" | "MiB" => 20,
            "GB" | "GiB" => 30,
            "TB" | "TiB" => 40,
            other => {
                return Err(format!(
                    "unknown size unit '{other}' (use kB, MB, GB or KiB, MiB, GiB)"
                ));
            }
        };
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("'{text}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

fn default_spool() -> PathBuf {
    PathBuf::from("/var/spool/cairn")
}
fn default_process_max() -> usize {
    2
}

/// `[retention]`: which backups `expire` keeps (docs/decisions/013-retention-rules.md).
/// With no rule set, nothing expires.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    pub full: Option<u32>,
    pub diff: Option<u32>,
    pub recovery_window: Option<HumanDuration>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// A successful backup runs expire.
    #[serde(default)]
    pub auto: bool,
    /// How long a condemned pack waits before it may be deleted (decision 014).
    #[serde(default = "default_gc_grace")]
    pub gc_grace: HumanDuration,
}

fn default_gc_grace() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            full: None,
            diff: None,
            recovery_window: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            auto: false,
            gc_grace: default_gc_grace(),
        }
    }
}

impl RetentionConfig {
    /// Whether any rule is set (`auto` is not a rule).
    pub fn has_rules(&self) -> bool {
        self.full.is_some()
            || self.diff.is_some()
            || self.recovery_window.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
    }
}

/// `[health]`: thresholds for `check`, `/healthz` and `cairn_stanza_healthy`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthConfig {
    pub max_backup_age: Option<HumanDuration>,
    pub max_archive_lag: Option<HumanDuration>,
}

/// `[serve]`: `cairn serve`'s HTTP side.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The bearer token for `/api/*` is this file's content.
    pub token_file: Option<PathBuf>,
    /// On SIGTERM, how long a running job may go on before it is abandoned.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            token_file: None,
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_shutdown_grace() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9187))
}

/// `[schedule]`: the jobs `cairn serve` runs, as 5-field UTC cron expressions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    pub backup_full: Option<CronSchedule>,
    pub backup_diff: Option<CronSchedule>,
    pub backup_incr: Option<CronSchedule>,
    pub expire: Option<CronSchedule>,
    pub verify: Option<CronSchedule>,
    pub drill: Option<CronSchedule>,
    /// Also take an incr once this much WAL has been archived since the last backup.
    pub max_replay: Option<ByteSize>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub level: LogLevel,
    /// Unset: standard error.
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// As `tracing`'s filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One PostgreSQL cluster cairn protects.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StanzaConfig {
    /// The data directory; must match the server's `data_directory`.
    pub pg_data: PathBuf,
    /// Unix socket directory (starts with `/`) or host name.
    #[serde(default = "default_host")]
    pub pg_host: String,
    #[serde(default = "default_port")]
    pub pg_port: u16,
    #[serde(default = "default_user")]
    pub pg_user: String,
    pub pg_password: Option<Secret>,
    /// The database SQL connections (`check`, `stanza-create`, drills) use; `postgres`.
    #[serde(default = "default_user")]
    pub pg_database: String,
    /// libpq's `sslmode` (checked against its six values); unset means `prefer`.
    pub pg_sslmode: Option<String>,
    /// Directory of this cluster's PostgreSQL binaries, for drills; unset: `PATH`.
    pub pg_bin: Option<PathBuf>,
}

fn default_host() -> String {
    "/var/run/postgresql".into()
}
fn default_port() -> u16 {
    5432
}
fn default_user() -> String {
    "postgres".into()
}

// The file as written; turned into `Config` after overrides and checks.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub repo: RawRepo,
    #[serde(default)]
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub stanza: BTreeMap<String, StanzaConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawRepo {
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub cipher_pass: Option<Secret>,
    pub cipher_pass_file: Option<PathBuf>,
    pub compress_level: Option<i32>,
    pub io_timeout: Option<HumanDuration>,
    pub retry_max: Option<u32>,
    pub retry_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub gcs: GcsConfig,
    #[serde(default)]
    pub azure: AzureConfig,
}
