//! What `cairn restore` prints: the `--dry-run` plan (text or JSON), and after a restore
//! what was written and what the operator does next.

use cairn_planner::Plan;
use cairn_restore::{ArchiveMode, Archiving, DryRun, RecoverySettings, RestoreReport};
use cairn_target::{RecoveryTarget, TargetAction};

use crate::args::{Output, RestoreArgs};
use crate::quantity::{count, size};

pub fn print_plan(plan: &Plan, recovery: &RecoverySettings, args: &RestoreArgs) {
    if args.output == Output::Json {
        let doc = DryRun::new(plan, recovery, &args.pg_data);
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
