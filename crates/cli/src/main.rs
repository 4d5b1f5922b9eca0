//! `cairn`: the operator's command line. Argument parsing, configuration, output formats
//! and exit codes live here; the work itself is in the library crates.

mod args;
mod backup;
mod check;
mod info;
mod pg;
mod progress;
mod restore;
mod stanza;

use std::process::ExitCode;

use cairn_exit::{ErrorKind, Failure};
use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // archive-get in recovery: any failure but "not in the archive" must stop PostgreSQL.
    let get = match &cli.command {
        Command::ArchiveGet {
            wal_name, standby, ..
        } => Some((wal_name.clone(), *standby)),
        _ => None,
    };
    cairn_startup::main_with(
        "cairn",
        cairn_startup::Runtime::MultiThread { workers: Some(2) },
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

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let cfg = cairn_startup::load_config(cli.config.as_deref())?;
    let stanza = cli.stanza.as_deref();
    match cli.command {
        Command::StanzaCreate => stanza::create(&cfg, stanza).await,
        Command::StanzaUpgrade => stanza::upgrade(&cfg, stanza).await,
        Command::StanzaDelete { force } => stanza::delete(&cfg, stanza, force).await,
        Command::Check { archive_timeout } => check::run(&cfg, stanza, archive_timeout).await,
        Command::ArchivePush { wal_path } => {
            cairn_archive_push::push(&cfg, stanza, &wal_path).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ArchiveGet {
            wal_name,
            dest,
            standby,
        } => {
            let mode = if standby {
                cairn_archive_get::Mode::Standby
            } else {
                cairn_archive_get::Mode::Recovery
            };
            match cairn_archive_get::get(&cfg, stanza, &wal_name, &dest, mode).await? {
                cairn_archive_get::GetOutcome::Written => Ok(ExitCode::SUCCESS),
                cairn_archive_get::GetOutcome::NotInArchive => {
                    Ok(ExitCode::from(ErrorKind::NotInArchive.code()))
                }
            }
        }
        Command::Info { output } => info::run(&cfg, stanza, output).await,
        Command::Restore(args) => restore::run(&cfg, stanza, &args).await,
        Command::Backup {
            backup_type,
            archive_timeout,
            spread,
        } => backup::run(&cfg, stanza, backup_type, archive_timeout, spread).await,
        Command::Expire { .. } | Command::Verify => Err(Failure::new(
            ErrorKind::Unsupported,
            "this command is not implemented yet in this build of cairn",
        )
        .with_hint("see the project's open issues for its status")),
    }
}
