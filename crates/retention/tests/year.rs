//! A year of daily backups under compliance tiers. The expected keep set is stated per
//! rule from the calendar (which day is a Sunday, which the last of a month), not taken
//! from the function's output.

mod builder;

use std::collections::BTreeSet;

use builder::Stanza;
use cairn_pgformat::TimelineId;
use cairn_repo::{BackupType, DbId};
use cairn_retention::{RetentionRules, WalNeed, plan, plan_wal};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime, Weekday};

/// Fulls on Sundays and incrs on the other days at 01:00 UTC, from 2024-12-01 to
/// 2025-12-31, a diff at 13:00 every Wednesday, and two older fulls (2022-06-01,
/// 2023-06-01).
fn year() -> Stanza {
    let mut s = Stanza::new();
    s.full(datetime!(2022-06-01 01:00 UTC));
    s.full(datetime!(2023-06-01 01:00 UTC));
    let mut d = date!(2024 - 12 - 01);
    assert_eq!(d.weekday(), Weekday::Sunday);
    while d <= date!(2025 - 12 - 31) {
        let at = d.with_hms(1, 0, 0).unwrap().assume_utc();
        if d.weekday() == Weekday::Sunday {
            s.full(at);
        } else {
            s.incr(at);
        }
        if d.weekday() == Weekday::Wednesday {
            s.diff(d.with_hms(13, 0, 0).unwrap().assume_utc());
        }
        d = d.next_day().unwrap();
    }
    s
}

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// The newest backup of a day: the 13:00 diff on Wednesdays, else the 01:00 backup.
fn newest_of(d: Date) -> OffsetDateTime {
    let hour = if d.weekday() == Weekday::Wednesday {
        13
    } else {
        1
    };
    d.with_hms(hour, 0, 0).unwrap().assume_utc()
}

fn daily_7() -> Vec<OffsetDateTime> {
    // The seven most recent days: 25 to 31 December 2025.
    (25..=31)
        .map(|day| newest_of(Date::from_calendar_date(2025, time::Month::December, day).unwrap()))
        .collect()
}

fn weekly_8() -> Vec<OffsetDateTime> {
    // The week of 29 December 2025 (ISO 2026-W01) ends on the last backup, Wednesday
    // 31 December; the seven weeks before end on Sundays, whose newest backup is the full.
    assert_eq!(date!(2025 - 12 - 28).weekday(), Weekday::Sunday);
    let mut v = vec![newest_of(date!(2025 - 12 - 31))];
    for k in 0..7 {
        let sunday = date!(2025 - 12 - 28) - Duration::weeks(k);
        v.push(sunday.with_hms(1, 0, 0).unwrap().assume_utc());
    }
    v
}

fn monthly_12() -> Vec<OffsetDateTime> {
    // The last day of each month of 2025.
    (1..=12u8)
        .map(|m| {
            let month = time::Month::try_from(m).unwrap();
            let last = Date::from_calendar_date(2025, month, month.length(2025)).unwrap();
            newest_of(last)
        })
        .collect()
}

fn yearly_3() -> Vec<OffsetDateTime> {
    vec![
        newest_of(date!(2025 - 12 - 31)),
        newest_of(date!(2024 - 12 - 31)),
        datetime!(2023-06-01 01:00 UTC),
    ]
}

fn tiers() -> RetentionRules {
    RetentionRules {
        keep_daily: Some(7),
        keep_weekly: Some(8),
        keep_monthly: Some(12),
        keep_yearly: Some(3),
        ..Default::default()
    }
}

fn kept_times(s: &Stanza, rules: &RetentionRules) -> BTreeSet<OffsetDateTime> {
    plan(&s.backups, rules, NOW)
        .unwrap()
        .kept()
        .map(|d| d.backup.start_time)
        .collect()
}

#[test]
fn each_tier_alone_keeps_what_the_calendar_says() {
    let s = year();
    let one = |r: RetentionRules| kept_times(&s, &r);
    let d = RetentionRules::default();
    let set = |v: Vec<OffsetDateTime>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        one(RetentionRules {
            keep_daily: Some(7),
            ..d.clone()
        }),
        set(daily_7())
    );
    assert_eq!(
        one(RetentionRules {
            keep_weekly: Some(8),
            ..d.clone()
        }),
        set(weekly_8())
    );
    assert_eq!(
        one(RetentionRules {
            keep_monthly: Some(12),
            ..d.clone()
        }),
        set(monthly_12())
    );
    assert_eq!(
        one(RetentionRules {
            keep_yearly: Some(3),
            ..d
        }),
        set(yearly_3())
    );
}

