//! The HTTP side (DESIGN 2b), on axum: `/healthz`, `/metrics` and `/` for anyone who can
//! reach the listener (read-only), `/api/v1/...` with the bearer token. Errors are JSON
//! `{"error": "...", "hint": "..."}` with a status that says what kind of error it is.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use cairn_exit::{ErrorKind, Failure};
use cairn_info::StanzaDoc;
use cairn_planner::PlanRequest;
use cairn_repo::{BackupLabel, BackupType, StanzaName};
use cairn_restore::{ArchiveMode, DryRun, RecoverySettings, RestoreCommand};
use cairn_target::{RecoveryTarget, RestorePointName, TargetAction, TargetTime, TimelineTarget};
use serde::Deserialize;
use serde_json::json;

use crate::context::Context;
use crate::job::{DrillRequest, Job, JobKind, Origin, plausible_id};
use crate::queue::Refusal;
use crate::status::{Checked, PageStanza};

type Ctx = State<Arc<Context>>;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    hint: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(h) = self.hint {
            body["hint"] = h.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// A library failure as an HTTP answer: its kind decides the status.
impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        let status = match f.kind {
            ErrorKind::Usage | ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Stanza => StatusCode::NOT_FOUND,
            ErrorKind::Unreachable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Locked | ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RepoUnavailable | ErrorKind::Postgres => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            error: f.message,
            hint: f.hint,
        }
    }
}

fn failure<E: cairn_exit::Classify>(e: E) -> ApiError {
    Failure::from_error(&e).into()
}

pub fn router(ctx: Arc<Context>) -> Router {
    let api = Router::new()
        .route("/stanzas", get(stanzas))
        .route("/stanzas/{stanza}", get(stanza))
        .route("/stanzas/{stanza}/backups", get(backups).post(post_backup))
        .route("/stanzas/{stanza}/drills", post(post_drill))
        .route("/stanzas/{stanza}/jobs", get(stanza_jobs))
        .route("/stanzas/{stanza}/plan", get(plan))
        .route("/jobs/{id}", get(job))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API path") })
        .layer(middleware::from_fn_with_state(ctx.clone(), authorize));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found") })
        .with_state(ctx)
}

/// `/api/*` needs `Authorization: Bearer TOKEN`.
async fn authorize(State(ctx): Ctx, req: Request, next: Next) -> Response {
    let Some(token) = &ctx.token else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the API is disabled: no token is configured",
        )
        .hint("set [serve] token-file to a file holding the bearer token, then restart cairn serve")
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !token.admits(given) {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            .hint("send Authorization: Bearer <the content of [serve] token-file>")
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a header value"),
        );
        return r;
    }
    next.run(req).await
}

fn known(ctx: &Context, name: &str) -> Result<StanzaName, ApiError> {
    ctx.stanza(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such stanza in this configuration",
        )
        .hint("GET /api/v1/stanzas lists them")
    })
}

async fn stanzas(State(ctx): Ctx) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let mut docs = Vec::new();
    for s in &ctx.stanzas {
        docs.push(StanzaDoc::gather(&ctx.repo, s).await.map_err(failure)?);
    }
    Ok(axum::Json(json!({ "stanzas": docs })))
}

async fn stanza(
    State(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<axum::Json<StanzaDoc>, ApiError> {
    let s = known(&ctx, &name)?;
    Ok(axum::Json(
        StanzaDoc::gather(&ctx.repo, &s).await.map_err(failure)?,
    ))
}

async fn backups(
    State(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let s = known(&ctx, &name)?;
    let doc = StanzaDoc::gather(&ctx.repo, &s).await.map_err(failure)?;
    Ok(axum::Json(json!({ "backups": doc.backups })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    #[serde(rename = "type")]
    backup_type: Option<String>,
}

/// Parse an optional JSON body (empty means all defaults).
fn body<T: Default + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is not what this path takes: {e}"),
        )
    })
}

async fn post_backup(
    State(ctx): Ctx,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let s = known(&ctx, &name)?;
    let b: BackupBody = body(&bytes)?;
    let t = match b.backup_type.as_deref() {
        None | Some("incr") => BackupType::Incr,
        Some("full") => BackupType::Full,
        Some("diff") => BackupType::Diff,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "type must be full, diff or incr",
            ));
        }
    };
    // Another process (a `cairn backup` from cron) holding the lock with a live
    // heartbeat: 409 now, naming it. A holder that stopped beating is left to the job,
    // which takes such a lock over (decision 011).
    let target = cairn_repo::LockTarget::Backup(s.clone());
    if ctx.jobs.busy(s.as_str(), JobKind::Backup(t)).is_none()
        && let Some(holder) = ctx.repo.lock_holder(&target).await.map_err(failure)?
        && beating(&holder.heartbeat)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "a backup of stanza '{s}' is running: `cairn {}` on host {} (pid {})",
                holder.command, holder.owner.host, holder.owner.pid
            ),
        ));
    }
    let job = Job::new(
        JobKind::Backup(t),
        s.as_str(),
        Origin::Api,
        time::OffsetDateTime::now_utc(),
    );
    accept(&ctx, job)
}

