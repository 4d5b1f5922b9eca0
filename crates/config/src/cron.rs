//! [`CronSchedule`]: the 5-field cron expressions of `[schedule]`, always in UTC.
//!
//! Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or `jan`-`dec`),
//! day of week (0-7, 0 and 7 are Sunday, or `sun`-`sat`). Each field is `*` or a list of
//! `N`, `A-B`, with an optional `/STEP` after `*`, `A-B` or `N` (`N/STEP` runs to the
//! field's end). As in Vixie cron, when both day fields are restricted (neither starts
//! with `*`) a day matches either; otherwise it must match both.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A parsed 5-field cron expression. Every accepted expression fires at least once every
/// 28 years (expressions that never fire, such as `0 0 30 2 *`, are refused).
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

/// Why a text is not a cron expression. Messages name the field, never the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("needs 5 fields (minute hour day-of-month month day-of-week), in UTC")]
    FieldCount,
    #[error("has an invalid {0} field")]
    Field(&'static str),
    #[error("has a {0} out of range")]
    Range(&'static str),
    #[error("never fires (no such day)")]
    Never,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Searching 28 years covers every weekday and leap-year combination.
const SEARCH_DAYS: u32 = 28 * 366;

impl CronSchedule {
    pub fn parse(text: &str) -> Result<CronSchedule, CronError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts[..] else {
            return Err(CronError::FieldCount);
        };
        let mut sets = [0u64; 5];
        for (i, part) in [m, h, dom, mon, dow].into_iter().enumerate() {
            sets[i] = field(part, i)?;
        }
        // Day of week 7 is Sunday.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] & !(1 << 7)) | 1;
        }
        let s = CronSchedule {
            text: parts.join(" "),
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            days_star: dom.starts_with('*'),
            weekdays_star: dow.starts_with('*'),
        };
        let from = Date::from_calendar_date(2001, time::Month::January, 1).expect("valid date");
        if s.next_day(from).is_none() {
            return Err(CronError::Never);
        }
        Ok(s)
    }

    /// The expression, fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `t` at which the schedule fires, in UTC (on a whole
    /// minute). Past year 9970 there may be none: then the last representable time.
    pub fn next_after(&self, t: OffsetDateTime) -> OffsetDateTime {
        let t = t.to_offset(UtcOffset::UTC);
        let minute = t
            .replace_second(0)
            .and_then(|t| t.replace_nanosecond(0))
            .expect("0 is a valid second and nanosecond");
        let Some(start) = minute.checked_add(time::Duration::MINUTE) else {
            return PrimitiveDateTime::MAX.assume_utc();
        };
        let mut day = start.date();
        let mut from = Some(start.time());
        for _ in 0..=SEARCH_DAYS {
            if self.day_matches(day)
                && let Some(at) = self.time_in_day(from)
            {
                return day.with_time(at).assume_utc();
            }
            from = None;
            match day.next_day() {
                Some(d) => day = d,
                None => break,
            }
        }
        PrimitiveDateTime::MAX.assume_utc()
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << u8::from(d.month())) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().number_days_from_sunday()) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first firing time within a matching day at or after `from` (any time if None).
    fn time_in_day(&self, from: Option<Time>) -> Option<Time> {
        let (h0, m0) = from.map_or((0, 0), |t| (t.hour(), t.minute()));
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let first = if h == h0 { m0 } else { 0 };
            if let Some(m) = (first..60).find(|m| self.minutes & (1 << m) != 0) {
                return Time::from_hms(h, m, 0).ok();
            }
        }
        None
    }

    fn next_day(&self, mut d: Date) -> Option<Date> {
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(d) {
                return Some(d);
            }
            d = d.next_day()?;
        }
        None
    }
}

