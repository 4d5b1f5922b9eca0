//! `cairn-serve`: `cairn serve`, one long-running process per host (decision 023).
//!
//! - **Jobs** ([`job`], [`queue`], [`work`]): backup (full/diff/incr), expire, verify and
//!   drill of a stanza run in-process through the library crates. Each stanza has one
//!   queue and one worker, so a stanza never runs two jobs at once; the repository's
//!   locks keep that rule against other processes (a job that finds a lock held fails
//!   naming the holder, and is not retried). A second job of a class (every backup is one
//!   class) while one waits or runs is refused: the API answers 409.
//! - **Schedules** ([`schedule`], [`replay`]): `[schedule]` cron expressions (5 fields,
//!   UTC) queue their job in every stanza; `max-replay` queues an incr once that much
//!   WAL was archived since the newest backup started (checked every minute).
//! - **History** ([`history`]): each job is stored as a record of kind `job` when it
//!   starts and when it ends (the newest 100 per stanza), so it survives a restart.
//! - **HTTP** ([`api`], on axum): `/healthz`, `/metrics`, the status page `/` ([`page`])
//!   and `/api/v1/...` (DESIGN 2b) behind the bearer token of `[serve] token-file`
//!   ([`auth`]). Health and gauges come from catalog objects ([`status`]).
//! - **Shutdown**: on SIGTERM no job is accepted or started any more; a running job
//!   may finish within `[serve] shutdown-grace`, after which it is abandoned (a backup
//!   stops before its manifest, so it is never listed, and gives its lock back); then the
//!   HTTP listener closes and [`Server::run_until`] returns.
//!
//! ```no_run
//! # async fn demo(cfg: cairn_config::Config, repo: cairn_repo::Repository) -> Result<(), cairn_serve::ServeError> {
//! let server = cairn_serve::Server::start(cfg, repo).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(cairn_serve::termination()).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
mod context;
mod expire;
pub mod history;
pub mod job;
pub mod page;
pub mod queue;
pub mod replay;
pub mod schedule;
pub mod status;
mod work;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_config::Config;
use cairn_exit::{Classify, ErrorKind};
use cairn_repo::{Repository, StanzaName};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use auth::{Token, TokenError};
use context::Context;
pub use job::{Job, JobKind, JobStatus, Origin};
use queue::Jobs;

/// Why `cairn serve` could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("stanza name '{0}' cannot be served: {1}")]
    Stanza(String, String),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

impl Classify for ServeError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServeError::Token(_) | ServeError::Stanza(..) => ErrorKind::Config,
            ServeError::Listen { .. } | ServeError::Http(_) => ErrorKind::LocalIo,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServeError::Token(_) => Some(
                "[serve] token-file names a file with one line, the bearer token (mode 0600)"
                    .into(),
            ),
            ServeError::Listen { .. } => {
                Some("another process may listen there; set [serve] listen = \"IP:PORT\"".into())
            }
            _ => None,
        }
    }
}

/// A started server: listening, its workers and schedules running.
#[derive(Debug)]
pub struct Server {
    ctx: Arc<Context>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    /// The stanza workers run on this set, inside [`Server::run_until`]: the library
    /// futures they drive (backup, verify) are not `Send`.
    local: tokio::task::LocalSet,
    workers: JoinSet<()>,
    background: JoinSet<()>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    http_stop: watch::Sender<bool>,
    grace: Duration,
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives between startup and
/// [`Server::run_until`] still stops the server cleanly instead of killing it.
pub fn termination() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let int = async {
            match int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = int => {}
        }
    }
}

impl Server {
    /// Read the token, load each stanza's job history, listen on `[serve] listen`, and
    /// start the stanza workers, the schedules and the HTTP server.
    pub async fn start(cfg: Config, repo: Repository) -> Result<Server, ServeError> {
        let token = match &cfg.serve.token_file {
            Some(p) => Some(Token::from_file(p)?),
            None => {
                tracing::warn!("no [serve] token-file: every /api/* request is refused");
                None
            }
        };
        let mut stanzas = Vec::new();
        for name in cfg.stanzas.keys() {
            stanzas.push(StanzaName::new(name).map_err(|m| ServeError::Stanza(name.clone(), m))?);
        }
        let mut past = BTreeMap::new();
        for s in &stanzas {
            let jobs = history::load(&repo, s).await.unwrap_or_else(|e| {
                tracing::warn!(stanza = %s, error = %e, "cannot read the job history; starting without it");
                Vec::new()
            });
            past.insert(s.to_string(), jobs);
        }
        let listener = tokio::net::TcpListener::bind(cfg.serve.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: cfg.serve.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: cfg.serve.listen,
            source,
        })?;
        let grace = cfg.serve.shutdown_grace.as_duration();
        let (stop, stop_rx) = watch::channel(false);
        let (abandon, abandon_rx) = watch::channel(false);
        let (http_stop, mut http_stop_rx) = watch::channel(false);
        let ctx = Arc::new(Context {
            cfg,
            repo,
            jobs: Jobs::new(past),
            stanzas,
            token,
            abandon: abandon_rx,
        });
        let local = tokio::task::LocalSet::new();
        let mut workers = JoinSet::new();
        for s in &ctx.stanzas {
            workers.spawn_local_on(work::stanza_worker(ctx.clone(), s.clone()), &local);
        }
        let mut background = JoinSet::new();
        background.spawn(schedule::run(ctx.clone(), stop_rx.clone()));
        background.spawn(replay::run(ctx.clone(), stop_rx));
        let app = api::router(ctx.clone());
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop_rx.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, stanzas = ctx.stanzas.len(), "cairn serve listening");
        Ok(Server {
            ctx,
            addr,
            stop,
            abandon,
            local,
            workers,
            background,
            http,
            http_stop,
            grace,
        })
    }

    /// The address the HTTP server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` completes, then stop as the crate documentation says.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let local = std::mem::take(&mut self.local);
        local.run_until(self.serve(shutdown)).await
    }

    async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        tokio::select! {
            _ = shutdown => {}
            r = &mut self.http => {
                // The HTTP server ended on its own: stop the rest too.
                tracing::error!("the HTTP server stopped");
                self.shut_down().await;
                return match r {
                    Ok(Err(e)) => Err(ServeError::Http(e)),
                    _ => Ok(()),
                };
            }
        }
        self.shut_down().await;
        self.http_stop.send_replace(true);
        match self.http.await {
            Ok(Err(e)) => Err(ServeError::Http(e)),
            _ => Ok(()),
        }
    }

    async fn shut_down(&mut self) {
        let now = time::OffsetDateTime::now_utc();
        let running = self.ctx.jobs.any_running();
        tracing::info!(
            running,
            grace_seconds = self.grace.as_secs(),
            "stopping: no new jobs are accepted"
        );
        for job in self.ctx.jobs.close(now) {
            if let Some(s) = self.ctx.stanza(&job.stanza)
                && let Err(e) = history::save(&self.ctx.repo, s, &job).await
            {
                tracing::warn!(job = %job.id, error = %e, "could not store the cancelled job");
            }
        }
        self.stop.send_replace(true);
        let drained = tokio::time::timeout(self.grace, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the shutdown grace ran out: abandoning the running jobs");
            self.abandon.send_replace(true);
            // An abandoned job stops at its next step and gives its locks back.
            while self.workers.join_next().await.is_some() {}
        }
        while self.background.join_next().await.is_some() {}
        tracing::info!("stopped");
    }
}
