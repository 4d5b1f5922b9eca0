use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::ConfigError;
use crate::model::{ByteSize, RawConfig, Secret};

/// A snapshot of the environment variables cairn reads, so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment (only `CAIRN_*` and `AWS_*` variables are kept).
    pub fn from_process() -> Self {
        let vars = std::env::vars()
            .filter(|(k, _)| k.starts_with("CAIRN_") || k.starts_with("AWS_"))
            .collect();
        Env { vars }
    }

    pub fn empty() -> Self {
        Env::default()
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// `stanza name` -> the part of its variables' names: `main-db` -> `MAIN_DB`.
fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

pub(crate) fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.into(),
            message: format!("'{v}' is not a boolean"),
        }),
    }
}

pub(crate) fn parse_num<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::Env {
        var: var.into(),
        message: format!("'{v}' is not a number"),
    })
}

/// Apply `CAIRN_<SECTION>_<KEY>` overrides. An unknown key in a known section is refused
/// so a typo does not silently leave the file's value in force.
pub(crate) fn apply_overrides(raw: &mut RawConfig, env: &Env) -> Result<(), ConfigError> {
    let stanza_prefixes: Vec<(String, String)> = raw
        .stanza
        .keys()
        .map(|n| (format!("CAIRN_STANZA_{}_", env_name(n)), n.clone()))
        .collect();
    for (var, v) in &env.vars {
        let var = var.as_str();
        let v = v.as_str();
        if crate::store::apply_env(&mut raw.repo, var, v)? {
            continue;
        }
        match var {
            "CAIRN_CONFIG" | "CAIRN_STANZA" | "CAIRN_LOG" => {}
            "CAIRN_REPO_PATH" => raw.repo.path = Some(PathBuf::from(v)),
            "CAIRN_REPO_URL" => raw.repo.url = Some(v.into()),
            "CAIRN_REPO_CIPHER_PASS" => {
                raw.repo.cipher_pass = Some(Secret::new(v));
                raw.repo.cipher_pass_file = None;
            }
            "CAIRN_REPO_CIPHER_PASS_FILE" => {
                raw.repo.cipher_pass_file = Some(PathBuf::from(v));
                raw.repo.cipher_pass = None;
            }
            "CAIRN_REPO_COMPRESS_LEVEL" => raw.repo.compress_level = Some(parse_num(var, v)?),
            "CAIRN_REPO_S3_ENDPOINT" => raw.repo.s3.endpoint = Some(v.into()),
            "CAIRN_REPO_S3_REGION" => raw.repo.s3.region = Some(v.into()),
            "CAIRN_REPO_S3_ACCESS_KEY_ID" => raw.repo.s3.access_key_id = Some(v.into()),
            "CAIRN_REPO_S3_SECRET_ACCESS_KEY" => {
                raw.repo.s3.secret_access_key = Some(Secret::new(v))
            }
            "CAIRN_REPO_S3_ALLOW_HTTP" => raw.repo.s3.allow_http = parse_bool(var, v)?,
            "CAIRN_ARCHIVE_ASYNC" => raw.archive.async_ = parse_bool(var, v)?,
            "CAIRN_ARCHIVE_SPOOL_PATH" => raw.archive.spool_path = PathBuf::from(v),
            "CAIRN_ARCHIVE_PROCESS_MAX" => raw.archive.process_max = parse_num(var, v)?,
            "CAIRN_ARCHIVE_GET_QUEUE_MAX" => {
                raw.archive.get_queue_max =
                    ByteSize::parse(v).map_err(|message| ConfigError::Env {
                        var: var.into(),
                        message,
                    })?
            }
            "CAIRN_RETENTION_FULL" => raw.retention.full = Some(parse_num(var, v)?),
            "CAIRN_RETENTION_DIFF" => raw.retention.diff = Some(parse_num(var, v)?),
            "CAIRN_RETENTION_ARCHIVE_DAYS" => raw.retention.archive_days = Some(parse_num(var, v)?),
            _ if var.starts_with("CAIRN_STANZA_") => {
                let Some((prefix, name)) = stanza_prefixes
                    .iter()
                    .find(|(p, _)| var.starts_with(p.as_str()))
                else {
                    return Err(ConfigError::Env {
                        var: var.into(),
                        message: "names no stanza of the configuration file".into(),
                    });
                };
                let st = raw
                    .stanza
                    .get_mut(name)
                    .expect("prefix built from stanza keys");
                match &var[prefix.len()..] {
                    "PG_DATA" => st.pg_data = PathBuf::from(v),
                    "PG_HOST" => st.pg_host = v.into(),
                    "PG_PORT" => st.pg_port = parse_num(var, v)?,
                    "PG_USER" => st.pg_user = v.into(),
                    "PG_PASSWORD" => st.pg_password = Some(Secret::new(v)),
                    "PG_DATABASE" => st.pg_database = v.into(),
                    "PG_SSLMODE" => st.pg_sslmode = Some(v.into()),
                    "PG_BIN" => st.pg_bin = Some(PathBuf::from(v)),
                    _ => {
                        return Err(ConfigError::Env {
                            var: var.into(),
                            message: "is not a stanza key".into(),
                        });
                    }
                }
            }
            _ if ["CAIRN_REPO_", "CAIRN_ARCHIVE_", "CAIRN_RETENTION_"]
                .iter()
                .any(|p| var.starts_with(p)) =>
            {
                return Err(ConfigError::Env {
                    var: var.into(),
                    message: "is not a cairn configuration variable".into(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}
