//! `cairn check`: the configuration loads, the repository opens, the stanza matches the
//! running cluster, archiving is configured and not failing (`pg_stat_archiver`), a real
//! WAL switch arrives in the archive, and the stanza meets the `[health]` thresholds
//! (exit 17 naming what is stale when it does not).

use std::process::ExitCode;
use std::time::Duration;

use cairn_backup::BackupError;
use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_pgformat::SegmentName;

use crate::health;
use crate::pg;
use crate::stanza::stanza_name;

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    timeout: Duration,
    thresholds: cairn_status::Thresholds,
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
    // Where the async workers wrote why they failed, before any failure is reported.
    if let Some(w) = health::worker_log_warning(cfg) {
        eprintln!("cairn: WARNING: {w}");
    }
    // Archiving that fails now is said at once, not after the wait below.
    if let Some(f) = health::Archiver::read(&client).await?.failure() {
        return Err(f);
    }
    // Health is judged on the state before this check's own WAL switch.
    let status = cairn_status::stanza_status(&repo, &name).await?;
    let verdict = status.health(&thresholds, cairn_status::UtcTime::now());
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
    let waited = tokio::select! {
        w = cairn_backup::wait_for_wal(&repo, &name, cur.db_id, [wal], timeout) => w,
        f = health::watch_archiver(&client) => return Err(f),
    };
    match waited {
        Ok(()) => {
            println!(
                "WAL segment {segment} archived: stanza '{name}', repository {}",
                repo.location()
            );
            if let Some(f) = health::unhealthy(&status, &verdict) {
                return Err(f);
            }
            let newest = match &status.backups.newest {
                Some(b) => format!(
                    "newest backup {} finished {} ago",
                    b.label,
                    cairn_status::human_age(b.finished.age_at(cairn_status::UtcTime::now()))
                ),
                None => "no backup yet".to_string(),
            };
            println!("check passed: stanza '{name}', {newest}");
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
