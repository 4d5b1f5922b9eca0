//! Progress of long commands (backup, restore, verify, expire), one implementation for
//! all: the library reports through counters it only adds to; this module reads them a
//! few times a second and shows a bar (indicatif) when stderr is a terminal, or a plain
//! line every ten seconds and a last one at the end when it is not (cron, systemd, CI).
//! `--progress never`: nothing.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::ProgressMode;

/// What a run has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Bytes done.
    pub done: u64,
    /// Bytes expected in all, once known (an estimate).
    pub total: Option<u64>,
    /// What it is doing now (`packs`, `WAL`), if it has phases.
    pub phase: Option<String>,
}

/// How often a plain line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);
const BAR_EVERY: Duration = Duration::from_millis(200);

/// A progress display, running until [`Display::finish`].
pub struct Display {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
    /// Plain lines: what to say last, so even a short run leaves its total and rate.
    last_line: Option<Box<dyn FnOnce() -> String + Send>>,
}

impl std::fmt::Debug for Display {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Display")
            .field("bar", &self.bar.is_some())
            .field("plain", &self.last_line.is_some())
            .finish()
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// The plain line: `cairn: backup 2026...F: packs: 120.0 of ~800.0 MiB (15%), 40.0 MiB/s`.
pub fn plain_line(what: &str, s: &Snapshot, elapsed: Duration) -> String {
    let rate = mib(s.done) / elapsed.as_secs_f64().max(0.001);
    let phase = s
        .phase
        .as_deref()
        .map(|p| format!("{p}: "))
        .unwrap_or_default();
    match s.total.filter(|t| *t > 0) {
        Some(t) => format!(
            "cairn: {what}: {phase}{:.1} of ~{:.1} MiB ({:.0}%), {rate:.1} MiB/s",
            mib(s.done),
            mib(t),
            (s.done as f64 * 100.0 / t as f64).min(100.0)
        ),
        None => format!(
            "cairn: {what}: {phase}{:.1} MiB, {rate:.1} MiB/s",
            mib(s.done)
        ),
    }
}

/// Start showing the progress of `what`, reading it with `poll`.
pub fn start(
    mode: ProgressMode,
    what: &str,
    poll: impl Fn() -> Snapshot + Send + Sync + 'static,
) -> Display {
    if mode == ProgressMode::Never {
        return Display {
            task: None,
            bar: None,
            last_line: None,
        };
    }
    let what = what.to_string();
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("#>-"),
        );
        bar.set_prefix(what);
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(BAR_EVERY);
            loop {
                tick.tick().await;
                let s = poll();
                if let Some(t) = s.total {
                    shown.set_length(t.max(s.done));
                }
                shown.set_position(s.done);
                shown.set_message(s.phase.unwrap_or_default());
            }
        });
        return Display {
            task: Some(task),
            bar: Some(bar),
            last_line: None,
        };
    }
    let poll = Arc::new(poll);
    let started = Instant::now();
    let (periodic, label) = (poll.clone(), what.clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PLAIN_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!("{}", plain_line(&label, &periodic(), started.elapsed()));
        }
    });
    Display {
        task: Some(task),
        bar: None,
        last_line: Some(Box::new(move || {
            plain_line(&what, &poll(), started.elapsed())
        })),
    }
}

impl Display {
    /// Stop and clear the display; plain lines end with the totals when the run `succeeded`
    /// (a failure's own line says enough).
    pub async fn finish(self, succeeded: bool) {
        if let Some(t) = self.task {
            t.abort();
            let _ = t.await;
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if let Some(line) = self.last_line.filter(|_| succeeded) {
            eprintln!("{}", line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far_and_how_fast() {
        let s = Snapshot {
            done: 100 << 20,
            total: Some(400 << 20),
            phase: Some("packs".into()),
        };
        assert_eq!(
            plain_line("verify main", &s, Duration::from_secs(10)),
            "cairn: verify main: packs: 100.0 of ~400.0 MiB (25%), 10.0 MiB/s"
        );
        let s = Snapshot {
            done: 3 << 20,
            ..Default::default()
        };
        assert_eq!(
            plain_line("backup X", &s, Duration::from_secs(1)),
            "cairn: backup X: 3.0 MiB, 3.0 MiB/s"
        );
    }
}
