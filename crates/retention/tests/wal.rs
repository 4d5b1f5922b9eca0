//! WAL expiry: branching timelines, timelines without backups, a promoted timeline newer
//! than every backup, generations. Expected LSNs are stated from the made-up history.

mod builder;

use builder::{SEG, Stanza};
use cairn_pgformat::history::TimelineHistory;
use cairn_pgformat::{Lsn, TimelineId};
use cairn_repo::{BackupLabel, DbId};
use cairn_retention::{GenerationWal, Histories, RetentionRules, plan, plan_wal};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T1: TimelineId = TimelineId(1);
const T2: TimelineId = TimelineId(2);
const T3: TimelineId = TimelineId(3);
const T4: TimelineId = TimelineId(4);
const DB1: DbId = DbId(1);
const DB2: DbId = DbId(2);

fn day(n: i64) -> OffsetDateTime {
    datetime!(2026-03-01 01:00 UTC) + Duration::days(n)
}

const NOW: OffsetDateTime = datetime!(2026-04-01 00:00 UTC);

fn full(n: u32) -> RetentionRules {
    RetentionRules {
        full: Some(n),
        ..Default::default()
    }
}

/// The segment `[n * SEG, (n + 1) * SEG)`.
fn seg(n: u64) -> (Lsn, Lsn) {
    (Lsn(n * SEG), Lsn((n + 1) * SEG))
}

fn expendable(w: &cairn_retention::WalPlan, db: DbId, tli: TimelineId, n: u64) -> bool {
    let (s, e) = seg(n);
    w.segment_expendable(db, tli, s, e)
}

fn root() -> TimelineHistory {
    TimelineHistory::root(T1)
}

fn hist(entries: &[(TimelineId, TimelineHistory)]) -> Histories {
    entries
        .iter()
        .map(|(_, h)| ((DB1, h.tli), h.clone()))
        .collect()
}

fn start(s: &Stanza, l: &BackupLabel) -> Lsn {
    s.get(l).start_lsn
}

#[test]
fn one_timeline_keeps_wal_from_the_oldest_kept_full() {
    // Backups start at segments 1, 3, 5 (the builder spaces them two segments apart).
    let mut s = Stanza::new();
    s.full(day(0));
    let f2 = s.full(day(1));
    s.incr(day(2));
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &hist(&[(T1, root())]));
    assert_eq!(start(&s, &f2), Lsn(3 * SEG));
    assert_eq!(w.expendable_before(DB1, T1), Lsn(3 * SEG));
    assert!(expendable(&w, DB1, T1, 0));
    assert!(
        expendable(&w, DB1, T1, 2),
        "ends exactly at the kept full's start"
    );
    assert!(!expendable(&w, DB1, T1, 3), "holds the kept full's start");
    assert!(!expendable(&w, DB1, T1, 40), "after every backup");
    // A segment that straddles the start is kept.
    assert!(!w.segment_expendable(DB1, T1, Lsn(3 * SEG - 1), Lsn(4 * SEG - 1)));
    // Empty, inverted and unknown are never expendable.
    assert!(!w.segment_expendable(DB1, T1, Lsn(SEG), Lsn(SEG)));
    assert!(!w.segment_expendable(DB1, T1, Lsn(2 * SEG), Lsn(SEG)));
    assert!(!expendable(&w, DB1, T2, 0));
    assert!(!expendable(&w, DB2, T1, 0));
    // Timeline 1 needs no history given: the kept backups' timelines are filled in.
    let w = plan_wal(&p, &Histories::new());
    assert_eq!(w.expendable_before(DB1, T1), Lsn(3 * SEG));
}

