use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::env::{Env, apply_overrides};
use crate::error::ConfigError;
use crate::store::{AzureConfig, DurationSetting, GcsConfig, StoreIo};

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
    pub stanzas: BTreeMap<String, StanzaConfig>,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    pub full: Option<u32>,
    pub diff: Option<u32>,
    pub archive_days: Option<u32>,
}

/// One PostgreSQL cluster cairn protects.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StanzaConfig {
    pub pg_data: PathBuf,
    #[serde(default = "default_host")]
    pub pg_host: String,
    #[serde(default = "default_port")]
    pub pg_port: u16,
    #[serde(default = "default_user")]
    pub pg_user: String,
    pub pg_password: Option<Secret>,
    #[serde(default = "default_user")]
    pub pg_database: String,
    pub pg_sslmode: Option<String>,
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
    #[serde(default)]
    pub s3: S3Config,
    #[serde(default)]
    pub gcs: GcsConfig,
    #[serde(default)]
    pub azure: AzureConfig,
    pub io_timeout: Option<DurationSetting>,
    pub retry_max: Option<u32>,
    pub retry_timeout: Option<DurationSetting>,
}

impl Config {
    /// Load the file named by `explicit`, else `CAIRN_CONFIG`, else the default path.
    pub fn load(explicit: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => env
                .get("CAIRN_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_CONFIG_PATH)),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::from_toml_str(&text, &path, env)
    }

    /// Parse configuration text; `path` is only used in messages and to resolve files.
    pub fn from_toml_str(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        apply_overrides(&mut raw, env)?;
        Config::check(raw, path)
    }

    fn check(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        };
        let io = StoreIo::from_raw(&raw.repo, path)?;
        let location = match (raw.repo.path, raw.repo.url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "repo.path",
                    "give either repo.path or repo.url, not both",
                ));
            }
            (Some(p), None) => {
                if !p.is_absolute() {
                    return Err(invalid("repo.path", "must be an absolute path"));
                }
                RepoLocation::Path(p)
            }
            (None, Some(u)) => {
                let scheme_ok = ["s3://", "gs://", "az://", "azure://", "abfs://", "file://"]
                    .iter()
                    .any(|s| u.starts_with(s));
                if !scheme_ok {
                    return Err(invalid(
                        "repo.url",
                        "must start with s3://, gs://, az://, abfs:// or file://",
                    ));
                }
                RepoLocation::Url(u)
            }
            (None, None) => return Err(invalid("repo.path", "is missing (or give repo.url)")),
        };
        let cipher_pass = match (raw.repo.cipher_pass, raw.repo.cipher_pass_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "repo.cipher-pass",
                    "give either cipher-pass or cipher-pass-file, not both",
                ));
            }
            (Some(p), None) => Some(p),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::PassFile {
                    path: f.clone(),
                    source,
                })?;
                Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
            }
            (None, None) => None,
        };
        if cipher_pass.as_ref().is_some_and(|p| p.expose().is_empty()) {
            return Err(invalid("repo.cipher-pass", "is empty"));
        }
        let compress_level = raw.repo.compress_level.unwrap_or(3);
        if !(-7..=22).contains(&compress_level) {
            return Err(invalid(
                "repo.compress-level",
                "must be a zstd level from -7 to 22",
            ));
        }
        if raw.archive.process_max == 0 || raw.archive.process_max > 64 {
            return Err(invalid("archive.process-max", "must be from 1 to 64"));
        }
        for (name, st) in &raw.stanza {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(invalid(
                    &format!("stanza.{name}"),
                    "a stanza name uses letters, digits, '-' and '_' only",
                ));
            }
            if !st.pg_data.is_absolute() {
                return Err(invalid(
                    &format!("stanza.{name}.pg-data"),
                    "must be an absolute path",
                ));
            }
        }
        Ok(Config {
            source: path.to_path_buf(),
            repo: RepoConfig {
                location,
                cipher_pass,
                compress_level,
                s3: raw.repo.s3,
                gcs: raw.repo.gcs,
                azure: raw.repo.azure,
                io,
            },
            archive: raw.archive,
            retention: raw.retention,
            stanzas: raw.stanza,
        })
    }

    /// The stanza to act on: the one named, or the only one configured.
    pub fn stanza(&self, name: Option<&str>) -> Result<(&str, &StanzaConfig), ConfigError> {
        match name {
            Some(n) => self
                .stanzas
                .get_key_value(n)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| ConfigError::UnknownStanza {
                    name: n.to_string(),
                    path: self.source.clone(),
                }),
            None => {
                let mut it = self.stanzas.iter();
                match (it.next(), it.next()) {
                    (Some((k, v)), None) => Ok((k.as_str(), v)),
                    (None, _) => Err(ConfigError::NoStanza {
                        path: self.source.clone(),
                    }),
                    _ => Err(ConfigError::AmbiguousStanza {
                        names: self.stanzas.keys().cloned().collect::<Vec<_>>().join(", "),
                    }),
                }
            }
        }
    }
}
