//! Properties over random histories and rules.

mod builder;

use std::collections::BTreeSet;
use std::time::Duration;

use builder::{SEG, Stanza};
use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::BackupLabel;
use cairn_retention::{Histories, RetentionRules, WalNeed, plan, plan_wal};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

#[derive(Debug, Clone)]
struct Step {
    kind: u8,
    gap_minutes: i64,
    pinned: bool,
    damaged: bool,
    promote: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..3, 1i64..(3 * 24 * 60), 0u8..10, 0u8..10, 0u8..20).prop_map(|(k, g, p, d, t)| Step {
        kind: k,
        gap_minutes: g,
        pinned: p == 0,
        damaged: d == 0,
        promote: t == 0,
    })
}

fn opt(max: u32) -> impl Strategy<Value = Option<u32>> {
    prop_oneof![Just(None), (1..=max).prop_map(Some)]
}

fn rules() -> impl Strategy<Value = RetentionRules> {
    (
        opt(4),
        opt(3),
        prop_oneof![
            Just(None),
            (0u64..20 * 86_400).prop_map(|s| Some(Duration::from_secs(s)))
        ],
        (opt(10), opt(6), opt(4), opt(3)),
    )
        .prop_map(|(full, diff, window, (d, w, m, y))| RetentionRules {
            full,
            diff: diff.filter(|_| full.is_some()),
            recovery_window: window,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_yearly: y,
        })
}

/// A history from the steps: timeline promotions branch between two backups.
fn history(steps: &[Step]) -> (Stanza, Histories, OffsetDateTime) {
    let mut s = Stanza::new();
    let mut h = Histories::new();
    let mut current = TimelineHistory::root(TimelineId(1));
    h.insert((s.db, current.tli), current.clone());
    let mut at = datetime!(2026-01-01 00:00 UTC);
    for (i, st) in steps.iter().enumerate() {
        at += time::Duration::minutes(st.gap_minutes);
        if st.promote {
            let next = current.tli.next().unwrap();
            current = current.child(next, Lsn(s.lsn - SEG / 4), "promoted");
            h.insert((s.db, next), current.clone());
            s.tli = next;
        }
        let l = match (i, st.kind) {
            (0, _) | (_, 0) => s.full(at),
            (_, 1) => s.diff(at),
            _ => s.incr(at),
        };
        let b = s.get_mut(&l);
        b.pinned = st.pinned;
        b.usable = !st.damaged;
    }
    (s, h, at + time::Duration::hours(1))
}

fn kept(s: &Stanza, r: &RetentionRules, now: OffsetDateTime) -> BTreeSet<BackupLabel> {
    plan(&s.backups, r, now)
        .unwrap()
        .kept()
        .map(|d| d.backup.label.clone())
        .collect()
}

/// Each rule on its own (`diff` goes with `full`).
fn singles(r: &RetentionRules) -> Vec<RetentionRules> {
    let none = RetentionRules::default();
    let mut v = Vec::new();
    if r.full.is_some() {
        v.push(RetentionRules {
            full: r.full,
            diff: r.diff,
            ..none.clone()
        });
    }
    if r.recovery_window.is_some() {
        v.push(RetentionRules {
            recovery_window: r.recovery_window,
            ..none.clone()
        });
    }
    for (i, n) in [r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly]
        .into_iter()
        .enumerate()
    {
        if n.is_some() {
            let mut one = none.clone();
            *[
                &mut one.keep_daily,
                &mut one.keep_weekly,
                &mut one.keep_monthly,
                &mut one.keep_yearly,
            ][i] = n;
            v.push(one);
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn kept_is_a_superset_of_what_each_rule_keeps(
        steps in prop::collection::vec(step(), 1..60),
        r in rules(),
    ) {
        let (s, _, now) = history(&steps);
        let all = kept(&s, &r, now);
        for one in singles(&r) {
            let k = kept(&s, &one, now);
            prop_assert!(k.is_subset(&all), "{one:?} keeps {:?} beyond", k.difference(&all));
        }
    }

    #[test]
    fn pinned_and_damaged_are_always_kept(
        steps in prop::collection::vec(step(), 1..60),
        r in rules(),
    ) {
        let (s, _, now) = history(&steps);
        let p = plan(&s.backups, &r, now).unwrap();
        for d in p.decisions() {
            if d.backup.pinned || !d.backup.usable {
                prop_assert!(d.keep(), "{} dropped", d.backup.label);
            }
        }
    }

    #[test]
    fn no_rules_drop_nothing_and_expire_no_wal(steps in prop::collection::vec(step(), 1..60)) {
        let (s, h, now) = history(&steps);
        let p = plan(&s.backups, &RetentionRules::default(), now).unwrap();
        prop_assert_eq!(p.dropped().count(), 0);
        let w = plan_wal(&p, &h);
        for (db, tli) in h.keys() {
            prop_assert!(!w.segment_expendable(*db, *tli, Lsn(0), Lsn(SEG)));
        }
    }

    #[test]
    fn the_newest_usable_backup_is_kept_as_pitr_base(
        steps in prop::collection::vec(step(), 1..60),
        r in rules(),
    ) {
        let (s, _, now) = history(&steps);
        let p = plan(&s.backups, &r, now).unwrap();
        if let Some(newest) = p.decisions().iter().rev().find(|d| d.backup.usable) {
            prop_assert!(newest.keep());
            prop_assert_eq!(newest.wal, WalNeed::Continuous);
        }
    }

    /// No WAL a kept backup needs is expendable: from its start on, on every timeline it
    /// reaches, for PITR; from start to stop for the others.
    #[test]
    fn wal_that_a_kept_backup_needs_is_never_expendable(
        steps in prop::collection::vec(step(), 1..60),
        r in rules(),
    ) {
        let (s, h, now) = history(&steps);
        let p = plan(&s.backups, &r, now).unwrap();
        let w = plan_wal(&p, &h);
        let top = s.lsn / SEG + 2;
        for d in p.kept().filter(|d| d.backup.usable) {
            let b = &d.backup;
            for ((db, _), hist) in &h {
                let reaches = b.timeline == hist.tli
                    || hist.switchpoint_of(b.timeline).is_some_and(|sp| sp > b.start_lsn);
                if *db != b.db_id || !reaches {
                    continue;
                }
                for n in 0..top {
                    let (lo, hi) = (Lsn(n * SEG), Lsn((n + 1) * SEG));
                    let needed = match d.wal {
                        WalNeed::Continuous => hi > b.start_lsn,
                        WalNeed::Consistency => hi > b.start_lsn && lo <= b.stop_lsn,
                        WalNeed::None => false,
                    };
                    prop_assert!(
                        !(needed && w.segment_expendable(*db, hist.tli, lo, hi)),
                        "segment {n} of tli {} needed by {} ({:?})", hist.tli, b.label, d.wal
                    );
                }
            }
        }
    }
}
