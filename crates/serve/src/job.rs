//! A job: one backup, expire, verify or drill of one stanza, as the API shows it
//! (`GET /api/v1/jobs/{id}`) and as the job history keeps it in the repository.

use std::fmt;

use cairn_exit::Failure;
use cairn_repo::BackupType;
use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup(BackupType),
    Expire,
    Verify,
    Drill,
}

impl JobKind {
    /// As the API and `[schedule]` name it: `backup-full`, `backup-diff`, `backup-incr`,
    /// `expire`, `verify`, `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup(BackupType::Full) => "backup-full",
            JobKind::Backup(BackupType::Diff) => "backup-diff",
            JobKind::Backup(BackupType::Incr) => "backup-incr",
            JobKind::Expire => "expire",
            JobKind::Verify => "verify",
            JobKind::Drill => "drill",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        Some(match text {
            "backup-full" => JobKind::Backup(BackupType::Full),
            "backup-diff" => JobKind::Backup(BackupType::Diff),
            "backup-incr" => JobKind::Backup(BackupType::Incr),
            "expire" => JobKind::Expire,
            "verify" => JobKind::Verify,
            "drill" => JobKind::Drill,
            _ => return None,
        })
    }

    /// Jobs of one class never wait twice in a stanza's queue: every backup is one class
    /// (a second backup while one waits or runs is refused with 409), each other kind
    /// its own.
    pub fn class(self) -> &'static str {
        match self {
            JobKind::Backup(_) => "backup",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        JobKind::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("'{text}' is not a job kind")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted and waiting for the stanza's earlier job, or running.
    Running,
    Succeeded,
    Failed,
}

/// Who asked for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `POST /api/v1/...`.
    Api,
    /// A `[schedule]` cron expression.
    Schedule,
    /// `[schedule] max-replay`: that much WAL piled up since the last backup.
    MaxReplay,
}

/// What a drill is asked to do (`POST /api/v1/stanzas/{stanza}/drills`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// One job. The fields of DESIGN 2b (`id`, `kind`, `status`, `started`, `finished`,
/// `error`, `result`) and more; times are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub stanza: String,
    pub origin: Origin,
    pub status: JobStatus,
    /// When it was accepted into the stanza's queue.
    pub accepted: String,
    /// When it started (`None` while it waits for the stanza's earlier job).
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Why it failed: one line.
    pub error: Option<String>,
    /// What might help, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The failure's kind as `cairn` exit codes name it (`locked`, `postgres`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// What it did (a backup's label and sizes, a verify's summary, ...).
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillRequest>,
    /// Bytes received so far (a running backup); not kept in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_bytes: Option<u64>,
}

impl Job {
    pub fn new(kind: JobKind, stanza: &str, origin: Origin, now: time::OffsetDateTime) -> Job {
        Job {
            id: new_id(now),
            kind,
            stanza: stanza.to_string(),
            origin,
            status: JobStatus::Running,
            accepted: rfc3339(now),
            started: None,
            finished: None,
            error: None,
            hint: None,
            error_kind: None,
            result: None,
            drill: None,
            received_bytes: None,
        }
    }

    pub fn succeed(&mut self, result: serde_json::Value, now: time::OffsetDateTime) {
        self.status = JobStatus::Succeeded;
        self.result = Some(result);
        self.finished = Some(rfc3339(now));
    }

    pub fn fail(&mut self, f: &Failure, now: time::OffsetDateTime) {
        self.status = JobStatus::Failed;
        self.error = Some(f.message.clone());
        self.hint = f.hint.clone();
        self.error_kind = Some(f.kind.name().to_string());
        self.finished = Some(rfc3339(now));
    }

    pub fn is_done(&self) -> bool {
        self.status != JobStatus::Running
    }
}

/// `20261202T014500Z-1a2b3c4d`: sortable by time, unique by the random part.
fn new_id(now: time::OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:08x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        rand::random::<u32>()
    )
}

/// Whether `text` could be a job id (checked before it is looked up or logged).
pub fn plausible_id(text: &str) -> bool {
    text.len() == 25
        && text.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'T' || b == b'Z' || b == b'-'
        })
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_exit::ErrorKind;

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-12-02 01:45:00 UTC);

    #[test]
    fn kinds_round_trip_and_backups_share_a_class() {
        for k in [
            JobKind::Backup(BackupType::Full),
            JobKind::Backup(BackupType::Diff),
            JobKind::Backup(BackupType::Incr),
            JobKind::Expire,
            JobKind::Verify,
            JobKind::Drill,
        ] {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<JobKind>(&json).unwrap(), k);
        }
        assert_eq!(JobKind::parse("backup"), None);
        assert_eq!(
            JobKind::Backup(BackupType::Full).class(),
            JobKind::Backup(BackupType::Incr).class()
        );
        assert_ne!(JobKind::Verify.class(), JobKind::Drill.class());
    }

    #[test]
    fn a_job_shows_the_contract_fields() {
        let mut job = Job::new(JobKind::Backup(BackupType::Incr), "main", Origin::Api, NOW);
        assert!(plausible_id(&job.id), "{}", job.id);
        assert!(job.id.starts_with("20261202T014500Z-"));
        let v = serde_json::to_value(&job).unwrap();
        for field in [
            "id", "kind", "status", "started", "finished", "error", "result",
        ] {
            assert!(v.get(field).is_some(), "{field} missing: {v}");
        }
        assert_eq!(v["status"], "running");
        assert_eq!(v["kind"], "backup-incr");
        job.fail(
            &Failure::new(ErrorKind::Locked, "held by cairn backup (pid 7)").with_hint("wait"),
            NOW,
        );
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"], "held by cairn backup (pid 7)");
        assert_eq!(v["error_kind"], "locked");
        assert_eq!(v["finished"], "2026-12-02T01:45:00Z");
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
        assert!(!plausible_id("../../etc/passwd"));
    }
}
