//! `cairn-archive-push WAL_PATH`: for PostgreSQL's `archive_command = 'cairn-archive-push %p'`.

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_exit::{ErrorKind, Failure};
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Failure::new(ErrorKind::Internal, format!("cannot start runtime: {e}"))
                .exit("cairn-archive-push");
        }
    };
    let result = runtime.block_on(async {
        let env = cairn_config::Env::from_process();
        let cfg = cairn_config::Config::load(args.config.as_deref(), &env)?;
        if args.async_worker {
            return cairn_archive_push::async_worker(&cfg, args.stanza.as_deref(), &args.wal_path)
                .await
                .map(|()| cairn_repo::PushOutcome::Stored);
        }
        cairn_archive_push::push(&cfg, args.stanza.as_deref(), &args.wal_path).await
    });
    match result {
        Ok(cairn_repo::PushOutcome::Repaired { damage }) => {
            eprintln!(
                "cairn-archive-push: WARNING: the stored copy of {} {}; replaced by this good copy",
                args.wal_path.display(),
                damage.map_or_else(
                    || "had vanished".to_string(),
                    |d| format!("was damaged ({d})")
                )
            );
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(f) => f.exit("cairn-archive-push"),
    }
}