/// One field as a bit set of the values it allows.
fn field(text: &str, index: usize) -> Result<u64, CronError> {
    let (name, lo, hi) = FIELDS[index];
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| CronError::Field(name))?;
                if step == 0 {
                    return Err(CronError::Field(name));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, index)?, value(b, index)?)
        } else {
            let a = value(range, index)?;
            // `N/STEP` runs to the end of the field.
            (a, if step.is_some() { hi } else { a })
        };
        if a > b {
            return Err(CronError::Range(name));
        }
        for v in (a..=b).step_by(step.unwrap_or(1) as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(text: &str, index: usize) -> Result<u32, CronError> {
    let (name, lo, hi) = FIELDS[index];
    let lower = text.to_ascii_lowercase();
    let named = match index {
        3 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        4 => WEEKDAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => text.parse().map_err(|_| CronError::Field(name))?,
    };
    if !(lo..=hi).contains(&v) {
        return Err(CronError::Range(name));
    }
    Ok(v)
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CronSchedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, t: OffsetDateTime) -> OffsetDateTime {
        CronSchedule::parse(expr).unwrap().next_after(t)
    }

    #[test]
    fn next_firing_times() {
        let t = datetime!(2026-11-22 14:05:30 UTC); // a Sunday
        assert_eq!(next("* * * * *", t), datetime!(2026-11-22 14:06 UTC));
        assert_eq!(
            next("* * * * *", datetime!(2026-11-22 14:06 UTC)),
            datetime!(2026-11-22 14:07 UTC),
            "strictly after"
        );
        assert_eq!(next("0 2 * * 0", t), datetime!(2026-11-29 02:00 UTC));
        assert_eq!(next("0 2 * * 7", t), datetime!(2026-11-29 02:00 UTC));
        assert_eq!(next("0 2 * * 1-6", t), datetime!(2026-11-23 02:00 UTC));
        assert_eq!(next("30 3 * * *", t), datetime!(2026-11-23 03:30 UTC));
        assert_eq!(next("0 5 1 * *", t), datetime!(2026-12-01 05:00 UTC));
        assert_eq!(next("*/15 * * * *", t), datetime!(2026-11-22 14:15 UTC));
        assert_eq!(next("10-20/5 14 * * *", t), datetime!(2026-11-22 14:10 UTC));
        assert_eq!(next("0 0 1 jan *", t), datetime!(2027-01-01 00:00 UTC));
        assert_eq!(next("0 12 * * MON,fri", t), datetime!(2026-11-23 12:00 UTC));
        assert_eq!(next("0 0 29 2 *", t), datetime!(2028-02-29 00:00 UTC));
        assert_eq!(next("59 23 31 12 *", t), datetime!(2026-12-31 23:59 UTC));
        // Both day fields restricted: either matches (the 1st, or a Friday).
        assert_eq!(next("0 0 1 * 5", t), datetime!(2026-11-27 00:00 UTC));
        // A time given in another offset is compared in UTC: 03:30+02 is 01:30 UTC.
        assert_eq!(
            next("0 2 * * *", datetime!(2026-11-23 03:30 +2)),
            datetime!(2026-11-23 02:00 UTC)
        );
    }

    #[test]
    fn refusals_name_the_field() {
        for (expr, e) in [
            ("* * * *", CronError::FieldCount),
            ("* * * * * *", CronError::FieldCount),
            ("60 * * * *", CronError::Range("minute")),
            ("* 24 * * *", CronError::Range("hour")),
            ("* * 0 * *", CronError::Range("day-of-month")),
            ("* * * 13 *", CronError::Range("month")),
            ("* * * * 8", CronError::Range("day-of-week")),
            ("*/0 * * * *", CronError::Field("minute")),
            ("5-1 * * * *", CronError::Range("minute")),
            ("x * * * *", CronError::Field("minute")),
            ("* * * foo *", CronError::Field("month")),
            ("0 0 30 2 *", CronError::Never),
            ("0 0 31 4,6,9,11 *", CronError::Never),
        ] {
            assert_eq!(CronSchedule::parse(expr), Err(e), "{expr}");
        }
        assert_eq!(
            CronSchedule::parse("  0  2 * *   0 ").unwrap().to_string(),
            "0 2 * * 0"
        );
    }
}
