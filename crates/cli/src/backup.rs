//! `cairn backup`: connect over the replication protocol, check the cluster is the
//! stanza's, choose type and parent, stream the base backup into the repository. The
//! orchestration is `cairn_backup::take` (shared with `cairn serve`); this draws it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_backup::{BackupError, StartNotice, TakeNotice, TakeObserver, TakeOptions};
use cairn_config::{Config, StanzaConfig};
use cairn_exit::Failure;
use cairn_repo::{BackupManifest, BackupType, IncrementalMode, StanzaInfo};

use crate::args::{BackupType as ArgType, ProgressMode};
use crate::pg;
use crate::progress::{self, Display, Snapshot};
use crate::quantity::size;
use crate::stanza::stanza_name;

/// The size of the databases, for the progress bar's ETA.
async fn size_estimate(client: &tokio_postgres::Client) -> Option<u64> {
    let row = client
        .query_one(
            "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
            &[],
        )
        .await
        .ok()?;
    row.get::<_, Option<i64>>(0).map(|v| v as u64)
}

/// What the progress bar's ETA is measured against: the database size, except when the
/// server sends only changed blocks (WAL summaries), where that size would promise a
/// wait many times too long; then only bytes and rate are shown.
fn eta_basis(estimate: Option<u64>, mode: Option<IncrementalMode>) -> Option<u64> {
    match mode {
        Some(IncrementalMode::WalSummaries) => None,
        _ => estimate,
    }
}

/// What `cairn backup` stores besides the data: a pin and the operator's notes.
#[derive(Debug, Default)]
pub struct Extras {
    pub pin: bool,
    /// `KEY=VALUE` as given.
    pub annotations: Vec<String>,
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    requested: Option<ArgType>,
    archive_timeout: Duration,
    spread: bool,
    progress: ProgressMode,
    extras: Extras,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let (_, st) = cfg.stanza(stanza)?;
    let mut annotations = BTreeMap::new();
    for a in &extras.annotations {
        let (k, v) = cairn_backup::annotation(a).map_err(|e| Failure::from_error(&e))?;
        annotations.insert(k, v);
    }
    let repo = cairn_startup::open_repo(cfg).await?;
    let mut opts = TakeOptions::new(pg::conn_params(st, "cairn backup"));
    opts.requested = requested.map(|t| match t {
        ArgType::Full => BackupType::Full,
        ArgType::Diff => BackupType::Diff,
        ArgType::Incr => BackupType::Incr,
    });
    opts.archive_timeout = archive_timeout;
    opts.fast_checkpoint = !spread;
    opts.pin = extras.pin;
    opts.annotations = annotations;
    let terminal = Terminal {
        st,
        estimate: Mutex::new(None),
        mode: progress,
        done: Arc::new(AtomicU64::new(0)),
        display: Mutex::new(None),
    };
    let m = cairn_backup::take(&repo, &name, &opts, &terminal).await;
    let display = terminal.display.lock().expect("display").take();
    if let Some(d) = display {
        d.finish(m.is_ok()).await;
    }
    let m = m.map_err(|e| Failure::from_error(&e))?;
    println!("{}", completion_line(&m));
    // After the backup lock is given back (decision 011's order): one call.
    crate::expire::after_backup(cfg, &repo, &name, progress).await?;
    Ok(ExitCode::SUCCESS)
}

/// The line a finished backup prints: type and label, how the changes were found (for
/// diff and incr), where it starts and stops, and what it cost.
fn completion_line(m: &BackupManifest) -> String {
    let how = match (m.incremental_mode, &m.parent) {
        (IncrementalMode::WalSummaries, Some(p)) => {
            format!(" on top of {p} (the server sent only changed blocks)")
        }
        (IncrementalMode::ContentAddressed, Some(p)) => {
            format!(" on top of {p} (the server sent every file; only new chunks were stored)")
        }
        _ => String::new(),
    };
    format!(
        "{} backup {}{how} complete: start {}, stop {}; database {}, received {}, added {} to the repository",
        m.backup_type,
        m.label,
        m.start_lsn,
        m.stop_lsn,
        size(m.db_size),
        size(m.bytes_received),
        size(m.repo_added)
    )
}

/// What a backup run from a terminal shows on stderr: warnings, how the backup starts,
/// and a progress bar.
struct Terminal<'a> {
    st: &'a StanzaConfig,
    /// The databases' size, for the ETA (read in the preflight).
    estimate: Mutex<Option<u64>>,
    mode: ProgressMode,
    /// Bytes received so far, read by the display.
    done: Arc<AtomicU64>,
    display: Mutex<Option<Display>>,
}

