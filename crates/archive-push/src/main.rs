//! `cairn-archive-push WAL_PATH`: for PostgreSQL's `archive_command = 'cairn-archive-push %p'`.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_repo::PushOutcome;
use cairn_startup::Runtime;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    cairn_startup::main("cairn-archive-push", Runtime::CurrentThread, || async {
        let cfg = cairn_startup::load_config(args.config.as_deref())?;
        let stanza = args.stanza.as_deref();
        if args.async_worker {
            cairn_archive_push::async_worker(&cfg, stanza, &args.wal_path).await?;
            return Ok(ExitCode::SUCCESS);
        }
        if let PushOutcome::Repaired { damage } =
            cairn_archive_push::push(&cfg, stanza, &args.wal_path).await?
        {
            eprintln!(
                "cairn-archive-push: WARNING: the stored copy of {} {}; replaced by this good copy",
                args.wal_path.display(),
                damage.map_or_else(
                    || "had vanished".to_string(),
                    |d| format!("was damaged ({d})")
                )
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
