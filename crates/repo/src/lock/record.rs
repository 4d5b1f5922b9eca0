//! What a lock generation holds, and how holders, refusals and takeovers read for people.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ATTEMPTS, LockOwner, LockTarget};
use crate::error::RepoError;
use crate::layout::ObjectKey;

/// The content of a lock generation (JSON, encoded as [`ObjectKind::Lock`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Random, per acquisition: tells this holder's object from any other.
    pub id: String,
    /// The cairn command holding it (`backup`, `expire`, ...).
    pub command: String,
    #[serde(flatten)]
    pub owner: LockOwner,
    /// RFC 3339, UTC.
    pub started: String,
    pub heartbeat: String,
    /// cairn version of the holder.
    pub version: String,
    /// The holder this one replaced, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<PreviousHolder>,
    /// When the holder released it (RFC 3339); the lock is then free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
}

impl LockRecord {
    pub(super) fn heartbeat_age(&self, key: &ObjectKey) -> Result<Duration, RepoError> {
        let beat = time::OffsetDateTime::parse(
            &self.heartbeat,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| RepoError::Malformed {
            what: "lock",
            key: key.clone(),
            message: format!("heartbeat '{}': {e}", self.heartbeat),
        })?;
        // A holder whose clock runs ahead looks fresh, never stale.
        Ok((time::OffsetDateTime::now_utc() - beat)
            .try_into()
            .unwrap_or(Duration::ZERO))
    }

    pub(super) fn holder(&self) -> String {
        format!(
            "`cairn {}` on host {} (pid {}, started {})",
            self.command,
            self.owner.host,
            self.owner.pid,
            moment(&self.started)
        )
    }
}

/// A holder that was taken over, as the new holder records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousHolder {
    pub id: String,
    pub command: String,
    pub host: String,
    pub pid: u32,
    pub started: String,
    pub heartbeat: String,
    /// Why it could be taken over.
    pub reason: String,
}

/// Who holds a lock that could not be taken: the payload of [`RepoError::Locked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub lock: LockTarget,
    /// `None` when the lock changed hands on every try.
    pub record: Option<LockRecord>,
    pub heartbeat_age: Duration,
    pub stale_after: Duration,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(r) => write!(
                f,
                "{} is held by {}, last heartbeat {} ago",
                self.lock,
                r.holder(),
                age(self.heartbeat_age)
            ),
            None => write!(
                f,
                "{} changed hands on each of {ATTEMPTS} tries to take it",
                self.lock
            ),
        }
    }
}

/// A lock taken over from a holder that is gone or stale: report it, never keep it quiet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub lock: LockTarget,
    pub previous: PreviousHolder,
    /// How old the previous holder's heartbeat was.
    pub heartbeat_age: Duration,
}

impl fmt::Display for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.previous;
        if p.id.is_empty() {
            // Taken over from a generation that could not be read: nothing known of it.
            return write!(f, "took over {}: {}", self.lock, p.reason);
        }
        write!(
            f,
            "took over {} from `cairn {}` on host {} (pid {}, started {}, last heartbeat {} ago): {}",
            self.lock,
            p.command,
            p.host,
            p.pid,
            moment(&p.started),
            age(self.heartbeat_age),
            p.reason
        )
    }
}

/// An RFC 3339 time for people, to the second: `2026-11-22 14:05:09Z`.
fn moment(rfc3339: &str) -> String {
    match time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// A duration for people: `4s`, `3m12s`, `2h05m`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_read_well() {
        assert_eq!(
            moment("2026-12-01T23:27:42.31784769Z"),
            "2026-12-01 23:27:42Z"
        );
        assert_eq!(moment("2026-12-02T01:27:42+02:00"), "2026-12-01 23:27:42Z");
        assert_eq!(moment("not a time"), "not a time");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(Duration::from_millis(400)), "0s");
        assert_eq!(age(Duration::from_secs(59)), "59s");
        assert_eq!(age(Duration::from_secs(192)), "3m12s");
        assert_eq!(age(Duration::from_secs(15 * 60)), "15m00s");
        assert_eq!(age(Duration::from_secs(7500)), "2h05m");
    }
}
