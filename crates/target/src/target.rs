//! Where recovery stops, what it does there, and which timeline it follows.

use std::fmt;
use std::str::FromStr;

use cairn_pgformat::{Lsn, TimelineId};

use crate::error::TargetError;
use crate::target_time::TargetTime;

/// Where recovery should stop: at most one of PostgreSQL's `recovery_target*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay everything archived (no `recovery_target*` setting).
    EndOfArchive,
    /// Stop as soon as the backup is consistent (`recovery_target = 'immediate'`).
    Immediate,
    Time(TargetTime),
    Lsn(Lsn),
    /// A transaction id (`recovery_target_xid`); recovery stops after its commit.
    Xid(u32),
    /// A restore point made with `pg_create_restore_point()`.
    Name(RestorePointName),
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::EndOfArchive => f.write_str("the end of the archived WAL"),
            RecoveryTarget::Immediate => f.write_str("consistency of the backup"),
            RecoveryTarget::Time(t) => write!(f, "time {t}"),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Xid(x) => write!(f, "transaction {x}"),
            RecoveryTarget::Name(n) => write!(f, "restore point '{n}'"),
        }
    }
}

/// The name of a restore point: what `pg_create_restore_point()` accepts, at most 63 bytes
/// (MAXFNAMELEN - 1), with no control characters (a configuration line cannot hold them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RestorePointName(String);

impl RestorePointName {
    /// PostgreSQL refuses longer names (`recovery_target_name is too long`).
    pub const MAX_BYTES: usize = 63;

    pub fn new(name: &str) -> Result<RestorePointName, TargetError> {
        let invalid = |why: &str| TargetError::Invalid {
            what: "restore point name",
            given: name.escape_debug().to_string(),
            why: why.to_string(),
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > Self::MAX_BYTES {
            return Err(invalid("PostgreSQL allows at most 63 bytes"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("it contains a control character"));
        }
        Ok(RestorePointName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RestorePointName {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        RestorePointName::new(s)
    }
}

impl fmt::Display for RestorePointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What PostgreSQL does once it reaches the target (`recovery_target_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    /// Stay in recovery, read-only, until `pg_wal_replay_resume()` or `pg_ctl promote`
    /// (PostgreSQL's default).
    Pause,
    /// End recovery and start a new timeline.
    Promote,
    /// Stop the server, so it can be started again with other settings.
    Shutdown,
}

impl TargetAction {
    /// The value of `recovery_target_action`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetAction {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        match s {
            "pause" => Ok(TargetAction::Pause),
            "promote" => Ok(TargetAction::Promote),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(TargetError::Invalid {
                what: "target action",
                given: s.escape_debug().to_string(),
                why: "use pause, promote or shutdown".into(),
            }),
        }
    }
}

/// Which timeline recovery follows (`recovery_target_timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineTarget {
    /// The newest timeline the archive holds (PostgreSQL's default).
    Latest,
    /// The timeline of the backup.
    Current,
    Id(TimelineId),
}

impl fmt::Display for TimelineTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimelineTarget::Latest => f.write_str("latest"),
            TimelineTarget::Current => f.write_str("current"),
            TimelineTarget::Id(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for TimelineTarget {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        match s {
            "latest" => Ok(TimelineTarget::Latest),
            "current" => Ok(TimelineTarget::Current),
            n => n
                .parse::<TimelineId>()
                .map(TimelineTarget::Id)
                .map_err(|_| TargetError::Invalid {
                    what: "timeline",
                    given: s.escape_debug().to_string(),
                    why: "use latest, current or a timeline number".into(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_point_names_fit_postgres() {
        assert_eq!(
            RestorePointName::new("before-upgrade").unwrap().as_str(),
            "before-upgrade"
        );
        assert!(RestorePointName::new(&"é".repeat(31)).is_ok()); // 62 bytes
        assert!(RestorePointName::new(&"é".repeat(32)).is_err()); // 64 bytes
        assert!(RestorePointName::new("").is_err());
        assert!(RestorePointName::new("a\nrestore_command = 'x'").is_err());
    }

    #[test]
    fn actions_and_timelines_round_trip() {
        for a in [
            TargetAction::Pause,
            TargetAction::Promote,
            TargetAction::Shutdown,
        ] {
            assert_eq!(a.to_string().parse::<TargetAction>().unwrap(), a);
        }
        assert!("explode".parse::<TargetAction>().is_err());
        for t in [
            TimelineTarget::Latest,
            TimelineTarget::Current,
            TimelineTarget::Id(TimelineId(3)),
        ] {
            assert_eq!(t.to_string().parse::<TimelineTarget>().unwrap(), t);
        }
        for bad in ["0", "-3", "", "3a", "4294967296"] {
            assert!(bad.parse::<TimelineTarget>().is_err(), "{bad}");
        }
    }
}
