//! Each stanza's state for `/healthz`, `/metrics` and the status page, from catalog
//! objects only (the info document, the WAL catalog's newest entry, the last verify).
//!
//! This is the seam for `cairn-status` (being built on its own branch): once it is part
//! of the build, health and the gauges come from it and this module shrinks to the
//! glue. The metric names are DESIGN 2b's.

use std::fmt::Write as _;

use cairn_config::HealthConfig;
use cairn_info::StanzaDoc;
use cairn_repo::{RepoError, Repository, StanzaName};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One stanza, as the operational views need it.
#[derive(Debug)]
pub struct StanzaStatus {
    pub doc: StanzaDoc,
    /// When the newest WAL file was archived.
    pub last_archived: Option<OffsetDateTime>,
    /// The newest verify of the whole stanza that found nothing damaged.
    pub last_verify_success: Option<OffsetDateTime>,
    pub health: Health,
}

/// A stanza against `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub stanza: String,
    pub healthy: bool,
    /// What is wrong, one line each (empty when healthy).
    pub reasons: Vec<String>,
}

pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

impl StanzaStatus {
    pub async fn gather(
        repo: &Repository,
        stanza: &StanzaName,
        thresholds: &HealthConfig,
        now: OffsetDateTime,
    ) -> Result<StanzaStatus, RepoError> {
        let doc = StanzaDoc::gather(repo, stanza).await?;
        let (last_archived, last_verify_success) = if doc.status == "ok" {
            let catalog = repo.wal_catalog(stanza).await?;
            let last = catalog
                .entries()
                .filter_map(|e| parse_time(&e.archived_at))
                .max();
            let verify = cairn_verify::last_successful_verify(repo, stanza)
                .await?
                .and_then(|v| parse_time(&v.finished));
            (last, verify)
        } else {
            (None, None)
        };
        let health = health(&doc, last_archived, thresholds, now);
        Ok(StanzaStatus {
            doc,
            last_archived,
            last_verify_success,
            health,
        })
    }

    /// The newest backup's stop time.
    pub fn last_backup(&self) -> Option<(OffsetDateTime, &str)> {
        self.doc
            .backups
            .iter()
            .filter_map(|b| Some((parse_time(&b.stop.time)?, b.label.as_str())))
            .max_by_key(|(t, _)| *t)
    }
}

