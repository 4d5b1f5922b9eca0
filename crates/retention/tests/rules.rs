//! Every rule and their combinations over one small made-up history, as a table.

mod builder;

use std::collections::BTreeMap;
use std::time::Duration;

use builder::Stanza;
use cairn_repo::BackupLabel;
use cairn_retention::{KeepReason, RetentionRules, RulesError, WalNeed, plan};
use time::OffsetDateTime;
use time::macros::datetime;

/// November 2026 (the 1st is a Sunday), every backup at 01:00 UTC:
///
/// ```text
/// F1 1st   I1a 2nd  D1a 3rd  I1b 4th (on D1a)  D1b 5th  I1c 6th (on D1b)
/// F2 8th   I2a 9th  D2a 10th I2b 11th I2c 12th  D2b 13th I2d 14th
/// F3 15th  I3a 16th
/// ```
struct Fixture {
    stanza: Stanza,
    names: BTreeMap<&'static str, BackupLabel>,
}

const NOW: OffsetDateTime = datetime!(2026-11-16 12:00 UTC);

fn fixture() -> Fixture {
    assert_eq!(
        datetime!(2026-11-01 01:00 UTC).weekday(),
        time::Weekday::Sunday
    );
    let mut s = Stanza::new();
    let mut names = BTreeMap::new();
    let day = |d: u8| {
        time::Date::from_calendar_date(2026, time::Month::November, d)
            .unwrap()
            .with_hms(1, 0, 0)
            .unwrap()
            .assume_utc()
    };
    for (name, d, kind) in [
        ("F1", 1, 'F'),
        ("I1a", 2, 'I'),
        ("D1a", 3, 'D'),
        ("I1b", 4, 'I'),
        ("D1b", 5, 'D'),
        ("I1c", 6, 'I'),
        ("F2", 8, 'F'),
        ("I2a", 9, 'I'),
        ("D2a", 10, 'D'),
        ("I2b", 11, 'I'),
        ("I2c", 12, 'I'),
        ("D2b", 13, 'D'),
        ("I2d", 14, 'I'),
        ("F3", 15, 'F'),
        ("I3a", 16, 'I'),
    ] {
        let l = match kind {
            'F' => s.full(day(d)),
            'D' => s.diff(day(d)),
            _ => s.incr(day(d)),
        };
        names.insert(name, l);
    }
    Fixture { stanza: s, names }
}

impl Fixture {
    fn label(&self, name: &str) -> &BackupLabel {
        &self.names[name]
    }
    fn name(&self, l: &BackupLabel) -> &'static str {
        self.names
            .iter()
            .find(|(_, v)| *v == l)
            .map(|(k, _)| *k)
            .unwrap()
    }
    fn kept(&self, rules: &RetentionRules) -> Vec<&'static str> {
        let p = plan(&self.stanza.backups, rules, NOW).unwrap();
        p.kept().map(|d| self.name(&d.backup.label)).collect()
    }
}

const ALL: &[&str] = &[
    "F1", "I1a", "D1a", "I1b", "D1b", "I1c", "F2", "I2a", "D2a", "I2b", "I2c", "D2b", "I2d", "F3",
    "I3a",
];

fn rules() -> RetentionRules {
    RetentionRules::default()
}

fn days(d: u64) -> Duration {
    Duration::from_secs(d * 86_400)
}

/// now - window == I2d's stop (the 14th, 01:10): 2 days 10 h 50 min.
const EDGE: Duration = Duration::from_secs(2 * 86_400 + 10 * 3600 + 50 * 60);

