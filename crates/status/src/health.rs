//! Health: a [`StanzaStatus`] against the `[health]` thresholds (`max-backup-age`,
//! `max-archive-lag`), with every reason it falls short, each one line that names what
//! is stale. `cairn check`, `/healthz` and `cairn_stanza_healthy` share it.
//!
//! The archive lag is the age of the segment archived last: an idle server that archives
//! nothing looks stale too, so set PostgreSQL's `archive_timeout` below `max-archive-lag`.

use std::fmt;
use std::time::Duration;

use cairn_config::HealthConfig;
use serde::Serialize;

use crate::model::StanzaStatus;
use crate::time::{UtcTime, human_age};

/// The thresholds a stanza is held to; `None` is not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub max_backup_age: Option<Duration>,
    pub max_archive_lag: Option<Duration>,
}

impl Thresholds {
    /// The `[health]` section's thresholds.
    pub fn from_config(h: &HealthConfig) -> Thresholds {
        Thresholds {
            max_backup_age: h.max_backup_age.map(|d| d.as_duration()),
            max_archive_lag: h.max_archive_lag.map(|d| d.as_duration()),
        }
    }
}

/// One way a stanza falls short.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// The repository has no such stanza.
    StanzaMissing { stanza: String },
    /// `max-backup-age` is set and there is no backup at all.
    NoBackup { max_age_seconds: u64 },
    /// The newest backup is older than `max-backup-age`.
    BackupTooOld {
        label: String,
        finished: UtcTime,
        age_seconds: u64,
        max_age_seconds: u64,
    },
    /// `max-archive-lag` is set and no segment has been archived.
    NoArchive { max_lag_seconds: u64 },
    /// The last segment was archived longer ago than `max-archive-lag`.
    ArchiveLag {
        segment: String,
        archived_at: UtcTime,
        lag_seconds: u64,
        max_lag_seconds: u64,
    },
}

fn secs(s: u64) -> String {
    human_age(Duration::from_secs(s))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::StanzaMissing { stanza } => {
                write!(f, "stanza '{stanza}' does not exist in the repository")
            }
            Problem::NoBackup { max_age_seconds } => write!(
                f,
                "there is no backup yet (max-backup-age is {})",
                secs(*max_age_seconds)
            ),
            Problem::BackupTooOld {
                label,
                finished,
                age_seconds,
                max_age_seconds,
            } => write!(
                f,
                "the newest backup, {label}, finished {} ago at {finished} (max-backup-age is {})",
                secs(*age_seconds),
                secs(*max_age_seconds)
            ),
            Problem::NoArchive { max_lag_seconds } => write!(
                f,
                "no WAL segment has been archived yet (max-archive-lag is {})",
                secs(*max_lag_seconds)
            ),
            Problem::ArchiveLag {
                segment,
                archived_at,
                lag_seconds,
                max_lag_seconds,
            } => write!(
                f,
                "the last WAL segment archived, {segment}, arrived {} ago at {archived_at} (max-archive-lag is {})",
                secs(*lag_seconds),
                secs(*max_lag_seconds)
            ),
        }
    }
}

/// A stanza's health: healthy when it has no problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub healthy: bool,
    pub problems: Vec<ProblemDoc>,
}

/// A problem with its one-line reason (JSON for `/healthz`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemDoc {
    #[serde(flatten)]
    pub problem: Problem,
    pub message: String,
}

impl Health {
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.problems.iter().map(|p| p.message.as_str())
    }
}

impl StanzaStatus {
    /// This status against `t` at `now`.
    pub fn health(&self, t: &Thresholds, now: UtcTime) -> Health {
        let mut problems = Vec::new();
        if !self.exists {
            problems.push(Problem::StanzaMissing {
                stanza: self.stanza.to_string(),
            });
        }
        if let Some(max) = t.max_backup_age {
            match &self.backups.newest {
                None => problems.push(Problem::NoBackup {
                    max_age_seconds: max.as_secs(),
                }),
                Some(b) => {
                    let age = b.finished.age_at(now);
                    if age > max {
                        problems.push(Problem::BackupTooOld {
                            label: b.label.to_string(),
                            finished: b.finished,
                            age_seconds: age.as_secs(),
                            max_age_seconds: max.as_secs(),
                        });
                    }
                }
            }
        }
        if let Some(max) = t.max_archive_lag {
            match &self.archive.last_segment {
                None => problems.push(Problem::NoArchive {
                    max_lag_seconds: max.as_secs(),
                }),
                Some(s) => {
                    let lag = s.archived_at.age_at(now);
                    if lag > max {
                        problems.push(Problem::ArchiveLag {
                            segment: s.name.clone(),
                            archived_at: s.archived_at,
                            lag_seconds: lag.as_secs(),
                            max_lag_seconds: max.as_secs(),
                        });
                    }
                }
            }
        }
        let problems: Vec<ProblemDoc> = problems
            .into_iter()
            .map(|p| ProblemDoc {
                message: p.to_string(),
                problem: p,
            })
            .collect();
        Health {
            healthy: problems.is_empty(),
            problems,
        }
    }
}
