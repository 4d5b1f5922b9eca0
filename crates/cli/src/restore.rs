//! `cairn restore`: plan (cairn-planner), refuse what cannot be reached before writing
//! anything, then restore the chosen backup (cairn-restore) and configure recovery.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use cairn_config::{Config, Env};
use cairn_exit::{ErrorKind, Failure};
use cairn_pgformat::Lsn;
use cairn_planner::PlanRequest;
use cairn_repo::BackupLabel;
use cairn_restore::{ArchiveMode, RecoverySettings, RestoreCommand, RestoreOptions, RestoreSource};
use cairn_target::{RecoveryTarget, RestorePointName, TargetAction, TargetTime, TimelineTarget};

use crate::args::{ActionArg, ArchiveModeArg, ProgressMode, RestoreArgs, TargetArg};
use crate::progress::{self, Snapshot};
use crate::restore_output;
use crate::stanza::stanza_name;

fn parse_tablespace_map(items: &[String]) -> Result<BTreeMap<u32, PathBuf>, Failure> {
    let mut map = BTreeMap::new();
    for item in items {
        let bad = || {
            Failure::new(ErrorKind::Usage, format!("--tablespace-map '{item}' is not OID=DIR"))
                .with_hint("e.g. --tablespace-map 16384=/srv/pg/ts1 (the OID is shown under pg_tblspc/ and in cairn info)")
        };
        let (oid, dir) = item.split_once('=').ok_or_else(bad)?;
        let oid: u32 = oid.trim().parse().map_err(|_| bad())?;
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(bad());
        }
        map.insert(oid, dir);
    }
    Ok(map)
}

/// The one target the operator gave (at most one), typed.
fn target(args: &RestoreArgs) -> Result<RecoveryTarget, Failure> {
    let usage = |m: String| Failure::new(ErrorKind::Usage, m);
    let mut given = Vec::new();
    if let Some(t) = &args.target_time {
        given.push(RecoveryTarget::Time(TargetTime::parse(t)?));
    }
    if let Some(l) = &args.target_lsn {
        let lsn: Lsn = l
            .parse()
            .map_err(|_| usage(format!("--target-lsn '{l}' is not an LSN like 0/16B3748")))?;
        given.push(RecoveryTarget::Lsn(lsn));
    }
    if let Some(x) = &args.target_xid {
        let xid: u32 = x
            .parse()
            .map_err(|_| usage(format!("--target-xid '{x}' is not a transaction id")))?;
        given.push(RecoveryTarget::Xid(xid));
    }
    if let Some(n) = &args.target_name {
        given.push(RecoveryTarget::Name(RestorePointName::new(n)?));
    }
    if let Some(TargetArg::Immediate) = args.target {
        given.push(RecoveryTarget::Immediate);
    }
    match given.len() {
        0 => Ok(RecoveryTarget::EndOfArchive),
        1 => Ok(given.remove(0)),
        _ => Err(usage("give at most one recovery target".into())),
    }
}

/// `pause` is written out even though it is PostgreSQL's default, so the plan shows what
/// recovery does at a target.
fn action(args: &RestoreArgs, target: &RecoveryTarget) -> Option<TargetAction> {
    match args.target_action {
        Some(ActionArg::Pause) => Some(TargetAction::Pause),
        Some(ActionArg::Promote) => Some(TargetAction::Promote),
        Some(ActionArg::Shutdown) => Some(TargetAction::Shutdown),
        None => (*target != RecoveryTarget::EndOfArchive).then_some(TargetAction::Pause),
    }
}

/// The passphrase variables: PostgreSQL runs restore_command with its own environment.
const PASS_VARS: [&str; 2] = ["CAIRN_REPO_CIPHER_PASS", "CAIRN_REPO_CIPHER_PASS_FILE"];

