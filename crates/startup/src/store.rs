//! From `[repo]` to the repository's storage: a local directory, or an `object_store`
//! store (S3, GCS, Azure) with the request timeout and retry budget of `[repo]`.
//!
//! Each store's builder starts from its own environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`),
//! then cairn's keys win. A store that could only fail at its first request (no
//! credentials, no account) is refused here, naming the key to set.

use std::sync::Arc;
use std::time::Duration;

use cairn_config::{AzureConfig, GcsConfig, RepoConfig, RepoLocation, S3Config, StoreIo};
use cairn_exit::{Classify, ErrorKind};
use cairn_repo::{Backend, LocalBackend, StoreBackend};
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

/// Azurite's documented development account and its key (public, not a secret).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURITE_ENDPOINT: &str = "http://127.0.0.1:10000";

/// Object stores wait this long for a connection at most (less when `io-timeout` is less).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the repository's storage could not be set up. Never carries a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repo.url '{url}' {message}")]
    Url { url: String, message: String },
    #[error("{url}: {key} is missing")]
    Missing {
        url: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("{url}: {key} and {other} cannot be used together")]
    Conflict {
        url: String,
        key: &'static str,
        other: &'static str,
    },
    #[error("cannot set up object store {url}: {message}")]
    Build { url: String, message: String },
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }

    fn hint(&self) -> Option<String> {
        match self {
            StoreError::Url { .. } => Some(
                "write s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX or file:///DIR"
                    .into(),
            ),
            StoreError::Missing { hint, .. } => Some((*hint).into()),
            StoreError::Conflict { .. } => Some("keep one of the two".into()),
            StoreError::Build { .. } => {
                Some("check the [repo.s3], [repo.gcs] or [repo.azure] keys".into())
            }
        }
    }
}

/// The storage `[repo]` names.
pub fn backend_for(repo: &RepoConfig) -> Result<Backend, StoreError> {
    let url = match &repo.location {
        RepoLocation::Path(p) => return Ok(Backend::Local(Arc::new(LocalBackend::new(p)))),
        RepoLocation::Url(url) => url.as_str(),
    };
    let bad = |message: &str| StoreError::Url {
        url: url.to_string(),
        message: message.to_string(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("is not a URL"))?;
    if scheme == "file" {
        let dir = format!("/{}", rest.trim_start_matches('/'));
        return Ok(Backend::Local(Arc::new(LocalBackend::new(dir))));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("names no bucket or container"));
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => Arc::new(s3(url, bucket, &repo.s3, &repo.io)?),
        "gs" => Arc::new(gcs(url, bucket, &repo.gcs, &repo.io)?),
        "az" | "azure" | "abfs" => {
            // abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX names the account too.
            let (container, account) = match bucket.split_once('@') {
                Some((c, host)) => (c, host.split('.').next()),
                None => (bucket, None),
            };
            Arc::new(azure(url, container, account, &repo.azure, &repo.io)?)
        }
        other => return Err(bad(&format!("has an unsupported scheme {other}://"))),
    };
    Ok(Backend::Store(Arc::new(StoreBackend::new(
        store, prefix, url,
    ))))
}

/// The same retry budget for every request, reads and writes alike.
pub fn retry_config(io: &StoreIo) -> RetryConfig {
    RetryConfig {
        max_retries: io.retry_max as usize,
        retry_timeout: io.retry_timeout,
        ..Default::default()
    }
}

/// `(key, value)` client settings for `io-timeout`, applied on top of what the builder
/// read from the environment (so `AWS_ALLOW_HTTP` and the like keep working).
fn client_settings(io: &StoreIo) -> [(ClientConfigKey, String); 2] {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        (ClientConfigKey::Timeout, ms(io.io_timeout)),
        (
            ClientConfigKey::ConnectTimeout,
            ms(io.io_timeout.min(CONNECT_TIMEOUT)),
        ),
    ]
}

fn build_error(url: &str) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
    move |e| StoreError::Build {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn s3(
    url: &str,
    bucket: &str,
    s3: &S3Config,
    io: &StoreIo,
) -> Result<object_store::aws::AmazonS3, StoreError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config(io));
    for (key, value) in client_settings(io) {
        b = b.with_config(AmazonS3ConfigKey::Client(key), value);
    }
    if let Some(e) = &s3.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &s3.region {
        b = b.with_region(r);
    }
    if let Some(k) = &s3.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = &s3.secret_access_key {
        b = b.with_secret_access_key(k.expose());
    }
    if s3.allow_http {
        b = b.with_allow_http(true);
    }
    b.build().map_err(build_error(url))
}

