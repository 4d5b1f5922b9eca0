//! `cairn verify`: run cairn-verify, show its progress on stderr, print the report (text or
//! JSON, schema in docs/verify-json.md) and one summary line. Exit 0 when nothing is
//! damaged, 6 (corrupt) when anything is.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::BackupLabel;
use cairn_verify::{Progress, ProgressSnapshot, Status, VerifyOptions};

use crate::args::{Output, ProgressMode};
use crate::stanza::stanza_name;

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    set: Option<&str>,
    output: Output,
    progress: ProgressMode,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let set = set
        .map(BackupLabel::new)
        .transpose()
        .map_err(|m| Failure::new(ErrorKind::Usage, m))?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let opts = VerifyOptions {
        set,
        ..Default::default()
    };
    let ticker = (progress == ProgressMode::Auto).then(|| {
        let counters = opts.progress.clone();
        tokio::spawn(async move { show_progress(counters).await })
    });
    let result = cairn_verify::verify(&repo, &name, &opts).await;
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await;
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
    }
    let report = result?;
    match output {
        Output::Json => {
            let s = serde_json::to_string_pretty(&report).expect("the report serializes");
            println!("{s}");
        }
        Output::Text => print!("{}", report.text()),
    }
    let summary = report.summary();
    match report.status {
        Status::Ok => {
            match output {
                Output::Text => println!("{summary}"),
                Output::Json => eprintln!("cairn: {summary}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Status::Damaged => Err(Failure::new(ErrorKind::Corrupt, summary).with_hint(
            "each problem names the damaged object and what it costs; backups not named still \
             restore (see docs/verify-json.md)",
        )),
    }
}

fn line(s: &ProgressSnapshot) -> String {
    let mib = |b: u64| b as f64 / 1048576.0;
    let of = match s.planned {
        Some(p) if p >= s.bytes => format!(
            " of ~{:.0} MiB ({:.0}%)",
            mib(p),
            s.bytes as f64 * 100.0 / p as f64
        ),
        _ => String::new(),
    };
    format!(
        "verify: {}: {}, {:.1} MiB{of} checked",
        s.phase.name(),
        crate::quantity::count(s.objects, "object", "objects"),
        mib(s.bytes)
    )
}

/// A line redrawn on a terminal, or a plain line every ten seconds otherwise, until
/// aborted.
async fn show_progress(counters: Arc<Progress>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let l = line(&counters.snapshot());
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{l}");
        } else {
            let _ = writeln!(err, "cairn: {l}");
        }
    }
}
