//! `cairn verify`: run cairn-verify, show its progress on stderr, print the report (text or
//! JSON, schema in docs/verify-json.md) and one summary line. Exit 0 when nothing is
//! damaged, 6 (corrupt) when anything is.

use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::BackupLabel;
use cairn_verify::{ProgressSnapshot, Status, VerifyOptions};

use crate::args::{Output, ProgressMode};
use crate::progress::{self, Snapshot};
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
    let counters = opts.progress.clone();
    let display = progress::start(progress, &format!("verify {name}"), move || {
        snapshot(&counters.snapshot())
    });
    let result = cairn_verify::verify(&repo, &name, &opts).await;
    display.finish(result.is_ok()).await;
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

fn snapshot(s: &ProgressSnapshot) -> Snapshot {
    Snapshot {
        done: s.bytes,
        total: s.planned,
        phase: Some(format!(
            "{}, {}",
            s.phase.name(),
            crate::quantity::count(s.objects, "object", "objects")
        )),
    }
}