#[test]
fn table_of_rule_combinations() {
    let f = fixture();
    let chain2 = ["F2", "I2a", "D2a", "I2b", "I2c", "D2b", "I2d"];
    let cases: Vec<(&str, RetentionRules, Vec<&str>)> = vec![
        ("no rule keeps everything", rules(), ALL.to_vec()),
        (
            "full=1",
            RetentionRules {
                full: Some(1),
                ..rules()
            },
            vec!["F3", "I3a"],
        ),
        (
            "full=2",
            RetentionRules {
                full: Some(2),
                ..rules()
            },
            [&chain2[..], &["F3", "I3a"]].concat(),
        ),
        (
            "full=3 (every full)",
            RetentionRules {
                full: Some(3),
                ..rules()
            },
            ALL.to_vec(),
        ),
        (
            "full=9 (more than exist)",
            RetentionRules {
                full: Some(9),
                ..rules()
            },
            ALL.to_vec(),
        ),
        (
            "full=2 diff=1: D2a and the incrs on it go, I2a (on the full) stays",
            RetentionRules {
                full: Some(2),
                diff: Some(1),
                ..rules()
            },
            vec!["F2", "I2a", "D2b", "I2d", "F3", "I3a"],
        ),
        (
            "full=3 diff=1",
            RetentionRules {
                full: Some(3),
                diff: Some(1),
                ..rules()
            },
            vec![
                "F1", "I1a", "D1b", "I1c", "F2", "I2a", "D2b", "I2d", "F3", "I3a",
            ],
        ),
        (
            "full=2 diff=2 (no diff over the limit)",
            RetentionRules {
                full: Some(2),
                diff: Some(2),
                ..rules()
            },
            [&chain2[..], &["F3", "I3a"]].concat(),
        ),
        (
            "window 1d: F3 stopped before now-1d",
            RetentionRules {
                recovery_window: Some(days(1)),
                ..rules()
            },
            vec!["F3", "I3a"],
        ),
        (
            "window ends exactly on I2d's stop: I2d is its start",
            RetentionRules {
                recovery_window: Some(EDGE),
                ..rules()
            },
            vec!["I2d", "F3", "I3a"],
        ),
        (
            "window one second shorter: still I2d",
            RetentionRules {
                recovery_window: Some(EDGE - Duration::from_secs(1)),
                ..rules()
            },
            vec!["I2d", "F3", "I3a"],
        ),
        (
            "window one second longer: I2d stopped inside it, D2b is the start",
            RetentionRules {
                recovery_window: Some(EDGE + Duration::from_secs(1)),
                ..rules()
            },
            vec!["D2b", "I2d", "F3", "I3a"],
        ),
        (
            "window 30d: no backup stopped that early, all kept",
            RetentionRules {
                recovery_window: Some(days(30)),
                ..rules()
            },
            ALL.to_vec(),
        ),
        (
            "keep-daily=3",
            RetentionRules {
                keep_daily: Some(3),
                ..rules()
            },
            vec!["I2d", "F3", "I3a"],
        ),
        (
            "keep-weekly=3: newest of weeks 46, 47 and of the week of the 16th",
            RetentionRules {
                keep_weekly: Some(3),
                ..rules()
            },
            vec!["F2", "F3", "I3a"],
        ),
        (
            "keep-weekly=9: only four weeks have backups",
            RetentionRules {
                keep_weekly: Some(9),
                ..rules()
            },
            vec!["F1", "F2", "F3", "I3a"],
        ),
        (
            "keep-monthly=2: one month has backups",
            RetentionRules {
                keep_monthly: Some(2),
                ..rules()
            },
            vec!["I3a"],
        ),
        (
            "keep-yearly=3",
            RetentionRules {
                keep_yearly: Some(3),
                ..rules()
            },
            vec!["I3a"],
        ),
        (
            "full=1 + keep-daily=3",
            RetentionRules {
                full: Some(1),
                keep_daily: Some(3),
                ..rules()
            },
            vec!["I2d", "F3", "I3a"],
        ),
        (
            "full=1 + keep-weekly=4 + edge window",
            RetentionRules {
                full: Some(1),
                keep_weekly: Some(4),
                recovery_window: Some(EDGE),
                ..rules()
            },
            vec!["F1", "F2", "I2d", "F3", "I3a"],
        ),
        (
            "full=2 diff=1 + keep-daily=5 keeps back D2a's incrs by day",
            RetentionRules {
                full: Some(2),
                diff: Some(1),
                keep_daily: Some(5),
                ..rules()
            },
            vec!["F2", "I2a", "I2c", "D2b", "I2d", "F3", "I3a"],
        ),
    ];
    for (what, rules, expected) in cases {
        assert_eq!(f.kept(&rules), expected, "{what}");
    }
}

