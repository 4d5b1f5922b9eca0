//! `GET /`: the status page, rendered here as plain HTML with inline CSS and SVG (no
//! script). Per stanza: health against `[health]`, the recoverable windows of each
//! timeline on a time axis (one `rect.window` per window; a window cut short by missing
//! WAL ends in a `line.gap`), the backups, the last verify and drill, the recent jobs.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::job::{Job, JobStatus};
use cairn_status::RunOutcome;

use crate::status::PageStanza;

/// Text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #e3e3e3;text-align:left}\
.ok{color:#17702f}.bad{color:#b3261e;font-weight:bold}.muted{color:#777}\
svg{background:#fff;border:1px solid #ddd}rect.window{fill:#4b8bd6}line.gap{stroke:#b3261e;stroke-width:3}\
text{font-size:11px;fill:#444}";

/// The whole page.
pub fn render(stanzas: &[PageStanza], jobs: &[Vec<Job>], now: OffsetDateTime) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>cairn</title>\
         <style>{STYLE}</style></head><body><h1>cairn</h1><p class=\"muted\">as of {}</p>",
        esc(&crate::job::rfc3339(now))
    );
    let healthy = stanzas.iter().all(|s| s.checked.health.healthy);
    let _ = write!(
        h,
        "<p id=\"health\" class=\"{}\">{}</p>",
        if healthy { "ok" } else { "bad" },
        if healthy {
            "every stanza meets [health]"
        } else {
            "a stanza does not meet [health]"
        }
    );
    for (i, s) in stanzas.iter().enumerate() {
        stanza(
            &mut h,
            s,
            jobs.get(i).map(Vec::as_slice).unwrap_or(&[]),
            now,
        );
    }
    h.push_str("</body></html>\n");
    h
}

fn stanza(h: &mut String, s: &PageStanza, jobs: &[Job], now: OffsetDateTime) {
    let name = esc(s.checked.status.stanza.as_str());
    let _ = write!(
        h,
        "<section class=\"stanza\" id=\"stanza-{name}\"><h2>stanza {name}</h2>"
    );
    let health = &s.checked.health;
    if health.healthy {
        h.push_str("<p class=\"ok health\">healthy</p>");
    } else {
        h.push_str("<ul class=\"bad health\">");
        for r in health.reasons() {
            let _ = write!(h, "<li>{}</li>", esc(r));
        }
        h.push_str("</ul>");
    }
    if !s.checked.status.exists {
        h.push_str("<p>not created yet (run <code>cairn stanza-create</code>)</p></section>");
        return;
    }
    h.push_str("<h3>recoverable windows</h3>");
    windows_svg(h, s, now);
    for w in &s.doc.warnings {
        let _ = write!(h, "<p class=\"bad\">WARNING: {}</p>", esc(w));
    }
    backups(h, s);
    last_runs(h, &s.checked.status);
    recent_jobs(h, jobs);
    h.push_str("</section>");
}

/// A window as drawn: timeline, from, to (the `to` of a window with no commit after its
/// backup is its `from`), and whether a gap ends it.
struct Span {
    timeline: u32,
    from: OffsetDateTime,
    to: OffsetDateTime,
    gap: Option<String>,
    label: String,
}

fn windows_svg(h: &mut String, s: &PageStanza, now: OffsetDateTime) {
    let spans: Vec<Span> = s
        .doc
        .recovery_windows
        .iter()
        .map(|w| {
            let from = w.from.0;
            let to =
                w.to.and_then(|t| t.try_to_offset_datetime())
                    .unwrap_or(from)
                    .max(from);
            Span {
                timeline: w.timeline.0,
                from,
                to,
                gap: w.gap.map(|g| g.to_string()),
                label: w.backup.to_string(),
            }
        })
        .collect();
    if spans.is_empty() {
        h.push_str(
            "<p class=\"muted\" id=\"no-windows\">no recoverable window yet: take a backup</p>",
        );
        return;
    }
    let start = spans.iter().map(|w| w.from).min().expect("spans");
    let end = spans
        .iter()
        .map(|w| w.to)
        .max()
        .expect("spans")
        .max(now.min(start + time::Duration::days(3650)));
    let span_secs = (end - start).as_seconds_f64().max(1.0);
    let mut timelines: Vec<u32> = spans.iter().map(|w| w.timeline).collect();
    timelines.sort_unstable();
    timelines.dedup();
    let (left, width, row) = (90.0, 820.0, 28.0);
    let height = 40.0 + row * timelines.len() as f64;
    let x = |t: OffsetDateTime| left + (t - start).as_seconds_f64() / span_secs * width;
    let _ = write!(
        h,
        "<svg class=\"windows\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         role=\"img\" aria-label=\"recoverable windows of stanza {}\">",
        left + width + 20.0,
        esc(&s.doc.name)
    );
    // The axis: start, middle and end.
    let axis_y = height - 22.0;
    let _ = write!(
        h,
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#999\"/>",
        left + width
    );
    for frac in [0.0, 0.5, 1.0] {
        let t = start + time::Duration::seconds_f64(span_secs * frac);
        let anchor = match frac {
            0.0 => "start",
            1.0 => "end",
            _ => "middle",
        };
        let _ = write!(
            h,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            left + width * frac,
            axis_y + 15.0,
            esc(&short_time(t))
        );
    }
    for (i, tl) in timelines.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let _ = write!(
            h,
            "<text x=\"4\" y=\"{}\">timeline {tl}</text>",
            y + row / 2.0
        );
        for w in spans.iter().filter(|w| w.timeline == *tl) {
            let x0 = x(w.from);
            let x1 = x(w.to).max(x0 + 2.0);
            let _ = write!(
                h,
                "<rect class=\"window\" data-timeline=\"{tl}\" data-from=\"{}\" data-to=\"{}\" x=\"{x0:.1}\" y=\"{y}\" \
                 width=\"{:.1}\" height=\"{}\"><title>timeline {tl}: {} .. {} (from backup {})</title></rect>",
                esc(&crate::job::rfc3339(w.from)),
                esc(&crate::job::rfc3339(w.to)),
                x1 - x0,
                row - 8.0,
                esc(&crate::job::rfc3339(w.from)),
                esc(&crate::job::rfc3339(w.to)),
                esc(&w.label)
            );
            if let Some(g) = &w.gap {
                let _ = write!(
                    h,
                    "<line class=\"gap\" x1=\"{x1:.1}\" y1=\"{}\" x2=\"{x1:.1}\" y2=\"{}\"><title>gap: {} is missing</title></line>",
                    y - 3.0,
                    y + row - 5.0,
                    esc(g)
                );
            }
        }
    }
    h.push_str("</svg>");
}

