//! Backup progress: a one-line bar on a terminal (bytes, rate, ETA), plain log lines every
//! ten seconds otherwise. The backup library reports bytes received; this draws them.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    tty: bool,
    label: String,
}

impl Progress {
    /// `total`: the expected bytes (an estimate), for the ETA.
    pub fn new(total: Option<u64>, label: &str) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            started: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
            label: label.to_string(),
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let mib = |b: f64| b / 1048576.0;
        match self.total.filter(|t| *t > 0) {
            Some(t) => {
                let pct = (self.done as f64 / t as f64 * 100.0).min(100.0);
                let eta = if rate > 0.0 {
                    (t.saturating_sub(self.done)) as f64 / rate
                } else {
                    0.0
                };
                let width = 30;
                let filled = (pct / 100.0 * width as f64) as usize;
                format!(
                    "backup {} [{}{}] {:5.1}% {:.0}/{:.0} MiB {:.1} MiB/s ETA {:.0}s",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    pct,
                    mib(self.done as f64),
                    mib(t as f64),
                    mib(rate),
                    eta
                )
            }
            None => format!(
                "backup {}: {:.0} MiB {:.1} MiB/s",
                self.label,
                mib(self.done as f64),
                mib(rate)
            ),
        }
    }

    /// `done` bytes so far; `force` at the end draws the last state whatever the time.
    pub fn update(&mut self, done: u64, force: bool) {
        self.done = done;
        self.report(force);
    }

    fn report(&mut self, force: bool) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if !force && self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}", self.line());
            if force {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "cairn: {}", self.line());
        }
    }
}