impl TakeObserver for Terminal<'_> {
    fn preflight<'s>(
        &'s self,
        info: &'s StanzaInfo,
    ) -> Pin<Box<dyn Future<Output = Result<(), BackupError>> + Send + 's>> {
        // The same checks `cairn check` makes: the server runs on pg-data and is the
        // stanza's cluster.
        Box::pin(async move {
            let sql = pg::connect(self.st).await.map_err(failure_to_backup)?;
            pg::require_stanza_cluster(&sql, self.st, &info.name, info)
                .await
                .map_err(failure_to_backup)?;
            *self.estimate.lock().expect("estimate") = size_estimate(&sql).await;
            Ok(())
        })
    }

    fn warning(&self, text: &str) {
        eprintln!("cairn: WARNING: {text}");
    }

    fn notice(&self, notice: TakeNotice<'_>) {
        match notice {
            TakeNotice::PassedOver(p) => {
                eprintln!("cairn: WARNING: backup {p} cannot be used as a parent; passed over")
            }
            TakeNotice::PromotedToFull => {
                eprintln!("cairn: no full backup of this cluster exists yet: taking a full backup")
            }
            TakeNotice::Starting { plan, how } => {
                let on_top = plan
                    .parent
                    .as_ref()
                    .map(|p| format!(" on top of {}", p.label))
                    .unwrap_or_default();
                match how {
                    StartNotice::WalSummaries => eprintln!(
                        "cairn: {} backup {}{on_top} starting (WAL summaries: the server sends only blocks changed since the parent)",
                        plan.backup_type, plan.label
                    ),
                    StartNotice::ContentAddressed { .. } if plan.parent.is_none() => {
                        eprintln!("cairn: {} backup {} starting", plan.backup_type, plan.label)
                    }
                    StartNotice::ContentAddressed { why } => eprintln!(
                        "cairn: {} backup {}{on_top} starting (changes found by content addressing: the server sends every file because {why})",
                        plan.backup_type, plan.label
                    ),
                    StartNotice::Refused { error } => eprintln!(
                        "cairn: the server refused an incremental backup ({error}); falling back to the server sending every file (content addressing)"
                    ),
                }
            }
            TakeNotice::Streaming {
                label,
                incremental_mode,
            } => {
                let total = eta_basis(*self.estimate.lock().expect("estimate"), incremental_mode);
                let done = self.done.clone();
                let d = progress::start(self.mode, &format!("backup {label}"), move || Snapshot {
                    done: done.load(Ordering::Relaxed),
                    total,
                    phase: None,
                });
                *self.display.lock().expect("display") = Some(d);
            }
        }
    }

    fn received(&self, total: u64) {
        self.done.store(total, Ordering::Relaxed);
    }
}

/// A preflight failure travels through the backup library with its kind and hint intact.
fn failure_to_backup(f: Failure) -> BackupError {
    BackupError::Source {
        message: f.message,
        hint: f.hint,
        kind: f.kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_eta_when_only_changed_blocks_are_sent() {
        assert_eq!(eta_basis(Some(100), None), Some(100));
        assert_eq!(eta_basis(Some(100), Some(IncrementalMode::Full)), Some(100));
        assert_eq!(
            eta_basis(Some(100), Some(IncrementalMode::ContentAddressed)),
            Some(100)
        );
        assert_eq!(
            eta_basis(Some(100), Some(IncrementalMode::WalSummaries)),
            None
        );
    }

    #[test]
    fn wal_that_never_arrived_is_an_archive_timeout_with_a_hint() {
        use cairn_exit::ErrorKind;
        let f = Failure::from_error(&cairn_backup::BackupError::WalNotArchived {
            segment: "000000010000000000000003".parse().unwrap(),
            waited: Duration::from_secs(2),
        });
        assert_eq!(f.kind, ErrorKind::ArchiveTimeout);
        assert_eq!(f.kind.code(), 16);
        assert!(
            f.message.contains("000000010000000000000003"),
            "{}",
            f.message
        );
        assert!(f.hint.is_some_and(|h| h.contains("archive_command")));
        let other = Failure::from_error(&cairn_backup::BackupError::Protocol("x".into()));
        assert_ne!(other.kind, ErrorKind::ArchiveTimeout);
    }
}
