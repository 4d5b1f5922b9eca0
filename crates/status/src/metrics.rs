//! The Prometheus text format (version 0.0.4) of stanza statuses: every gauge of DESIGN
//! section 2b, labelled `stanza` (and `type` for per-backup-type gauges), plus a few more.
//! Names never change; [`METRICS`] is the list `docs/metrics.md` documents.
//!
//! Every family's `# HELP` and `# TYPE` lines are always written; a gauge with nothing to
//! report yet (no verify has run) has no sample rather than a made-up value.

use std::fmt::Write;

use cairn_repo::BackupType;

use crate::health::Health;
use crate::model::StanzaStatus;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: name, help text, labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const S: &[&str] = &["stanza"];
const ST: &[&str] = &["stanza", "type"];

macro_rules! def {
    ($name:literal, $labels:expr, $help:literal) => {
        MetricDef {
            name: $name,
            help: $help,
            labels: $labels,
        }
    };
}

/// Every metric `cairn metrics` and `cairn serve`'s `/metrics` export, all gauges.
pub const METRICS: &[MetricDef] = &[
    def!(
        "cairn_backup_last_success_timestamp_seconds",
        ST,
        "When the newest usable backup of this type finished (Unix time)."
    ),
    def!(
        "cairn_backup_last_duration_seconds",
        ST,
        "How long the newest usable backup of this type took."
    ),
    def!(
        "cairn_backup_last_added_bytes",
        ST,
        "Bytes the newest usable backup of this type added to the repository."
    ),
    def!("cairn_backups", ST, "Usable backups of this type."),
    def!(
        "cairn_backups_damaged",
        S,
        "Backups whose manifest cannot be used."
    ),
    def!(
        "cairn_archive_last_segment_timestamp_seconds",
        S,
        "When the last WAL segment was archived (Unix time)."
    ),
    def!(
        "cairn_archive_last_commit_timestamp_seconds",
        S,
        "The newest commit time in the archived WAL (Unix time)."
    ),
    def!(
        "cairn_archive_segments",
        S,
        "WAL segments (and partial segments) in the archive."
    ),
    def!(
        "cairn_archive_bytes",
        S,
        "Size of the archived WAL files before compression."
    ),
    def!(
        "cairn_archive_gap_segments",
        S,
        "Segments missing between archived ones, over all timelines."
    ),
    def!(
        "cairn_repo_size_bytes",
        S,
        "Estimated repository bytes of the stanza: what its backups added plus its archived WAL (uncompressed)."
    ),
    def!(
        "cairn_recovery_window_start_timestamp_seconds",
        S,
        "The earliest moment a point-in-time restore can reach (Unix time)."
    ),
    def!(
        "cairn_recovery_window_end_timestamp_seconds",
        S,
        "The latest moment a point-in-time restore can reach (Unix time)."
    ),
    def!(
        "cairn_recovery_windows",
        S,
        "Recoverable windows over all timelines; more windows than timelines means gaps."
    ),
    def!(
        "cairn_verify_last_success_timestamp_seconds",
        S,
        "When the newest whole-stanza verify that found nothing damaged finished (Unix time)."
    ),
    def!(
        "cairn_verify_last_run_timestamp_seconds",
        S,
        "When the newest verify finished, whatever its outcome (Unix time)."
    ),
    def!(
        "cairn_verify_last_ok",
        S,
        "1 when the newest verify found nothing damaged, else 0."
    ),
    def!(
        "cairn_drill_last_success_timestamp_seconds",
        S,
        "When the newest successful restore drill finished (Unix time)."
    ),
    def!(
        "cairn_drill_last_duration_seconds",
        S,
        "How long the newest successful restore drill took."
    ),
    def!(
        "cairn_drill_last_run_timestamp_seconds",
        S,
        "When the newest restore drill finished, whatever its outcome (Unix time)."
    ),
    def!(
        "cairn_drill_last_ok",
        S,
        "1 when the newest restore drill succeeded, else 0."
    ),
    def!(
        "cairn_stanza_healthy",
        S,
        "1 when the stanza meets the [health] thresholds, else 0."
    ),
];

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

fn type_name(t: BackupType) -> String {
    t.to_string()
}

