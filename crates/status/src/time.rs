//! Instants and ages as the status model shows them: UTC, RFC 3339 in JSON, Unix seconds
//! in metrics, ages rounded the way a person reads them (`27h3m`).

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A moment in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(OffsetDateTime);

impl UtcTime {
    pub fn now() -> UtcTime {
        UtcTime(OffsetDateTime::now_utc())
    }

    pub fn from_offset(t: OffsetDateTime) -> UtcTime {
        UtcTime(t.to_offset(time::UtcOffset::UTC))
    }

    /// RFC 3339 with any offset; `None` for anything else.
    pub fn parse_rfc3339(text: &str) -> Option<UtcTime> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(UtcTime::from_offset)
    }

    /// The stamp at the start of a journal or record key: `20261201T101500.123456Z`.
    pub fn parse_stamp(text: &str) -> Option<UtcTime> {
        let b = text.as_bytes();
        if b.len() < 23 || b[8] != b'T' || b[15] != b'.' || b[22] != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> { text.get(r)?.parse().ok() };
        let date = time::Date::from_calendar_date(
            num(0..4)? as i32,
            time::Month::try_from(num(4..6)? as u8).ok()?,
            num(6..8)? as u8,
        )
        .ok()?;
        let t = time::Time::from_hms_micro(
            num(9..11)? as u8,
            num(11..13)? as u8,
            num(13..15)? as u8,
            num(16..22)?,
        )
        .ok()?;
        Some(UtcTime(time::PrimitiveDateTime::new(date, t).assume_utc()))
    }

    pub fn offset_date_time(self) -> OffsetDateTime {
        self.0
    }

    /// Seconds since the Unix epoch, with the fraction (Prometheus timestamps).
    pub fn unix_seconds(self) -> f64 {
        self.0.unix_timestamp_nanos() as f64 / 1e9
    }

    /// How long before `now` this was (zero when it is in the future).
    pub fn age_at(self, now: UtcTime) -> Duration {
        let d = now.0 - self.0;
        if d.is_negative() {
            Duration::ZERO
        } else {
            d.unsigned_abs()
        }
    }

    /// `self - earlier`, zero when negative.
    pub fn since(self, earlier: UtcTime) -> Duration {
        earlier.age_at(self)
    }

    pub fn minus(self, d: Duration) -> UtcTime {
        UtcTime(self.0 - d)
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for UtcTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An age as a person reads it: `45s`, `12m`, `27h3m`, `3d4h`.
pub fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h{m}m", s / 3600)
            }
        }
        _ => {
            let h = (s % 86_400) / 3600;
            if h == 0 {
                format!("{}d", s / 86_400)
            } else {
                format!("{}d{h}h", s / 86_400)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_rfc3339_parse_to_the_same_instant() {
        let a = UtcTime::parse_stamp("20261201T101500.123456Z").unwrap();
        let b = UtcTime::parse_rfc3339("2026-12-01T11:15:00.123456+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2026-12-01T10:15:00.123456Z");
        assert!(UtcTime::parse_stamp("2026-12-01").is_none());
        assert!(UtcTime::parse_stamp("20261301T101500.123456Z").is_none());
        assert!(UtcTime::parse_rfc3339("2026-12-01 10:15:00").is_none());
        assert_eq!(
            UtcTime::parse_rfc3339("1970-01-01T00:00:01.5Z")
                .unwrap()
                .unix_seconds(),
            1.5
        );
    }

    #[test]
    fn ages_read_like_a_person_writes_them() {
        assert_eq!(human_age(Duration::from_secs(45)), "45s");
        assert_eq!(human_age(Duration::from_secs(12 * 60 + 5)), "12m");
        assert_eq!(human_age(Duration::from_secs(27 * 3600 + 180)), "27h3m");
        assert_eq!(human_age(Duration::from_secs(26 * 3600)), "26h");
        assert_eq!(
            human_age(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d4h"
        );
        let t = UtcTime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
        assert_eq!(t.age_at(t.minus(Duration::from_secs(5))), Duration::ZERO);
        assert_eq!(
            t.since(t.minus(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