fn short_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn backups(h: &mut String, s: &PageStanza) {
    let _ = write!(h, "<h3>backups ({})</h3>", s.doc.backups.len());
    if s.doc.backups.is_empty() && s.doc.damaged_backups.is_empty() {
        h.push_str("<p class=\"muted\">none yet</p>");
        return;
    }
    h.push_str("<table class=\"backups\"><tr><th>label</th><th>type</th><th>timeline</th><th>start</th><th>stop</th><th>added</th><th></th></tr>");
    for b in s.doc.backups.iter().rev() {
        let _ = write!(
            h,
            "<tr class=\"backup\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} MiB</td><td>{}</td></tr>",
            esc(&b.label),
            esc(&b.backup_type),
            b.timeline,
            esc(&b.start.time),
            esc(&b.stop.time),
            b.repo_added as f64 / 1048576.0,
            if b.pinned { "pinned" } else { "" }
        );
    }
    for d in &s.doc.damaged_backups {
        let _ = write!(
            h,
            "<tr class=\"damaged\"><td>{}</td><td>{}</td><td colspan=\"5\" class=\"bad\">DAMAGED: {}</td></tr>",
            esc(&d.label),
            d.backup_type,
            esc(&d.reason)
        );
    }
    h.push_str("</table>");
}

/// The newest run of a recorded job, from `cairn-status` (what `/metrics` reports).
fn run_cell(run: Option<&RunOutcome>, ok_word: &str, bad_word: &str) -> String {
    let Some(r) = run else {
        return "<span class=\"muted\">never</span>".to_string();
    };
    let mut cell = format!(
        "<span class=\"{}\">{}</span> at {}",
        if r.success { "ok" } else { "bad" },
        if r.success { ok_word } else { bad_word },
        esc(&r.finished.to_string())
    );
    if let Some(d) = r.duration_seconds {
        let _ = write!(cell, " ({d:.1}s)");
    }
    if !r.whole_stanza {
        cell.push_str(" (one backup)");
    }
    if let Some(e) = r.error.as_deref().filter(|_| !r.success) {
        let _ = write!(cell, ": {}", esc(e));
    }
    cell
}