/// Whether one of the variables Google's libraries read for credentials is set, or
/// gcloud's application-default credentials file exists.
fn google_credentials_in_environment() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
    ]
    .iter()
    .any(|v| set(v))
        || std::env::var_os("HOME").is_some_and(|home| {
            std::path::Path::new(&home)
                .join(".config/gcloud/application_default_credentials.json")
                .is_file()
        })
}

fn gcs(
    url: &str,
    bucket: &str,
    gcs: &GcsConfig,
    io: &StoreIo,
) -> Result<object_store::gcp::GoogleCloudStorage, StoreError> {
    use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder, GoogleConfigKey};
    let conflict = |key, other| StoreError::Conflict {
        url: url.to_string(),
        key,
        other,
    };
    if gcs.anonymous && gcs.service_account_path.is_some() {
        return Err(conflict(
            "repo.gcs.anonymous",
            "repo.gcs.service-account-path",
        ));
    }
    if gcs.anonymous && gcs.use_metadata_server {
        return Err(conflict(
            "repo.gcs.anonymous",
            "repo.gcs.use-metadata-server",
        ));
    }
    let credentials = gcs.anonymous
        || gcs.use_metadata_server
        || gcs.service_account_path.is_some()
        || google_credentials_in_environment();
    if !credentials {
        // Without this, object_store falls back to the metadata server and the first
        // request fails with a raw token error far from its cause.
        return Err(StoreError::Missing {
            url: url.to_string(),
            key: "repo.gcs.service-account-path",
            hint: "set [repo.gcs] service-account-path = \"/etc/cairn/gcs-key.json\" (or \
                   GOOGLE_APPLICATION_CREDENTIALS); on GCE or GKE set use-metadata-server = true",
        });
    }
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config(io));
    for (key, value) in client_settings(io) {
        b = b.with_config(GoogleConfigKey::Client(key), value);
    }
    if let Some(p) = &gcs.service_account_path {
        b = b.with_service_account_path(p.display().to_string());
    }
    if let Some(e) = &gcs.endpoint {
        b = b.with_base_url(e.trim_end_matches('/'));
    }
    if gcs.anonymous {
        b = b.with_skip_signature(true).with_credentials(Arc::new(
            object_store::StaticCredentialProvider::new(GcpCredential {
                bearer: String::new(),
            }),
        ));
    }
    if gcs.allow_http {
        b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
    }
    b.build().map_err(build_error(url))
}

/// Whether one of the variables object_store reads for Azure credentials is set.
fn azure_credentials_in_environment() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    [
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_MASTER_KEY",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_TOKEN",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
    ]
    .iter()
    .any(|v| set(v))
}

