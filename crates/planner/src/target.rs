//! Recovery targets as the operator gives them, and their parsing. A time must carry an
//! explicit offset: a bare time would silently mean the server's time zone.

use std::fmt;

use cairn_pgformat::{Lsn, PgTimestamp, TimelineId};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::error::PlanError;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Replay everything archived (no recovery_target_* setting).
    EndOfArchive,
    /// Stop as soon as the backup is consistent.
    Immediate,
    Time(TargetTime),
    Lsn(Lsn),
    Xid(u32),
    Name(String),
}

/// A target time: the instant, and the offset it was written with (for display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetTime {
    pub at: OffsetDateTime,
}

impl TargetTime {
    pub fn pg(&self) -> PgTimestamp {
        PgTimestamp::from_offset_datetime(self.at).unwrap_or(PgTimestamp(i64::MAX))
    }

    /// `2026-11-22 14:05:00.000000+00`: what recovery_target_time gets (always UTC, so the
    /// server's TimeZone setting cannot change its meaning).
    pub fn to_pg_setting(&self) -> String {
        let utc = self.at.to_offset(UtcOffset::UTC);
        let f = format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
        );
        utc.format(&f).unwrap_or_default()
    }
}

impl fmt::Display for TargetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self.at.to_offset(UtcOffset::UTC);
        let z = utc.format(&Rfc3339).unwrap_or_default();
        if self.at.offset() == UtcOffset::UTC {
            write!(f, "{z}")
        } else {
            write!(f, "{z} ({})", self.at.format(&Rfc3339).unwrap_or_default())
        }
    }
}

/// Parse `2026-11-22 14:05:00+00`, `2026-11-22 14:05:00.25-05:30` or RFC 3339.
pub fn parse_target_time(s: &str) -> Result<TargetTime, PlanError> {
    let s = s.trim();
    if let Ok(at) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(TargetTime { at });
    }
    let (body, offset) = split_offset(s).ok_or_else(|| PlanError::TimeWithoutOffset {
        given: s.to_string(),
    })?;
    let body = body.trim().replace('T', " ");
    let with_frac =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let without = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let local = PrimitiveDateTime::parse(&body, &with_frac)
        .or_else(|_| PrimitiveDateTime::parse(&body, &without))
        .map_err(|e| PlanError::BadTarget {
            what: "time",
            given: s.to_string(),
            why: e.to_string(),
        })?;
    Ok(TargetTime {
        at: local.assume_offset(offset),
    })
}

/// Split a trailing `+HH`, `+HHMM`, `+HH:MM` or `Z` off a time.
fn split_offset(s: &str) -> Option<(&str, UtcOffset)> {
    if let Some(body) = s.strip_suffix('Z').or_else(|| s.strip_suffix(" UTC")) {
        return Some((body, UtcOffset::UTC));
    }
    // The sign must come after the time of day (the date has '-' too).
    let time_start = s.find([' ', 'T'])?;
    let pos = s[time_start..].rfind(['+', '-'])? + time_start;
    let (body, off) = s.split_at(pos);
    let sign: i8 = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i8>().ok()?, 0)
    } else {
        (digits[..2].parse().ok()?, digits[2..].parse().ok()?)
    };
    Some((body, UtcOffset::from_hms(sign * h, sign * m, 0).ok()?))
}

/// Which timeline recovery should follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineTarget {
    Latest,
    Current,
    Id(TimelineId),
}

impl std::str::FromStr for TimelineTarget {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, PlanError> {
        match s {
            "latest" => Ok(TimelineTarget::Latest),
            "current" => Ok(TimelineTarget::Current),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| TimelineTarget::Id(TimelineId(n)))
                .ok_or_else(|| PlanError::BadTarget {
                    what: "timeline",
                    given: s.into(),
                    why: "use latest, current or a timeline number".into(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_need_an_offset() {
        let t = parse_target_time("2026-11-22 14:05:00+00").unwrap();
        assert_eq!(t.to_pg_setting(), "2026-11-22 14:05:00.000000+00");
        let t = parse_target_time("2026-11-22 14:05:00.25-05:30").unwrap();
        assert_eq!(t.to_pg_setting(), "2026-11-22 19:35:00.250000+00");
        assert!(t.to_string().contains("-05:30"));
        let t = parse_target_time("2026-11-22T14:05:00Z").unwrap();
        assert_eq!(t.to_pg_setting(), "2026-11-22 14:05:00.000000+00");
        assert_eq!(
            parse_target_time("2026-11-22 14:05:00+0200")
                .unwrap()
                .to_pg_setting(),
            "2026-11-22 12:05:00.000000+00"
        );
        for bare in ["2026-11-22 14:05:00", "2026-11-22T14:05:00", "2026-11-22"] {
            assert!(
                matches!(
                    parse_target_time(bare),
                    Err(PlanError::TimeWithoutOffset { .. })
                ),
                "{bare}"
            );
        }
        assert!(parse_target_time("yesterday+00").is_err());
    }
}
