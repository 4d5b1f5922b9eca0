//! `cairn-archive-push WAL_PATH`: for PostgreSQL's `archive_command = 'cairn-archive-push %p'`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cairn_startup::{LogFlags, LogRole, Program, Runtime};
use clap::Parser;

/// Archive one WAL file into the cairn repository. Exit 0 means it is durably stored.
#[derive(Debug, Parser)]
#[command(name = "cairn-archive-push", version)]
struct Args {
    /// The file PostgreSQL passes as %p (relative paths resolve against the current directory).
    wal_path: PathBuf,
    /// Internal: run as the async worker for this pg_wal directory (WAL_PATH is pg_wal).
    #[arg(long, hide = true)]
    async_worker: bool,
    /// Configuration file (default: $CAIRN_CONFIG, then /etc/cairn/cairn.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stanza (default: $CAIRN_STANZA, or the only one configured).
    #[arg(long, env = "CAIRN_STANZA")]
    stanza: Option<String>,
    #[command(flatten)]
    log: LogFlags,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let program = Program {
        log: args.log.args(),
        role: if args.async_worker {
            LogRole::Worker
        } else {
            LogRole::Command
        },
        ..Program::new("cairn-archive-push", Runtime::CurrentThread)
    };
    cairn_startup::run(
        program,
        || async {
            let cfg = cairn_startup::load_config(args.config.as_deref())?;
            let stanza = args.stanza.as_deref();
            if args.async_worker {
                cairn_archive_push::async_worker(&cfg, stanza, &args.wal_path).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let started = Instant::now();
            let outcome = cairn_archive_push::push(&cfg, stanza, &args.wal_path).await?;
            cairn_archive_push::report::pushed(&args.wal_path, &outcome, started.elapsed());
            Ok(ExitCode::SUCCESS)
        },
        |f| f,
    )
}
