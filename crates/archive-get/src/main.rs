//! `cairn-archive-get WAL_NAME DEST`: for `restore_command = 'cairn-archive-get %f "%p"'`.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_archive_get::GetOutcome;
use cairn_exit::{ErrorKind, Failure};
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
    /// Internal: run as the prefetch worker (`[archive] async = true`).
    #[arg(long, hide = true)]
    prefetch_worker: bool,
    /// Configuration file (default: $CAIRN_CONFIG, then /etc/cairn/cairn.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stanza (default: $CAIRN_STANZA, or the only one configured).
    #[arg(long, env = "CAIRN_STANZA")]
    stanza: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The worker fetches several segments at once; a call handles one.
    let built = if args.prefetch_worker {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            return Failure::new(ErrorKind::Internal, format!("cannot start runtime: {e}"))
                .exit("cairn-archive-get");
        }
    };
    let mode = if args.standby {
        cairn_archive_get::Mode::Standby
    } else {
        cairn_archive_get::Mode::Recovery
    };
    let result = runtime.block_on(async {
        let env = cairn_config::Env::from_process();
        let cfg = cairn_config::Config::load(args.config.as_deref(), &env)?;
        if args.prefetch_worker {
            return cairn_archive_get::prefetch_worker(&cfg, args.stanza.as_deref())
                .await
                .map(|()| GetOutcome::Written);
        }
        cairn_archive_get::get(
            &cfg,
            args.stanza.as_deref(),
            &args.wal_name,
            &args.dest,
            mode,
        )
        .await
    });
    match result {
        Ok(GetOutcome::Written) => ExitCode::SUCCESS,
        Ok(GetOutcome::NotInArchive) => ExitCode::from(ErrorKind::NotInArchive.code()),
        Err(f) if args.prefetch_worker => f.exit("cairn-archive-get"),
        Err(f) => {
            cairn_archive_get::exit_failure(&args.wal_name, mode, f).exit("cairn-archive-get")
        }
    }
}