#[test]
fn tiers_together_keep_the_union_and_drop_the_rest() {
    let s = year();
    let expected: BTreeSet<OffsetDateTime> = [daily_7(), weekly_8(), monthly_12(), yearly_3()]
        .into_iter()
        .flatten()
        .collect();
    // 7 + 8 + 12 + 3 with overlaps: 31 Dec is in all four, 28 Dec in daily and weekly,
    // 30 Nov in weekly and monthly.
    assert_eq!(expected.len(), 7 + 8 + 12 + 3 - 3 - 1 - 1);
    let p = plan(&s.backups, &tiers(), NOW).unwrap();
    let kept: BTreeSet<_> = p.kept().map(|d| d.backup.start_time).collect();
    assert_eq!(kept, expected);
    assert_eq!(p.dropped().count(), s.backups.len() - expected.len());
    let last = p
        .decisions()
        .iter()
        .find(|d| d.backup.start_time == newest_of(date!(2025 - 12 - 31)))
        .unwrap();
    assert_eq!(last.backup.backup_type, BackupType::Diff);
    let why: Vec<String> = last.reasons.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        why,
        [
            "daily 2025-12-31",
            "weekly 2026-W01",
            "monthly 2025-12",
            "yearly 2025"
        ]
    );
    // 2022's full is the fourth year back: gone.
    assert!(!kept.contains(&datetime!(2022-06-01 01:00 UTC)));
}

#[test]
fn tiers_with_four_fulls_and_their_wal() {
    let s = year();
    let rules = RetentionRules {
        full: Some(4),
        ..tiers()
    };
    let p = plan(&s.backups, &rules, NOW).unwrap();
    // full=4 keeps the fulls of 7, 14, 21 and 28 December and everything after the
    // first of them.
    let base = datetime!(2025-12-07 01:00 UTC);
    assert_eq!(base.weekday(), Weekday::Sunday);
    let mut expected: BTreeSet<OffsetDateTime> = [daily_7(), weekly_8(), monthly_12(), yearly_3()]
        .into_iter()
        .flatten()
        .collect();
    expected.extend(
        s.backups
            .iter()
            .filter(|b| b.start_time >= base)
            .map(|b| b.start_time),
    );
    let kept: BTreeSet<_> = p.kept().map(|d| d.backup.start_time).collect();
    assert_eq!(kept, expected);
    let base_label = &s
        .backups
        .iter()
        .find(|b| b.start_time == base)
        .unwrap()
        .label;
    assert_eq!(p.pitr_base(DbId(1)), Some(base_label));

    // WAL: everything from the 7 December full on; before it only the start-to-stop
    // ranges of the tier-kept backups.
    let wal = plan_wal(&p, &Default::default());
    let t = wal.timeline(DbId(1), TimelineId(1)).unwrap();
    let base_facts = s.backups.iter().find(|b| b.start_time == base).unwrap();
    assert_eq!(t.expendable_before, base_facts.start_lsn);
    let older_tiers: Vec<_> = p
        .kept()
        .filter(|d| d.backup.start_time < base)
        .map(|d| d.backup.clone())
        .collect();
    assert!(older_tiers.len() > 10);
    assert_eq!(t.keep_ranges.len(), older_tiers.len());
    for b in &older_tiers {
        assert_eq!(p.decision(&b.label).unwrap().wal, WalNeed::Consistency);
        assert!(!wal.segment_expendable(DbId(1), TimelineId(1), b.start_lsn, b.stop_lsn));
    }
    // The WAL right after a tier-kept backup's stop, before the next one, goes.
    let b = &older_tiers[older_tiers.len() / 2];
    let after = cairn_pgformat::Lsn(b.stop_lsn.0 + builder::SEG / 2);
    assert!(wal.segment_expendable(
        DbId(1),
        TimelineId(1),
        after,
        cairn_pgformat::Lsn(after.0 + builder::SEG)
    ));
}
