//! The jobs `cairn serve` knows, and one queue per stanza: a stanza's jobs run one at a
//! time, in the order accepted. A second job of one class (every backup is one class)
//! while one waits or runs is refused, so a schedule that fires during a long backup
//! does not pile up backups, and the API answers 409. Across processes the repository's
//! locks keep the rule (a `cairn backup` from cron while serve runs one fails at once).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::history::JOBS_KEPT;
use crate::job::{Job, JobKind, JobStatus};

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `cairn serve` is shutting down.
    ShuttingDown,
    /// A job of the same class waits or runs: its id and kind.
    Busy {
        id: String,
        kind: JobKind,
    },
    UnknownStanza,
}

#[derive(Debug, Default)]
struct Lane {
    queue: VecDeque<String>,
    running: Option<String>,
    /// Every job of the stanza this process knows, oldest first (the history, then new).
    known: VecDeque<String>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<String, Job>,
    lanes: BTreeMap<String, Lane>,
    accepting: bool,
}

/// All jobs, shared by the API, the scheduler and the stanza workers.
#[derive(Debug)]
pub struct Jobs {
    state: Mutex<State>,
    /// Wakes the stanza workers: a job was queued, or shutdown began.
    wake: Notify,
}

impl Jobs {
    /// Queues for `stanzas`, with their history (oldest first).
    pub fn new(history: BTreeMap<String, Vec<Job>>) -> Arc<Jobs> {
        let mut state = State {
            accepting: true,
            ..Default::default()
        };
        for (stanza, jobs) in history {
            let lane = state.lanes.entry(stanza).or_default();
            for job in jobs {
                lane.known.push_back(job.id.clone());
                state.jobs.insert(job.id.clone(), job);
            }
        }
        Arc::new(Jobs {
            state: Mutex::new(state),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("jobs state")
    }

    /// Accept `job` into its stanza's queue.
    pub fn submit(&self, job: Job) -> Result<Job, Refusal> {
        let mut guard = self.state();
        let st = &mut *guard;
        if !st.accepting {
            return Err(Refusal::ShuttingDown);
        }
        let lane = st
            .lanes
            .get_mut(&job.stanza)
            .ok_or(Refusal::UnknownStanza)?;
        let class = job.kind.class();
        if let Some(other) = lane
            .running
            .iter()
            .chain(lane.queue.iter())
            .filter_map(|id| st.jobs.get(id))
            .find(|j| j.kind.class() == class)
        {
            return Err(Refusal::Busy {
                id: other.id.clone(),
                kind: other.kind,
            });
        }
        lane.queue.push_back(job.id.clone());
        lane.known.push_back(job.id.clone());
        // Finished jobs beyond what the history keeps are forgotten here too.
        while lane.known.len() > JOBS_KEPT {
            let Some(old) = lane.known.front() else { break };
            if st.jobs.get(old).is_some_and(|j| !j.is_done()) {
                break;
            }
            let old = lane.known.pop_front().expect("a front");
            st.jobs.remove(&old);
        }
        st.jobs.insert(job.id.clone(), job.clone());
        drop(guard);
        self.wake.notify_waiters();
        Ok(job)
    }

    /// The next job of `stanza` to run, marked started; `None` when its queue is empty.
    pub fn start_next(&self, stanza: &str, now: time::OffsetDateTime) -> Option<Job> {
        let mut guard = self.state();
        let st = &mut *guard;
        let lane = st.lanes.get_mut(stanza)?;
        if lane.running.is_some() || !st.accepting {
            return None;
        }
        let id = lane.queue.pop_front()?;
        lane.running = Some(id.clone());
        let job = st.jobs.get_mut(&id)?;
        job.started = Some(crate::job::rfc3339(now));
        Some(job.clone())
    }

    /// Store the job's new state; a finished job leaves its lane's running slot.
    pub fn update(&self, job: &Job) {
        let mut st = self.state();
        if job.is_done()
            && let Some(lane) = st.lanes.get_mut(&job.stanza)
            && lane.running.as_deref() == Some(job.id.as_str())
        {
            lane.running = None;
        }
        st.jobs.insert(job.id.clone(), job.clone());
        drop(st);
        if job.is_done() {
            self.wake.notify_waiters();
        }
    }

    /// Record bytes received by a running backup.
    pub fn progress(&self, id: &str, received: u64) {
        if let Some(j) = self.state().jobs.get_mut(id) {
            j.received_bytes = Some(received);
        }
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.state().jobs.get(id).cloned()
    }

    /// The stanza's jobs, oldest first.
    pub fn of_stanza(&self, stanza: &str) -> Vec<Job> {
        let st = self.state();
        st.lanes
            .get(stanza)
            .map(|l| {
                l.known
                    .iter()
                    .filter_map(|id| st.jobs.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest finished job of `kind`s class in `stanza`.
    pub fn last_finished(&self, stanza: &str, pred: impl Fn(&Job) -> bool) -> Option<Job> {
        self.of_stanza(stanza)
            .into_iter()
            .rev()
            .find(|j| j.is_done() && pred(j))
    }

    /// Whether a job of `kind`'s class waits or runs in `stanza`.
    pub fn busy(&self, stanza: &str, kind: JobKind) -> Option<Job> {
        let st = self.state();
        let lane = st.lanes.get(stanza)?;
        lane.running
            .iter()
            .chain(lane.queue.iter())
            .filter_map(|id| st.jobs.get(id))
            .find(|j| j.kind.class() == kind.class())
            .cloned()
    }

    /// Stop accepting and starting jobs. Returns the jobs that were waiting (now
    /// failed, not started); running ones go on.
    pub fn close(&self, now: time::OffsetDateTime) -> Vec<Job> {
        let mut guard = self.state();
        let st = &mut *guard;
        st.accepting = false;
        let mut dropped = Vec::new();
        for lane in st.lanes.values_mut() {
            for id in lane.queue.drain(..) {
                if let Some(job) = st.jobs.get_mut(&id) {
                    job.status = JobStatus::Failed;
                    job.error = Some("cairn serve stopped before this job started".into());
                    job.error_kind = Some("cancelled".into());
                    job.finished = Some(crate::job::rfc3339(now));
                    dropped.push(job.clone());
                }
            }
        }
        drop(guard);
        self.wake.notify_waiters();
        dropped
    }

    pub fn accepting(&self) -> bool {
        self.state().accepting
    }

    /// Whether a job runs in any stanza.
    pub fn any_running(&self) -> bool {
        self.state().lanes.values().any(|l| l.running.is_some())
    }

    /// Wait for a change worth looking at (a job queued or finished, shutdown).
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// A future that completes at the next change; create it before checking the state,
    /// so no change between the check and the wait is missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Origin;
    use cairn_repo::BackupType;

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-12-02 01:45:00 UTC);

    fn jobs() -> Arc<Jobs> {
        let mut h = BTreeMap::new();
        h.insert("main".to_string(), vec![]);
        h.insert("other".to_string(), vec![]);
        Jobs::new(h)
    }

    fn job(kind: JobKind, stanza: &str) -> Job {
        Job::new(kind, stanza, Origin::Api, NOW)
    }

    #[test]
    fn one_job_at_a_time_per_stanza_and_never_two_backups_queued() {
        let j = jobs();
        let full = j
            .submit(job(JobKind::Backup(BackupType::Full), "main"))
            .unwrap();
        // A second backup of any type is refused, naming the first.
        match j.submit(job(JobKind::Backup(BackupType::Incr), "main")) {
            Err(Refusal::Busy { id, .. }) => assert_eq!(id, full.id),
            other => panic!("{other:?}"),
        }
        // Other stanzas and other classes are accepted.
        j.submit(job(JobKind::Backup(BackupType::Full), "other"))
            .unwrap();
        let verify = j.submit(job(JobKind::Verify, "main")).unwrap();
        assert_eq!(
            j.submit(job(JobKind::Verify, "nowhere")),
            Err(Refusal::UnknownStanza)
        );
        // The stanza runs its jobs in order, one at a time.
        let first = j.start_next("main", NOW).unwrap();
        assert_eq!(first.id, full.id);
        assert!(first.started.is_some());
        assert!(j.start_next("main", NOW).is_none(), "one at a time");
        assert!(j.busy("main", JobKind::Backup(BackupType::Diff)).is_some());
        let mut done = first;
        done.succeed(serde_json::json!({}), NOW);
        j.update(&done);
        assert!(j.busy("main", JobKind::Backup(BackupType::Diff)).is_none());
        assert_eq!(j.start_next("main", NOW).unwrap().id, verify.id);
        // Once the backup ended another is accepted.
        j.submit(job(JobKind::Backup(BackupType::Incr), "main"))
            .unwrap();
        assert_eq!(j.of_stanza("main").len(), 3);
    }

    #[test]
    fn closing_refuses_new_jobs_and_fails_waiting_ones() {
        let j = jobs();
        let running = j.submit(job(JobKind::Verify, "main")).unwrap();
        j.start_next("main", NOW).unwrap();
        let waiting = j
            .submit(job(JobKind::Backup(BackupType::Full), "main"))
            .unwrap();
        let dropped = j.close(NOW);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].id, waiting.id);
        assert_eq!(dropped[0].status, JobStatus::Failed);
        assert_eq!(
            j.submit(job(JobKind::Drill, "main")),
            Err(Refusal::ShuttingDown)
        );
        assert!(j.any_running());
        assert_eq!(j.get(&running.id).unwrap().status, JobStatus::Running);
        assert!(j.start_next("main", NOW).is_none());
    }
}