/// Whether the repository passphrase comes only from this shell's environment, not from
/// the configuration file the generated restore_command names.
fn passphrase_only_in_env(cfg: &Config) -> Option<&'static str> {
    let var = PASS_VARS
        .into_iter()
        .find(|v| std::env::var_os(v).is_some())?;
    cfg.repo.cipher_pass.as_ref()?;
    let without = std::env::vars()
        .filter(|(k, _)| k.starts_with("CAIRN_") || k.starts_with("AWS_"))
        .filter(|(k, _)| !PASS_VARS.contains(&k.as_str()))
        .fold(Env::empty(), |env, (k, v)| env.with(&k, &v));
    let file_only = Config::load(Some(&cfg.source), &without).ok()?;
    file_only.repo.cipher_pass.is_none().then_some(var)
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    args: &RestoreArgs,
    progress: ProgressMode,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let target = target(args)?;
    let timeline: TimelineTarget = match &args.target_timeline {
        Some(t) => t.parse()?,
        None => TimelineTarget::Latest,
    };
    let set = match &args.set {
        Some(s) => Some(BackupLabel::new(s).map_err(|m| {
            Failure::new(ErrorKind::Usage, format!("--set: {m}"))
                .with_hint("backup labels look like 20261122-140500F or 20261122-140500F_20261123-020000I (see cairn info)")
        })?),
        None => None,
    };
    let tablespace_map = parse_tablespace_map(&args.tablespace_map)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let mut source = RestoreSource::load(&repo, &name).await?;
    for w in &source.warnings {
        eprintln!("cairn: WARNING: {w}");
    }
    let request = PlanRequest {
        db_id: source.db_id_for(set.as_ref()),
        target,
        timeline,
        set,
    };
    let planned = source.plan(&repo, &request).await?;
    for w in &planned.warnings {
        eprintln!("cairn: WARNING: {w}");
    }
    let (plan, chosen) = (planned.plan, planned.manifest);
    let chosen = &chosen;
    let exe = std::env::current_exe().ok();
    let recovery = RecoverySettings {
        restore_command: source.restore_command_for(
            RestoreCommand::archive_get(exe.as_deref(), &cfg.source, &name),
            chosen,
        ),
        target: plan.target.clone(),
        action: action(args, &plan.target),
        timeline: Some(TimelineTarget::Id(plan.timeline)),
        standby: args.standby,
        archive_mode: match args.archive_mode {
            ArchiveModeArg::Preserve => ArchiveMode::Preserve,
            ArchiveModeArg::Off => ArchiveMode::Off,
        },
    };
    // RestoreOptions::new sizes concurrency to the machine's cores.
    let mut opts = RestoreOptions::new(args.pg_data.clone(), recovery);
    opts.tablespace_map = tablespace_map;
    opts.delta = args.delta;
    if let Some(var) = passphrase_only_in_env(cfg) {
        eprintln!(
            "cairn: WARNING: the repository passphrase comes only from {var} in this environment; \
             the restore_command written for PostgreSQL reads {} and will not have it, so recovery would fail",
            cfg.source.display()
        );
        eprintln!(
            "HINT: put cipher-pass or cipher-pass-file into {} (readable by the user PostgreSQL runs as), or set {var} in the server's environment",
            cfg.source.display()
        );
    }
    if args.dry_run {
        // Every check the real run makes before it writes.
        cairn_restore::check_restore(chosen, &opts)?;
        restore_output::print_plan(&plan, &opts.recovery, args);
        return Ok(ExitCode::SUCCESS);
    }
    let total: u64 = chosen.files.iter().map(|f| f.size).sum();
    let counters = opts.progress.clone();
    let display = progress::start(progress, &format!("restore {}", chosen.label), move || {
        Snapshot {
            done: counters.bytes(),
            total: Some(total),
            phase: None,
        }
    });
    let report = cairn_restore::restore_backup(&repo, &name, chosen, &opts).await;
    display.finish(report.is_ok()).await;
    let report = report?;
    restore_output::print_report(&plan, &opts.recovery, &report);
    Ok(ExitCode::SUCCESS)
}
