//! `cairn backup`: connect over the replication protocol, check the cluster is the
//! stanza's, choose type and parent, stream the base backup into the repository.

use std::process::ExitCode;
use std::time::Duration;

use cairn_backup::{BackupPlan, RunOptions, ServerSource};
use cairn_basebackup::{BaseBackupOptions, ConnParams, ReplicationConnection};
use cairn_config::{Config, StanzaConfig};
use cairn_exit::{Classify, ErrorKind, Failure};
use cairn_pgformat::WalSegmentSize;
use cairn_repo::BackupType;

use crate::args::BackupType as ArgType;
use crate::progress::Progress;
use crate::stanza::stanza_name;

pub fn conn_params(st: &StanzaConfig) -> ConnParams {
    ConnParams {
        host: st.pg_host.clone(),
        port: st.pg_port,
        user: st.pg_user.clone(),
        password: st.pg_password.as_ref().map(|p| p.expose().to_string()),
        sslmode: st.pg_sslmode.clone(),
        application_name: "cairn backup".into(),
    }
}

/// `SHOW wal_segment_size` says e.g. `16MB` or `1GB`.
fn parse_size(s: &str) -> Option<WalSegmentSize> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u32 = num.parse().ok()?;
    let bytes = match unit.trim() {
        "kB" => n.checked_mul(1 << 10)?,
        "MB" => n.checked_mul(1 << 20)?,
        "GB" => n.checked_mul(1 << 30)?,
        _ => return None,
    };
    WalSegmentSize::new(bytes).ok()
}

fn pg_failure(e: cairn_basebackup::ReplicationError) -> Failure {
    let mut f = Failure::new(e.kind(), e.to_string());
    f.hint = e.hint();
    f
}

/// The size of the databases, for the progress bar's ETA (none if SQL is not reachable).
async fn size_estimate(st: &StanzaConfig) -> Option<u64> {
    let client = crate::pg::connect(st).await.ok()?;
    let row = client
        .query_one(
            "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
            &[],
        )
        .await
        .ok()?;
    row.get::<_, Option<i64>>(0).map(|v| v as u64)
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    requested: Option<ArgType>,
    archive_timeout: u64,
    spread: bool,
) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let (_, st) = cfg.stanza(stanza)?;
    let repo = cairn_repo::open_configured(cfg).await?;
    let info = repo.require_stanza(&name).await?;
    let mut conn = ReplicationConnection::connect(&conn_params(st))
        .await
        .map_err(pg_failure)?;
    let id = conn.identify_system().await.map_err(pg_failure)?;
    let generation = info.current();
    if id.system_id != generation.system_id {
        return Err(cairn_backup::BackupError::WrongSystem {
            stanza: name.to_string(),
            found: id.system_id,
            expected: generation.system_id,
        }
        .into());
    }
    let seg_text = conn.show("wal_segment_size").await.map_err(pg_failure)?;
    let seg = parse_size(&seg_text).ok_or_else(|| {
        Failure::new(
            ErrorKind::Postgres,
            format!("unexpected wal_segment_size '{seg_text}'"),
        )
    })?;
    let estimate = size_estimate(st).await;
    let existing = repo.backups(&name).await?;
    let requested = requested.map(|t| match t {
        ArgType::Full => BackupType::Full,
        ArgType::Diff => BackupType::Diff,
        ArgType::Incr => BackupType::Incr,
    });
    let plan = BackupPlan::choose(
        requested,
        &existing,
        generation.db_id,
        time::OffsetDateTime::now_utc(),
    );
    if plan.promoted_to_full {
        eprintln!("cairn: no full backup of this cluster exists yet: taking a full backup");
    }
    eprintln!(
        "cairn: {} backup {}{} starting (changed data found by content addressing: the server sends every file)",
        plan.backup_type,
        plan.label,
        plan.parent
            .as_ref()
            .map(|p| format!(" on top of {}", p.label))
            .unwrap_or_default()
    );
    let stream = conn
        .base_backup(&BaseBackupOptions {
            label: format!("cairn {}", plan.label),
            fast_checkpoint: !spread,
            incremental: false,
        })
        .await
        .map_err(pg_failure)?;
    let mut source = Progress::new(ServerSource::new(stream), estimate, plan.label.as_str());
    let opts = RunOptions {
        archive_timeout: Duration::from_secs(archive_timeout),
        wal_segment_size: seg,
        progress_every: None,
        ..Default::default()
    };
    let m = cairn_backup::run(&repo, &info, &plan, &mut source, &opts).await?;
    println!(
        "backup {} ({}) complete: start {} stop {}, database {:.1} MiB, received {:.1} MiB, added {:.1} MiB to the repository",
        m.label,
        m.backup_type,
        m.start_lsn,
        m.stop_lsn,
        m.db_size as f64 / 1048576.0,
        m.bytes_received as f64 / 1048576.0,
        m.repo_added as f64 / 1048576.0
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn segment_sizes() {
        assert_eq!(super::parse_size("16MB").unwrap().bytes(), 16 << 20);
        assert_eq!(super::parse_size("1GB").unwrap().bytes(), 1 << 30);
        assert!(super::parse_size("3MB").is_none());
        assert!(super::parse_size("MB").is_none());
    }
}
