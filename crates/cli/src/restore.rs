//! `cairn restore`: plan (cairn-planner), refuse what cannot be reached before writing
//! anything, then restore the chosen backup (cairn-restore) and configure recovery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_pgformat::Lsn;
use cairn_planner::{Plan, PlanRequest, Target, TargetTime, TimelineTarget, parse_target_time};
use cairn_restore::{RecoverySettings, RestoreOptions};

use crate::args::{Output, RestoreArgs};
use crate::stanza::stanza_name;

/// `restore_command` that runs this installation's `cairn-archive-get` with this
/// configuration and stanza, whatever the server's environment.
pub fn restore_command(cfg: &Config, stanza: &str) -> String {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let get = exe_dir
        .map(|d| d.join("cairn-archive-get"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("cairn-archive-get"));
    let config = std::path::absolute(&cfg.source).unwrap_or_else(|_| cfg.source.clone());
    format!(
        "{} --config {} --stanza {stanza} %f \"%p\"",
        sh_quote(&get.to_string_lossy()),
        sh_quote(&config.to_string_lossy())
    )
}

/// Quote for the shell PostgreSQL runs restore_command with, only when needed.
fn sh_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

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

/// The one target the operator gave (at most one), as the planner takes it.
fn target(args: &RestoreArgs) -> Result<Target, Failure> {
    let usage = |m: String| Failure::new(ErrorKind::Usage, m);
    let mut given = Vec::new();
    if let Some(t) = &args.target_time {
        given.push(Target::Time(parse_target_time(t)?));
    }
    if let Some(l) = &args.target_lsn {
        let lsn: Lsn = l
            .parse()
            .map_err(|_| usage(format!("--target-lsn '{l}' is not an LSN like 0/16B3748")))?;
        given.push(Target::Lsn(lsn));
    }
    if let Some(x) = &args.target_xid {
        let xid: u32 = x
            .parse()
            .map_err(|_| usage(format!("--target-xid '{x}' is not a transaction id")))?;
        given.push(Target::Xid(xid));
    }
    if let Some(n) = &args.target_name {
        given.push(Target::Name(n.clone()));
    }
    match args.target.as_deref() {
        Some("immediate") => given.push(Target::Immediate),
        Some(other) => {
            return Err(usage(format!("--target '{other}' is not known"))
                .with_hint("--target takes 'immediate'"));
        }
        None => {}
    }
    match given.len() {
        0 => Ok(Target::EndOfArchive),
        1 => Ok(given.remove(0)),
        _ => Err(usage("give at most one recovery target".into())),
    }
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    args: &RestoreArgs,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let target = target(args)?;
    let timeline: TimelineTarget = args
        .target_timeline
        .as_deref()
        .unwrap_or("latest")
        .parse()?;
    let tablespace_map = parse_tablespace_map(&args.tablespace_map)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&name).await?;
    let backups = repo.backups(&name).await?;
    let catalog = repo.wal_catalog(&name).await?;
    let request = PlanRequest {
        target,
        timeline,
        set: args.set.clone(),
        db_id: info.current().db_id,
    };
    let plan = cairn_planner::plan(&backups, &catalog, &request)?;
    let target_time = match &request.target {
        Target::Time(t) => Some(*t),
        _ => None,
    };
    // Written out even when it is PostgreSQL's default, so the plan shows what recovery does.
    let target_action = args
        .target_action
        .clone()
        .or_else(|| (request.target != Target::EndOfArchive).then(|| "pause".to_string()));
    let chosen = backups
        .iter()
        .find(|b| b.label.as_str() == plan.backup)
        .expect("the plan names a listed backup");
    let recovery = RecoverySettings {
        restore_command: restore_command(cfg, name.as_str()),
        targets: plan
            .settings
            .iter()
            .filter(|(k, _)| k != "recovery_target_timeline")
            .cloned()
            .collect(),
        target_action,
        target_timeline: plan
            .settings
            .iter()
            .find(|(k, _)| k == "recovery_target_timeline")
            .map(|(_, v)| v.clone()),
        standby: args.standby,
    };
    if args.dry_run {
        print_plan(&plan, &recovery, target_time, args);
        return Ok(ExitCode::SUCCESS);
    }
    // RestoreOptions::new sizes concurrency to the machine's cores.
    let mut opts = RestoreOptions::new(args.pg_data.clone(), recovery);
    opts.tablespace_map = tablespace_map;
    opts.delta = args.delta;
    let report = cairn_restore::restore_backup(&repo, &name, chosen, &opts).await?;
    println!(
        "restored backup {} into {}: {} files, {} directories, {:.1} MiB written from {} chunks",
        chosen.label,
        report.pg_data.display(),
        report.files,
        report.directories,
        report.bytes_written as f64 / 1048576.0,
        report.chunks
    );
    for (oid, dir) in &report.tablespaces {
        println!("tablespace {oid} -> {}", dir.display());
    }
    for w in &report.warnings {
        eprintln!("cairn: WARNING: {w}");
    }
    println!(
        "recovery target: {}; start PostgreSQL on {} to recover",
        plan.target,
        args.pg_data.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A target time as RFC 3339, in UTC and in the offset the operator wrote.
#[derive(serde::Serialize)]
struct TimeDoc {
    utc: String,
    given: String,
}

impl TimeDoc {
    fn of(t: &TargetTime) -> TimeDoc {
        let rfc = |at: time::OffsetDateTime| {
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        TimeDoc {
            utc: rfc(t.at.to_offset(time::UtcOffset::UTC)),
            given: rfc(t.at),
        }
    }
}

fn print_plan(
    plan: &Plan,
    recovery: &RecoverySettings,
    target_time: Option<TargetTime>,
    args: &RestoreArgs,
) {
    if args.output == Output::Json {
        #[derive(serde::Serialize)]
        struct DryRun<'a> {
            plan: &'a Plan,
            target_time: Option<TimeDoc>,
            pg_data: String,
            restore_command: &'a str,
            target_action: Option<&'a str>,
            signal: &'static str,
        }
        let doc = DryRun {
            plan,
            target_time: target_time.as_ref().map(TimeDoc::of),
            pg_data: args.pg_data.display().to_string(),
            restore_command: &recovery.restore_command,
            target_action: recovery.target_action.as_deref(),
            signal: recovery.signal_file(),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("plan serializes")
        );
        return;
    }
    println!("restore plan (dry run: nothing is written)");
    println!("  backup:  {} ({})", plan.backup, plan.why);
    println!("  target:  {} on timeline {}", plan.target, plan.timeline);
    for r in &plan.wal {
        println!(
            "  WAL:     timeline {}: {} .. {} ({} segments)",
            r.timeline, r.first, r.last, r.segments
        );
    }
    println!(
        "  write:   {:.1} MiB into {}",
        plan.bytes_to_write as f64 / 1048576.0,
        args.pg_data.display()
    );
    println!("  recovery settings (postgresql.auto.conf):");
    println!("    restore_command = '{}'", recovery.restore_command);
    for (k, v) in &plan.settings {
        println!("    {k} = '{v}'");
    }
    if let Some(a) = &recovery.target_action {
        println!("    recovery_target_action = '{a}'");
    }
    let then = match (&recovery.target_action, recovery.standby) {
        (_, true) => "PostgreSQL starts as a standby and keeps replaying the archive".to_string(),
        (Some(a), false) => format!("PostgreSQL recovers to the target, then: {a}"),
        (None, false) => "PostgreSQL replays all archived WAL, then ends recovery".to_string(),
    };
    println!("  signal:  {} ({then})", recovery.signal_file());
}
