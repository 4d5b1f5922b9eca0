//! `cairn-expire`: `cairn expire`. Plan, then execute (docs/decisions/014-expire-and-gc.md).
//!
//! [`plan`] reads the repository and decides, changing nothing:
//! - which backups go ([`backups`]: `[retention]` through `cairn-retention`, or exactly
//!   `--set`; a pinned backup never goes);
//! - which archived WAL goes, per generation and timeline ([`wal`]);
//! - garbage collection of packs, two-phase ([`gc`]): unreferenced packs are condemned,
//!   condemned ones deleted by a later run after `gc-grace`, mostly-garbage ones repacked.
//!
//! [`execute`] carries a plan out in an order that leaves every listed backup restorable
//! if it is killed at any point; a rerun finishes the job. [`expire`] does both under the
//! stanza's maintenance lock (a dry run takes no lock and changes nothing).
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository) -> Result<(), cairn_expire::ExpireError> {
//! use cairn_expire::{ExpireOptions, expire};
//! use cairn_retention::RetentionRules;
//! let stanza = cairn_repo::StanzaName::new("main").unwrap();
//! let rules = RetentionRules { full: Some(2), ..Default::default() };
//! let opts = ExpireOptions { dry_run: true, ..Default::default() };
//! let outcome = expire(repo, &stanza, &rules, &opts, &|w| eprintln!("{w}")).await?;
//! for line in outcome.plan.lines(true) {
//!     println!("{line}");
//! }
//! # Ok(()) }
//! ```

pub mod backups;
mod error;
mod execute;
pub mod gc;
mod plan;
mod render;
pub mod wal;

pub use error::ExpireError;
pub use execute::{ExpireReport, execute};
pub use plan::{ExpireOptions, ExpirePlan, ExpireProgress, GC_GRACE, RunningBackup, Step, plan};

use cairn_repo::lock::{LockOptions, LockTarget};
use cairn_repo::{Repository, StanzaName};
use cairn_retention::RetentionRules;

/// The rules `[retention]` sets, for `cairn expire` and `cairn serve` alike.
pub fn configured_rules(r: &cairn_config::RetentionConfig) -> RetentionRules {
    RetentionRules {
        full: r.full,
        diff: r.diff,
        recovery_window: r.recovery_window.map(|d| d.as_duration()),
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
    }
}

/// What a run decided and, unless it was a dry run, did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: ExpirePlan,
    /// `None` for a dry run.
    pub report: Option<ExpireReport>,
}

/// Plan and (unless `opts.dry_run`) execute under the stanza's maintenance lock.
/// `notify` receives warnings: a lock taken over from a gone holder, a pack that could not
/// be repacked, a lock that could not be given back.
pub async fn expire(
    repo: &Repository,
    stanza: &StanzaName,
    rules: &RetentionRules,
    opts: &ExpireOptions,
    notify: &(dyn Fn(&str) + Send + Sync),
) -> Result<Outcome, ExpireError> {
    let now = time::OffsetDateTime::now_utc();
    if opts.dry_run {
        let plan = plan(repo, stanza, rules, opts, now).await?;
        return Ok(Outcome { plan, report: None });
    }
    let guard = repo
        .lock(
            LockTarget::Maintenance(stanza.clone()),
            "expire",
            &LockOptions::default(),
        )
        .await?;
    if let Some(t) = guard.takeover() {
        notify(&t.to_string());
    }
    let watch = guard.watch();
    let result = async {
        let plan = plan(repo, stanza, rules, opts, now).await?;
        let report = execute(repo, &plan, Some(&watch), opts, notify).await?;
        Ok(Outcome {
            plan,
            report: Some(report),
        })
    }
    .await;
    let target = guard.target().to_string();
    if let Err(e) = guard.release().await {
        notify(&format!("could not release {target}: {e}"));
    }
    result
}
