//! The object-store settings of `[repo]`: `[repo.gcs]`, `[repo.azure]`, and the request
//! timeout and retry budget every object store shares (`io-timeout`, `retry-max`,
//! `retry-timeout`). `[repo.s3]` lives in the model beside them. None of these apply to a
//! local `repo.path`. Their keys, types, defaults and variables are rows of
//! [`crate::KEYS`], like every other key.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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

impl StoreIo {
    /// `[repo]`'s settings (already checked against their kinds), defaults filled in.
    pub(crate) fn from_raw(raw: &RawRepo) -> StoreIo {
        let d = StoreIo::default();
        StoreIo {
            io_timeout: raw.io_timeout.map_or(d.io_timeout, Into::into),
            retry_max: raw.retry_max.unwrap_or(d.retry_max),
            retry_timeout: raw.retry_timeout.map_or(d.retry_timeout, Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, ConfigError, Env};
    use std::path::Path;

    fn load(text: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/cairn/cairn.toml"), env)
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
    fn bad_store_settings_name_the_key_never_the_value() {
        let e = load(
            "[repo]\npath = \"/r\"\nio-timeout = \"0s\"\n",
            &Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("io-timeout"), "{e}");
        let e = load("[repo]\npath = \"/r\"\nretry-max = 1000\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("retry-max"), "{e}");
        let e = load(
            "[repo]\npath = \"/r\"\n[repo.gcs]\nkey-file = \"/k\"\n",
            &Env::empty(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("key-file"), "{e}");
        let env = Env::empty().with("CAIRN_REPO_AZURE_KEY", "x");
        let e = load("[repo]\npath = \"/r\"\n", &env).unwrap_err();
        assert!(e.to_string().contains("CAIRN_REPO_AZURE_KEY"), "{e}");
        let e = load(
            "[repo]\npath = \"/r\"\n[repo.azure]\naccess-key = 12345\n",
            &Env::empty(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("12345"), "{e}");
    }
}
