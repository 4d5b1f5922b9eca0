//! [`PgTimestamp`]: PostgreSQL's `TimestampTz` as stored in WAL records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Seconds from the Unix epoch to the PostgreSQL epoch, 2000-01-01 00:00:00
/// UTC ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
const MICROS_PER_SEC: i64 = 1_000_000;

/// A `TimestampTz`: microseconds since 2000-01-01 00:00:00 UTC.
///
/// `i64::MIN` and `i64::MAX` are PostgreSQL's `-infinity` and `infinity`
/// (DT_NOBEGIN / DT_NOEND). Shown as RFC 3339 in UTC with microseconds:
/// `2026-11-22T14:05:00.000000Z`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// `-infinity` (DT_NOBEGIN).
    pub const NEG_INFINITY: PgTimestamp = PgTimestamp(i64::MIN);
    /// `infinity` (DT_NOEND).
    pub const INFINITY: PgTimestamp = PgTimestamp(i64::MAX);

    /// The instant as a UTC date-time, or `None` when it lies outside the
    /// years 1 to 9999 (including the infinities).
    pub fn try_to_offset_datetime(self) -> Option<OffsetDateTime> {
        if self == Self::INFINITY || self == Self::NEG_INFINITY {
            return None;
        }
        let nanos = (i128::from(self.0) + i128::from(PG_EPOCH_UNIX_SECS * MICROS_PER_SEC)) * 1000;
        let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        (dt.year() >= 1).then_some(dt)
    }

    /// The instant as a UTC date-time. Values outside the years 1 to 9999
    /// (which no commit record carries) saturate to the nearest end.
    pub fn to_offset_datetime(self) -> OffsetDateTime {
        self.try_to_offset_datetime().unwrap_or_else(|| {
            let (min, max) = Self::representable();
            let bound = if self < min { min } else { max };
            bound
                .try_to_offset_datetime()
                .expect("bounds are representable")
        })
    }

    /// The timestamp for a date-time, truncated to microseconds. `None` only
    /// for date-times outside PostgreSQL's range.
    pub fn from_offset_datetime(dt: OffsetDateTime) -> Option<PgTimestamp> {
        let micros = dt.unix_timestamp_nanos().div_euclid(1000)
            - i128::from(PG_EPOCH_UNIX_SECS * MICROS_PER_SEC);
        i64::try_from(micros)
            .ok()
            .map(PgTimestamp)
            .filter(|t| *t != Self::INFINITY && *t != Self::NEG_INFINITY)
    }

    /// First and last instants that convert to a date-time (year 1 to 9999 UTC).
    fn representable() -> (PgTimestamp, PgTimestamp) {
        // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
        const MIN_UNIX: i64 = -62_135_596_800;
        const MAX_UNIX: i64 = 253_402_300_799;
        (
            PgTimestamp((MIN_UNIX - PG_EPOCH_UNIX_SECS) * MICROS_PER_SEC),
            PgTimestamp((MAX_UNIX - PG_EPOCH_UNIX_SECS) * MICROS_PER_SEC + 999_999),
        )
    }
}

impl fmt::Display for PgTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_to_offset_datetime() {
            Some(dt) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.microsecond()
            ),
            None if *self == Self::INFINITY => f.write_str("infinity"),
            None if *self == Self::NEG_INFINITY => f.write_str("-infinity"),
            // Outside RFC 3339's four-digit years: show the raw value.
            None => write!(f, "@{}us", self.0),
        }
    }
}

/// Text that is not a timestamp with an explicit offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected RFC 3339 with an offset, like 2026-11-22T14:05:00Z")]
pub struct TimestampParseError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for PgTimestamp {
    type Err = TimestampParseError;

    /// Parses RFC 3339 (any offset) and `infinity` / `-infinity`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TimestampParseError {
            input: s.to_owned(),
        };
        match s {
            "infinity" => return Ok(Self::INFINITY),
            "-infinity" => return Ok(Self::NEG_INFINITY),
            _ => {}
        }
        let dt = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| err())?;
        PgTimestamp::from_offset_datetime(dt).ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epoch_is_2000() {
        let t = PgTimestamp(0);
        assert_eq!(t.to_string(), "2000-01-01T00:00:00.000000Z");
        assert_eq!(t.to_offset_datetime().unix_timestamp(), PG_EPOCH_UNIX_SECS);
        assert_eq!(PgTimestamp(-1).to_string(), "1999-12-31T23:59:59.999999Z");
        // 2021-06-01 12:34:56.789012 UTC, as SELECT extract(epoch ...) gives.
        let t = PgTimestamp((1_622_550_896 - PG_EPOCH_UNIX_SECS) * 1_000_000 + 789_012);
        assert_eq!(t.to_string(), "2021-06-01T12:34:56.789012Z");
        assert_eq!(
            "2021-06-01T14:34:56.789012+02:00"
                .parse::<PgTimestamp>()
                .unwrap(),
            t
        );
    }

    #[test]
    fn infinities_and_extremes() {
        assert_eq!(PgTimestamp::INFINITY.to_string(), "infinity");
        assert_eq!(
            "-infinity".parse::<PgTimestamp>().unwrap(),
            PgTimestamp::NEG_INFINITY
        );
        assert_eq!(PgTimestamp::INFINITY.to_offset_datetime().year(), 9999);
        assert_eq!(PgTimestamp::NEG_INFINITY.to_offset_datetime().year(), 1);
        assert!(PgTimestamp(i64::MAX - 1).to_string().starts_with('@'));
        assert!("2021-06-01T12:00:00".parse::<PgTimestamp>().is_err());
        assert!("yesterday".parse::<PgTimestamp>().is_err());
    }

    proptest! {
        #[test]
        fn datetime_round_trip(v in -63_000_000_000_000_000i64..252_000_000_000_000_000) {
            let t = PgTimestamp(v);
            let dt = t.to_offset_datetime();
            prop_assert_eq!(PgTimestamp::from_offset_datetime(dt), Some(t));
            prop_assert_eq!(t.to_string().parse::<PgTimestamp>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(json.clone(), v.to_string());
            prop_assert_eq!(serde_json::from_str::<PgTimestamp>(&json).unwrap(), t);
        }

        #[test]
        fn order_matches_time_order(a in -1_000_000_000_000_000i64..1_000_000_000_000_000, b in -1_000_000_000_000_000i64..1_000_000_000_000_000) {
            prop_assert_eq!(
                PgTimestamp(a).cmp(&PgTimestamp(b)),
                PgTimestamp(a).to_offset_datetime().cmp(&PgTimestamp(b).to_offset_datetime())
            );
        }
    }
}
