//! `cairn drill`: run cairn-drill for the stanza and say how it went. Exit 0 when the
//! restored copy passed, else the failure's code (19, drill-failed, when the copy itself
//! did not pass).

use std::process::ExitCode;

use cairn_config::Config;
use cairn_drill::{
    DrillOptions, DrillRecord, DrillReport, DrillStatus, DrillTarget, RecoveryEnd, ScratchDir,
    TargetKind,
};
use cairn_exit::Failure;
use cairn_target::TargetTime;

use crate::args::{DrillArgs, Output};
use crate::stanza::stanza_name;

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    args: &DrillArgs,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let target = match (&args.target_time, args.random) {
        (Some(t), _) => DrillTarget::Time(TargetTime::parse(t)?),
        (None, true) => DrillTarget::Random,
        (None, false) => DrillTarget::EndOfArchive,
    };
    let mut opts = DrillOptions::from_config(cfg, &name, target)?;
    opts.sql = args.sql.clone();
    opts.keep = args.keep;
    if let Some(dir) = &args.scratch {
        opts.scratch = ScratchDir::At(dir.clone());
    }
    opts.timeout = args.timeout;
    let repo = cairn_startup::open_repo(cfg).await?;
    let report = cairn_drill::drill(&repo, &name, &opts).await?;
    for w in &report.warnings {
        eprintln!("cairn: WARNING: {w}");
    }
    match args.output {
        Output::Json => {
            let s = serde_json::to_string_pretty(&report.record).expect("the record serializes");
            println!("{s}");
        }
        Output::Text => print_text(name.as_str(), &report),
    }
    match report.failure {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            let tail = e.log_tail();
            if !tail.is_empty() {
                eprintln!("cairn: the drill server's log ends:");
                for l in tail {
                    eprintln!("    {l}");
                }
            }
            Err(e.into())
        }
    }
}

fn print_text(stanza: &str, report: &DrillReport) {
    let r = &report.record;
    let outcome = match r.status {
        DrillStatus::Succeeded => "succeeded",
        DrillStatus::Failed => "FAILED",
    };
    println!(
        "drill of stanza {stanza}: {outcome} in {:.1}s",
        r.duration_seconds
    );
    println!("    target: {}", target_text(r));
    if let Some(b) = &r.backup {
        let size = r
            .bytes_restored
            .map(|b| format!(", {:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_default();
        let took = r
            .restore_seconds
            .map(|s| format!(" in {s:.1}s"))
            .unwrap_or_default();
        println!(
            "    backup {b} (PostgreSQL {}) restored{took}{size}",
            r.pg_version.unwrap_or_default()
        );
    }
    if let Some(p) = &r.reached {
        let how = match p.end {
            RecoveryEnd::Promoted => "ended at the end of the archive and promoted",
            RecoveryEnd::Paused => "paused at the target",
        };
        let took = r
            .recovery_seconds
            .map(|s| format!(" after {s:.1}s"))
            .unwrap_or_default();
        println!(
            "    recovery {how}{took}: replayed to {}, last commit {}",
            p.lsn,
            p.last_commit.as_deref().unwrap_or("none")
        );
    }
    if let Some(n) = r.relations {
        println!("    sanity: {n} relations in pg_class");
    }
    if let (Some(q), Some(rows)) = (&r.sql, r.sql_rows) {
        println!("    --sql returned {rows} row(s): {q}");
    }
    if let Some(k) = &report.kept {
        println!("    kept (stopped): {}", k.root.display());
        println!("        server log: {}", k.log.display());
        if let Some(s) = &k.start {
            println!("        start:   {s}");
        }
        if let Some(c) = &k.connect {
            println!("        connect: {c}");
        }
        if let Some(s) = &k.stop {
            println!("        stop:    {s}");
        }
        println!(
            "        remove:  rm -rf {}",
            cairn_restore::sh_quote(&k.root.to_string_lossy())
        );
    }
    if report.record_key.is_some() {
        println!("    recorded in the repository (cairn info shows the last drill)");
    }
}

/// `end of archive`, `time T`, `random time T in the window of backup B (from .. to)`.
pub fn target_text(r: &DrillRecord) -> String {
    match (r.target, &r.target_time) {
        (TargetKind::Time, Some(t)) => match (&r.window, r.random) {
            (Some(w), true) => format!(
                "random time {t}, in the window of backup {} on timeline {} ({} .. {})",
                w.backup, w.timeline, w.from, w.to
            ),
            _ => format!("time {t}"),
        },
        (TargetKind::Time, None) => "a random time (none drawn)".into(),
        (TargetKind::EndOfArchive, _) => "end of the archive".into(),
    }
}
