//! The object-store settings of `[repo]`: `[repo.gcs]`, `[repo.azure]`, and the request
//! timeout and retry budget every object store shares (`io-timeout`, `retry-max`,
//! `retry-timeout`). `[repo.s3]` lives in the model beside them. None of these apply to a
//! local `repo.path`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::env::{parse_bool, parse_num};
use crate::error::ConfigError;
use crate::model::{RawRepo, Secret};

/// `[repo.gcs]`: Google Cloud Storage (`repo.url = "gs://bucket/prefix"`).
///
/// Credentials, in order: `service-account-path`, then `GOOGLE_APPLICATION_CREDENTIALS` /
/// `GOOGLE_SERVICE_ACCOUNT*` or gcloud's application-default file, then the instance
/// metadata server only with `use-metadata-server = true`, or none with `anonymous = true`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GcsConfig {
    /// A service-account key file (JSON).
    pub service_account_path: Option<PathBuf>,
    /// Take credentials from the GCE/GKE metadata server.
    #[serde(default)]
    pub use_metadata_server: bool,
    /// Another endpoint than Google's (an emulator).
    pub endpoint: Option<String>,
    /// Send requests unsigned (emulators that check no credentials).
    #[serde(default)]
    pub anonymous: bool,
    /// Allow `http://` endpoints.
    #[serde(default)]
    pub allow_http: bool,
}

/// `[repo.azure]`: Azure Blob Storage (`repo.url = "az://container/prefix"`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AzureConfig {
    /// The storage account name.
    pub account: Option<String>,
    /// The account's shared key (base64).
    pub access_key: Option<Secret>,
    /// Another endpoint than `https://ACCOUNT.blob.core.windows.net`, e.g. Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    /// Azurite: its well-known account and key, `http://127.0.0.1:10000` unless `endpoint`.
    #[serde(default)]
    pub use_emulator: bool,
    /// Take credentials from Azure's managed identity endpoint.
    #[serde(default)]
    pub use_managed_identity: bool,
    /// Allow `http://` endpoints.
    #[serde(default)]
    pub allow_http: bool,
}

/// A duration written as a number with a unit: `500ms`, `90s`, `10m`, `26h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl DurationSetting {
    pub fn parse(text: &str) -> Result<DurationSetting, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{text}' is not a duration (e.g. 60s, 5m)"))?;
        let millis = match unit.trim() {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" | "min" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            "" => return Err(format!("'{text}' has no unit (use ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "unknown duration unit '{other}' (use ms, s, m, h or d)"
                ));
            }
        };
        millis
            .map(|ms| DurationSetting(Duration::from_millis(ms)))
            .ok_or_else(|| format!("'{text}' is too long"))
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DurationSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How long one request to an object store may take and how often a failed one is tried
/// again. The same budget applies to every request: reads, writes, listings and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreIo {
    /// One request, from connecting to the last byte of the response (`io-timeout`).
    pub io_timeout: Duration,
    /// Retries after the first attempt (`retry-max`); 0 turns retrying off.
    pub retry_max: u32,
    /// No retry starts later than this after the first attempt (`retry-timeout`).
    pub retry_timeout: Duration,
}