/// The samples of one stanza.
pub fn samples(s: &StanzaStatus, health: &Health) -> Vec<Sample> {
    let stanza = s.stanza.to_string();
    let mut out = Vec::new();
    let mut put = |name: &'static str, t: Option<BackupType>, value: f64| {
        let mut labels = vec![("stanza", stanza.clone())];
        if let Some(t) = t {
            labels.push(("type", type_name(t)));
        }
        out.push(Sample {
            name,
            labels,
            value,
        });
    };
    for ts in &s.backups.by_type {
        let t = Some(ts.backup_type);
        put("cairn_backups", t, ts.count as f64);
        if let Some(b) = &ts.last {
            put(
                "cairn_backup_last_success_timestamp_seconds",
                t,
                b.finished.unix_seconds(),
            );
            put("cairn_backup_last_duration_seconds", t, b.duration_seconds);
            put("cairn_backup_last_added_bytes", t, b.added_bytes as f64);
        }
    }
    put("cairn_backups_damaged", None, s.backups.damaged as f64);
    let a = &s.archive;
    if let Some(seg) = &a.last_segment {
        put(
            "cairn_archive_last_segment_timestamp_seconds",
            None,
            seg.archived_at.unix_seconds(),
        );
    }
    if let Some(c) = a.last_commit {
        put(
            "cairn_archive_last_commit_timestamp_seconds",
            None,
            c.unix_seconds(),
        );
    }
    put("cairn_archive_segments", None, a.segments as f64);
    put("cairn_archive_bytes", None, a.bytes as f64);
    put("cairn_archive_gap_segments", None, a.gaps as f64);
    put("cairn_repo_size_bytes", None, s.repo_size_bytes as f64);
    if let Some(w) = s.recovery_window {
        put(
            "cairn_recovery_window_start_timestamp_seconds",
            None,
            w.start.unix_seconds(),
        );
        put(
            "cairn_recovery_window_end_timestamp_seconds",
            None,
            w.end.unix_seconds(),
        );
    }
    put("cairn_recovery_windows", None, s.windows.len() as f64);
    if let Some(v) = &s.verify.last_success {
        put(
            "cairn_verify_last_success_timestamp_seconds",
            None,
            v.finished.unix_seconds(),
        );
    }
    if let Some(v) = &s.verify.last {
        put(
            "cairn_verify_last_run_timestamp_seconds",
            None,
            v.finished.unix_seconds(),
        );
        put("cairn_verify_last_ok", None, f64::from(u8::from(v.success)));
    }
    if let Some(d) = &s.drill.last_success {
        put(
            "cairn_drill_last_success_timestamp_seconds",
            None,
            d.finished.unix_seconds(),
        );
        if let Some(secs) = d.duration_seconds {
            put("cairn_drill_last_duration_seconds", None, secs);
        }
    }
    if let Some(d) = &s.drill.last {
        put(
            "cairn_drill_last_run_timestamp_seconds",
            None,
            d.finished.unix_seconds(),
        );
        put("cairn_drill_last_ok", None, f64::from(u8::from(d.success)));
    }
    put(
        "cairn_stanza_healthy",
        None,
        f64::from(u8::from(health.healthy)),
    );
    out
}

/// `\`, `"` and newlines escaped, as label values need.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The exposition of these stanzas: each family's HELP and TYPE, then its samples.
pub fn render(stanzas: &[(&StanzaStatus, &Health)]) -> String {
    let all: Vec<Sample> = stanzas.iter().flat_map(|(s, h)| samples(s, h)).collect();
    let mut out = String::new();
    for def in METRICS {
        let _ = writeln!(out, "# HELP {} {}", def.name, def.help);
        let _ = writeln!(out, "# TYPE {} gauge", def.name);
        for sample in all.iter().filter(|x| x.name == def.name) {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                sample.name,
                labels.join(","),
                value_text(sample.value)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_belongs_to_a_listed_family_with_its_labels() {
        let s = StanzaStatus::missing(cairn_repo::StanzaName::new("main").unwrap());
        let h = s.health(&Default::default(), crate::UtcTime::now());
        for x in samples(&s, &h) {
            let def = METRICS.iter().find(|d| d.name == x.name).unwrap();
            let names: Vec<&str> = x.labels.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, def.labels, "{}", x.name);
        }
        let mut names: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a name listed twice");
    }

    #[test]
    fn a_missing_stanza_is_unhealthy_and_reports_no_made_up_times() {
        let s = StanzaStatus::missing(cairn_repo::StanzaName::new("main").unwrap());
        let h = s.health(&Default::default(), crate::UtcTime::now());
        assert!(!h.healthy);
        let text = render(&[(&s, &h)]);
        assert!(text.contains("cairn_stanza_healthy{stanza=\"main\"} 0\n"));
        assert!(text.contains("cairn_backups{stanza=\"main\",type=\"full\"} 0\n"));
        assert!(text.contains("# TYPE cairn_verify_last_success_timestamp_seconds gauge\n"));
        assert!(!text.contains("cairn_verify_last_success_timestamp_seconds{"));
    }

    #[test]
    fn docs_metrics_md_lists_every_family_with_its_labels() {
        let doc = include_str!("../../../docs/metrics.md");
        for def in METRICS {
            let row = format!("| `{}` | {} |", def.name, def.labels.join(", "));
            assert!(doc.contains(&row), "docs/metrics.md lacks the row {row}");
        }
        let listed = doc.lines().filter(|l| l.starts_with("| `cairn_")).count();
        assert_eq!(
            listed,
            METRICS.len(),
            "docs/metrics.md lists a family cairn does not export"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(value_text(1.5), "1.5");
        assert_eq!(value_text(1_764_582_900.0), "1764582900");
    }
}
