use cairn_exit::{Classify, ErrorKind};
use std::time::Duration;

use crate::layout::ObjectKey;
use crate::lock::{LockHolder, age};

/// A failure of the storage underneath the repository. Always worth retrying later.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot open object store {url}: {message}")]
    Setup { url: String, message: String },
    #[error(
        "refusing to write into {root}: it belongs to user id {owner}, and this process runs as user id {writer}"
    )]
    NotOwner {
        root: String,
        owner: u32,
        writer: u32,
    },
}

/// Why an object could not be decoded. Never retryable: the bytes are wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("not a cairn object (bad magic)")]
    BadMagic,
    #[error("object format version {found} is newer than this cairn understands ({supported})")]
    Version { found: u8, supported: u8 },
    #[error("object is a {found} where a {expected} was expected")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("object is truncated: {have} bytes, header promises {want}")]
    Truncated { have: u64, want: u64 },
    #[error("object has {extra} bytes after its end")]
    Trailing { extra: u64 },
    #[error("object frame {frame} failed authentication (altered, reordered or wrong key)")]
    Auth { frame: u64 },
    #[error("object is encrypted but the repository has no passphrase")]
    NeedsKey,
    #[error("object payload does not decompress: {message}")]
    Decompress { message: String },
    #[error("object content does not match its recorded hash")]
    Hash,
    #[error("object header is damaged: {message}")]
    Header { message: String },
    #[error(
        "object does not belong under this key (copied or moved from another key, or written with another repository's key)"
    )]
    Misplaced,
}

/// Everything the repository layer can report.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("object {key} is damaged: {source}")]
    Object {
        key: ObjectKey,
        #[source]
        source: ObjectError,
    },
    #[error("{what} {key} is not valid: {message}")]
    Malformed {
        what: &'static str,
        key: ObjectKey,
        message: String,
    },
    #[error("the passphrase does not open this repository's key")]
    WrongPassphrase,
    #[error("the repository is encrypted and no passphrase was given")]
    PassphraseRequired,
    #[error("the repository is not encrypted, but a passphrase was given")]
    PassphraseUnexpected,
    #[error("no cairn repository at {location}")]
    NoRepository { location: String },
    #[error("{}", unsupported_format(*found, *supported))]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("the repository is not encrypted: it has no passphrase to change")]
    NotEncrypted,
    #[error("stanza has no backup {label}")]
    NoBackup { label: String },
    #[error("backup {label} cannot be used: {key} {reason}")]
    BackupDamaged {
        label: String,
        key: ObjectKey,
        reason: String,
    },
    #[error("stanza '{stanza}' info is damaged in both copies: {problems}")]
    StanzaInfoDamaged { stanza: String, problems: String },
    #[error("{what} {key} was written by another process at the same time; run the command again")]
    Concurrent { what: &'static str, key: ObjectKey },
    #[error("the repository's key files are damaged: {problems}")]
    KeyFilesDamaged { problems: String },
    #[error("stanza '{stanza}' does not exist in the repository")]
    NoStanza { stanza: String },
    #[error(
        "stanza '{stanza}' belongs to system {expected_system} (PostgreSQL {expected_version}), \
         not to this cluster (system {found_system}, PostgreSQL {found_version})"
    )]
    StanzaMismatch {
        stanza: String,
        expected_system: u64,
        expected_version: u32,
        found_system: u64,
        found_version: u32,
    },
    #[error(
        "{name} is already archived with different content (stored id {stored}, new id {new}); it was not overwritten"
    )]
    Conflict {
        name: String,
        stored: String,
        new: String,
    },
    #[error("cannot encode object: {message}")]
    Encode { message: String },
    /// Another process holds a lock this command needs.
    #[error("{holder}")]
    Locked { holder: Box<LockHolder> },
    /// A lock held by this process was taken over or could not be kept: the work done
    /// under it must not be committed.
    #[error("{lock} was lost: {reason}")]
    LockLost { lock: String, reason: String },
    /// The lock's newest generation cannot be read, and was written too recently to be
    /// stale: its holder may be alive.
    #[error("{lock} cannot be read: {key} is damaged ({reason}), last written {} ago", age(*written_ago))]
    LockDamaged {
        lock: String,
        key: ObjectKey,
        reason: String,
        written_ago: Duration,
        stale_after: Duration,
    },
}

fn unsupported_format(found: u32, supported: u32) -> String {
    if found < supported {
        format!(
            "repository format {found} was written by an earlier development build of cairn; this cairn reads format {supported} only"
        )
    } else {
        format!("repository format {found} is newer than this cairn supports ({supported})")
    }
}

impl RepoError {
    pub(crate) fn object(key: &ObjectKey, source: ObjectError) -> RepoError {
        RepoError::Object {
            key: key.clone(),
            source,
        }
    }
}

