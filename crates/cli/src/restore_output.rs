//! What `cairn restore` prints: the `--dry-run` plan (text or JSON), and after a restore
//! what was written and what the operator does next.

use cairn_planner::Plan;
use cairn_restore::{ArchiveMode, Archiving, RecoverySettings, RestoreReport};
use cairn_target::{RecoveryTarget, TargetAction, TargetTime};
use serde::Serialize;

use crate::args::{Output, RestoreArgs};
use crate::quantity::{count, size};

/// A target time as RFC 3339, in UTC and in the offset the operator wrote.
#[derive(Serialize)]
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

#[derive(Serialize)]
struct WalRangeDoc {
    timeline: u32,
    first: String,
    last: String,
    segments: u64,
}

/// The plan as `--dry-run --output json` shows it (and, later, the HTTP API).
#[derive(Serialize)]
struct PlanDoc {
    backup: String,
    why: String,
    target: String,
    timeline: u32,
    wal: Vec<WalRangeDoc>,
    bytes_to_write: u64,
    /// recovery_target* and recovery_target_timeline, in the order they are written.
    settings: Vec<(&'static str, String)>,
}

impl PlanDoc {
    fn of(plan: &Plan, recovery: &RecoverySettings) -> PlanDoc {
        PlanDoc {
            backup: plan.backup.to_string(),
            why: plan.why.clone(),
            target: plan.target_description(),
            timeline: plan.timeline.0,
            wal: plan
                .wal
                .iter()
                .map(|r| WalRangeDoc {
                    timeline: r.timeline.0,
                    first: r.first.to_string(),
                    last: r.last.to_string(),
                    segments: r.segments,
                })
                .collect(),
            bytes_to_write: plan.bytes_to_write,
            settings: recovery.target_settings(),
        }
    }
}

fn archive_mode_name(mode: ArchiveMode) -> &'static str {
    match mode {
        ArchiveMode::Preserve => "preserve",
        ArchiveMode::Off => "off",
    }
}

pub fn print_plan(plan: &Plan, recovery: &RecoverySettings, args: &RestoreArgs) {
    let restore_command = recovery.restore_command();
    if args.output == Output::Json {
        #[derive(Serialize)]
        struct DryRun<'a> {
            plan: PlanDoc,
            target_time: Option<TimeDoc>,
            pg_data: String,
            restore_command: &'a str,
            target_action: Option<&'static str>,
            signal: &'static str,
            archive_mode: &'static str,
        }
        let doc = DryRun {
            plan: PlanDoc::of(plan, recovery),
            target_time: match &plan.target {
                RecoveryTarget::Time(t) => Some(TimeDoc::of(t)),
                _ => None,
            },
            pg_data: args.pg_data.display().to_string(),
            restore_command: &restore_command,
            target_action: recovery.action.map(TargetAction::as_str),
            signal: recovery.signal_file(),
            archive_mode: archive_mode_name(recovery.archive_mode),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("plan serializes")
        );
        return;
    }
    println!("restore plan (dry run: nothing is written)");
    println!("  backup:  {} ({})", plan.backup, plan.why);
    println!(
        "  target:  {} on timeline {}",
        plan.target_description(),
        plan.timeline
    );
    for r in &plan.wal {
        println!(
            "  WAL:     timeline {}: {} .. {} ({})",
            r.timeline,
            r.first,
            r.last,
            count(r.segments, "segment", "segments")
        );
    }
    println!(
        "  write:   {:.1} MiB into {}",
        plan.bytes_to_write as f64 / 1048576.0,
        args.pg_data.display()
    );
    println!("  recovery settings (postgresql.auto.conf):");
    for (k, v) in recovery.settings() {
        println!("    {k} = '{v}'");
    }
    let then = match (recovery.action, recovery.standby) {
        (_, true) => "PostgreSQL starts as a standby and keeps replaying the archive".to_string(),
        (Some(a), false) => format!("PostgreSQL recovers to the target, then: {a}"),
        (None, false) => "PostgreSQL replays all archived WAL, then ends recovery".to_string(),
    };
    println!("  signal:  {} ({then})", recovery.signal_file());
    match recovery.archive_mode {
        ArchiveMode::Off => {
            println!("  archive: archive_mode = off: the restored cluster will not archive WAL")
        }
        ArchiveMode::Preserve => println!(
            "  archive: the backup's archive_mode and archive_command are kept (--archive-mode preserve)"
        ),
    }
}

