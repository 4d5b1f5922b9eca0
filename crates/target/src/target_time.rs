//! A target time as the operator writes it: always with an explicit offset.

use std::fmt;
use std::str::FromStr;

use cairn_pgformat::PgTimestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::error::TargetError;

/// A target time: the instant, in the offset it was written with (for display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetTime {
    pub at: OffsetDateTime,
}

impl TargetTime {
    /// The instant as PostgreSQL stores commit times (microseconds; saturates outside
    /// PostgreSQL's range).
    pub fn pg(&self) -> PgTimestamp {
        PgTimestamp::from_offset_datetime(self.at).unwrap_or(PgTimestamp::INFINITY)
    }

    /// Parse `2026-11-22 14:05:00+00`, `2026-11-22 14:05:00.25-05:30` or RFC 3339.
    pub fn parse(s: &str) -> Result<TargetTime, TargetError> {
        let s = s.trim();
        if let Ok(at) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(TargetTime { at });
        }
        let (body, offset) = split_offset(s).ok_or_else(|| TargetError::TimeWithoutOffset {
            given: s.to_string(),
        })?;
        let body = body.trim().replace('T', " ");
        let with_frac =
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
        let without = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let local = PrimitiveDateTime::parse(&body, &with_frac)
            .or_else(|_| PrimitiveDateTime::parse(&body, &without))
            .map_err(|e| TargetError::Invalid {
                what: "time",
                given: s.to_string(),
                why: e.to_string(),
            })?;
        Ok(TargetTime {
            at: local.assume_offset(offset),
        })
    }
}

impl FromStr for TargetTime {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, TargetError> {
        TargetTime::parse(s)
    }
}

/// RFC 3339 in UTC, then as written when that was another offset.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> String {
        TargetTime::parse(s)
            .unwrap()
            .at
            .to_offset(UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap()
    }

    #[test]
    fn times_need_an_offset() {
        assert_eq!(utc("2026-11-22 14:05:00+00"), "2026-11-22T14:05:00Z");
        assert_eq!(
            utc("2026-11-22 14:05:00.25-05:30"),
            "2026-11-22T19:35:00.25Z"
        );
        assert_eq!(utc("2026-11-22T14:05:00Z"), "2026-11-22T14:05:00Z");
        assert_eq!(utc("2026-11-22 14:05:00+0200"), "2026-11-22T12:05:00Z");
        let t = TargetTime::parse("2026-11-22 14:05:00.25-05:30").unwrap();
        assert!(t.to_string().contains("-05:30"), "{t}");
        for bare in ["2026-11-22 14:05:00", "2026-11-22T14:05:00", "2026-11-22"] {
            assert!(
                matches!(
                    TargetTime::parse(bare),
                    Err(TargetError::TimeWithoutOffset { .. })
                ),
                "{bare}"
            );
        }
        assert!(TargetTime::parse("yesterday+00").is_err());
    }
}
