//! `cairn-archive-get WAL_NAME DEST`: for `restore_command = 'cairn-archive-get %f "%p"'`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cairn_archive_get::GetOutcome;
use cairn_exit::ErrorKind;
use cairn_startup::{LogFlags, LogRole, Program, Runtime};
use clap::Parser;

/// Fetch one WAL file from the cairn repository. Exit 0: written; 1: not in the archive.
#[derive(Debug, Parser)]
#[command(name = "cairn-archive-get", version)]
struct Args {
    /// The file PostgreSQL asks for (%f).
    wal_name: String,
    /// Where to write it (%p).
    dest: PathBuf,
    /// Standby mode: errors other than "not in the archive" keep their own exit codes
    /// (below 126) so a standby retries, instead of 126, which stops recovery.
    #[arg(long)]
    standby: bool,
    /// Fetch only this cluster generation's WAL (written by `cairn restore` for a backup
    /// taken before a `stanza-upgrade`).
    #[arg(long, value_name = "DB_ID")]
    db_id: Option<u32>,
    /// Internal: run as the prefetch worker (`[archive] async = true`).
    #[arg(long, hide = true)]
    prefetch_worker: bool,
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
    // The worker fetches several segments at once; a call handles one.
    let runtime = if args.prefetch_worker {
        Runtime::MultiThread { workers: None }
    } else {
        Runtime::CurrentThread
    };
    let mode = if args.standby {
        cairn_archive_get::Mode::Standby
    } else {
        cairn_archive_get::Mode::Recovery
    };
    let worker = args.prefetch_worker;
    let name = args.wal_name.clone();
    let program = Program {
        log: args.log.args(),
        role: if worker {
            LogRole::Worker
        } else {
            LogRole::Command
        },
        ..Program::new("cairn-archive-get", runtime)
    };
    cairn_startup::run(
        program,
        || async {
            let cfg = cairn_startup::load_config(args.config.as_deref())?;
            let stanza = args.stanza.as_deref();
            if args.prefetch_worker {
                cairn_archive_get::prefetch_worker(&cfg, stanza).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let generation = args.db_id.map(cairn_repo::DbId);
            let started = Instant::now();
            let got =
                cairn_archive_get::get(&cfg, stanza, &args.wal_name, &args.dest, mode, generation)
                    .await?;
            cairn_archive_get::report::served(&args.wal_name, &args.dest, got, started.elapsed());
            match got {
                GetOutcome::Written => Ok(ExitCode::SUCCESS),
                GetOutcome::NotInArchive => Ok(ExitCode::from(ErrorKind::NotInArchive.code())),
            }
        },
        // In recovery, any failure but "not in the archive" must stop PostgreSQL.
        |f| {
            if worker {
                f
            } else {
                cairn_archive_get::exit_failure(&name, mode, f)
            }
        },
    )
}