pub fn print_report(plan: &Plan, recovery: &RecoverySettings, report: &RestoreReport) {
    println!(
        "restored backup {} into {}: {}, {}, {} written from {}",
        report.label,
        report.pg_data.display(),
        count(report.files, "file", "files"),
        count(report.directories, "directory", "directories"),
        size(report.bytes_written),
        count(report.chunks, "chunk", "chunks")
    );
    for (oid, dir) in &report.tablespaces {
        println!("tablespace {oid} -> {}", dir.display());
    }
    for w in &report.warnings {
        eprintln!("cairn: WARNING: {w}");
    }
    println!(
        "recovery target: {}; start PostgreSQL on {} to recover",
        plan.target_description(),
        report.pg_data.display()
    );
    println!("next: {}", next_step(recovery, report));
    print_archiving(&report.archiving);
}

/// What PostgreSQL does once started, and what the operator does then.
fn next_step(recovery: &RecoverySettings, report: &RestoreReport) -> String {
    if recovery.standby {
        return "PostgreSQL starts as a standby and keeps replaying the archive \
                (cairn-archive-get retries on errors); promote it with `pg_ctl promote` \
                or `SELECT pg_promote();`"
            .into();
    }
    match (&recovery.target, recovery.action) {
        (RecoveryTarget::EndOfArchive, _) => {
            "PostgreSQL replays all archived WAL, then ends recovery and promotes to a new timeline"
                .into()
        }
        (_, None | Some(TargetAction::Pause)) => format!(
            "at the target PostgreSQL pauses, read-only (recovery_target_action = pause); check the data, \
             then end recovery and promote with `SELECT pg_wal_replay_resume();` or `pg_ctl promote -D {}`",
            report.pg_data.display()
        ),
        (_, Some(TargetAction::Promote)) => {
            "at the target PostgreSQL ends recovery and promotes to a new timeline".into()
        }
        (_, Some(TargetAction::Shutdown)) => {
            "at the target PostgreSQL shuts down (recovery_target_action = shutdown)".into()
        }
    }
}

/// What the restored cluster does about archive_command, and a warning when it would
/// archive into a cairn repository.
fn print_archiving(archiving: &Archiving) {
    match archiving {
        Archiving::Disabled => println!(
            "archiving: archive_mode = off (written by cairn restore): the restored cluster does not archive WAL"
        ),
        Archiving::Off => println!(
            "archiving: archive_mode is off in the restored configuration: the restored cluster does not archive WAL"
        ),
        Archiving::On {
            mode,
            command,
            library,
        } => {
            let with = match (library, command) {
                (Some(l), _) => format!("archive_library '{l}'"),
                (None, Some(c)) => format!("archive_command '{c}'"),
                (None, None) => "no archive_command (WAL piles up in pg_wal)".into(),
            };
            println!(
                "archiving: the restored cluster keeps archive_mode = {mode} with {with} from the backup (--archive-mode preserve)"
            );
            if command
                .as_deref()
                .is_some_and(|c| c.contains("archive-push"))
            {
                eprintln!(
                    "cairn: WARNING: once promoted, the restored cluster archives its new timeline with cairn-archive-push, into the repository its configuration names"
                );
                eprintln!(
                    "HINT: for a copy that must not archive, restore with --archive-mode off, or set archive_mode = off before starting it"
                );
            }
        }
    }
}
