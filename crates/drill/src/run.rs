//! One drill, start to end: plan, restore into scratch, start, wait for the target, check,
//! stop, clean up, record.

use std::path::PathBuf;
use std::time::Duration;

use cairn_exit::Classify;
use cairn_pgformat::{PgTimestamp, SegmentName, WalSegmentSize};
use cairn_planner::{CommitSpan, Plan, PlanRequest};
use cairn_repo::{ObjectKey, Repository, StanzaName, WalDetail};
use cairn_restore::{
    ArchiveMode, RecoverySettings, RestoreCommand, RestoreOptions, RestoreSource, sh_quote,
};
use cairn_target::{RecoveryTarget, TargetAction, TargetTime, TimelineTarget};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::binaries::PgBinaries;
use crate::error::DrillError;
use crate::record::{
    self, DrillRecord, DrillStatus, ReachedPoint, RecoveryEnd, TargetKind, WindowRecord,
};
use crate::scratch::{Scratch, ScratchDir};
use crate::server::Server;
use crate::session::{self, ConnectAs};
use crate::target::{self, DrillTarget};

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub target: DrillTarget,
    /// A query that must return at least one row in the copy.
    pub sql: Option<String>,
    /// Leave the scratch directory (stopped) in place.
    pub keep: bool,
    pub scratch: ScratchDir,
    /// The stanza's `pg-bin`; `None`: search `PATH`.
    pub pg_bin: Option<PathBuf>,
    /// What the copy fetches WAL with (`cairn-archive-get` for this configuration).
    pub restore_command: RestoreCommand,
    pub connect: ConnectAs,
    /// How long recovery may take, from starting the server to reaching the target.
    pub timeout: Duration,
}

