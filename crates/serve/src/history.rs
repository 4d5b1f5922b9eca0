//! The job history in the repository: records of kind `job` per stanza
//! (`stanza/S/record/job/...`, crates/repo's records). A job is written when it starts
//! and again when it ends, by the stanza's one worker, in that order; the newest record
//! of an id wins. Jobs still waiting when serve stops are written once, as cancelled. So after a restart the
//! history is back, and a job whose last record still says `running` was cut short by
//! the restart: it is shown as failed, saying so.

use std::collections::BTreeMap;

use cairn_repo::{RecordKind, RepoError, Repository, StanzaName};

use crate::job::{Job, JobStatus};

/// Jobs kept per stanza.
pub const JOBS_KEPT: usize = 100;

/// What a job cut short by a restart shows as its error.
pub const INTERRUPTED: &str = "cairn serve stopped while this job ran";

fn kind() -> RecordKind {
    RecordKind::new("job").expect("a valid record kind")
}

/// Store the job's current state (best effort for the caller: an error is returned to be
/// logged, the job itself goes on).
pub async fn save(repo: &Repository, stanza: &StanzaName, job: &Job) -> Result<(), RepoError> {
    let mut stored = job.clone();
    stored.received_bytes = None;
    // Two records per job (start and end).
    repo.put_record_keeping(stanza, &kind(), &stored, 2 * JOBS_KEPT)
        .await?;
    Ok(())
}

/// The stanza's jobs, oldest first, as the history has them.
pub async fn load(repo: &Repository, stanza: &StanzaName) -> Result<Vec<Job>, RepoError> {
    let (records, _damaged) = repo.records::<Job>(stanza, &kind(), 2 * JOBS_KEPT).await?;
    Ok(fold(records.into_iter().map(|r| r.value)))
}

/// The newest state of each id, in the order of each id's first record (the order the
/// jobs were accepted in); jobs still running when the history was written are failed
/// as interrupted.
pub fn fold(records: impl IntoIterator<Item = Job>) -> Vec<Job> {
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    for job in records {
        match position.get(&job.id) {
            Some(&i) => jobs[i] = job,
            None => {
                position.insert(job.id.clone(), jobs.len());
                jobs.push(job);
            }
        }
    }
    for job in &mut jobs {
        if job.status == JobStatus::Running {
            job.status = JobStatus::Failed;
            job.error = Some(INTERRUPTED.into());
            job.error_kind = Some("interrupted".into());
        }
    }
    let skip = jobs.len().saturating_sub(JOBS_KEPT);
    jobs.drain(..skip);
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobKind, Origin};
    use cairn_repo::BackupType;

    #[tokio::test]
    async fn the_history_survives_and_an_interrupted_job_says_so() {
        let repo = Repository::in_memory().await;
        let main = StanzaName::new("main").unwrap();
        let t0 = time::macros::datetime!(2026-12-02 01:00:00 UTC);
        let mut done = Job::new(JobKind::Verify, "main", Origin::Schedule, t0);
        save(&repo, &main, &done).await.unwrap();
        done.succeed(serde_json::json!({"status": "ok"}), t0);
        save(&repo, &main, &done).await.unwrap();
        let cut = Job::new(
            JobKind::Backup(BackupType::Full),
            "main",
            Origin::Api,
            t0 + time::Duration::minutes(1),
        );
        save(&repo, &main, &cut).await.unwrap();

        let jobs = load(&repo, &main).await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].id, done.id);
        assert_eq!(jobs[0].status, JobStatus::Succeeded);
        assert_eq!(jobs[1].id, cut.id);
        assert_eq!(jobs[1].status, JobStatus::Failed);
        assert_eq!(jobs[1].error.as_deref(), Some(INTERRUPTED));
        // Another stanza's history is its own.
        let other = StanzaName::new("other").unwrap();
        assert!(load(&repo, &other).await.unwrap().is_empty());
    }

    #[test]
    fn only_the_newest_jobs_are_kept() {
        let t0 = time::macros::datetime!(2026-12-02 01:00:00 UTC);
        let jobs: Vec<Job> = (0..JOBS_KEPT as i64 + 7)
            .map(|i| {
                let mut j = Job::new(
                    JobKind::Verify,
                    "main",
                    Origin::Schedule,
                    t0 + time::Duration::minutes(i),
                );
                j.succeed(serde_json::json!(i), t0);
                j
            })
            .collect();
        let newest = jobs.last().unwrap().id.clone();
        let kept = fold(jobs);
        assert_eq!(kept.len(), JOBS_KEPT);
        assert_eq!(kept.last().unwrap().id, newest);
        assert_eq!(kept[0].result, Some(serde_json::json!(7)));
    }
}