/// Whether a lock heartbeat is recent enough that its holder is surely alive (holders
/// beat every 30 s).
fn beating(heartbeat: &str) -> bool {
    crate::status::parse_time(heartbeat)
        .is_some_and(|t| time::OffsetDateTime::now_utc() - t < time::Duration::seconds(90))
}

async fn post_drill(
    State(ctx): Ctx,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let s = known(&ctx, &name)?;
    let req: DrillRequest = body(&bytes)?;
    if let Some(t) = &req.target_time {
        TargetTime::parse(t).map_err(failure)?;
    }
    let mut job = Job::new(
        JobKind::Drill,
        s.as_str(),
        Origin::Api,
        time::OffsetDateTime::now_utc(),
    );
    job.drill = Some(req);
    accept(&ctx, job)
}

/// Queue a job: 202 with the job, 409 while one of its class waits or runs.
fn accept(ctx: &Context, job: Job) -> Result<Response, ApiError> {
    let kind = job.kind;
    match ctx.jobs.submit(job) {
        Ok(job) => {
            tracing::info!(job = %job.id, kind = %job.kind, stanza = %job.stanza, "job accepted from the API");
            let location = format!("/api/v1/jobs/{}", job.id);
            let mut r = (StatusCode::ACCEPTED, axum::Json(job)).into_response();
            if let Ok(v) = location.parse() {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Err(Refusal::Busy { id, kind: other }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{other} job {id} of this stanza is still waiting or running"),
        )
        .hint(format!(
            "GET /api/v1/jobs/{id} shows when it ends; then ask for the {kind} again"
        ))),
        Err(Refusal::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cairn serve is shutting down and accepts no new jobs",
        )),
        Err(Refusal::UnknownStanza) => Err(ApiError::new(StatusCode::NOT_FOUND, "no such stanza")),
    }
}

async fn job(State(ctx): Ctx, Path(id): Path<String>) -> Result<axum::Json<Job>, ApiError> {
    if !plausible_id(&id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such job"));
    }
    ctx.jobs.get(&id).map(axum::Json).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no such job")
            .hint("the history keeps the newest jobs of each stanza")
    })
}

