//! `cairn info`: stanzas and their WAL archive, as text for people and JSON for machines
//! (the document is cairn-info's; schema: docs/info-json.md; fields are only ever added).

use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::Failure;
use cairn_info::InfoDoc;
use cairn_repo::StanzaName;
use cairn_verify::{Status, VerifyRecord};

use crate::args::Output;

pub async fn run(cfg: &Config, stanza: Option<&str>, output: Output) -> Result<ExitCode, Failure> {
    let repo = cairn_startup::open_repo(cfg).await?;
    let names: Vec<String> = match stanza {
        Some(s) => vec![cfg.stanza(Some(s))?.0.to_string()],
        None => cfg.stanzas.keys().cloned().collect(),
    };
    let names = names
        .iter()
        .map(|n| StanzaName::new(n).map_err(|m| Failure::new(cairn_exit::ErrorKind::Config, m)))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = InfoDoc::gather(&repo, &names).await?;
    match output {
        Output::Json => {
            let s = serde_json::to_string_pretty(&doc).expect("info document serializes");
            println!("{s}");
        }
        Output::Text => print_text(&doc),
    }
    Ok(ExitCode::SUCCESS)
}

fn last_verify_text(v: Option<&VerifyRecord>) -> String {
    let Some(v) = v else {
        return "never (run `cairn verify`)".into();
    };
    let scope = match &v.set {
        Some(l) => format!("backup {l}"),
        None => "whole stanza".into(),
    };
    let outcome = match v.status {
        Status::Ok => "ok".to_string(),
        Status::Damaged => "DAMAGED".to_string(),
    };
    let mut s = format!(
        "{outcome} at {} ({scope}, {} objects, {}, {:.1}s)",
        v.finished,
        v.objects,
        mib(v.bytes),
        v.duration_seconds
    );
    if v.status == Status::Damaged {
        s.push_str(&format!(": {} damaged object(s)", v.damaged));
        if !v.unrestorable.is_empty() {
            let labels: Vec<&str> = v.unrestorable.iter().map(|l| l.as_str()).collect();
            s.push_str(&format!("; cannot restore {}", labels.join(", ")));
        }
    }
    s
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn print_text(doc: &InfoDoc) {
    let enc = if doc.repository.encrypted {
        "encrypted"
    } else {
        "not encrypted"
    };
    println!("repository: {} ({enc})", doc.repository.location);
    for s in &doc.stanzas {
        println!();
        println!("stanza: {}", s.name);
        if s.status != "ok" {
            println!("    status: {} (run `cairn stanza-create`)", s.status);
            continue;
        }
        println!("    status: ok");
        for d in &s.db {
            let cur = if d.current { " (current)" } else { "" };
            println!(
                "    db {}: PostgreSQL {}, system {}{cur}",
                d.db_id, d.pg_version, d.system_id
            );
        }
        for w in &s.warnings {
            println!("    WARNING: {w}");
        }
        if s.backups.is_empty() && s.damaged_backups.is_empty() {
            println!("    backups: none");
        }
        for d in &s.damaged_backups {
            println!(
                "    {} backup {}: DAMAGED, cannot be restored",
                d.backup_type, d.label
            );
            println!("        {}: {}", d.key, d.reason);
        }
        for b in &s.backups {
            let parent = b
                .parent
                .as_deref()
                .map(|p| format!(", parent {p}"))
                .unwrap_or_default();
            let pinned = if b.pinned { " (pinned)" } else { "" };
            println!("    {} backup {}{parent}{pinned}", b.backup_type, b.label);
            for (k, v) in &b.annotations {
                println!("        {k}: {v}");
            }
            println!(
                "        timeline {}, start {} at {}, stop {} at {}",
                b.timeline, b.start.lsn, b.start.time, b.stop.lsn, b.stop.time
            );
            println!(
                "        database {}, received {}, added to repository {} of {} (rest reused) ({})",
                mib(b.db_size),
                mib(b.bytes_received),
                mib(b.repo_added),
                mib(b.repo_size),
                b.incremental_mode
            );
        }
        println!(
            "    last verify: {}",
            last_verify_text(s.last_verify.as_ref())
        );
        if s.archive.is_empty() {
            println!("    wal archive: empty");
        }
        for w in &s.recovery_windows {
            let to =
                w.to.as_deref()
                    .unwrap_or("(no commit after the backup yet)");
            println!(
                "    recoverable on timeline {}: {} .. {} (from backup {})",
                w.timeline, w.from, to, w.backup
            );
            if let Some(g) = &w.gap {
                println!(
                    "        GAP at {g}: the window ends there; only a backup taken after it can reach later WAL"
                );
            }
        }
        for tl in &s.archive {
            println!("    wal archive, db {} timeline {}:", tl.db_id, tl.timeline);
            match (tl.ranges.first(), tl.ranges.last()) {
                (Some(first), Some(last)) => {
                    let n: u64 = tl.ranges.iter().map(|r| r.segments).sum();
                    println!(
                        "        segments: {} / {} ({n} segments)",
                        first.first, last.last
                    );
                }
                _ => println!("        segments: none"),
            }
            for g in &tl.gaps {
                println!(
                    "        GAP: {} / {} ({} segments missing)",
                    g.first, g.last, g.segments
                );
            }
            if let (Some(a), Some(b)) = (&tl.first_commit, &tl.last_commit) {
                println!("        commits: {a} / {b}");
            }
            if !tl.partials.is_empty() {
                println!("        partial: {}", tl.partials.join(", "));
            }
            if !tl.restore_points.is_empty() {
                println!("        restore points: {}", tl.restore_points.join(", "));
            }
        }
    }
}