#[test]
fn no_rule_expires_no_wal() {
    let mut s = Stanza::new();
    s.full(day(0));
    s.full(day(1));
    let p = plan(&s.backups, &RetentionRules::default(), NOW).unwrap();
    let w = plan_wal(
        &p,
        &hist(&[(T1, root()), (T2, root().child(T2, Lsn(SEG), "x"))]),
    );
    for tli in [T1, T2] {
        assert_eq!(w.expendable_before(DB1, tli), Lsn(0));
        assert!(!expendable(&w, DB1, tli, 0));
        assert!(!w.history_expendable(DB1, tli));
    }
}

/// tli 1: B1 (seg 1), B2 (seg 3); tli 2 branches from 1 at seg 4.5, B3 on it (seg 7);
/// tli 3 branches from 2 at seg 10.5 after every backup (promoted, no backup yet).
fn branching() -> (Stanza, Vec<BackupLabel>, Histories) {
    let mut s = Stanza::new();
    let b1 = s.full(day(0));
    let b2 = s.full(day(1));
    s.tli = T2;
    s.lsn = 7 * SEG;
    let b3 = s.full(day(2));
    let h2 = root().child(T2, Lsn(4 * SEG + SEG / 2), "promoted");
    let h3 = h2.child(T3, Lsn(10 * SEG + SEG / 2), "promoted again");
    let h = hist(&[(T1, root()), (T2, h2), (T3, h3)]);
    (s, vec![b1, b2, b3], h)
}

#[test]
fn branches_after_a_kept_backup_keep_wal_from_its_start() {
    let (s, b, h) = branching();
    // full=2 keeps B2 (tli 1) and B3 (tli 2). B2 reaches tli 2 and 3 (both branch after
    // its start), so all three keep WAL from B2's start.
    let p = plan(&s.backups, &full(2), NOW).unwrap();
    let w = plan_wal(&p, &h);
    for tli in [T1, T2, T3] {
        assert_eq!(w.expendable_before(DB1, tli), start(&s, &b[1]), "tli {tli}");
    }
    // tli 1's WAL between B2 and the branch point, and after it (the old primary may
    // have gone on), stays: PITR from B2 along tli 1 needs it.
    assert!(!expendable(&w, DB1, T1, 4));
    assert!(!expendable(&w, DB1, T1, 9));
    // The promoted timeline newer than every backup keeps everything.
    assert!(!expendable(&w, DB1, T3, 10));
    assert!(!expendable(&w, DB1, T3, 11));
    assert!(expendable(&w, DB1, T1, 2));

    // full=1 keeps only B3 on tli 2: tli 1 is reached by no kept backup, so it keeps
    // nothing older than B3's start; tli 3 branches from tli 2 after B3.
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    let b3 = start(&s, &b[2]);
    assert_eq!(b3, Lsn(7 * SEG));
    for tli in [T1, T2, T3] {
        assert_eq!(w.expendable_before(DB1, tli), b3, "tli {tli}");
    }
    assert!(expendable(&w, DB1, T1, 4), "tli 1 before B3's start");
    assert!(
        expendable(&w, DB1, T2, 5),
        "tli 2's first segments, before B3"
    );
    assert!(!expendable(&w, DB1, T2, 7));
    assert!(
        !expendable(&w, DB1, T1, 8),
        "a dead branch at or after B3's start stays"
    );
    assert!(!expendable(&w, DB1, T3, 10));
}

