//! Taking a backup of a live cluster from start to finish, as `cairn backup` and
//! `cairn serve` both do: take the stanza's backup lock (a second backup fails at once,
//! before PostgreSQL is contacted), connect and check the server, choose type and parent
//! from the backup catalog, start the stream and store it. The caller hears what happens
//! through a [`TakeObserver`]; nothing here prints.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cairn_basebackup::ConnParams;
use cairn_repo::lock::LockOptions;
use cairn_repo::{
    BackupLabel, BackupManifest, BackupType, IncrementalMode, Repository, StanzaInfo, StanzaName,
};
use tokio::sync::watch;

use crate::error::BackupError;
use crate::lock::with_lock;
use crate::plan::BackupPlan;
use crate::run::{RunOptions, run};
use crate::session::{Session, StartNotice};
use crate::source::{BackupSource, SourceEvent};

/// What to take and how.
#[derive(Debug, Clone)]
pub struct TakeOptions {
    /// The stanza's cluster, over the replication protocol.
    pub conn: ConnParams,
    /// full, diff or incr; `None`: incr (a full when none exists).
    pub requested: Option<BackupType>,
    /// How long to wait for the WAL that makes the backup consistent.
    pub archive_timeout: Duration,
    /// `CHECKPOINT 'fast'` instead of a spread one.
    pub fast_checkpoint: bool,
    pub lock: LockOptions,
    /// Pin the backup (recorded before the manifest).
    pub pin: bool,
    /// `KEY=VALUE` notes stored with the backup.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Once this turns `true` the backup is abandoned: the stream is dropped, no manifest
    /// is written (the backup is never listed), and the lock is given back.
    pub abandon: Option<watch::Receiver<bool>>,
}

impl TakeOptions {
    pub fn new(conn: ConnParams) -> TakeOptions {
        TakeOptions {
            conn,
            requested: None,
            archive_timeout: Duration::from_secs(120),
            fast_checkpoint: true,
            lock: LockOptions::default(),
            pin: false,
            annotations: Default::default(),
            abandon: None,
        }
    }
}

/// A step of a backup worth telling the operator about.
#[derive(Debug)]
pub enum TakeNotice<'a> {
    /// A parent whose manifest is damaged was passed over: label and reason.
    PassedOver(&'a str),
    /// A diff or incr was asked for, but there is no full backup yet.
    PromotedToFull,
    /// The server is about to start the backup `plan` describes, sending what `how` says.
    Starting {
        plan: &'a BackupPlan,
        how: &'a StartNotice,
    },
    /// The stream started; `incremental_mode` is `Some(WalSummaries)` when only changed
    /// blocks come (a size estimate of the whole cluster would then mislead).
    Streaming {
        label: &'a BackupLabel,
        incremental_mode: Option<IncrementalMode>,
    },
}

/// Hears what a backup does. Every method has an empty default.
pub trait TakeObserver: Send + Sync {
    /// Checks of the server made under the lock, once the replication session is open and
    /// before anything is planned (the cli checks the server runs on pg-data and is the
    /// stanza's cluster). An error ends the backup before it starts.
    fn preflight<'s>(
        &'s self,
        _info: &'s StanzaInfo,
    ) -> Pin<Box<dyn Future<Output = Result<(), BackupError>> + Send + 's>> {
        Box::pin(async { Ok(()) })
    }
    /// Something the operator should know that does not stop the backup (a lock taken
    /// over from a gone holder, a lock that could not be given back).
    fn warning(&self, _text: &str) {}
    fn notice(&self, _notice: TakeNotice<'_>) {}
    /// Bytes received from the server so far (called as data arrives).
    fn received(&self, _total: u64) {}
    /// The stream ended (or failed): a last progress report.
    fn stream_ended(&self, _total: u64) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl TakeObserver for Quiet {}

/// Take a backup of `stanza`'s cluster under its backup lock. Returns the committed
/// manifest.
pub async fn take(
    repo: &Repository,
    stanza: &StanzaName,
    opts: &TakeOptions,
    observer: &dyn TakeObserver,
) -> Result<BackupManifest, BackupError> {
    let info = repo.require_stanza(stanza).await?;
    let warn = |w: &str| observer.warning(w);
    with_lock(repo, stanza, &opts.lock, warn, async |lock| {
        let work = async {
            let mut session = Session::connect(&opts.conn, &info).await?;
            observer.preflight(&info).await?;
            let plan = BackupPlan::prepare(
                repo,
                stanza,
                opts.requested,
                info.current().db_id,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            for p in &plan.passed_over {
                observer.notice(TakeNotice::PassedOver(p));
            }
            if plan.promoted_to_full {
                observer.notice(TakeNotice::PromotedToFull);
            }
            let wal_segment_size = session.wal_segment_size;
            let started = session
                .start(&plan, opts.fast_checkpoint, |how| {
                    observer.notice(TakeNotice::Starting {
                        plan: &plan,
                        how: &how,
                    })
                })
                .await?;
            observer.notice(TakeNotice::Streaming {
                label: &plan.label,
                incremental_mode: started.incremental_mode,
            });
            let mut source = Observed {
                inner: started.source,
                observer,
                total: 0,
            };
            let run_opts = RunOptions {
                archive_timeout: opts.archive_timeout,
                wal_segment_size,
                incremental_mode: started.incremental_mode,
                lock: Some(lock),
                annotations: opts.annotations.clone(),
                pin: opts.pin,
                ..Default::default()
            };
            run(repo, &info, &plan, &mut source, &run_opts).await
        };
        match opts.abandon.clone() {
            None => work.await,
            Some(mut abandon) => tokio::select! {
                r = work => r,
                Ok(_) = abandon.wait_for(|a| *a) => Err(BackupError::Abandoned),
            },
        }
    })
    .await
}

/// The server's stream, counting bytes for the observer.
struct Observed<'o, S> {
    inner: S,
    observer: &'o dyn TakeObserver,
    total: u64,
}

impl<S: BackupSource + Send> BackupSource for Observed<'_, S> {
    async fn next_event(&mut self) -> Result<Option<SourceEvent>, BackupError> {
        let ev = self.inner.next_event().await;
        match &ev {
            Ok(Some(SourceEvent::Data(d))) => {
                self.total += d.len() as u64;
                self.observer.received(self.total);
            }
            Ok(None) | Err(_) => self.observer.stream_ended(self.total),
            _ => {}
        }
        ev
    }
}
