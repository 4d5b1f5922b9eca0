//! The `[schedule]` jobs: each cron expression (5 fields, UTC) queues its job in every
//! configured stanza when it fires. A job of the same class still waiting or running is
//! not queued twice: the firing is logged and skipped, never retried in a loop.

use std::sync::Arc;
use std::time::Duration;

use cairn_config::{CronSchedule, ScheduleConfig};
use cairn_repo::BackupType;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::context::Context;
use crate::job::{Job, JobKind, Origin};
use crate::queue::Refusal;

/// The configured schedules, by job kind.
pub fn entries(s: &ScheduleConfig) -> Vec<(JobKind, CronSchedule)> {
    [
        (JobKind::Backup(BackupType::Full), &s.backup_full),
        (JobKind::Backup(BackupType::Diff), &s.backup_diff),
        (JobKind::Backup(BackupType::Incr), &s.backup_incr),
        (JobKind::Expire, &s.expire),
        (JobKind::Verify, &s.verify),
        (JobKind::Drill, &s.drill),
    ]
    .into_iter()
    .filter_map(|(k, c)| Some((k, c.clone()?)))
    .collect()
}

/// When each entry fires next after `now`, and which fire first.
pub fn next_firing(
    entries: &[(JobKind, CronSchedule)],
    now: OffsetDateTime,
) -> Option<(OffsetDateTime, Vec<JobKind>)> {
    let times: Vec<(OffsetDateTime, JobKind)> = entries
        .iter()
        .map(|(k, c)| (c.next_after(now), *k))
        .collect();
    let first = times.iter().map(|(t, _)| *t).min()?;
    // Two jobs due in one minute: a full before a diff before an incr, as listed.
    let kinds = times
        .into_iter()
        .filter(|(t, _)| *t == first)
        .map(|(_, k)| kind_rank(k))
        .collect::<Vec<_>>();
    let mut kinds = kinds;
    kinds.sort_by_key(|(r, _)| *r);
    Some((first, kinds.into_iter().map(|(_, k)| k).collect()))
}

fn kind_rank(k: JobKind) -> (u8, JobKind) {
    let r = match k {
        JobKind::Backup(BackupType::Full) => 0,
        JobKind::Backup(BackupType::Diff) => 1,
        JobKind::Backup(BackupType::Incr) => 2,
        JobKind::Expire => 3,
        JobKind::Verify => 4,
        JobKind::Drill => 5,
    };
    (r, k)
}

/// Queue scheduled jobs as their times come, until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let entries = entries(&ctx.cfg.schedule);
    if entries.is_empty() {
        return;
    }
    let mut after = OffsetDateTime::now_utc();
    while let Some((at, kinds)) = next_firing(&entries, after) {
        tracing::debug!(at = %crate::job::rfc3339(at), "next scheduled job");
        // Sleep in steps: a wall clock that jumps is noticed within a minute.
        loop {
            let now = OffsetDateTime::now_utc();
            if now >= at {
                break;
            }
            let wait = Duration::try_from(at - now)
                .unwrap_or_default()
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        if *stop.borrow() {
            return;
        }
        for stanza in &ctx.stanzas {
            for kind in &kinds {
                let job = Job::new(
                    *kind,
                    stanza.as_str(),
                    Origin::Schedule,
                    OffsetDateTime::now_utc(),
                );
                queue(&ctx, job);
            }
        }
        after = at;
    }
}

/// Queue a job the server decided on itself; a refusal is logged, not retried.
pub fn queue(ctx: &Context, job: Job) -> Option<Job> {
    let (kind, stanza) = (job.kind, job.stanza.clone());
    match ctx.jobs.submit(job) {
        Ok(job) => {
            tracing::info!(job = %job.id, kind = %kind, stanza = %stanza, origin = ?job.origin, "job queued");
            Some(job)
        }
        Err(Refusal::Busy { id, kind: other }) => {
            tracing::info!(kind = %kind, stanza = %stanza, "skipped: {other} job {id} is still waiting or running");
            None
        }
        Err(Refusal::ShuttingDown) | Err(Refusal::UnknownStanza) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(s: &str) -> CronSchedule {
        CronSchedule::parse(s).unwrap()
    }

    #[test]
    fn the_earliest_entries_fire_together_fulls_first() {
        let entries = vec![
            (JobKind::Backup(BackupType::Incr), cron("0 2 * * *")),
            (JobKind::Verify, cron("30 3 * * *")),
            (JobKind::Backup(BackupType::Full), cron("0 2 * * 0")),
        ];
        // 2026-12-05 is a Saturday: the next 02:00 is Sunday's, full and incr together.
        let now = time::macros::datetime!(2026-12-05 12:00:00 UTC);
        let (at, kinds) = next_firing(&entries, now).unwrap();
        assert_eq!(at, time::macros::datetime!(2026-12-06 02:00:00 UTC));
        assert_eq!(
            kinds,
            [
                JobKind::Backup(BackupType::Full),
                JobKind::Backup(BackupType::Incr)
            ]
        );
        let (at, kinds) = next_firing(&entries, at).unwrap();
        assert_eq!(at, time::macros::datetime!(2026-12-06 03:30:00 UTC));
        assert_eq!(kinds, [JobKind::Verify]);
        assert!(next_firing(&[], now).is_none());
    }

    #[test]
    fn every_configured_key_becomes_an_entry() {
        let s = ScheduleConfig {
            backup_diff: Some(cron("0 1 * * *")),
            drill: Some(cron("0 5 1 * *")),
            ..Default::default()
        };
        let kinds: Vec<JobKind> = entries(&s).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, [JobKind::Backup(BackupType::Diff), JobKind::Drill]);
    }
}
