//! `cairn info`: stanzas and their WAL archive, as text for people and JSON for machines
//! (the document is cairn-info's; schema: docs/info-json.md; fields are only ever added).

use std::process::ExitCode;

use cairn_config::Config;
use cairn_drill::{DrillRecord, DrillStatus};
use cairn_exit::Failure;
use cairn_info::{BackupDoc, InfoDoc};
use cairn_repo::StanzaName;
use cairn_verify::{Status, VerifyRecord};

use crate::args::Output;
use crate::quantity::{count, size};

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
    let mut doc = InfoDoc::gather(&repo, &names).await?;
    doc.worker_log_warning = crate::health::worker_log_warning(cfg);
    match output {
        Output::Json => {
            let s = serde_json::to_string_pretty(&doc).expect("info document serializes");
            println!("{s}");
        }
        Output::Text => print_text(&doc),
    }
    Ok(ExitCode::SUCCESS)
}

/// A backup's start or stop time as people read it: fractions of a second cut to
/// microseconds, as PostgreSQL shows times (the manifest keeps nanoseconds).
fn time_text(t: &str) -> String {
    let Some(dot) = t.find('.') else {
        return t.to_string();
    };
    let digits = t[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 6 {
        return t.to_string();
    }
    format!("{}{}", &t[..dot + 7], &t[dot + 1 + digits..])
}

/// How a diff or incr found its changes, in words (nothing for a full).
fn mode_words(mode: &str) -> Option<&'static str> {
    match mode {
        "content-addressed" => Some("changes found by content addressing"),
        "wal-summaries" => Some("changed blocks from WAL summaries"),
        _ => None,
    }
}

/// What a backup holds in the repository, and how much of it it added.
fn stored_words(b: &BackupDoc) -> String {
    let total = size(b.repo_size);
    match (b.repo_added, b.repo_reused) {
        (_, 0) => format!("stored {total} (all new)"),
        (0, _) => format!("stored {total} (all shared with earlier backups)"),
        (added, reused) => format!(
            "stored {total} ({} new, {} shared with earlier backups)",
            size(added),
            size(reused)
        ),
    }
}

fn last_drill_text(d: Option<&DrillRecord>) -> String {
    let Some(d) = d else {
        return "never (run `cairn drill`)".into();
    };
    let target = crate::drill::target_text(d);
    match d.status {
        DrillStatus::Succeeded => {
            let reached = d
                .reached
                .as_ref()
                .map(|p| {
                    format!(
                        ", reached {} (last commit {})",
                        p.lsn,
                        p.last_commit.as_deref().unwrap_or("none")
                    )
                })
                .unwrap_or_default();
            let backup = d
                .backup
                .as_ref()
                .map(|b| format!(" from backup {b}"))
                .unwrap_or_default();
            format!(
                "succeeded at {} ({target}{backup}{reached}, {:.1}s)",
                d.finished, d.duration_seconds
            )
        }
        DrillStatus::Failed => format!(
            "FAILED at {} ({target}, {:.1}s): {}",
            d.finished,
            d.duration_seconds,
            d.error.as_deref().unwrap_or("no reason recorded")
        ),
    }
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
        "{outcome} at {} ({scope}, {}, {}, {:.1}s)",
        v.finished,
        count(v.objects, "object", "objects"),
        size(v.bytes),
        v.duration_seconds
    );
    if v.status == Status::Damaged {
        s.push_str(&format!(
            ": {} damaged",
            count(v.damaged, "object", "objects")
        ));
        if !v.unrestorable.is_empty() {
            let labels: Vec<&str> = v.unrestorable.iter().map(|l| l.as_str()).collect();
            s.push_str(&format!("; cannot restore {}", labels.join(", ")));
        }
    }
    s
}

