//! Expire jobs: the seam for `cairn-expire` (being built on its own branch). Until it is
//! part of this build, an expire job fails saying so, and a backup with
//! `[retention] auto = true` reports that no expire ran.

use cairn_exit::{ErrorKind, Failure};
use cairn_repo::StanzaName;
use serde_json::json;

use crate::context::Context;

fn unavailable() -> Failure {
    Failure::new(
        ErrorKind::Unsupported,
        "expire is not part of this build of cairn yet",
    )
    .with_hint("see the project's open issues for `cairn expire`")
}

/// An `expire` job.
pub async fn run(_ctx: &Context, _stanza: &StanzaName) -> Result<serde_json::Value, Failure> {
    Err(unavailable())
}

/// After a successful backup with `[retention] auto = true`: what the expire did, as the
/// backup job's `result.expire`.
pub async fn after_backup(ctx: &Context, stanza: &StanzaName) -> serde_json::Value {
    match run(ctx, stanza).await {
        Ok(v) => v,
        Err(f) => json!({ "status": "failed", "error": f.message }),
    }
}
