use cairn_exit::{Classify, ErrorKind};
use cairn_repo::{BackendError, BackupLabel, RepoError};

/// Why a verify run could not run to its end. Damage is never an error: it is the report.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("backup set {label} does not exist in stanza '{stanza}'")]
    NoSuchSet {
        label: BackupLabel,
        stanza: String,
        known: Vec<String>,
    },
}

impl From<BackendError> for VerifyError {
    fn from(e: BackendError) -> Self {
        VerifyError::Repo(RepoError::Backend(e))
    }
}

impl Classify for VerifyError {
    fn kind(&self) -> ErrorKind {
        match self {
            VerifyError::Repo(e) => e.kind(),
            VerifyError::NoSuchSet { .. } => ErrorKind::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            VerifyError::Repo(e) => e.hint(),
            VerifyError::NoSuchSet { known, .. } if known.is_empty() => {
                Some("the stanza has no backups; omit --set to verify its WAL".into())
            }
            VerifyError::NoSuchSet { known, .. } => {
                Some(format!("existing sets: {}", known.join(", ")))
            }
        }
    }
}
