//! `cairn expire`, `cairn pin` / `cairn unpin`, and the expire a backup runs with
//! `[retention] auto = true`. The work is in `cairn-expire`; this maps the configuration,
//! calls, and prints.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use cairn_config::{Config, RetentionConfig};
use cairn_exit::{ErrorKind, Failure};
use cairn_expire::{ExpireOptions, Step};
use cairn_repo::{BackupLabel, Repository, StanzaName};
use cairn_retention::RetentionRules;

use crate::args::ProgressMode;
use crate::progress::{self, Snapshot};
use crate::quantity::count;
use crate::stanza::stanza_name;

/// The rules `[retention]` sets.
pub fn rules(r: &RetentionConfig) -> RetentionRules {
    cairn_expire::configured_rules(r)
}

fn label(text: &str) -> Result<BackupLabel, Failure> {
    BackupLabel::new(text).map_err(|m| {
        Failure::new(ErrorKind::Usage, m)
            .with_hint("a label looks like 20261122-140500F; `cairn info` lists them")
    })
}

fn options(cfg: &Config, dry_run: bool, set: Option<BackupLabel>) -> ExpireOptions {
    ExpireOptions {
        dry_run,
        set,
        gc_grace: cfg.retention.gc_grace.as_duration(),
        pause: test_pause(),
        ..Default::default()
    }
}

/// Debug builds only: `CAIRN_TEST_EXPIRE_PAUSE=STEP:N` stops the run for good at the N-th
/// time it reaches STEP, so tests can kill it at a known point.
fn test_pause() -> Option<(Step, usize)> {
    if !cfg!(debug_assertions) {
        return None;
    }
    Step::parse_pause(&std::env::var("CAIRN_TEST_EXPIRE_PAUSE").ok()?)
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    dry_run: bool,
    set: Option<&str>,
    mode: ProgressMode,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let set = set.map(label).transpose()?;
    let repo = cairn_startup::open_repo(cfg).await?;
    expire(cfg, &repo, &name, options(cfg, dry_run, set), mode).await?;
    Ok(ExitCode::SUCCESS)
}

/// Plan, print, and (unless a dry run) execute.
pub async fn expire(
    cfg: &Config,
    repo: &Repository,
    name: &StanzaName,
    opts: ExpireOptions,
    mode: ProgressMode,
) -> Result<(), Failure> {
    let notify = |w: &str| eprintln!("cairn: WARNING: {w}");
    let counters = opts.progress.clone();
    let display = (!opts.dry_run).then(|| {
        progress::start(mode, &format!("expire {name}"), move || Snapshot {
            done: counters.pack_bytes.load(Ordering::Relaxed),
            total: None,
            phase: Some(count(
                counters.objects.load(Ordering::Relaxed),
                "object deleted",
                "objects deleted",
            )),
        })
    });
    let result = cairn_expire::expire(repo, name, &rules(&cfg.retention), &opts, &notify).await;
    if let Some(display) = display {
        display.finish(result.is_ok()).await;
    }
    let outcome = result.map_err(|e| Failure::from_error(&e))?;
    for line in outcome.plan.lines(opts.dry_run) {
        match line.strip_prefix("WARNING: ") {
            Some(w) => eprintln!("cairn: WARNING: {w}"),
            None => println!("{line}"),
        }
    }
    if let Some(report) = &outcome.report {
        println!("{}", report.summary());
    }
    Ok(())
}

/// After a successful backup with `[retention] auto = true`.
pub async fn after_backup(
    cfg: &Config,
    repo: &Repository,
    name: &StanzaName,
    mode: ProgressMode,
) -> Result<(), Failure> {
    if !cfg.retention.auto {
        return Ok(());
    }
    expire(cfg, repo, name, options(cfg, false, None), mode)
        .await
        .map_err(|f| {
            f.context("the backup succeeded, but the expire after it ([retention] auto) failed")
        })
}

pub async fn pin(
    cfg: &Config,
    stanza: Option<&str>,
    text: &str,
    pinned: bool,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let label = label(text)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    repo.require_stanza(&name).await?;
    repo.set_pinned(&name, &label, pinned).await?;
    if pinned {
        println!("backup {label} is pinned: expire keeps it until `cairn unpin {label}`");
    } else {
        println!("backup {label} is no longer pinned: [retention] decides about it again");
    }
    Ok(ExitCode::SUCCESS)
}
