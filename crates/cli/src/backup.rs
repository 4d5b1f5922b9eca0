//! `cairn backup`: connect over the replication protocol, check the cluster is the
//! stanza's, choose type and parent, stream the base backup into the repository.

use std::process::ExitCode;
use std::time::Duration;

use std::sync::Mutex;

use cairn_backup::{StartNotice, TakeNotice, TakeObserver, TakeOptions};
use cairn_basebackup::ConnParams;
use cairn_config::{Config, StanzaConfig};
use cairn_exit::Failure;
use cairn_repo::{BackupType, IncrementalMode};

use crate::args::BackupType as ArgType;
use crate::progress::Progress;
use crate::stanza::stanza_name;

pub fn conn_params(st: &StanzaConfig) -> ConnParams {
    ConnParams {
        host: st.pg_host.clone(),
        port: st.pg_port,
        user: st.pg_user.clone(),
        password: st.pg_password.as_ref().map(|p| p.expose().to_string()),
        sslmode: st.pg_sslmode.clone(),
        application_name: "cairn backup".into(),
    }
}

/// The size of the databases, for the progress bar's ETA (none if SQL is not reachable).
async fn size_estimate(st: &StanzaConfig) -> Option<u64> {
    let client = crate::pg::connect(st).await.ok()?;
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

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    requested: Option<ArgType>,
    archive_timeout: Duration,
    spread: bool,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let (_, st) = cfg.stanza(stanza)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let mut opts = TakeOptions::new(conn_params(st));
    opts.requested = requested.map(|t| match t {
        ArgType::Full => BackupType::Full,
        ArgType::Diff => BackupType::Diff,
        ArgType::Incr => BackupType::Incr,
    });
    opts.archive_timeout = archive_timeout;
    opts.fast_checkpoint = !spread;
    let terminal = Terminal {
        estimate: size_estimate(st).await,
        progress: Mutex::new(None),
    };
    let m = cairn_backup::take(&repo, &name, &opts, &terminal)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    println!(
        "backup {} ({}, {}) complete: start {} stop {}, database {:.1} MiB, received {:.1} MiB, added {:.1} MiB to the repository",
        m.label,
        m.backup_type,
        match m.incremental_mode {
            IncrementalMode::Full => "full",
            IncrementalMode::ContentAddressed => "content-addressed",
            IncrementalMode::WalSummaries => "wal-summaries",
        },
        m.start_lsn,
        m.stop_lsn,
        m.db_size as f64 / 1048576.0,
        m.bytes_received as f64 / 1048576.0,
        m.repo_added as f64 / 1048576.0
    );
    Ok(ExitCode::SUCCESS)
}

/// What a backup run from a terminal shows on stderr: warnings, how the backup starts,
/// and a progress bar.
struct Terminal {
    /// The databases' size, for the ETA.
    estimate: Option<u64>,
    progress: Mutex<Option<Progress>>,
}

impl TakeObserver for Terminal {
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
                    StartNotice::ContentAddressed { why } => eprintln!(
                        "cairn: {} backup {}{on_top} starting (changed data found by content addressing: the server sends every file; {why})",
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
                let p = Progress::new(eta_basis(self.estimate, incremental_mode), label.as_str());
                *self.progress.lock().expect("progress") = Some(p);
            }
        }
    }

    fn received(&self, total: u64) {
        if let Some(p) = self.progress.lock().expect("progress").as_mut() {
            p.update(total, false);
        }
    }

    fn stream_ended(&self, total: u64) {
        if let Some(p) = self.progress.lock().expect("progress").as_mut() {
            p.update(total, true);
        }
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
