use cairn_exit::{Classify, ErrorKind};
use cairn_repo::{BackupLabel, RepoError};
use cairn_retention::RulesError;

/// Why `expire` could not plan or finish.
#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// `--set` names a backup the stanza does not have.
    #[error("stanza '{stanza}' has no backup {label}")]
    NoSuchSet { stanza: String, label: BackupLabel },
    /// `--set` names a pinned backup: a pin means it never expires.
    #[error("backup {label} is pinned; expire never removes a pinned backup")]
    Pinned { label: BackupLabel },
}

impl Classify for ExpireError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExpireError::Repo(e) => e.kind(),
            ExpireError::Rules(_) => ErrorKind::Config,
            ExpireError::NoSuchSet { .. } => ErrorKind::Usage,
            ExpireError::Pinned { .. } => ErrorKind::Refused,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ExpireError::Repo(e) => e.hint(),
            ExpireError::Rules(_) => Some("see [retention] in docs/configuration.md".into()),
            ExpireError::NoSuchSet { .. } => Some("`cairn info` lists the stanza's backups".into()),
            ExpireError::Pinned { label } => Some(format!(
                "run `cairn unpin {label}` first if it really should go"
            )),
        }
    }
}
