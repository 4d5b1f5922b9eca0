use std::path::PathBuf;

use cairn_exit::{Classify, ErrorKind};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML. The message describes the syntax and never quotes the line.
    #[error("{}, line {line}, column {column}: not valid TOML: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key that is unknown, or whose value is wrong. The message never holds the value.
    #[error("{}{}: {key} {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("cannot read passphrase file {path}: {source}")]
    PassFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no stanza is configured in {path}")]
    NoStanza { path: PathBuf },
    #[error("the configuration has several stanzas ({names}); say which one")]
    AmbiguousStanza { names: String },
    #[error("stanza '{name}' is not in {path}")]
    UnknownStanza { name: String, path: PathBuf },
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }

    fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } => {
                Some("pass --config FILE, set CAIRN_CONFIG, or create /etc/cairn/cairn.toml".into())
            }
            ConfigError::NoStanza { .. } => {
                Some("add a section [stanza.main] with pg-data = \"...\"".into())
            }
            ConfigError::AmbiguousStanza { .. } => {
                Some("pass --stanza NAME or set CAIRN_STANZA".into())
            }
            ConfigError::UnknownStanza { .. } => {
                Some("stanzas are the [stanza.NAME] sections of the configuration".into())
            }
            ConfigError::Invalid { message, .. } if message.starts_with("is not a known") => {
                Some("docs/configuration.md lists every key".into())
            }
            _ => None,
        }
    }
}
