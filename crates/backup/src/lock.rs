//! The backup lock: one backup of a stanza at a time (decision 011). It is taken before
//! anything else (a second backup fails at once, naming the holder), kept by its heartbeat
//! while the backup runs, checked again right before the manifest is written, and given
//! back at the end, whether the backup succeeded or not.

use cairn_repo::lock::{LockOptions, LockTarget, LockWatch};
use cairn_repo::{Repository, StanzaName};

use crate::error::BackupError;

/// Run `work` holding the backup lock of `stanza`. `warn` receives the lines to report:
/// a takeover of a gone or stale holder, or a lock that could not be given back.
pub async fn with_lock<T, E>(
    repo: &Repository,
    stanza: &StanzaName,
    opts: &LockOptions,
    warn: impl Fn(&str),
    work: impl AsyncFnOnce(LockWatch) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<BackupError>,
{
    let target = LockTarget::Backup(stanza.clone());
    let guard = repo
        .lock(target, "backup", opts)
        .await
        .map_err(|e| E::from(BackupError::Repo(e)))?;
    if let Some(t) = guard.takeover() {
        warn(&t.to_string());
    }
    let result = work(guard.watch()).await;
    let target = guard.target().to_string();
    if let Err(e) = guard.release().await {
        warn(&format!("could not release {target}: {e}"));
    }
    result
}