impl Classify for RepoError {
    fn kind(&self) -> ErrorKind {
        match self {
            RepoError::Backend(BackendError::NotOwner { .. }) => ErrorKind::Refused,
            RepoError::Backend(_) => ErrorKind::RepoUnavailable,
            RepoError::Object {
                source: ObjectError::Version { .. },
                ..
            } => ErrorKind::Unsupported,
            RepoError::Object { .. } | RepoError::Malformed { .. } => ErrorKind::Corrupt,
            RepoError::WrongPassphrase
            | RepoError::PassphraseRequired
            | RepoError::PassphraseUnexpected => ErrorKind::WrongPassphrase,
            RepoError::NoRepository { .. } | RepoError::NoStanza { .. } => ErrorKind::Stanza,
            RepoError::NoBackup { .. } => ErrorKind::Usage,
            RepoError::NotEncrypted => ErrorKind::Refused,
            RepoError::StanzaMismatch { .. } => ErrorKind::Stanza,
            RepoError::UnsupportedFormat { .. } => ErrorKind::Unsupported,
            RepoError::KeyFilesDamaged { .. }
            | RepoError::StanzaInfoDamaged { .. }
            | RepoError::BackupDamaged { .. } => ErrorKind::Corrupt,
            RepoError::Concurrent { .. } => ErrorKind::Locked,
            RepoError::Conflict { .. } => ErrorKind::Conflict,
            RepoError::Encode { .. } => ErrorKind::Internal,
            RepoError::Locked { .. }
            | RepoError::LockLost { .. }
            | RepoError::LockDamaged { .. } => ErrorKind::Locked,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RepoError::WrongPassphrase => Some(
                "check repo.cipher-pass / cipher-pass-file / CAIRN_REPO_CIPHER_PASS: it must be \
                 the passphrase the repository was created with"
                    .into(),
            ),
            RepoError::PassphraseRequired => {
                Some("set repo.cipher-pass or CAIRN_REPO_CIPHER_PASS".into())
            }
            RepoError::NoRepository { .. } | RepoError::NoStanza { .. } => {
                Some("run `cairn stanza-create` first".into())
            }
            RepoError::StanzaMismatch { .. } => Some(
                "if this cluster was upgraded, run `cairn stanza-upgrade`; otherwise check \
                 [stanza.*] pg-data and the repository in the configuration"
                    .into(),
            ),
            RepoError::Object { .. } | RepoError::Malformed { .. } => {
                Some("run `cairn verify` to find every damaged object".into())
            }
            RepoError::Backend(BackendError::NotOwner { .. }) => Some(
                "run cairn as the repository's owner, e.g. `runuser -u postgres -- cairn ...` \
                 (objects written by another user could not be read or removed by it)"
                    .into(),
            ),
            RepoError::Backend(_) => Some(
                "check that the repository is reachable and writable; retrying may help".into(),
            ),
            RepoError::UnsupportedFormat { found, supported } if found < supported => Some(
                "create a new repository (another repo.path or repo.url) with `cairn stanza-create`, \
                 take a full backup, and keep the old repository until its backups are no longer needed \
                 (an older cairn build can still restore from it)"
                    .into(),
            ),
            RepoError::NoBackup { .. } => Some("`cairn info` lists the stanza's backups".into()),
            RepoError::NotEncrypted => Some(
                "an unencrypted repository cannot be encrypted in place: create a new one with \
                 repo.cipher-pass set and take a full backup into it"
                    .into(),
            ),
            RepoError::BackupDamaged { label, .. } => Some(format!(
                "other backups are unaffected: restore another with --set, or run `cairn verify \
                 --set {label}` for details; `cairn expire --set {label}` removes it"
            )),
            RepoError::KeyFilesDamaged { .. } => Some(
                "both copies of the key file are damaged; restore keyring/ from a copy of the \
                 repository or from your own backup of it (without it no object can be read)"
                    .into(),
            ),
            RepoError::Conflict { .. } => Some(
                "two clusters may be archiving into one stanza; compare the system identifiers \
                 in `cairn info`"
                    .into(),
            ),
            RepoError::Locked { holder } => Some(format!(
                "wait for it to finish. cairn takes a lock over only when its heartbeat is older \
                 than {}, or at once when a cairn on the holder's host finds its process gone",
                age(holder.stale_after)
            )),
            RepoError::LockDamaged {
                key, stale_after, ..
            } => Some(format!(
                "a damaged lock object is taken over once it was last written more than {} ago; \
                 to go on sooner, make sure no cairn command of this stanza is running, then \
                 remove {key}",
                age(*stale_after)
            )),
            RepoError::LockLost { .. } => Some(
                "nothing was committed after the loss; the next run reuses what this one stored. \
                 If another cairn took the lock over, it printed a warning naming this process"
                    .into(),
            ),
            _ => None,
        }
    }
}