fn azure(
    url: &str,
    container: &str,
    account_in_url: Option<&str>,
    az: &AzureConfig,
    io: &StoreIo,
) -> Result<object_store::azure::MicrosoftAzure, StoreError> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let missing = |key, hint| StoreError::Missing {
        url: url.to_string(),
        key,
        hint,
    };
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(retry_config(io));
    for (key, value) in client_settings(io) {
        b = b.with_config(AzureConfigKey::Client(key), value);
    }
    // Azurite: its well-known account and key on 127.0.0.1:10000, path-style. Built as an
    // ordinary account with that endpoint, so `endpoint` works without process variables.
    let (account, key, endpoint) = if az.use_emulator {
        let account = az.account.as_deref().unwrap_or(AZURITE_ACCOUNT);
        let key = az
            .access_key
            .as_ref()
            .map(|k| k.expose())
            .unwrap_or(AZURITE_KEY);
        let endpoint = match &az.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("{AZURITE_ENDPOINT}/{account}"),
        };
        b = b.with_allow_http(true);
        (Some(account), Some(key), Some(endpoint))
    } else {
        let account = az.account.as_deref().or(account_in_url);
        let env_account = std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_some();
        if account.is_none() && !env_account {
            return Err(missing(
                "repo.azure.account",
                "set [repo.azure] account = \"ACCOUNT\" (or AZURE_STORAGE_ACCOUNT_NAME); for \
                 Azurite set use-emulator = true",
            ));
        }
        let key = az.access_key.as_ref().map(|k| k.expose());
        if key.is_none() && !az.use_managed_identity && !azure_credentials_in_environment() {
            return Err(missing(
                "repo.azure.access-key",
                "set [repo.azure] access-key (or CAIRN_REPO_AZURE_ACCESS_KEY / \
                 AZURE_STORAGE_ACCESS_KEY); on an Azure host with a managed identity set \
                 use-managed-identity = true",
            ));
        }
        (account, key, az.endpoint.clone())
    };
    if let Some(a) = account {
        b = b.with_account(a);
    }
    if let Some(k) = key {
        b = b.with_access_key(k);
    }
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    if az.allow_http {
        b = b.with_allow_http(true);
    }
    // object_store's own error for a malformed key never quotes the key.
    b.build().map_err(build_error(url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_config::{Config, Env};

    fn repo(text: &str) -> RepoConfig {
        Config::from_toml_str(text, "t.toml".as_ref(), &Env::empty())
            .unwrap()
            .repo
    }

    fn err(text: &str) -> StoreError {
        backend_for(&repo(text)).unwrap_err()
    }

    #[test]
    fn local_paths_and_file_urls_are_local() {
        let b = backend_for(&repo("[repo]\npath = \"/srv/r\"\n")).unwrap();
        assert_eq!(b.location(), "/srv/r");
        let b = backend_for(&repo("[repo]\nurl = \"file:///srv/x\"\n")).unwrap();
        assert_eq!(b.location(), "/srv/x");
    }

    #[test]
    fn gcs_without_credentials_names_the_key() {
        if google_credentials_in_environment() {
            return; // this machine has Google credentials; the refusal cannot happen here
        }
        let e = err("[repo]\nurl = \"gs://bucket/p\"\n");
        let f = cairn_exit::Failure::from_error(&e);
        assert!(f.message.contains("repo.gcs.service-account-path"), "{f:?}");
        assert!(f.hint.unwrap().contains("use-metadata-server"));
        assert_eq!(f.kind, ErrorKind::Config);
    }

    #[test]
    fn gcs_anonymous_endpoint_builds() {
        let b = backend_for(&repo(
            "[repo]\nurl = \"gs://bucket/p\"\n[repo.gcs]\nendpoint = \"http://127.0.0.1:9\"\n\
             anonymous = true\nallow-http = true\n",
        ))
        .unwrap();
        assert_eq!(b.location(), "gs://bucket/p");
        let e = err(
            "[repo]\nurl = \"gs://b\"\n[repo.gcs]\nanonymous = true\nservice-account-path = \"/k\"\n",
        );
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    }

    #[test]
    fn azure_needs_an_account_and_a_credential() {
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            let e = err("[repo]\nurl = \"az://container/p\"\n");
            assert!(e.to_string().contains("repo.azure.account"), "{e}");
        }
        if !azure_credentials_in_environment() {
            let e = err("[repo]\nurl = \"az://container/p\"\n[repo.azure]\naccount = \"acct\"\n");
            assert!(e.to_string().contains("repo.azure.access-key"), "{e}");
            // The account may come from an abfs:// URL.
            let e = err("[repo]\nurl = \"abfs://c@acct.dfs.core.windows.net/p\"\n");
            assert!(e.to_string().contains("repo.azure.access-key"), "{e}");
        }
    }

    #[test]
    fn azure_key_never_shows_in_errors() {
        let e = err(
            "[repo]\nurl = \"az://container/p\"\n[repo.azure]\naccount = \"acct\"\n\
             access-key = \"not base64 !!! SECRETVALUE\"\n",
        );
        let text = cairn_exit::Failure::from_error(&e).to_string();
        assert!(!text.contains("SECRETVALUE"), "{text}");
    }

    #[test]
    fn azure_emulator_builds_with_defaults() {
        let b = backend_for(&repo(
            "[repo]\nurl = \"az://cairn/p\"\n[repo.azure]\nuse-emulator = true\n",
        ))
        .unwrap();
        assert_eq!(b.location(), "az://cairn/p");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let e = err("[repo]\nurl = \"s3:///prefix\"\n");
        assert!(e.to_string().contains("no bucket"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn one_budget_for_every_request() {
        let io = StoreIo {
            io_timeout: Duration::from_secs(2),
            retry_max: 4,
            retry_timeout: Duration::from_secs(30),
        };
        let r = retry_config(&io);
        assert_eq!(
            (r.max_retries, r.retry_timeout),
            (4, Duration::from_secs(30))
        );
        let [(_, timeout), (_, connect)] = client_settings(&io);
        assert_eq!((timeout.as_str(), connect.as_str()), ("2000ms", "2000ms"));
    }
}
