//! Expire jobs through `cairn-expire`, with the rules of `[retention]`, under the stanza's
//! maintenance lock (as `cairn expire`). A backup with `[retention] auto = true` runs one
//! after it, once its backup lock is given back; what it did is the backup job's
//! `result.expire`.

use cairn_exit::Failure;
use cairn_expire::ExpireOptions;
use cairn_repo::StanzaName;
use serde_json::json;

use crate::context::Context;

/// An `expire` job.
pub async fn run(ctx: &Context, stanza: &StanzaName) -> Result<serde_json::Value, Failure> {
    let opts = ExpireOptions {
        gc_grace: ctx.cfg.retention.gc_grace.as_duration(),
        ..Default::default()
    };
    let rules = cairn_expire::configured_rules(&ctx.cfg.retention);
    let notify = |w: &str| tracing::warn!(stanza = %stanza, "expire: {w}");
    let outcome = cairn_expire::expire(&ctx.repo, stanza, &rules, &opts, &notify)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    let summary = outcome
        .report
        .as_ref()
        .map(|r| r.summary())
        .unwrap_or_default();
    Ok(json!({ "status": "succeeded", "summary": summary }))
}

/// After a successful backup with `[retention] auto = true`: what the expire did.
pub async fn after_backup(ctx: &Context, stanza: &StanzaName) -> serde_json::Value {
    match run(ctx, stanza).await {
        Ok(v) => v,
        Err(f) => json!({ "status": "failed", "error": f.message }),
    }
}