#[test]
fn a_timeline_promoted_before_the_newest_backup() {
    // B1 (seg 1) and B2 (seg 3) on tli 1; a PITR to seg 2.5 made tli 2, which the
    // cluster now runs on. B2 started after the branch, so it cannot reach tli 2.
    let mut s = Stanza::new();
    let b1 = s.full(day(0));
    let b2 = s.full(day(1));
    let h2 = root().child(T2, Lsn(2 * SEG + SEG / 2), "before 2026-03-02");
    let h = hist(&[(T1, root()), (T2, h2)]);

    // full=2: B1 reaches tli 2, so tli 2 keeps everything from B1's start.
    let p = plan(&s.backups, &full(2), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert_eq!(w.expendable_before(DB1, T2), start(&s, &b1));
    assert!(!expendable(&w, DB1, T2, 2), "tli 2's first segment");

    // full=1: nothing reaches tli 2; it keeps nothing older than B2's start, and
    // never anything at or after it.
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert_eq!(w.expendable_before(DB1, T2), start(&s, &b2));
    assert!(
        expendable(&w, DB1, T2, 2),
        "below B2's start: no kept backup can use it"
    );
    assert!(!expendable(&w, DB1, T2, 3));
    assert!(!expendable(&w, DB1, T2, 30));
}

#[test]
fn a_dead_branch_below_every_kept_backup_loses_its_history() {
    // tli 2 branched from 1 at seg 2 and died; tli 3 branched from 1 at seg 4 and
    // carries the backups; tli 4 branched from 3 later.
    let mut s = Stanza::new();
    s.full(day(0));
    s.tli = T3;
    s.lsn = 5 * SEG;
    let b = s.full(day(1));
    let h2 = root().child(T2, Lsn(2 * SEG), "test restore");
    let h3 = root().child(T3, Lsn(4 * SEG), "failover");
    let h4 = h3.child(T4, Lsn(9 * SEG), "failover");
    let h = hist(&[(T1, root()), (T2, h2), (T3, h3), (T4, h4)]);
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert!(w.history_expendable(DB1, T2));
    for tli in [T3, T4] {
        assert!(!w.history_expendable(DB1, tli), "tli {tli}");
    }
    assert!(
        !w.history_expendable(DB1, T1),
        "an ancestor of a kept timeline"
    );
    assert_eq!(w.expendable_before(DB1, T2), start(&s, &b));
    assert!(expendable(&w, DB1, T2, 3));
    assert!(!expendable(&w, DB1, T4, 9));
}

#[test]
fn tier_and_pinned_backups_keep_their_consistency_ranges() {
    // B1 (seg 1, stop seg 1.5) pinned; B2 (seg 3); B3 (seg 5). tli 2 branches from tli 1
    // at seg 1.75, after B1's start and in the segment that holds B1's stop.
    let mut s = Stanza::new();
    let b1 = s.full(day(0));
    s.full(day(1));
    let b3 = s.full(day(2));
    s.get_mut(&b1).pinned = true;
    let h2 = root().child(T2, Lsn(SEG + 3 * SEG / 4), "test");
    let h = hist(&[(T1, root()), (T2, h2)]);
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    let t1 = w.timeline(DB1, T1).unwrap();
    assert_eq!(t1.expendable_before, start(&s, &b3));
    assert_eq!(t1.keep_ranges.len(), 1);
    assert_eq!(t1.keep_ranges[0].backup, b1);
    assert!(!expendable(&w, DB1, T1, 1), "B1's start to stop");
    assert!(expendable(&w, DB1, T1, 0));
    assert!(expendable(&w, DB1, T1, 2));
    assert!(expendable(&w, DB1, T1, 3), "B2 is dropped");
    // tli 2's copy of segment 1 stays (recovery of B1 towards tli 2 reads it), its
    // later segments go.
    assert!(!expendable(&w, DB1, T2, 1));
    assert!(expendable(&w, DB1, T2, 2));
}

#[test]
fn tiers_only_keep_wal_after_the_newest_backup() {
    // B1 in February (seg 1), B2 and B3 in March (seg 3, 5): keep-monthly=2 keeps B1
    // and B3; B3, the newest, is the PITR base.
    let mut s = Stanza::new();
    let b1 = s.full(day(-5));
    s.full(day(10));
    let b3 = s.incr(day(20));
    let r = RetentionRules {
        keep_monthly: Some(2),
        ..Default::default()
    };
    let p = plan(&s.backups, &r, NOW).unwrap();
    assert_eq!(p.pitr_base(DB1), Some(&b3));
    let w = plan_wal(&p, &hist(&[(T1, root())]));
    assert_eq!(w.expendable_before(DB1, T1), start(&s, &b3));
    assert!(!expendable(&w, DB1, T1, 1), "B1's range");
    assert!(expendable(&w, DB1, T1, 2));
    assert!(expendable(&w, DB1, T1, 3), "B2 is dropped");
    assert!(!expendable(&w, DB1, T1, 5));
    assert_eq!(w.timeline(DB1, T1).unwrap().keep_ranges[0].backup, b1);
}

#[test]
fn generations() {
    // Generation 1: fulls at seg 1 and 3, an incr at 5; stanza-upgrade; generation 2
    // starts over at seg 1 with a full and an incr.
    let mut s = Stanza::new();
    s.full(day(0));
    let old = s.full(day(1));
    s.incr(day(2));
    s.upgrade();
    let new = s.full(day(3));
    s.incr(day(4));
    let mut h = hist(&[(T1, root())]);
    h.insert((DB2, T1), root());
    let g2 = root().child(T2, Lsn(20 * SEG), "x");
    h.insert((DB1, T2), g2);

    // full=2 keeps the old generation's newest chain: its WAL from that full on, to
    // the end of the generation (no "newest backup" bound there), and generation 2's
    // from its full on.
    let p = plan(&s.backups, &full(2), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert_eq!(w.expendable_before(DB1, T1), start(&s, &old));
    assert_eq!(w.expendable_before(DB1, T2), start(&s, &old));
    assert_eq!(w.expendable_before(DB2, T1), start(&s, &new));
    assert!(!expendable(&w, DB1, T1, 50));
    assert!(expendable(&w, DB2, T1, 0));
    assert!(!expendable(&w, DB2, T1, 1));

    // full=1: the old generation keeps no backup, so all of its WAL and histories go.
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert_eq!(
        w.timeline(DB1, T1).unwrap().generation,
        GenerationWal::RangesOnly
    );
    assert!(expendable(&w, DB1, T1, 3));
    assert!(expendable(&w, DB1, T2, 25));
    assert!(w.history_expendable(DB1, T2));
    assert!(!expendable(&w, DB2, T1, 1));

    // ... unless a backup of it is pinned: then only its range stays.
    let mut pinned = s.clone();
    pinned.get_mut(&old).pinned = true;
    let p = plan(&pinned.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &h);
    assert!(!expendable(&w, DB1, T1, 3), "the pinned backup's range");
    assert!(expendable(&w, DB1, T1, 4));
    assert!(expendable(&w, DB1, T1, 50));
    assert!(
        !w.history_expendable(DB1, T2),
        "above the pinned backup's timeline"
    );

    // A newer generation with no backup yet (upgraded, nothing taken) keeps everything.
    let mut h3 = h.clone();
    h3.insert((DbId(3), T1), root());
    let w = plan_wal(&p, &h3);
    assert_eq!(
        w.timeline(DbId(3), T1).unwrap().generation,
        GenerationWal::KeepAll
    );
    assert!(!expendable(&w, DbId(3), T1, 0));
}

#[test]
fn a_damaged_backup_needs_no_wal() {
    let mut s = Stanza::new();
    let b1 = s.full(day(0));
    let b2 = s.full(day(1));
    s.get_mut(&b1).usable = false;
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    assert!(p.decision(&b1).unwrap().keep());
    let w = plan_wal(&p, &hist(&[(T1, root())]));
    assert_eq!(w.expendable_before(DB1, T1), start(&s, &b2));
    assert!(expendable(&w, DB1, T1, 1));
}

#[test]
fn every_backup_damaged_keeps_all_wal() {
    let mut s = Stanza::new();
    let b1 = s.full(day(0));
    s.get_mut(&b1).usable = false;
    let p = plan(&s.backups, &full(1), NOW).unwrap();
    let w = plan_wal(&p, &hist(&[(T1, root())]));
    assert_eq!(w.expendable_before(DB1, T1), Lsn(0));
    assert!(!expendable(&w, DB1, T1, 0));
}