impl Default for StoreIo {
    fn default() -> Self {
        StoreIo {
            io_timeout: Duration::from_secs(60),
            retry_max: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

const IO_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
const RETRY_MAX_LIMIT: u32 = 100;

impl StoreIo {
    /// Check the raw settings of `[repo]` and fill in defaults.
    pub(crate) fn from_raw(raw: &RawRepo, path: &std::path::Path) -> Result<StoreIo, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        };
        let mut io = StoreIo::default();
        for (key, value, slot) in [
            ("repo.io-timeout", raw.io_timeout, &mut io.io_timeout),
            (
                "repo.retry-timeout",
                raw.retry_timeout,
                &mut io.retry_timeout,
            ),
        ] {
            if let Some(DurationSetting(d)) = value {
                if d < IO_TIMEOUT_RANGE.0 || d > IO_TIMEOUT_RANGE.1 {
                    return Err(invalid(key, "must be from 100ms to 1h"));
                }
                *slot = d;
            }
        }
        if let Some(n) = raw.retry_max {
            if n > RETRY_MAX_LIMIT {
                return Err(invalid("repo.retry-max", "must be from 0 to 100"));
            }
            io.retry_max = n;
        }
        Ok(io)
    }
}

/// Apply one `CAIRN_REPO_GCS_*`, `CAIRN_REPO_AZURE_*` or store I/O override. Returns false
/// when `var` is none of these (the caller goes on with its own keys).
pub(crate) fn apply_env(repo: &mut RawRepo, var: &str, v: &str) -> Result<bool, ConfigError> {
    let duration = |v: &str| {
        DurationSetting::parse(v).map_err(|message| ConfigError::Env {
            var: var.into(),
            message,
        })
    };
    match var {
        "CAIRN_REPO_IO_TIMEOUT" => repo.io_timeout = Some(duration(v)?),
        "CAIRN_REPO_RETRY_TIMEOUT" => repo.retry_timeout = Some(duration(v)?),
        "CAIRN_REPO_RETRY_MAX" => repo.retry_max = Some(parse_num(var, v)?),
        "CAIRN_REPO_GCS_SERVICE_ACCOUNT_PATH" => {
            repo.gcs.service_account_path = Some(PathBuf::from(v))
        }
        "CAIRN_REPO_GCS_USE_METADATA_SERVER" => repo.gcs.use_metadata_server = parse_bool(var, v)?,
        "CAIRN_REPO_GCS_ENDPOINT" => repo.gcs.endpoint = Some(v.into()),
        "CAIRN_REPO_GCS_ANONYMOUS" => repo.gcs.anonymous = parse_bool(var, v)?,
        "CAIRN_REPO_GCS_ALLOW_HTTP" => repo.gcs.allow_http = parse_bool(var, v)?,
        "CAIRN_REPO_AZURE_ACCOUNT" => repo.azure.account = Some(v.into()),
        "CAIRN_REPO_AZURE_ACCESS_KEY" => repo.azure.access_key = Some(Secret::new(v)),
        "CAIRN_REPO_AZURE_ENDPOINT" => repo.azure.endpoint = Some(v.into()),
        "CAIRN_REPO_AZURE_USE_EMULATOR" => repo.azure.use_emulator = parse_bool(var, v)?,
        "CAIRN_REPO_AZURE_USE_MANAGED_IDENTITY" => {
            repo.azure.use_managed_identity = parse_bool(var, v)?
        }
        "CAIRN_REPO_AZURE_ALLOW_HTTP" => repo.azure.allow_http = parse_bool(var, v)?,
        _ if var.starts_with("CAIRN_REPO_GCS_") || var.starts_with("CAIRN_REPO_AZURE_") => {
            return Err(ConfigError::Env {
                var: var.into(),
                message: "is not a cairn configuration variable".into(),
            });
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Env};
    use std::path::Path;

    fn load(text: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/cairn/cairn.toml"), env)
    }

    #[test]
    fn durations_take_a_unit() {
        let d = |t| DurationSetting::parse(t).map(|d| d.0);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(d("60").unwrap_err().contains("no unit"));
        assert!(d("5 parsecs").is_err());
        assert!(d("18446744073709551615d").unwrap_err().contains("too long"));
    }

    #[test]
    fn store_tables_and_io_budget_are_read() {
        let c = load(
            "[repo]\nurl = \"gs://b/p\"\nio-timeout = \"20s\"\nretry-max = 3\nretry-timeout = \"1m\"\n\
             [repo.gcs]\nservice-account-path = \"/etc/cairn/gcs.json\"\nendpoint = \"http://127.0.0.1:4443\"\n\
             allow-http = true\n[repo.azure]\naccount = \"acct\"\naccess-key = \"a2V5\"\nuse-emulator = true\n",
            &Env::empty(),
        )
        .unwrap();
        let r = &c.repo;
        assert_eq!(
            r.io,
            StoreIo {
                io_timeout: Duration::from_secs(20),
                retry_max: 3,
                retry_timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(
            r.gcs.service_account_path.as_deref(),
            Some(Path::new("/etc/cairn/gcs.json"))
        );
        assert!(r.gcs.allow_http && !r.gcs.anonymous);
        assert_eq!(r.azure.account.as_deref(), Some("acct"));
        assert_eq!(r.azure.access_key.as_ref().unwrap().expose(), "a2V5");
        assert!(r.azure.use_emulator);
        assert!(!format!("{c:?}").contains("a2V5"), "the key leaks in Debug");
    }

    #[test]
    fn defaults_when_absent() {
        let c = load("[repo]\npath = \"/r\"\n", &Env::empty()).unwrap();
        assert_eq!(c.repo.io, StoreIo::default());
        assert_eq!(c.repo.gcs, GcsConfig::default());
        assert_eq!(c.repo.azure, AzureConfig::default());
    }

    #[test]
    fn environment_overrides_store_keys() {
        let env = Env::empty()
            .with("CAIRN_REPO_GCS_ENDPOINT", "http://127.0.0.1:1")
            .with("CAIRN_REPO_GCS_ANONYMOUS", "true")
            .with("CAIRN_REPO_AZURE_ACCOUNT", "other")
            .with("CAIRN_REPO_AZURE_ACCESS_KEY", "c2VjcmV0")
            .with("CAIRN_REPO_AZURE_USE_EMULATOR", "1")
            .with("CAIRN_REPO_IO_TIMEOUT", "5s")
            .with("CAIRN_REPO_RETRY_MAX", "0");
        let c = load(
            "[repo]\nurl = \"az://c/p\"\n[repo.azure]\naccount = \"file\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(c.repo.gcs.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert!(c.repo.gcs.anonymous);
        assert_eq!(c.repo.azure.account.as_deref(), Some("other"));
        assert_eq!(c.repo.azure.access_key.unwrap().expose(), "c2VjcmV0");
        assert!(c.repo.azure.use_emulator);
        assert_eq!(c.repo.io.io_timeout, Duration::from_secs(5));
        assert_eq!(c.repo.io.retry_max, 0);
    }

    #[test]
    fn bad_store_settings_name_the_key_or_variable() {
        let e = load(
            "[repo]\npath = \"/r\"\nio-timeout = \"0s\"\n",
            &Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("repo.io-timeout"), "{e}");
        let e = load("[repo]\npath = \"/r\"\nretry-max = 1000\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("repo.retry-max"), "{e}");
        let e = load("[repo]\npath = \"/r\"\nio-timeout = 60\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("io-timeout"), "{e}");
        let e = load(
            "[repo]\npath = \"/r\"\n[repo.gcs]\nkey-file = \"/k\"\n",
            &Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("key-file"), "{e}");
        let env = Env::empty().with("CAIRN_REPO_AZURE_KEY", "x");
        let e = load("[repo]\npath = \"/r\"\n", &env).unwrap_err();
        assert!(e.to_string().contains("CAIRN_REPO_AZURE_KEY"), "{e}");
        let env = Env::empty().with("CAIRN_REPO_IO_TIMEOUT", "soon");
        let e = load("[repo]\npath = \"/r\"\n", &env).unwrap_err();
        assert!(e.to_string().contains("CAIRN_REPO_IO_TIMEOUT"), "{e}");
    }
}