fn last_runs(h: &mut String, s: &cairn_status::StanzaStatus) {
    // Records written by `cairn verify` / `cairn drill` from cron and by serve's jobs.
    let verify = run_cell(s.verify.last.as_ref(), "ok", "DAMAGED");
    let drill = run_cell(s.drill.last.as_ref(), "succeeded", "FAILED");
    let _ = write!(
        h,
        "<table class=\"last\"><tr><th>last verify</th><td id=\"last-verify\">{verify}</td></tr>\
         <tr><th>last drill</th><td id=\"last-drill\">{drill}</td></tr></table>"
    );
}

fn recent_jobs(h: &mut String, jobs: &[Job]) {
    if jobs.is_empty() {
        return;
    }
    h.push_str("<h3>recent jobs</h3><table class=\"jobs\"><tr><th>id</th><th>kind</th><th>origin</th><th>status</th><th>started</th><th>finished</th><th></th></tr>");
    for j in jobs.iter().rev().take(15) {
        let status = match j.status {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        };
        let origin = serde_json::to_value(j.origin)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"job\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{status}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j.id),
            j.kind,
            esc(&origin),
            if j.status == JobStatus::Failed {
                "bad"
            } else {
                ""
            },
            esc(j.started.as_deref().unwrap_or("")),
            esc(j.finished.as_deref().unwrap_or("")),
            esc(j.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Checked;
    use cairn_info::StanzaDoc;
    use cairn_planner::RecoveryWindow;
    use cairn_status::{RunHistory, StanzaStatus, Thresholds, UtcTime};

    fn window(tl: u32, from: &str, to: Option<&str>, gap: Option<&str>) -> RecoveryWindow {
        RecoveryWindow {
            timeline: cairn_pgformat::TimelineId(tl),
            backup: cairn_repo::BackupLabel::new("20261201-010000F").unwrap(),
            from: cairn_planner::BackupTime::parse(from).unwrap(),
            to: to.map(|t| t.parse().unwrap()),
            gap: gap.map(|g| g.parse().unwrap()),
        }
    }

    #[test]
    fn one_rect_per_window_gaps_marked_and_text_escaped() {
        let doc = StanzaDoc {
            name: "ma<in".into(),
            status: "ok",
            db: vec![],
            backups: vec![],
            damaged_backups: vec![],
            warnings: vec!["<script>alert(1)</script>".into()],
            last_drill: None,
            archive: vec![],
            recovery_windows: vec![
                window(
                    1,
                    "2026-12-01T01:00:00Z",
                    Some("2026-12-01T05:00:00Z"),
                    Some("000000010000000000000009"),
                ),
                window(
                    1,
                    "2026-12-01T07:00:00Z",
                    Some("2026-12-01T09:00:00Z"),
                    None,
                ),
                window(2, "2026-12-01T09:30:00Z", None, None),
            ],
            last_verify: None,
        };
        let now = time::macros::datetime!(2026-12-01 10:00:00 UTC);
        let mut status = StanzaStatus::missing(cairn_repo::StanzaName::new("main").unwrap());
        status.exists = true;
        let finished = UtcTime::parse_rfc3339("2026-12-01T09:00:00Z").unwrap();
        let run = |success: bool, error: Option<&str>| RunOutcome {
            started: None,
            finished,
            duration_seconds: Some(12.0),
            success,
            status: None,
            whole_stanza: true,
            error: error.map(Into::into),
        };
        status.verify = RunHistory {
            last: Some(run(false, Some("chunk <x> damaged"))),
            last_success: None,
        };
        status.drill = RunHistory {
            last: Some(run(true, None)),
            last_success: Some(run(true, None)),
        };
        let thresholds = Thresholds {
            max_backup_age: Some(std::time::Duration::from_secs(26 * 3600)),
            max_archive_lag: None,
        };
        let health = status.health(&thresholds, UtcTime::from_offset(now));
        let s = PageStanza {
            checked: Checked { status, health },
            doc,
        };
        let html = render(&[s], &[vec![]], now);
        assert_eq!(html.matches("<rect class=\"window\"").count(), 3);
        assert_eq!(html.matches("<line class=\"gap\"").count(), 1);
        assert!(html.contains("timeline 2"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("aria-label=\"recoverable windows of stanza ma&lt;in\""));
        assert!(html.contains("there is no backup yet"), "{html}");
        let cell = |id: &str| {
            let at = html.find(&format!("id=\"{id}\"")).expect(id);
            html[at..].split("</td>").next().unwrap().to_string()
        };
        assert!(cell("last-drill").contains("succeeded"), "{html}");
        let verify = cell("last-verify");
        assert!(verify.contains("DAMAGED") && verify.contains("chunk &lt;x&gt; damaged"));
        assert!(!html.contains("<script"), "no script on the page");
    }
}
