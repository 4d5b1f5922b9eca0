//! From file and environment to a checked [`Config`].

use std::path::{Path, PathBuf};

use crate::document::{self, Origins};
use crate::env::{Env, apply_overrides};
use crate::error::ConfigError;
use crate::model::{Config, RawConfig, RepoConfig, RepoLocation, Secret, StanzaConfig};
use crate::store::StoreIo;
use crate::warning::{self, ConfigWarning};

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
        let (mut cfg, secrets) = Config::parse(&text, &path, env)?;
        if !secrets.is_empty()
            && let Some(mode) = warning::mode_with(&path, warning::OTHERS)
        {
            cfg.warnings.insert(
                0,
                ConfigWarning::ConfigReadable {
                    path,
                    keys: secrets,
                    mode,
                },
            );
        }
        Ok(cfg)
    }

    /// Parse configuration text; `path` is only used in messages and to resolve files.
    pub fn from_toml_str(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
        Config::parse(text, path, env).map(|(cfg, _)| cfg)
    }

    /// The configuration, and the secrets the text holds.
    fn parse(text: &str, path: &Path, env: &Env) -> Result<(Config, Vec<String>), ConfigError> {
        let doc = document::read(text, path)?;
        let mut table = doc.table;
        let mut origins = doc.origins;
        apply_overrides(&mut table, &mut origins, env)?;
        // Every value was checked against its key above; what is left are bugs, and
        // the message still must not quote a value.
        let raw: RawConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: None,
                    key: "(configuration)".into(),
                    message: format!(
                        "does not fit the configuration model ({})",
                        e.message().split(':').next().unwrap_or_default()
                    ),
                })?;
        let cfg = Config::check(raw, path, &origins)?;
        Ok((cfg, doc.secrets))
    }

    fn check(raw: RawConfig, path: &Path, at: &Origins) -> Result<Config, ConfigError> {
        let invalid = |key: &str, message: &str| at.invalid(path, key, message);
        let io = StoreIo::from_raw(&raw.repo);
        let location = match (raw.repo.path, raw.repo.url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "repo.path",
                    "and repo.url are both given; give one",
                ));
            }
            (Some(p), None) => RepoLocation::Path(p),
            (None, Some(u)) => RepoLocation::Url(u),
            (None, None) => return Err(invalid("repo.path", "is missing (or give repo.url)")),
        };
        let mut warnings = Vec::new();
        let cipher_pass = match (raw.repo.cipher_pass, raw.repo.cipher_pass_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "repo.cipher-pass",
                    "and repo.cipher-pass-file are both given; give one",
                ));
            }
            (Some(p), None) => Some(p),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::PassFile {
                    path: f.clone(),
                    source,
                })?;
                warnings.extend(warning::secret_file("repo.cipher-pass-file", &f));
                Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
            }
            (None, None) => None,
        };
        if cipher_pass.as_ref().is_some_and(|p| p.expose().is_empty()) {
            return Err(invalid("repo.cipher-pass", "is empty"));
        }
        let r = &raw.retention;
        if r.diff.is_some() && r.full.is_none() {
            return Err(invalid(
                "retention.diff",
                "limits the diffs kept per full, so it needs retention.full",
            ));
        }
        if let Some(f) = &raw.serve.token_file {
            warnings.extend(warning::secret_file("serve.token-file", f));
        }
        Ok(Config {
            source: path.to_path_buf(),
            repo: RepoConfig {
                location,
                cipher_pass,
                compress_level: raw.repo.compress_level.unwrap_or(3),
                s3: raw.repo.s3,
                gcs: raw.repo.gcs,
                azure: raw.repo.azure,
                io,
            },
            archive: raw.archive,
            retention: raw.retention,
            health: raw.health,
            serve: raw.serve,
            schedule: raw.schedule,
            log: raw.log,
            stanzas: raw.stanza,
            warnings,
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
