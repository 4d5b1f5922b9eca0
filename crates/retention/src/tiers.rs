//! Compliance tiers: the newest backup of each of the last N days, weeks, months, years.
//!
//! "The last N" are the N most recent periods that have a usable backup, counted back
//! from the newest backup (not from `now`): a month without backups does not use up a
//! monthly slot, and a repository whose backups stopped keeps its tiers instead of
//! emptying them as time passes. Periods are UTC calendar periods of the backup's start
//! time (the time its label names); weeks are ISO weeks (Monday to Sunday).

use std::fmt;

use time::{Date, Month, OffsetDateTime, UtcOffset};

use crate::facts::BackupFacts;
use crate::plan::KeepReason;

/// One of the four tier rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// A UTC calendar period of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Day(Date),
    /// ISO week-numbering year and week (1..=53).
    Week {
        year: i32,
        week: u8,
    },
    Month {
        year: i32,
        month: Month,
    },
    Year(i32),
}

impl Period {
    /// The period of `tier` that holds `t`.
    pub fn of(tier: Tier, t: OffsetDateTime) -> Period {
        let d = t.to_offset(UtcOffset::UTC).date();
        match tier {
            Tier::Daily => Period::Day(d),
            Tier::Weekly => {
                let (year, week, _) = d.to_iso_week_date();
                Period::Week { year, week }
            }
            Tier::Monthly => Period::Month {
                year: d.year(),
                month: d.month(),
            },
            Tier::Yearly => Period::Year(d.year()),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day(d) => write!(f, "{d}"),
            Period::Week { year, week } => write!(f, "{year}-W{week:02}"),
            Period::Month { year, month } => write!(f, "{year}-{:02}", u8::from(*month)),
            Period::Year(y) => write!(f, "{y}"),
        }
    }
}

/// Marks the newest usable backup of each of the `n` most recent periods of `tier`.
/// `sorted` is oldest first; `reasons` is parallel to it.
pub(crate) fn apply(sorted: &[&BackupFacts], tier: Tier, n: u32, reasons: &mut [Vec<KeepReason>]) {
    let mut taken = 0u32;
    let mut last: Option<Period> = None;
    for (i, b) in sorted.iter().enumerate().rev() {
        if !b.usable {
            continue;
        }
        let p = Period::of(tier, b.start_time);
        if last == Some(p) {
            continue;
        }
        if taken == n {
            break;
        }
        taken += 1;
        last = Some(p);
        reasons[i].push(KeepReason::Tier(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn periods_are_utc_and_iso_weeks() {
        // 23:30 at -02:00 is already the next day in UTC.
        let t = datetime!(2025-12-31 23:30 -2);
        assert_eq!(
            Period::of(Tier::Daily, t),
            Period::Day(date!(2026 - 01 - 01))
        );
        assert_eq!(Period::of(Tier::Yearly, t), Period::Year(2026));
        // 2025-12-29 (Monday) belongs to ISO week 1 of 2026.
        let w = Period::of(Tier::Weekly, datetime!(2025-12-29 00:00 UTC));
        assert_eq!(
            w,
            Period::Week {
                year: 2026,
                week: 1
            }
        );
        assert_eq!(w.to_string(), "2026-W01");
        assert_eq!(
            Period::of(Tier::Monthly, datetime!(2025-03-09 00:00 UTC)).to_string(),
            "2025-03"
        );
    }
}
