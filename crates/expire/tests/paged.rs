//! Expire over a WAL catalog read through its index (decision 025): pages the retention
//! plan does not cut through stay unread, pages that go whole are counted from their
//! figures and read only when the run removes them, and the outcome is exactly that of a
//! plan over the whole catalog, file by file.

mod common;

use std::collections::BTreeSet;

use cairn_expire::ExpireOptions;
use cairn_repo::test_util::RawBackend;
use cairn_retention::RetentionRules;
use common::{Fx, full, label, segs};

/// A stanza whose WAL index cuts pages of 3 segments.
async fn paged() -> Fx {
    let mut fx = Fx::new().await;
    fx.repo = fx.repo.clone().with_wal_page_segments(3);
    fx
}

/// What goes, by name, and how many files stay, as planned over the paged catalog (pages
/// that go whole read back) and over the whole catalog; with the paged plan's page counts.
struct Compared {
    paged: (BTreeSet<String>, BTreeSet<String>, usize),
    whole: (BTreeSet<String>, BTreeSet<String>, usize),
    cut_pages: usize,
    unread_pages: usize,
}

async fn compare(fx: &Fx, rules: &RetentionRules) -> Compared {
    let (repo, s) = (&fx.repo, &fx.stanza);
    let opts = ExpireOptions {
        dry_run: true,
        ..Default::default()
    };
    let plan = cairn_expire::plan(repo, s, rules, &opts, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let whole = cairn_expire::wal::plan(
        s,
        &repo.wal_catalog(s).await.unwrap(),
        &plan.backups.retention,
    );
    let sides = |d: &cairn_expire::wal::WalDrops| {
        let mut cut = BTreeSet::new();
        let mut forget = BTreeSet::new();
        let mut kept = 0;
        for tl in &d.timelines {
            cut.extend(tl.cut.iter().map(|f| f.name.clone()));
            forget.extend(tl.forget.iter().map(|f| f.name.clone()));
            kept += tl.kept_files;
        }
        (cut, forget, kept)
    };
    let mut paged = sides(&plan.wal);
    let mut cut_pages = 0;
    for tl in &plan.wal.timelines {
        for p in &tl.cut_pages {
            cut_pages += 1;
            for (e, _) in repo.wal_page_files(s, &p.id, &p.page).await.unwrap() {
                assert!(p.covers(&e), "{} is not one of its page's", e.name);
                assert!(paged.0.insert(e.name.clone()), "{} twice", e.name);
            }
        }
    }
    // Counted from the figures as from the files.
    assert_eq!(plan.wal.count(), paged.0.len() + paged.1.len());
    let total: usize = plan.wal.timelines.iter().map(|t| t.kept_files).sum();
    assert_eq!(total, paged.2);
    let catalog = repo.wal_catalog_paged(s).await.unwrap();
    let read = cairn_expire::wal::pages_to_load(&catalog, &plan.backups.retention).len();
    let unread_pages = catalog.pages().len() - cut_pages - read;
    Compared {
        paged,
        whole: sides(&whole),
        cut_pages,
        unread_pages,
    }
}

/// Segments 1 to 40 of timeline 1 and three fulls: `full = 2` cuts everything below the
/// second one (segment 17), through the page that holds it.
#[tokio::test]
async fn pages_below_the_cut_go_whole_and_the_rest_stay_unread() {
    let mut fx = paged().await;
    fx.push_segments(1, 1, 40).await;
    fx.backup("20261201-010000F", None, 1, 5, 6, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 17, 18, &[2]).await;
    fx.backup("20261203-010000F", None, 1, 30, 31, &[3]).await;
    fx.push_backup_history(1, 5).await;
    fx.repo.refresh_wal_index(&fx.stanza).await.unwrap();

    let c = compare(&fx, &full(2)).await;
    assert_eq!(c.paged, c.whole);
    assert_eq!(c.paged.0, segs(1, 1, 16).into_iter().collect());
    // Pages 0-4 (segments 1-14) go whole; page 5 (15-17) is cut through and read; pages
    // 6-13 stay unread.
    assert_eq!(c.cut_pages, 5);
    assert_eq!(c.unread_pages, 8);

    let out = fx.expire(&full(2), &ExpireOptions::default()).await;
    let r = out.report.unwrap();
    assert_eq!(
        r.wal_files_removed, 17,
        "16 segments and a backup history file"
    );
    let want = segs(1, 17, 40);
    assert_eq!(fx.wal_names().await, want);
    assert_eq!(fx.wal_objects().await, want);
    // The run wrote a new index: a reader after it reads through pages again, and sees
    // the same as the whole catalog.
    let after = fx.repo.wal_catalog_paged(&fx.stanza).await.unwrap();
    assert!(!after.pages().is_empty());
    assert_eq!(after.len(), want.len());
    fx.assert_consistent().await;
}

/// A pinned backup keeps its range in the middle of what goes: pages between kept ranges
/// are read and their files forgotten by name; only pages below every kept file go whole.
#[tokio::test]
async fn pages_between_kept_ranges_are_read_and_forgotten_by_name() {
    let mut fx = paged().await;
    fx.push_segments(1, 1, 40).await;
    fx.backup("20261201-010000F", None, 1, 10, 11, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 20, 21, &[2]).await;
    fx.backup("20261203-010000F", None, 1, 34, 35, &[3]).await;
    fx.repo
        .set_pinned(&fx.stanza, &label("20261201-010000F"), true)
        .await
        .unwrap();
    fx.repo.refresh_wal_index(&fx.stanza).await.unwrap();
    let rules = RetentionRules {
        keep_daily: Some(1),
        ..Default::default()
    };
    let c = compare(&fx, &rules).await;
    assert_eq!(c.paged, c.whole);
    assert_eq!(c.paged.0, segs(1, 1, 9).into_iter().collect());
    assert_eq!(c.cut_pages, 3, "segments 1-9");
    let mut forgotten = segs(1, 12, 33);
    forgotten.sort();
    assert_eq!(c.paged.1, forgotten.into_iter().collect());

    fx.expire(&rules, &ExpireOptions::default()).await;
    let mut want = segs(1, 10, 11);
    want.extend(segs(1, 34, 40));
    assert_eq!(fx.wal_names().await, want);
    assert_eq!(fx.wal_objects().await, want);
    fx.assert_consistent().await;
}

/// Three timelines, a segment pushed again after the index into an old page's range, and
/// a page that goes whole deleted between the plan and the run: the run reads its files
/// from the whole catalog instead, removes them and their journal entries, and every
/// timeline ends as a plan over the whole catalog said.
#[tokio::test]
async fn timelines_a_late_copy_and_a_page_lost_before_the_run() {
    let mut fx = paged().await;
    fx.push_segments(1, 1, 30).await;
    fx.push_history(2, &[(1, 22)]).await;
    fx.push_segments(2, 22, 30).await;
    fx.push_history(3, &[(1, 5)]).await;
    fx.push_segments(3, 5, 12).await;
    fx.backup("20261201-010000F", None, 1, 3, 4, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 19, 20, &[2]).await;
    fx.backup("20261203-010000F", None, 2, 25, 26, &[3]).await;
    fx.repo.refresh_wal_index(&fx.stanza).await.unwrap();
    // Archived again after the index, inside page 0 of timeline 1.
    fx.repush(1, 2).await;

    let rules = full(2);
    let c = compare(&fx, &rules).await;
    assert_eq!(c.paged, c.whole);
    assert!(c.cut_pages >= 4, "{}", c.cut_pages);

    let opts = ExpireOptions::default();
    let now = time::OffsetDateTime::now_utc();
    let plan = cairn_expire::plan(&fx.repo, &fx.stanza, &rules, &opts, now)
        .await
        .unwrap();
    let lost = plan
        .wal
        .timelines
        .iter()
        .flat_map(|t| &t.cut_pages)
        .last()
        .unwrap()
        .clone();
    let journal_before = RawBackend::of(&fx.repo)
        .list(&format!("stanza/{}/journal/wal/log/", fx.stanza), None)
        .await
        .unwrap()
        .len();
    RawBackend::of(&fx.repo)
        .delete(&fx.key(&lost.page.key))
        .await
        .unwrap();
    let report = cairn_expire::execute(&fx.repo, &plan, None, &opts, &|_| {})
        .await
        .unwrap();
    let gone = c.whole.0.len() + c.whole.1.len();
    assert_eq!(report.wal_files_removed, gone);
    let names: BTreeSet<String> = fx.wal_names().await.into_iter().collect();
    let objects: BTreeSet<String> = fx.wal_objects().await.into_iter().collect();
    assert_eq!(names, objects);
    for name in c.whole.0.iter().chain(&c.whole.1) {
        assert!(!names.contains(name), "{name} stayed");
    }
    // Each file removed took its journal entries (a repushed file has two), and the run
    // added its own events and nothing else.
    let journal_after = RawBackend::of(&fx.repo)
        .list(&format!("stanza/{}/journal/wal/log/", fx.stanza), None)
        .await
        .unwrap()
        .len();
    let events = journal_after + gone + 1 - journal_before;
    assert!(
        (1..=6).contains(&events),
        "{journal_before} entries before, {journal_after} after, {gone} files removed"
    );
    fx.assert_consistent().await;
}
