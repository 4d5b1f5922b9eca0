//! What each kind of job does, in-process, through the library crates: a backup through
//! `cairn_backup::take` (the same orchestration as `cairn backup`, under the stanza's
//! backup lock), expire through `cairn_expire`, verify through `cairn_verify`, drill
//! through `cairn_drill`. Each stanza's worker runs its jobs one at a time.

use std::sync::Arc;

use cairn_backup::{TakeObserver, TakeOptions};
use cairn_basebackup::ConnParams;
use cairn_config::StanzaConfig;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{BackupManifest, StanzaName};
use serde_json::json;

use crate::context::Context;
use crate::history;
use crate::job::{Job, JobKind};

/// Run `stanza`'s jobs, one at a time, until shutdown and its queue is empty.
pub async fn stanza_worker(ctx: Arc<Context>, stanza: StanzaName) {
    loop {
        // Registered before the state is looked at: no wake-up is missed.
        let changed = ctx.jobs.notified();
        match ctx.jobs.start_next(stanza.as_str(), now()) {
            Some(job) => run_job(&ctx, &stanza, job).await,
            None if !ctx.jobs.accepting() => return,
            None => changed.await,
        }
    }
}

async fn run_job(ctx: &Context, stanza: &StanzaName, mut job: Job) {
    tracing::info!(job = %job.id, kind = %job.kind, stanza = %stanza, origin = ?job.origin, "job started");
    // Stored as running first: after a crash the history shows it was cut short.
    if let Err(e) = history::save(&ctx.repo, stanza, &job).await {
        tracing::warn!(job = %job.id, error = %e, "could not store the job in the repository's history");
    }
    let outcome = execute(ctx, stanza, &job).await;
    match outcome {
        Ok(result) => {
            job.succeed(result, now());
            tracing::info!(job = %job.id, kind = %job.kind, stanza = %stanza, "job succeeded");
        }
        Err(f) => {
            job.fail(&f, now());
            tracing::warn!(job = %job.id, kind = %job.kind, stanza = %stanza, error = %f.message, "job failed");
        }
    }
    job.received_bytes = ctx.jobs.get(&job.id).and_then(|j| j.received_bytes);
    ctx.jobs.update(&job);
    if let Err(e) = history::save(&ctx.repo, stanza, &job).await {
        tracing::warn!(job = %job.id, error = %e, "could not store the job in the repository's history");
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

async fn execute(
    ctx: &Context,
    stanza: &StanzaName,
    job: &Job,
) -> Result<serde_json::Value, Failure> {
    match job.kind {
        JobKind::Backup(t) => {
            let st = ctx.stanza_config(stanza)?;
            let mut opts = TakeOptions::new(conn_params(st));
            opts.requested = Some(t);
            opts.abandon = Some(ctx.abandon.clone());
            let observer = JobObserver {
                ctx,
                id: job.id.clone(),
            };
            let m = cairn_backup::take(&ctx.repo, stanza, &opts, &observer)
                .await
                .map_err(|e| Failure::from_error(&e))?;
            let mut result = backup_result(&m);
            if ctx.cfg.retention.auto {
                result["expire"] = crate::expire::after_backup(ctx, stanza).await;
            }
            Ok(result)
        }
        JobKind::Verify => {
            let opts = cairn_verify::VerifyOptions::default();
            let mut abandon = ctx.abandon.clone();
            let report = tokio::select! {
                r = cairn_verify::verify(&ctx.repo, stanza, &opts) => r.map_err(|e| Failure::from_error(&e))?,
                Ok(_) = abandon.wait_for(|a| *a) => return Err(abandoned()),
            };
            let summary = report.summary();
            match report.status {
                cairn_verify::Status::Ok => Ok(json!({ "status": "ok", "summary": summary })),
                cairn_verify::Status::Damaged => Err(Failure::new(ErrorKind::Corrupt, summary)
                    .with_hint(
                        "`cairn verify --output json` names each damaged object and what it costs",
                    )),
            }
        }
        JobKind::Expire => crate::expire::run(ctx, stanza).await,
        JobKind::Drill => drill(ctx, stanza, job).await,
    }
}

/// A restore drill through `cairn-drill`, as `cairn drill` runs it (the outcome is
/// recorded in the repository either way). Not abandoned at shutdown: the drill stops its
/// server and removes its scratch directory itself, which dropping it half-way would not.
async fn drill(
    ctx: &Context,
    stanza: &StanzaName,
    job: &Job,
) -> Result<serde_json::Value, Failure> {
    let req = job.drill.clone().unwrap_or_default();
    let target = match &req.target_time {
        Some(t) => cairn_drill::DrillTarget::Time(cairn_target::TargetTime::parse(t)?),
        None => cairn_drill::DrillTarget::EndOfArchive,
    };
    let mut opts = cairn_drill::DrillOptions::from_config(&ctx.cfg, stanza, target)?;
    opts.sql = req.sql.clone();
    let report = cairn_drill::drill(&ctx.repo, stanza, &opts).await?;
    for w in &report.warnings {
        tracing::warn!(job = %job.id, "drill: {w}");
    }
    match report.failure {
        None => Ok(serde_json::to_value(&report.record).unwrap_or_default()),
        Some(e) => Err(Failure::from_error(&e)),
    }
}

fn abandoned() -> Failure {
    Failure::new(
        ErrorKind::Refused,
        "abandoned: cairn serve stopped before this job finished",
    )
}

/// A committed backup as the job's result shows it.
fn backup_result(m: &BackupManifest) -> serde_json::Value {
    json!({
        "label": m.label.to_string(),
        "type": m.backup_type.to_string(),
        "parent": m.parent.as_ref().map(|p| p.to_string()),
        "timeline": m.timeline.0,
        "start": { "lsn": m.start_lsn.to_string(), "time": m.start_time },
        "stop": { "lsn": m.stop_lsn.to_string(), "time": m.stop_time },
        "db_size": m.db_size,
        "bytes_received": m.bytes_received,
        "repo_added": m.repo_added,
    })
}

/// The stanza's cluster over the replication protocol.
fn conn_params(st: &StanzaConfig) -> ConnParams {
    ConnParams {
        host: st.pg_host.clone(),
        port: st.pg_port,
        user: st.pg_user.clone(),
        password: st.pg_password.as_ref().map(|p| p.expose().to_string()),
        sslmode: st.pg_sslmode.clone(),
        application_name: "cairn serve".into(),
    }
}

/// What a backup job tells: warnings go to the log, bytes to the job.
struct JobObserver<'c> {
    ctx: &'c Context,
    id: String,
}

impl TakeObserver for JobObserver<'_> {
    fn warning(&self, text: &str) {
        tracing::warn!(job = %self.id, "{text}");
    }

    fn notice(&self, notice: cairn_backup::TakeNotice<'_>) {
        match notice {
            cairn_backup::TakeNotice::PassedOver(p) => {
                tracing::warn!(job = %self.id, "backup {p} cannot be used as a parent; passed over")
            }
            cairn_backup::TakeNotice::PromotedToFull => {
                tracing::info!(job = %self.id, "no full backup of this cluster exists yet: taking a full backup")
            }
            cairn_backup::TakeNotice::Starting { plan, .. } => {
                tracing::info!(job = %self.id, label = %plan.label, "backup starting")
            }
            cairn_backup::TakeNotice::Streaming { .. } => {}
        }
    }

    fn received(&self, total: u64) {
        self.ctx.jobs.progress(&self.id, total);
    }
}
