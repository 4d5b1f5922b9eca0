//! `cairn check`: the configuration loads, the repository opens, the stanza matches the
//! running cluster, archiving is configured, and a real WAL switch arrives in the archive.

use std::process::ExitCode;
use std::time::Duration;

use cairn_backup::BackupError;
use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_pgformat::SegmentName;

use crate::pg;
use crate::stanza::stanza_name;

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    timeout: Duration,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let (_, st) = cfg.stanza(stanza)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&name).await?;
    let client = pg::connect(st).await?;
    // The same checks `cairn backup` makes: the server runs on pg-data and is the
    // stanza's cluster.
    pg::require_stanza_cluster(&client, st, &name, &info).await?;
    let cur = info.current();
    let row = client
        .query_one(
            "SELECT current_setting('archive_mode'), current_setting('archive_command')",
            &[],
        )
        .await
        .map_err(|e| pg::sql_failure("cannot read archive settings", &e))?;
    let (mode, command): (String, String) = (row.get(0), row.get(1));
    if mode == "off" {
        return Err(
            Failure::new(ErrorKind::Config, "archive_mode is off on the server")
                .with_hint("set archive_mode = on in postgresql.conf and restart PostgreSQL"),
        );
    }
    if !command.contains("archive-push") {
        return Err(Failure::new(
            ErrorKind::Config,
            format!("archive_command is '{command}', which does not call cairn"),
        )
        .with_hint("set archive_command = 'cairn-archive-push %p' and reload PostgreSQL"));
    }
    let row = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .map_err(|e| pg::sql_failure("cannot switch WAL", &e))?;
    let segment: String = row.get(0);
    let wal: SegmentName = segment.parse().map_err(|_| {
        Failure::new(
            ErrorKind::Postgres,
            format!("server returned an odd WAL file name '{segment}'"),
        )
    })?;
    match cairn_backup::wait_for_wal(&repo, &name, cur.db_id, [wal], timeout).await {
        Ok(()) => {
            println!(
                "check passed: stanza '{name}', repository {}, WAL segment {segment} archived",
                repo.backend().location()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(BackupError::WalNotArchived { segment, waited }) => Err(Failure::new(
            ErrorKind::ArchiveTimeout,
            format!("WAL segment {segment} did not arrive in the repository within {waited:?}"),
        )
        .with_hint(
            "look for archive_command errors in the PostgreSQL log and in pg_stat_archiver",
        )),
        Err(e) => Err(e.into()),
    }
}