fn age_text(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The stanza against the thresholds: a missing stanza, no backup or one older than
/// `max-backup-age`, WAL last archived longer ago than `max-archive-lag`.
pub fn health(
    doc: &StanzaDoc,
    last_archived: Option<OffsetDateTime>,
    thresholds: &HealthConfig,
    now: OffsetDateTime,
) -> Health {
    let mut reasons = Vec::new();
    if doc.status != "ok" {
        reasons.push(format!(
            "stanza '{}' does not exist in the repository",
            doc.name
        ));
    } else {
        if let Some(max) = thresholds.max_backup_age {
            let newest = doc
                .backups
                .iter()
                .filter_map(|b| Some((parse_time(&b.stop.time)?, b.label.as_str())))
                .max_by_key(|(t, _)| *t);
            let max_d = time::Duration::try_from(max.as_duration()).unwrap_or(time::Duration::MAX);
            match newest {
                None => reasons.push("no backup yet (max-backup-age is set)".into()),
                Some((t, label)) if now - t > max_d => reasons.push(format!(
                    "newest backup {label} is {} old, more than max-backup-age {}",
                    age_text(now - t),
                    age_text(max_d)
                )),
                Some(_) => {}
            }
        }
        if let Some(max) = thresholds.max_archive_lag {
            let max_d = time::Duration::try_from(max.as_duration()).unwrap_or(time::Duration::MAX);
            match last_archived {
                None => reasons.push("no WAL archived yet (max-archive-lag is set)".into()),
                Some(t) if now - t > max_d => reasons.push(format!(
                    "the newest WAL was archived {} ago, more than max-archive-lag {}",
                    age_text(now - t),
                    age_text(max_d)
                )),
                Some(_) => {}
            }
        }
    }
    Health {
        stanza: doc.name.clone(),
        healthy: reasons.is_empty(),
        reasons,
    }
}

fn secs(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Prometheus text format (0.0.4) for every stanza: DESIGN 2b's gauges, with HELP and TYPE.
pub fn metrics_text(stanzas: &[StanzaStatus]) -> String {
    type Sample = (Vec<(&'static str, String)>, f64);
    let mut families: Vec<(&str, &str, Vec<Sample>)> = vec![
        (
            "cairn_backup_last_success_timestamp_seconds",
            "Stop time of the newest backup of each type.",
            vec![],
        ),
        (
            "cairn_backup_last_duration_seconds",
            "How long the newest backup of each type took.",
            vec![],
        ),
        (
            "cairn_backup_last_added_bytes",
            "Bytes the newest backup of each type added to the repository.",
            vec![],
        ),
        ("cairn_backups", "Usable backups, by type.", vec![]),
        (
            "cairn_archive_last_segment_timestamp_seconds",
            "When the newest WAL file was archived.",
            vec![],
        ),
        (
            "cairn_archive_last_commit_timestamp_seconds",
            "The newest commit found in archived WAL.",
            vec![],
        ),
        (
            "cairn_repo_size_bytes",
            "Bytes the stanza's usable backups added to the repository.",
            vec![],
        ),
        (
            "cairn_recovery_window_start_timestamp_seconds",
            "The earliest moment a restore can reach.",
            vec![],
        ),
        (
            "cairn_recovery_window_end_timestamp_seconds",
            "The latest moment a restore can reach.",
            vec![],
        ),
        (
            "cairn_verify_last_success_timestamp_seconds",
            "When the newest verify of the whole stanza that found nothing damaged ended.",
            vec![],
        ),
        (
            "cairn_verify_last_ok",
            "1 when the newest verify found nothing damaged, 0 when it found damage.",
            vec![],
        ),
        (
            "cairn_drill_last_success_timestamp_seconds",
            "When the newest successful restore drill ended.",
            vec![],
        ),
        (
            "cairn_drill_last_duration_seconds",
            "How long the newest successful restore drill took.",
            vec![],
        ),
        (
            "cairn_stanza_healthy",
            "1 when the stanza meets [health], else 0.",
            vec![],
        ),
    ];
    for s in stanzas {
        let stanza = || ("stanza", s.health.stanza.clone());
        let mut push = |name: &str, labels: Vec<(&'static str, String)>, v: f64| {
            if let Some(f) = families.iter_mut().find(|f| f.0 == name) {
                f.2.push((labels, v));
            }
        };
        for t in ["full", "diff", "incr"] {
            let of_type: Vec<_> = s
                .doc
                .backups
                .iter()
                .filter(|b| b.backup_type == t)
                .collect();
            let typed = || vec![stanza(), ("type", t.to_string())];
            push("cairn_backups", typed(), of_type.len() as f64);
            let newest = of_type
                .iter()
                .filter_map(|b| Some((parse_time(&b.stop.time)?, *b)))
                .max_by_key(|(t, _)| *t);
            if let Some((stop, b)) = newest {
                push(
                    "cairn_backup_last_success_timestamp_seconds",
                    typed(),
                    secs(stop),
                );
                if let Some(start) = parse_time(&b.start.time) {
                    push(
                        "cairn_backup_last_duration_seconds",
                        typed(),
                        (stop - start).as_seconds_f64(),
                    );
                }
                push(
                    "cairn_backup_last_added_bytes",
                    typed(),
                    b.repo_added as f64,
                );
            }
        }
        if let Some(t) = s.last_archived {
            push(
                "cairn_archive_last_segment_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
        }
        if let Some(t) = s
            .doc
            .archive
            .iter()
            .filter_map(|a| a.last_commit.as_deref().and_then(parse_time))
            .max()
        {
            push(
                "cairn_archive_last_commit_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
        }
        if s.doc.status == "ok" {
            let size: u64 = s.doc.backups.iter().map(|b| b.repo_added).sum();
            push("cairn_repo_size_bytes", vec![stanza()], size as f64);
        }
        if let Some(t) = s
            .doc
            .recovery_windows
            .iter()
            .filter_map(|w| parse_time(&w.from))
            .min()
        {
            push(
                "cairn_recovery_window_start_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
        }
        if let Some(t) = s
            .doc
            .recovery_windows
            .iter()
            .filter_map(|w| w.to.as_deref().and_then(parse_time))
            .max()
        {
            push(
                "cairn_recovery_window_end_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
        }
        if let Some(t) = s.last_verify_success {
            push(
                "cairn_verify_last_success_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
        }
        if let Some(d) = s
            .doc
            .last_drill
            .as_ref()
            .filter(|d| d.status == cairn_drill::DrillStatus::Succeeded)
            && let Some(t) = parse_time(&d.finished)
        {
            push(
                "cairn_drill_last_success_timestamp_seconds",
                vec![stanza()],
                secs(t),
            );
            push(
                "cairn_drill_last_duration_seconds",
                vec![stanza()],
                d.duration_seconds,
            );
        }
        if let Some(v) = &s.doc.last_verify {
            let ok = v.status == cairn_verify::Status::Ok;
            push(
                "cairn_verify_last_ok",
                vec![stanza()],
                if ok { 1.0 } else { 0.0 },
            );
        }
        push(
            "cairn_stanza_healthy",
            vec![stanza()],
            if s.health.healthy { 1.0 } else { 0.0 },
        );
    }
    let mut out = String::new();
    for (name, help, samples) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label_value(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {v}", labels.join(","));
        }
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_config::HumanDuration;

    fn doc(json: serde_json::Value) -> StanzaDoc {
        // Built through the info document's own JSON shape.
        let _ = json;
        StanzaDoc {
            name: "main".into(),
            status: "ok",
            db: vec![],
            backups: vec![],
            damaged_backups: vec![],
            warnings: vec![],
            archive: vec![],
            recovery_windows: vec![],
            last_verify: None,
            last_drill: None,
        }
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-02 12:00:00 UTC);

    #[test]
    fn health_names_what_is_stale() {
        let thresholds = HealthConfig {
            max_backup_age: Some(HumanDuration::parse("26h").unwrap()),
            max_archive_lag: Some(HumanDuration::parse("10m").unwrap()),
        };
        let d = doc(serde_json::json!({}));
        let h = health(
            &d,
            Some(NOW - time::Duration::minutes(11)),
            &thresholds,
            NOW,
        );
        assert!(!h.healthy);
        assert_eq!(h.reasons.len(), 2, "{:?}", h.reasons);
        assert!(h.reasons[0].contains("no backup yet"));
        assert!(h.reasons[1].contains("11m ago"), "{:?}", h.reasons);
        let h = health(
            &d,
            Some(NOW - time::Duration::minutes(9)),
            &HealthConfig::default(),
            NOW,
        );
        assert!(h.healthy && h.reasons.is_empty());
        let mut missing = doc(serde_json::json!({}));
        missing.status = "missing";
        assert!(!health(&missing, None, &HealthConfig::default(), NOW).healthy);
    }

    #[test]
    fn metrics_have_help_type_and_escaped_labels() {
        let d = doc(serde_json::json!({}));
        let s = StanzaStatus {
            health: health(&d, None, &HealthConfig::default(), NOW),
            doc: d,
            last_archived: Some(NOW),
            last_verify_success: None,
        };
        let text = metrics_text(&[s]);
        assert!(text.contains("# TYPE cairn_stanza_healthy gauge\n"));
        assert!(
            text.contains("cairn_stanza_healthy{stanza=\"main\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("cairn_backups{stanza=\"main\",type=\"full\"} 0\n"));
        assert!(text.contains(&format!(
            "cairn_archive_last_segment_timestamp_seconds{{stanza=\"main\"}} {}\n",
            NOW.unix_timestamp()
        )));
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