async fn stanza_jobs(
    State(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let s = known(&ctx, &name)?;
    Ok(axum::Json(
        json!({ "jobs": ctx.jobs.of_stanza(s.as_str()) }),
    ))
}

/// `restore --dry-run` for the stanza: the target from the query (`target-time`,
/// `target-lsn`, `target-xid`, `target-name`, `target=immediate`; `target-timeline`,
/// `set`, `target-action`, `archive-mode`, `pg-data`).
async fn plan(
    State(ctx): Ctx,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<DryRun>, ApiError> {
    let s = known(&ctx, &name)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    const KNOWN: [&str; 10] = [
        "target-time",
        "target-lsn",
        "target-xid",
        "target-name",
        "target",
        "target-timeline",
        "set",
        "target-action",
        "archive-mode",
        "pg-data",
    ];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("unknown query parameter '{k}'"))
            .hint(format!("this path takes {}", KNOWN.join(", "))));
    }
    let mut given = Vec::new();
    if let Some(t) = q.get("target-time") {
        given.push(RecoveryTarget::Time(TargetTime::parse(t).map_err(failure)?));
    }
    if let Some(l) = q.get("target-lsn") {
        let lsn = l
            .parse()
            .map_err(|_| bad("target-lsn is not an LSN like 0/16B3748".into()))?;
        given.push(RecoveryTarget::Lsn(lsn));
    }
    if let Some(x) = q.get("target-xid") {
        let xid = x
            .parse()
            .map_err(|_| bad("target-xid is not a transaction id".into()))?;
        given.push(RecoveryTarget::Xid(xid));
    }
    if let Some(n) = q.get("target-name") {
        given.push(RecoveryTarget::Name(
            RestorePointName::new(n).map_err(failure)?,
        ));
    }
    match q.get("target").map(String::as_str) {
        None => {}
        Some("immediate") => given.push(RecoveryTarget::Immediate),
        Some(_) => return Err(bad("target takes only 'immediate'".into())),
    }
    let target = match given.len() {
        0 => RecoveryTarget::EndOfArchive,
        1 => given.remove(0),
        _ => return Err(bad("give at most one recovery target".into())),
    };
    let timeline: TimelineTarget = match q.get("target-timeline") {
        Some(t) => t.parse().map_err(failure)?,
        None => TimelineTarget::Latest,
    };
    let set = match q.get("set") {
        Some(l) => Some(BackupLabel::new(l).map_err(|m| bad(format!("set: {m}")))?),
        None => None,
    };
    let action = match q.get("target-action").map(String::as_str) {
        None => (target != RecoveryTarget::EndOfArchive).then_some(TargetAction::Pause),
        Some("pause") => Some(TargetAction::Pause),
        Some("promote") => Some(TargetAction::Promote),
        Some("shutdown") => Some(TargetAction::Shutdown),
        Some(_) => return Err(bad("target-action is pause, promote or shutdown".into())),
    };
    let archive_mode = match q.get("archive-mode").map(String::as_str) {
        None | Some("preserve") => ArchiveMode::Preserve,
        Some("off") => ArchiveMode::Off,
        Some(_) => return Err(bad("archive-mode is preserve or off".into())),
    };
    let mut source = cairn_restore::RestoreSource::load(&ctx.repo, &s)
        .await
        .map_err(failure)?;
    let request = PlanRequest {
        db_id: source.db_id_for(set.as_ref()),
        target,
        timeline,
        set,
    };
    let planned = source.plan(&ctx.repo, &request).await.map_err(failure)?;
    for w in source.warnings.iter().chain(&planned.warnings) {
        tracing::warn!(stanza = %s, "{w}");
    }
    let plan = planned.plan;
    let exe = std::env::current_exe().ok();
    let recovery = RecoverySettings {
        restore_command: source.restore_command_for(
            RestoreCommand::archive_get(exe.as_deref(), &ctx.cfg.source, &s),
            &planned.manifest,
        ),
        target: plan.target.clone(),
        action,
        timeline: Some(TimelineTarget::Id(plan.timeline)),
        standby: false,
        archive_mode,
    };
    let pg_data = match q.get("pg-data") {
        Some(p) => std::path::PathBuf::from(p),
        None => ctx
            .stanza_config(&s)
            .map_err(ApiError::from)?
            .pg_data
            .clone(),
    };
    Ok(axum::Json(DryRun::new(&plan, &recovery, &pg_data)))
}

async fn statuses(ctx: &Context) -> Result<Vec<Checked>, ApiError> {
    let thresholds = cairn_status::Thresholds::from_config(&ctx.cfg.health);
    let now = cairn_status::UtcTime::now();
    let mut out = Vec::new();
    for s in &ctx.stanzas {
        out.push(
            Checked::gather(&ctx.repo, s, &thresholds, now)
                .await
                .map_err(failure)?,
        );
    }
    Ok(out)
}

/// 200 when every stanza meets `[health]`, else 503 with the reasons.
async fn healthz(State(ctx): Ctx) -> Response {
    let all = match statuses(&ctx).await {
        Ok(s) => s,
        Err(e) => {
            let body = json!({ "healthy": false, "error": e.error, "stanzas": [] });
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
    };
    let healthy = all.iter().all(|c| c.health.healthy);
    let stanzas: Vec<_> = all.iter().map(Checked::healthz_entry).collect();
    let body = json!({ "healthy": healthy, "stanzas": stanzas });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(ctx): Ctx) -> Result<Response, ApiError> {
    let all = statuses(&ctx).await?;
    let text = crate::status::metrics_text(&all);
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        cairn_status::metrics::CONTENT_TYPE
            .parse()
            .expect("a header value"),
    );
    Ok((h, text).into_response())
}

async fn page(State(ctx): Ctx) -> Result<Html<String>, ApiError> {
    let mut all = Vec::new();
    for checked in statuses(&ctx).await? {
        let doc = cairn_info::StanzaDoc::gather(&ctx.repo, &checked.status.stanza)
            .await
            .map_err(failure)?;
        all.push(PageStanza { checked, doc });
    }
    let jobs: Vec<Vec<Job>> = ctx
        .stanzas
        .iter()
        .map(|s| ctx.jobs.of_stanza(s.as_str()))
        .collect();
    Ok(Html(crate::page::render(
        &all,
        &jobs,
        time::OffsetDateTime::now_utc(),
    )))
}
