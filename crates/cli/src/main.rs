//! `cairn`: the operator's command line. Argument parsing, configuration, output formats
//! and exit codes live here; the work itself is in the library crates.

mod args;
mod backup;
mod check;
mod drill;
mod duration;
mod expire;
mod health;
mod info;
mod metrics;
mod pg;
mod progress;
mod quantity;
mod rekey;
mod restore;
mod restore_output;
mod serve;
mod stanza;
mod verify;

use std::process::ExitCode;

use cairn_exit::{ErrorKind, Failure};
use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // archive-get in recovery: any failure but "not in the archive" must stop PostgreSQL.
    let get = match &cli.command {
        Command::ArchiveGet {
            wal_name, standby, ..
        } => Some((wal_name.clone(), *standby)),
        _ => None,
    };
    let program = cairn_startup::Program {
        log: cli.log.args(),
        ..cairn_startup::Program::new(
            "cairn",
            cairn_startup::Runtime::MultiThread { workers: Some(2) },
        )
    };
    cairn_startup::run(
        program,
        || run(cli),
        |f| match get {
            Some((name, standby)) => {
                let mode = if standby {
                    cairn_archive_get::Mode::Standby
                } else {
                    cairn_archive_get::Mode::Recovery
                };
                cairn_archive_get::exit_failure(&name, mode, f)
            }
            None => f,
        },
    )
}

/// Help and version go out as clap writes them; a malformed command line is one
/// `cairn: ERROR:` line and a hint, exit 2, like every other refusal.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    if matches!(
        e.kind(),
        Clap::DisplayHelp | Clap::DisplayVersion | Clap::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        // Help asked for exits 0; help shown for a missing subcommand exits 2.
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line");
    let message = first.strip_prefix("error: ").unwrap_or(first).trim();
    Failure::new(ErrorKind::Usage, message)
        .with_hint("see `cairn --help` and `cairn COMMAND --help`")
        .exit("cairn")
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let cfg = cairn_startup::load_config(cli.config.as_deref())?;
    let stanza = cli.stanza.as_deref();
    let progress = cli.progress;
    match cli.command {
        Command::StanzaCreate => stanza::create(&cfg, stanza).await,
        Command::StanzaUpgrade => stanza::upgrade(&cfg, stanza).await,
        Command::StanzaDelete { force } => stanza::delete(&cfg, stanza, force).await,
        Command::Check {
            archive_timeout,
            max_backup_age,
            max_archive_lag,
        } => {
            let t = health::thresholds(&cfg, max_backup_age, max_archive_lag);
            check::run(&cfg, stanza, archive_timeout, t).await
        }
        Command::Metrics { push } => metrics::run(&cfg, stanza, push.as_deref()).await,
        Command::ArchivePush { wal_path } => {
            let started = std::time::Instant::now();
            let outcome = cairn_archive_push::push(&cfg, stanza, &wal_path).await?;
            cairn_archive_push::report::pushed(&wal_path, &outcome, started.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Command::ArchiveGet {
            wal_name,
            dest,
            standby,
            db_id,
        } => {
            let mode = if standby {
                cairn_archive_get::Mode::Standby
            } else {
                cairn_archive_get::Mode::Recovery
            };
            let generation = db_id.map(cairn_repo::DbId);
            let started = std::time::Instant::now();
            let got =
                cairn_archive_get::get(&cfg, stanza, &wal_name, &dest, mode, generation).await?;
            cairn_archive_get::report::served(&wal_name, &dest, got, started.elapsed());
            match got {
                cairn_archive_get::GetOutcome::Written => Ok(ExitCode::SUCCESS),
                cairn_archive_get::GetOutcome::NotInArchive => {
                    Ok(ExitCode::from(ErrorKind::NotInArchive.code()))
                }
            }
        }
        Command::Info { output } => info::run(&cfg, stanza, output).await,
        Command::Serve => serve::run(cfg).await,
        Command::Drill(args) => drill::run(&cfg, stanza, &args).await,
        Command::Rekey { new_pass_file } => rekey::run(&cfg, new_pass_file.as_deref()).await,
        Command::Restore(args) => restore::run(&cfg, stanza, &args, progress).await,
        Command::Backup {
            backup_type,
            archive_timeout,
            spread,
            pin,
            annotations,
        } => {
            let extras = backup::Extras { pin, annotations };
            backup::run(
                &cfg,
                stanza,
                backup_type,
                archive_timeout,
                spread,
                progress,
                extras,
            )
            .await
        }
        Command::Pin { label } => expire::pin(&cfg, stanza, &label, true).await,
        Command::Unpin { label } => expire::pin(&cfg, stanza, &label, false).await,
        Command::Expire { dry_run, set } => {
            expire::run(&cfg, stanza, dry_run, set.as_deref(), progress).await
        }
        Command::Verify { set, output } => {
            verify::run(&cfg, stanza, set.as_deref(), output, progress).await
        }
    }
}