impl DrillOptions {
    /// The options a drill of `stanza` takes from the configuration: `pg-bin`, `pg-user`,
    /// `pg-database`, a scratch directory under `spool-path`, and `cairn-archive-get` (beside
    /// the running executable, else on `PATH`) reading this configuration file. No `--sql`,
    /// no `--keep`, a one-hour recovery timeout. `cairn drill` and `cairn serve` both start here.
    pub fn from_config(
        cfg: &cairn_config::Config,
        stanza: &StanzaName,
        target: DrillTarget,
    ) -> Result<DrillOptions, cairn_config::ConfigError> {
        let (_, st) = cfg.stanza(Some(stanza.as_str()))?;
        let exe = std::env::current_exe().ok();
        Ok(DrillOptions {
            target,
            sql: None,
            keep: false,
            scratch: ScratchDir::Under(cfg.archive.spool_path.clone()),
            pg_bin: st.pg_bin.clone(),
            restore_command: RestoreCommand::archive_get(exe.as_deref(), &cfg.source, stanza),
            connect: ConnectAs {
                user: st.pg_user.clone(),
                database: st.pg_database.clone(),
            },
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// How long recovery may take by default (`cairn drill --timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// A copy left in place by `--keep`: where it is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCopy {
    pub root: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    /// A shell command that starts it again as the drill did (`None`: it never started).
    pub start: Option<String>,
    pub connect: Option<String>,
    pub stop: Option<String>,
}

/// What a drill did. `failure` is `None` when the copy passed.
#[derive(Debug)]
pub struct DrillReport {
    pub record: DrillRecord,
    pub failure: Option<DrillError>,
    pub kept: Option<KeptCopy>,
    /// Things the operator should know that did not fail the drill.
    pub warnings: Vec<String>,
    /// Where the record went (`None` when it could not be written: see `warnings`).
    pub record_key: Option<ObjectKey>,
}

/// Run one drill of `stanza`. Refusals (root, a missing stanza, an unreadable repository)
/// are `Err` and leave nothing behind; from then on the outcome, pass or fail, is recorded
/// in the repository and returned in the report, and the server is stopped and the scratch
/// directory removed (unless `keep`) whatever happened, also on SIGINT or SIGTERM.
pub async fn drill(
    repo: &Repository,
    stanza: &StanzaName,
    opts: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    if rustix::process::geteuid().is_root() {
        return Err(DrillError::RunningAsRoot);
    }
    let mut source = RestoreSource::load(repo, stanza).await?;
    let started = OffsetDateTime::now_utc();
    let clock = Instant::now();
    let mut run = Run {
        record: DrillRecord {
            started: rfc3339(started),
            finished: String::new(),
            duration_seconds: 0.0,
            status: DrillStatus::Failed,
            target: match opts.target {
                DrillTarget::EndOfArchive => TargetKind::EndOfArchive,
                DrillTarget::Time(_) | DrillTarget::Random => TargetKind::Time,
            },
            target_time: match &opts.target {
                DrillTarget::Time(t) => Some(t.pg().to_string()),
                _ => None,
            },
            random: matches!(opts.target, DrillTarget::Random),
            window: None,
            backup: None,
            timeline: None,
            pg_version: None,
            reached: None,
            relations: None,
            sql: opts.sql.clone(),
            sql_rows: None,
            restore_seconds: None,
            recovery_seconds: None,
            bytes_restored: None,
            error: None,
            error_kind: None,
            kept: None,
        },
        warnings: source.warnings.clone(),
        scratch: None,
        server: None,
        bins: None,
    };
    let outcome = tokio::select! {
        r = run.execute(repo, &mut source, opts) => r,
        signal = interrupted() => Err(DrillError::Interrupted { signal }),
    };
    let mut failure = outcome.err();
    let kept = run.clean_up(opts).await;
    let finished = OffsetDateTime::now_utc();
    let mut rec = run.record;
    rec.finished = rfc3339(finished);
    rec.duration_seconds = clock.elapsed().as_secs_f64();
    rec.kept = kept.as_ref().map(|k| k.root.clone());
    match &failure {
        None => rec.status = DrillStatus::Succeeded,
        Some(e) => {
            rec.error = Some(cairn_exit::Failure::from_error(e).message);
            rec.error_kind = Some(e.kind().name().into());
        }
    }
    let mut warnings = run.warnings;
    let record_key = match record::write(repo, stanza, &rec).await {
        Ok(key) => Some(key),
        Err(e) if failure.is_none() => {
            failure = Some(DrillError::Repo(e));
            None
        }
        Err(e) => {
            warnings.push(format!("the drill's outcome could not be recorded: {e}"));
            None
        }
    };
    Ok(DrillReport {
        record: rec,
        failure,
        kept,
        warnings,
        record_key,
    })
}

struct Run {
    record: DrillRecord,
    warnings: Vec<String>,
    scratch: Option<Scratch>,
    server: Option<Server>,
    bins: Option<PgBinaries>,
}

/// How recovery ends for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Promoted,
    Paused,
}

impl Run {
    async fn execute(
        &mut self,
        repo: &Repository,
        source: &mut RestoreSource,
        opts: &DrillOptions,
    ) -> Result<(), DrillError> {
        let Run {
            record,
            warnings,
            scratch: scratch_slot,
            server: server_slot,
            bins: bins_slot,
        } = self;
        let spans = match opts.target {
            DrillTarget::Random => source.commit_spans(repo).await?,
            _ => Vec::new(),
        };
        let (target, timeline) = choose_target(record, &spans, &opts.target)?;
        let request = PlanRequest {
            target,
            timeline,
            set: None,
            db_id: source.db_id(),
        };
        let planned = source.plan(repo, &request).await?;
        warnings.extend(planned.warnings);
        let (plan, manifest) = (planned.plan, planned.manifest);
        record.backup = Some(plan.backup.clone());
        record.timeline = Some(plan.timeline.0);
        record.pg_version = Some(manifest.pg_major);
        let path = std::env::var_os("PATH");
        let bins =
            PgBinaries::find(opts.pg_bin.as_deref(), manifest.pg_major, path.as_deref()).await?;
        let bins = bins_slot.insert(bins);

        let stamp = stamp(OffsetDateTime::now_utc());
        let scratch = scratch_slot.insert(Scratch::create(&opts.scratch, &source.stanza, &stamp)?);
        let want = match plan.target {
            RecoveryTarget::EndOfArchive => Want::Promoted,
            _ => Want::Paused,
        };
        let recovery = RecoverySettings {
            target: plan.target.clone(),
            action: (want == Want::Paused).then_some(TargetAction::Pause),
            timeline: Some(TimelineTarget::Id(plan.timeline)),
            archive_mode: ArchiveMode::Off,
            ..RecoverySettings::new(
                source.restore_command_for(opts.restore_command.clone(), &manifest),
            )
        };
        let mut restore = RestoreOptions::new(scratch.data(), recovery);
        if !manifest.tablespaces.is_empty() {
            scratch.prepare_tablespaces()?;
            for ts in &manifest.tablespaces {
                restore
                    .tablespace_map
                    .insert(ts.oid, scratch.tablespace(ts.oid));
            }
        }
        let t = Instant::now();
        let report =
            cairn_restore::restore_backup(repo, &source.stanza, &manifest, &restore).await?;
        record.restore_seconds = Some(t.elapsed().as_secs_f64());
        record.bytes_restored = Some(report.bytes_written);
        warnings.extend(report.warnings);
        ensure_postgresql_conf(scratch)?;
        scratch.write_access_files()?;

        let t = Instant::now();
        let server = Server::start(bins, &scratch.data(), scratch)
            .await
            .map_err(|e| explain(e, &plan, source))?;
        let server = server_slot.insert(server);
        let client = wait_for(server, want, &opts.connect, opts.timeout)
            .await
            .map_err(|e| explain(e, &plan, source))?;
        record.recovery_seconds = Some(t.elapsed().as_secs_f64());

        let (lsn, commit) = session::replayed(&client)
            .await
            .map_err(|e| session::sql_error("cannot read where recovery stopped", &e))?;
        let lsn = lsn.unwrap_or(plan.consistent_at);
        record.reached = Some(ReachedPoint {
            lsn,
            last_commit: commit.map(|c| c.to_string()),
            end: match want {
                Want::Promoted => RecoveryEnd::Promoted,
                Want::Paused => RecoveryEnd::Paused,
            },
        });
        check_reached(&plan, lsn, commit, source, server)?;
        record.relations = Some(session::relations(&client).await?);
        if let Some(sql) = &opts.sql {
            record.sql_rows = Some(session::run_sql(&client, sql).await?);
        }
        Ok(())
    }

    /// Stop the server and remove the scratch directory (or keep it): whatever happened.
    async fn clean_up(&mut self, opts: &DrillOptions) -> Option<KeptCopy> {
        let mut settings = None;
        if let Some(mut server) = self.server.take() {
            if let Err(e) = server.stop().await {
                self.warnings
                    .push(format!("stopping the drill's server: {e}"));
            }
            settings = Some(server.settings.clone());
        }
        let scratch = self.scratch.take()?;
        if !opts.keep {
            let root = scratch.root.clone();
            if let Err(e) = scratch.remove() {
                self.warnings.push(format!(
                    "the scratch directory {} could not be removed: {e}",
                    root.display()
                ));
            }
            return None;
        }
        let data = scratch.data();
        let log = scratch.log();
        let q = |p: &std::path::Path| sh_quote(&p.to_string_lossy());
        let start = match (&settings, &self.bins) {
            (Some(s), Some(bins)) => {
                let args: Vec<String> = s
                    .settings()
                    .into_iter()
                    .map(|(k, v)| format!("-c {}", sh_quote(&format!("{k}={v}"))))
                    .collect();
                Some(format!(
                    "{} -D {} {} >> {} 2>&1 &",
                    q(&bins.postgres()),
                    q(&data),
                    args.join(" "),
                    q(&log)
                ))
            }
            _ => None,
        };
        let connect = settings.as_ref().map(|s| {
            format!(
                "psql -h {} -p {} -U {} -d {}",
                q(&s.socket),
                s.port,
                sh_quote(&opts.connect.user),
                sh_quote(&opts.connect.database)
            )
        });
        let stop =
            settings
                .as_ref()
                .map(|_| match self.bins.as_ref().and_then(PgBinaries::pg_ctl) {
                    Some(pg_ctl) => format!("{} stop -D {} -m fast", q(&pg_ctl), q(&data)),
                    None => format!("kill -INT $(head -1 {})", q(&data.join("postmaster.pid"))),
                });
        Some(KeptCopy {
            root: scratch.root.clone(),
            data,
            log,
            start,
            connect,
            stop,
        })
    }
}

/// The planner's target for what was asked; `--random` draws it here.
fn choose_target(
    record: &mut DrillRecord,
    spans: &[CommitSpan],
    asked: &DrillTarget,
) -> Result<(RecoveryTarget, TimelineTarget), DrillError> {
    let chosen = match asked {
        DrillTarget::EndOfArchive => (RecoveryTarget::EndOfArchive, TimelineTarget::Latest),
        DrillTarget::Time(t) => (RecoveryTarget::Time(*t), TimelineTarget::Latest),
        DrillTarget::Random => {
            let mut rng = rand::rng();
            let (at, span) = target::pick(spans, |n| rand::Rng::random_range(&mut rng, 0..=n))
                .ok_or(DrillError::NoWindow)?;
            record.window = Some(WindowRecord {
                timeline: span.window.timeline,
                backup: span.window.backup.clone(),
                from: span.window.from.to_string(),
                to: span.last.to_string(),
            });
            let time = TargetTime {
                at: at.to_offset_datetime(),
            };
            (
                RecoveryTarget::Time(time),
                TimelineTarget::Id(span.window.timeline),
            )
        }
    };
    if let RecoveryTarget::Time(t) = &chosen.0 {
        record.target = TargetKind::Time;
        record.target_time = Some(t.pg().to_string());
    }
    Ok(chosen)
}

/// Poll (with a deadline) until recovery has ended as `want` says, or the server stops.
async fn wait_for(
    server: &mut Server,
    want: Want,
    who: &ConnectAs,
    timeout: Duration,
) -> Result<Client, DrillError> {
    let deadline = Instant::now() + timeout;
    let mut client: Option<Client> = None;
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(status) = server.exited()? {
            return Err(server.stopped_error(status));
        }
        if client.is_none() {
            // Refused until recovery is consistent ("the database system is starting up").
            client = session::connect(&server.settings, who).await.ok();
        }
        if let Some(c) = &client {
            match session::recovery_state(c).await {
                Ok(s) => match want {
                    Want::Promoted if !s.in_recovery => return Ok(client.take().expect("set")),
                    Want::Paused if s.paused => return Ok(client.take().expect("set")),
                    Want::Paused if !s.in_recovery => {
                        return Err(DrillError::NotPaused {
                            target: String::new(),
                            log_tail: server.log_tail(),
                        });
                    }
                    _ => {}
                },
                // The connection went: look at the server again.
                Err(_) => client = None,
            }
        }
        if Instant::now() >= deadline {
            return Err(DrillError::Timeout {
                what: "reach the recovery target",
                waited: timeout,
                log_tail: server.log_tail(),
            });
        }
        tokio::select! {
            status = server.wait_exit() => return Err(server.stopped_error(status?)),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Check the point recovery reached against the plan: to the end of the archive it must
/// reach the last segment the catalog lists and replay its last commit; at a time it must
/// not have replayed a commit after it.
fn check_reached(
    plan: &Plan,
    lsn: cairn_pgformat::Lsn,
    commit: Option<PgTimestamp>,
    source: &RestoreSource,
    server: &Server,
) -> Result<(), DrillError> {
    match &plan.target {
        RecoveryTarget::EndOfArchive => {
            let last_segment_start = plan
                .wal
                .last()
                .map(|r| r.last.start_lsn(segment_size(source)))
                .unwrap_or(plan.consistent_at);
            let short_of_commit =
                matches!((plan.last_commit, commit), (Some(want), got) if got < Some(want));
            if lsn < last_segment_start || short_of_commit {
                return Err(DrillError::ShortOfArchive {
                    reached: lsn,
                    reached_commit: commit,
                    wal_end: plan.wal_end,
                    expected_commit: plan.last_commit,
                    log_tail: server.log_tail(),
                });
            }
        }
        RecoveryTarget::Time(t) => {
            if let Some(c) = commit
                && c > t.pg()
            {
                return Err(DrillError::PastTarget {
                    commit: c,
                    target: t.pg().to_string(),
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// Fill in what only the plan knows: the target, and the segment recovery was missing.
fn explain(mut e: DrillError, plan: &Plan, source: &RestoreSource) -> DrillError {
    match &mut e {
        DrillError::EndedBeforeTarget {
            target, missing, ..
        } => {
            *target = plan.target_description();
            // The server reported the last segment it fetched: the next one was missing.
            let seg = segment_size(source);
            *missing = missing
                .take()
                .and_then(|n| n.parse::<SegmentName>().ok())
                .map(|s| s.next(seg).to_string())
                .or_else(|| plan.wal.first().map(|r| r.first.to_string()));
        }
        DrillError::NotPaused { target, .. } => *target = plan.target_description(),
        _ => {}
    }
    e
}

/// The stanza's WAL segment size, from any segment the catalog summarized.
fn segment_size(source: &RestoreSource) -> WalSegmentSize {
    source
        .wal
        .entries()
        .find_map(|e| match &e.detail {
            WalDetail::Segment { summary } => Some(summary.seg_size()),
            _ => None,
        })
        .or_else(|| source.wal.pages().values().next().map(|p| p.seg_size))
        .unwrap_or(WalSegmentSize::DEFAULT)
}

/// Debian's clusters keep `postgresql.conf` outside the data directory, so the backup has
/// none; PostgreSQL will not start without one.
fn ensure_postgresql_conf(scratch: &Scratch) -> Result<(), DrillError> {
    let conf = scratch.data().join("postgresql.conf");
    if conf.exists() {
        return Ok(());
    }
    std::fs::write(
        &conf,
        "# Written by cairn drill: the backup has no postgresql.conf (the cluster keeps it\n\
         # outside its data directory). The drill's settings are on the server's command line.\n",
    )
    .map_err(|e| DrillError::io("write", &conf, e))
}

/// Resolves on SIGINT or SIGTERM (never, when the handlers cannot be installed).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// RFC 3339 UTC with microseconds, as `info` shows every other time.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `20261201T101500Z`: the scratch directory's suffix.
fn stamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