fn print_text(doc: &InfoDoc) {
    let enc = if doc.repository.encrypted {
        "encrypted"
    } else {
        "not encrypted"
    };
    println!("repository: {} ({enc})", doc.repository.location);
    if let Some(w) = &doc.worker_log_warning {
        println!("WARNING: {w}");
    }
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
            let how = mode_words(&b.incremental_mode)
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            let pinned = if b.pinned { " (pinned)" } else { "" };
            println!(
                "    {} backup {}{parent}{how}{pinned}",
                b.backup_type, b.label
            );
            for (k, v) in &b.annotations {
                println!("        {k}: {v}");
            }
            println!(
                "        timeline {}, start {} at {}, stop {} at {}",
                b.timeline,
                b.start.lsn,
                time_text(&b.start.time),
                b.stop.lsn,
                time_text(&b.stop.time)
            );
            println!(
                "        database {}, received {}, {}",
                size(b.db_size),
                size(b.bytes_received),
                stored_words(b)
            );
        }
        println!(
            "    last verify: {}",
            last_verify_text(s.last_verify.as_ref())
        );
        println!("    last drill: {}", last_drill_text(s.last_drill.as_ref()));
        if s.archive.is_empty() {
            println!("    WAL archive: empty");
        }
        for w in &s.recovery_windows {
            // Window ends are shown exactly: they are meant to be copied into --target-time.
            let to = w.to.map_or_else(
                || "(no commit after the backup yet)".into(),
                |t| t.to_string(),
            );
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
            println!(
                "    WAL archive, db {}, timeline {}:",
                tl.db_id, tl.timeline
            );
            match (tl.ranges.first(), tl.ranges.last()) {
                (Some(first), Some(last)) => {
                    let n: u64 = tl.ranges.iter().map(|r| r.segments).sum();
                    println!(
                        "        segments: {} .. {} ({})",
                        first.first,
                        last.last,
                        count(n, "segment", "segments")
                    );
                }
                _ => println!("        segments: none"),
            }
            for g in &tl.gaps {
                println!(
                    "        GAP: {} .. {} ({} missing)",
                    g.first,
                    g.last,
                    count(g.segments, "segment", "segments")
                );
            }
            if let (Some(a), Some(b)) = (&tl.first_commit, &tl.last_commit) {
                println!("        commits: {a} .. {b}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_info::PointDoc;

    fn backup(size: u64, added: u64) -> BackupDoc {
        let at = || PointDoc {
            lsn: "0/2000028".into(),
            time: "2026-01-01 00:00:00+00".into(),
        };
        BackupDoc {
            label: "20260101-000000F".into(),
            status: "ok",
            backup_type: "full".into(),
            parent: None,
            db_id: 1,
            timeline: 1,
            start: at(),
            stop: at(),
            incremental_mode: "full".into(),
            db_size: size,
            bytes_received: size,
            repo_added: added,
            repo_size: size,
            repo_reused: size - added,
            files: 1,
            pinned: false,
            annotations: Default::default(),
        }
    }

    #[test]
    fn stored_bytes_read_as_a_sentence() {
        assert_eq!(
            stored_words(&backup(1 << 20, 1 << 20)),
            "stored 1.0 MiB (all new)"
        );
        assert_eq!(
            stored_words(&backup(1 << 20, 0)),
            "stored 1.0 MiB (all shared with earlier backups)"
        );
        assert_eq!(
            stored_words(&backup(3 << 20, 1 << 20)),
            "stored 3.0 MiB (1.0 MiB new, 2.0 MiB shared with earlier backups)"
        );
    }

    #[test]
    fn times_show_at_most_microseconds() {
        assert_eq!(
            time_text("2026-12-02T01:19:14.301344269Z"),
            "2026-12-02T01:19:14.301344Z"
        );
        assert_eq!(
            time_text("2026-12-02T01:19:17.964989Z"),
            "2026-12-02T01:19:17.964989Z"
        );
        assert_eq!(time_text("2026-12-02T01:19:17Z"), "2026-12-02T01:19:17Z");
        assert_eq!(
            time_text("2026-12-02T01:19:14.3013442+01:00"),
            "2026-12-02T01:19:14.301344+01:00"
        );
    }

    #[test]
    fn only_diff_and_incr_say_how_changes_were_found() {
        assert_eq!(mode_words("full"), None);
        assert!(
            mode_words("wal-summaries")
                .unwrap()
                .contains("WAL summaries")
        );
        assert!(mode_words("content-addressed").unwrap().contains("content"));
    }
}