#[test]
fn reasons_name_every_rule_that_keeps() {
    let f = fixture();
    let r = RetentionRules {
        full: Some(2),
        diff: Some(1),
        recovery_window: Some(EDGE),
        keep_daily: Some(2),
        keep_weekly: Some(2),
        ..rules()
    };
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    let reasons = |n: &str| p.decision(f.label(n)).unwrap().reasons.clone();
    let f2 = f.label("F2").clone();
    assert_eq!(reasons("F2"), [KeepReason::FullCount { rank: 2 }]);
    assert_eq!(
        reasons("D2b"),
        [KeepReason::DiffCount {
            full: f2.clone(),
            rank: 1
        }]
    );
    assert_eq!(
        reasons("I2d"),
        [
            KeepReason::ChainOfKeptFull { full: f2 },
            KeepReason::RecoveryWindowStart
        ]
    );
    let f3 = reasons("F3");
    assert_eq!(f3.len(), 4, "{f3:?}");
    assert_eq!(f3[0], KeepReason::FullCount { rank: 1 });
    assert_eq!(f3[1], KeepReason::RecoveryWindow);
    assert_eq!(f3[2].to_string(), "daily 2026-11-15");
    assert_eq!(f3[3].to_string(), "weekly 2026-W46");
    assert_eq!(
        reasons("I3a")
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        [
            format!("chain of kept full {}", f.label("F3")),
            "recovery window".to_string(),
            "daily 2026-11-16".to_string(),
            "weekly 2026-W47".to_string()
        ]
    );
    assert!(reasons("D2a").is_empty() && reasons("F1").is_empty());
}

#[test]
fn wal_needs_follow_the_rules() {
    let f = fixture();
    let r = RetentionRules {
        full: Some(1),
        keep_daily: Some(3),
        ..rules()
    };
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    let wal = |n: &str| p.decision(f.label(n)).unwrap().wal;
    assert_eq!(wal("I2d"), WalNeed::Consistency, "kept by a tier only");
    assert_eq!(wal("F3"), WalNeed::Continuous);
    assert_eq!(wal("I3a"), WalNeed::Continuous);
    assert_eq!(wal("F2"), WalNeed::None);
    assert_eq!(p.pitr_base(f.stanza.db), Some(f.label("F3")));

    // Tiers only: the newest backup is the PITR base, the rest need consistency.
    let r = RetentionRules {
        keep_daily: Some(3),
        ..rules()
    };
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    let wal = |n: &str| p.decision(f.label(n)).unwrap().wal;
    assert_eq!(wal("I3a"), WalNeed::Continuous);
    assert_eq!(wal("F3"), WalNeed::Consistency);
    assert_eq!(p.pitr_base(f.stanza.db), Some(f.label("I3a")));
}

#[test]
fn pinned_backups_never_expire() {
    let mut f = fixture();
    for n in ["F1", "D2a"] {
        let l = f.label(n).clone();
        f.stanza.get_mut(&l).pinned = true;
    }
    let r = RetentionRules {
        full: Some(1),
        ..rules()
    };
    assert_eq!(f.kept(&r), ["F1", "D2a", "F3", "I3a"]);
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    let d = p.decision(f.label("D2a")).unwrap();
    assert_eq!(d.reasons, [KeepReason::Pinned]);
    assert_eq!(d.wal, WalNeed::Consistency);
    // A pinned backup counts toward the rules like any other: it is still F1.
    let r = RetentionRules {
        full: Some(3),
        ..rules()
    };
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    assert_eq!(
        p.decision(f.label("F1")).unwrap().reasons,
        [KeepReason::FullCount { rank: 3 }, KeepReason::Pinned]
    );
}

#[test]
fn damaged_backups_count_for_nothing_and_stay() {
    // F3 damaged: full=1 falls back to F2's chain; I3a (whose full is damaged) is newer
    // than F2, so it stays; F3 stays, reported as damaged.
    let mut f = fixture();
    let l = f.label("F3").clone();
    f.stanza.get_mut(&l).usable = false;
    let r = RetentionRules {
        full: Some(1),
        ..rules()
    };
    let p = plan(&f.stanza.backups, &r, NOW).unwrap();
    let kept: Vec<_> = p.kept().map(|d| f.name(&d.backup.label)).collect();
    assert_eq!(
        kept,
        ["F2", "I2a", "D2a", "I2b", "I2c", "D2b", "I2d", "F3", "I3a"]
    );
    let d = p.decision(f.label("F3")).unwrap();
    assert_eq!(
        (d.reasons.clone(), d.wal),
        (vec![KeepReason::Damaged], WalNeed::None)
    );
    assert_eq!(
        p.decision(f.label("I3a")).unwrap().reasons,
        [KeepReason::OrphanOfKeptRange]
    );
    // A damaged backup is not the newest of its day either: daily=1 takes I3a, and
    // with I3a damaged too it takes I2d (the 14th), not F3 (the 15th).
    let l = f.label("I3a").clone();
    f.stanza.get_mut(&l).usable = false;
    let r = RetentionRules {
        keep_daily: Some(1),
        ..rules()
    };
    assert_eq!(f.kept(&r), ["I2d", "F3", "I3a"]);
}

