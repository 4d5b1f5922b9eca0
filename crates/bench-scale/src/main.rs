//! `cairn-bench-scale`: the synthetic repository of the scale benchmark (`benches/scale.py`).
//!
//! `generate` writes, through the repository crate's own writers (so every object has its
//! real format and encryption, only tiny), a year of a busy cluster: WAL segments on three
//! timelines with their summaries and catalog, backups with their packs, pack indexes,
//! manifests and catalog entries. Journal entries carry the synthetic time they stand for,
//! so catalog snapshots and their margins look as they would after a year.
//!
//! `chunk-index` times what a backup's start reads: the stanza's chunk index.
//!
//! `append` archives more segments after the newest, as a busy cluster does between two
//! reads of the catalog (the next `info` then brings the WAL index up to date).
//!
//! ```text
//! cairn-bench-scale generate --config bench.toml --segments 100000 --backups 1000 --packs 50000
//! cairn-bench-scale chunk-index --config bench.toml
//! cairn-bench-scale append --config bench.toml --segments 100
//! ```

mod generate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cairn_repo::StanzaName;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage:
  cairn-bench-scale generate --config FILE [--stanza main] [--segments N] [--backups N] [--packs N] [--chunks-per-pack N]
  cairn-bench-scale chunk-index --config FILE [--stanza main] [--no-snapshot]
  cairn-bench-scale append --config FILE [--stanza main] [--segments N]";

#[derive(Debug)]
struct Args {
    command: String,
    config: PathBuf,
    stanza: StanzaName,
    shape: generate::Shape,
    /// chunk-index: read every pack index, as before snapshots.
    no_snapshot: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let command = argv.next().ok_or("no command")?;
    let mut config = None;
    let mut stanza = StanzaName::new("main").expect("a stanza name");
    let mut shape = generate::Shape::default();
    let mut no_snapshot = false;
    while let Some(flag) = argv.next() {
        if flag == "--no-snapshot" {
            no_snapshot = true;
            continue;
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{value}' is not a number"))
        };
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(&value)),
            "--stanza" => stanza = StanzaName::new(&value)?,
            "--segments" => shape.segments = number()?,
            "--backups" => shape.backups = number()?,
            "--packs" => shape.packs = number()?,
            "--chunks-per-pack" => shape.chunks_per_pack = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(Args {
        command,
        config: config.ok_or("--config is required")?,
        stanza,
        shape,
        no_snapshot,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cairn-bench-scale: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-bench-scale: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let cfg = cairn_startup::load_config(Some(&args.config))?;
    match args.command.as_str() {
        "generate" => {
            let (repo, _) = cairn_startup::open_or_create_repo(&cfg).await?;
            let done = generate::generate(repo, &args.stanza, &args.shape).await?;
            println!("{}", serde_json::to_string(&done)?);
        }
        "append" => {
            let repo = cairn_startup::open_repo(&cfg).await?;
            let done = generate::append(repo, &args.stanza, args.shape.segments).await?;
            println!("{}", serde_json::to_string(&done)?);
        }
        "chunk-index" => {
            let repo = cairn_startup::open_repo(&cfg).await?;
            let clock = Instant::now();
            // What `cairn backup` calls, or the pack indexes alone as before snapshots.
            let index = match args.no_snapshot {
                false => repo.backup_chunk_index(&args.stanza).await?,
                true => repo.chunk_index_with(&args.stanza, false).await?,
            };
            let secs = clock.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "seconds": secs,
                    "chunks": index.len(),
                    "from_snapshot": index.from_snapshot(),
                    "warnings": index.warnings.len(),
                })
            );
        }
        other => return Err(format!("unknown command {other}\n{USAGE}").into()),
    }
    Ok(())
}