#[test]
fn with_no_usable_full_the_full_rule_keeps_everything_usable() {
    let mut f = fixture();
    for n in ["F1", "F2", "F3"] {
        let l = f.label(n).clone();
        f.stanza.get_mut(&l).usable = false;
    }
    let r = RetentionRules {
        full: Some(2),
        diff: Some(1),
        ..rules()
    };
    assert_eq!(f.kept(&r), ALL);
}

#[test]
fn diff_limit_with_a_damaged_or_missing_diff() {
    // D2b damaged: the limit keeps D2a (the newest usable diff), and I2d, which hangs on
    // the newer, damaged D2b, is not dropped by the limit.
    let mut f = fixture();
    let l = f.label("D2b").clone();
    f.stanza.get_mut(&l).usable = false;
    let r = RetentionRules {
        full: Some(2),
        diff: Some(1),
        ..rules()
    };
    assert_eq!(
        f.kept(&r),
        ["F2", "I2a", "D2a", "I2b", "I2c", "D2b", "I2d", "F3", "I3a"]
    );
    // D2a gone (an earlier `expire --set`, or an expire killed after deleting it): its
    // incrs are older than the kept D2b, so the limit drops them as it would have.
    let mut f = fixture();
    let l = f.label("D2a").clone();
    f.stanza.remove(&l);
    assert_eq!(f.kept(&r), ["F2", "I2a", "D2b", "I2d", "F3", "I3a"]);
}

#[test]
fn rules_that_mean_nothing_are_refused() {
    let f = fixture();
    let bad = [
        (
            RetentionRules {
                diff: Some(1),
                ..rules()
            },
            RulesError::DiffWithoutFull,
        ),
        (
            RetentionRules {
                keep_monthly: Some(0),
                ..rules()
            },
            RulesError::Zero {
                rule: "keep-monthly",
            },
        ),
    ];
    for (r, e) in bad {
        assert_eq!(plan(&f.stanza.backups, &r, NOW), Err(e));
    }
    let mut twice = f.stanza.backups.clone();
    twice.push(twice[0].clone());
    assert_eq!(
        plan(&twice, &rules(), NOW),
        Err(RulesError::DuplicateLabel(f.label("F1").clone()))
    );
}

#[test]
fn order_of_the_input_does_not_matter() {
    let f = fixture();
    let r = RetentionRules {
        full: Some(2),
        diff: Some(1),
        keep_daily: Some(2),
        ..rules()
    };
    let forward = plan(&f.stanza.backups, &r, NOW).unwrap();
    let mut rev = f.stanza.backups.clone();
    rev.reverse();
    assert_eq!(plan(&rev, &r, NOW).unwrap(), forward);
}

#[test]
fn generations_count_together() {
    // Two fulls before a stanza-upgrade, one after: full=2 keeps the new generation's
    // full and the old generation's newest chain; each generation has its PITR base.
    let mut s = Stanza::new();
    s.full(datetime!(2026-01-01 01:00 UTC));
    let old = s.full(datetime!(2026-01-08 01:00 UTC));
    let old_incr = s.incr(datetime!(2026-01-09 01:00 UTC));
    s.upgrade();
    let new = s.full(datetime!(2026-01-10 01:00 UTC));
    let new_incr = s.incr(datetime!(2026-01-11 01:00 UTC));
    let r = RetentionRules {
        full: Some(2),
        ..rules()
    };
    let p = plan(&s.backups, &r, datetime!(2026-01-12 00:00 UTC)).unwrap();
    let kept: Vec<_> = p.kept().map(|d| d.backup.label.clone()).collect();
    assert_eq!(kept, [old.clone(), old_incr, new.clone(), new_incr]);
    assert_eq!(p.pitr_base(cairn_repo::DbId(1)), Some(&old));
    assert_eq!(p.pitr_base(cairn_repo::DbId(2)), Some(&new));
}
