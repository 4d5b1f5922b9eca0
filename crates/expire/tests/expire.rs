//! Expire against an in-memory repository: which backups, WAL files and packs go, what
//! the catalogs say afterwards, and that every kept backup still reads back whole.

mod common;

use cairn_repo::test_util::RawBackend;
use std::time::Duration;

use cairn_expire::{ExpireError, ExpireOptions};
use cairn_repo::lock::{LockOptions, LockTarget};
use cairn_retention::RetentionRules;
use common::{Fx, full, grace0, label, lsn, segs};

/// Three chains (full + incr), WAL on timeline 1 from segment 1 to 30.
async fn three_chains() -> Fx {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 30).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1, 2, 3])
        .await;
    fx.backup(
        "20261201-010000F_20261201-020000I",
        Some("20261201-010000F"),
        1,
        5,
        6,
        &[1, 2, 4],
    )
    .await;
    fx.backup("20261202-010000F", None, 1, 10, 11, &[1, 5, 6])
        .await;
    fx.backup(
        "20261202-010000F_20261202-020000I",
        Some("20261202-010000F"),
        1,
        13,
        14,
        &[1, 5, 7],
    )
    .await;
    fx.backup("20261203-010000F", None, 1, 20, 21, &[1, 8, 9])
        .await;
    fx.backup(
        "20261203-010000F_20261203-020000I",
        Some("20261203-010000F"),
        1,
        23,
        24,
        &[1, 8, 10],
    )
    .await;
    for n in [2, 10, 20] {
        fx.push_backup_history(1, n).await;
    }
    fx
}

#[tokio::test]
async fn count_retention_keeps_two_chains_and_the_wal_from_the_older_ones_start() {
    let fx = three_chains().await;
    let before = fx.everything().await;

    // A dry run names what would go and changes nothing.
    let dry = fx
        .expire(
            &full(2),
            &ExpireOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await;
    assert!(dry.report.is_none());
    let text = dry.plan.lines(true).join("\n");
    for gone in ["20261201-010000F", "20261201-010000F_20261201-020000I"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("would remove") && l.contains(gone)),
            "{text}"
        );
    }
    assert!(
        text.contains("would remove 10 files of WAL of db 1 timeline 1"),
        "{text}"
    );
    assert_eq!(
        fx.everything().await,
        before,
        "the dry run changed the repository"
    );

    let out = fx.expire(&full(2), &ExpireOptions::default()).await;
    let report = out.report.unwrap();
    assert_eq!(report.backups_removed, 2);
    assert_eq!(
        fx.labels().await,
        [
            "20261202-010000F",
            "20261202-010000F_20261202-020000I",
            "20261203-010000F",
            "20261203-010000F_20261203-020000I"
        ]
    );
    // Segments 1..=9 end at or before the kept full's start (in segment 10); the backup
    // history file of the dropped full (segment 2) goes with them.
    let mut want = segs(1, 10, 30);
    want.push("000000010000000000000014.00000028.backup".into());
    want.push("00000001000000000000000A.00000028.backup".into());
    want.sort();
    assert_eq!(fx.wal_names().await, want);
    assert_eq!(fx.wal_objects().await, want, "objects and catalog agree");
    assert_eq!(report.wal_files_removed, 10);
    // The WAL left has no gap.
    let tls = fx.repo.wal_catalog(&fx.stanza).await.unwrap().timelines();
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].ranges.len(), 1);
    assert!(tls[0].gaps.is_empty());
    // The journal entries of the removed files are gone too.
    let log = RawBackend::of(&fx.repo)
        .list("stanza/main/journal/wal/log/", None)
        .await
        .unwrap();
    assert!(
        !log.iter()
            .any(|l| l.key.ends_with("-000000010000000000000001")),
        "a removed file's journal entry is left"
    );
    fx.assert_consistent().await;

    // The first chain's own chunks (seeds 2, 3, 4) were in packs no kept backup uses.
    assert!(report.packs_condemned >= 1);
    assert_eq!(
        report.packs_deleted, 0,
        "nothing is deleted in the run that condemns"
    );
    // A second run within the grace deletes nothing; with the grace passed it does.
    let again = fx.expire(&full(2), &ExpireOptions::default()).await;
    let again = again.report.unwrap();
    assert_eq!((again.backups_removed, again.wal_files_removed), (0, 0));
    assert_eq!(again.packs_deleted, 0);
    // The first chain's full shared its pack with every later backup (seed 1): that pack
    // was repacked, and the old one condemned too.
    assert_eq!(report.packs_repacked, 1);
    assert_eq!(report.manifests_revised, 4);
    let packs_before = fx.stored_packs().await;
    let last = fx.expire(&full(2), &grace0()).await.report.unwrap();
    assert_eq!(
        last.packs_deleted,
        report.packs_condemned + report.packs_repacked
    );
    assert_eq!(fx.stored_packs().await, packs_before - last.packs_deleted);
    fx.assert_consistent().await;
}

#[tokio::test]
async fn without_rules_nothing_expires_but_leftover_packs_are_collected() {
    let fx = three_chains().await;
    let names = fx.wal_names().await;
    let out = fx.expire(&RetentionRules::default(), &grace0()).await;
    let r = out.report.unwrap();
    assert_eq!((r.backups_removed, r.wal_files_removed), (0, 0));
    assert_eq!(fx.labels().await.len(), 6);
    assert_eq!(fx.wal_names().await, names);
    assert_eq!(r.packs_condemned, 0, "every pack is referenced");
}

/// Timeline 1 from segment 1 to 20; timeline 2 branches from it at segment 12 (after the
/// second full's start), timeline 3 at segment 5 (before it: a dead branch).
#[tokio::test]
async fn wal_expiry_follows_each_timeline() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 20).await;
    fx.push_history(2, &[(1, 12)]).await;
    fx.push_segments(2, 12, 20).await;
    fx.push_history(3, &[(1, 5)]).await;
    fx.push_segments(3, 5, 9).await;
    fx.backup("20261201-010000F", None, 1, 3, 4, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 8, 9, &[2]).await;
    fx.backup("20261203-010000F", None, 2, 15, 16, &[3]).await;

    let out = fx.expire(&full(2), &ExpireOptions::default()).await;
    assert_eq!(fx.labels().await, ["20261202-010000F", "20261203-010000F"]);
    let mut want: Vec<String> = Vec::new();
    // Timeline 1 from the start of the older kept full (segment 8) on.
    want.extend(segs(1, 8, 20));
    // Timeline 2 is reached by both kept fulls: all of it stays.
    want.extend(segs(2, 12, 20));
    // Timeline 3 left timeline 1 before the oldest kept full started: no kept backup
    // reaches it, and its WAL below that start goes; segments 8 and 9 stay.
    want.extend(segs(3, 8, 9));
    // History files of every timeline at or above the kept backups' lowest stay, so
    // PostgreSQL's probe for the newest timeline finds no gap.
    want.push("00000002.history".into());
    want.push("00000003.history".into());
    want.sort();
    assert_eq!(fx.wal_names().await, want);
    assert_eq!(fx.wal_objects().await, want);
    let tl3 = out
        .plan
        .wal
        .timelines
        .iter()
        .find(|t| t.timeline.0 == 3)
        .unwrap();
    assert_eq!(tl3.cut.len(), 3);
    assert_eq!(tl3.expendable_before, lsn(8).add(0x28));
    fx.assert_consistent().await;
}

trait LsnAdd {
    fn add(self, n: u64) -> Self;
}
impl LsnAdd for cairn_pgformat::Lsn {
    fn add(self, n: u64) -> Self {
        cairn_pgformat::Lsn(self.0 + n)
    }
}

#[tokio::test]
async fn a_pinned_backup_and_a_tier_keep_their_ranges_and_no_cut_hides_them() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 30).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 10, 11, &[2]).await;
    fx.backup("20261203-010000F", None, 1, 20, 21, &[3]).await;
    fx.repo
        .set_pinned(&fx.stanza, &label("20261201-010000F"), true)
        .await
        .unwrap();
    let rules = RetentionRules {
        keep_daily: Some(1),
        ..Default::default()
    };
    let out = fx.expire(&rules, &ExpireOptions::default()).await;
    assert_eq!(fx.labels().await, ["20261201-010000F", "20261203-010000F"]);
    let text = out.plan.lines(false).join("\n");
    assert!(
        text.contains("keep full backup 20261201-010000F (pinned): pinned"),
        "{text}"
    );
    // The pinned backup keeps its start-to-stop WAL (segments 2 and 3); the newest keeps
    // everything from its start (segment 20) on; the rest goes.
    let mut want = segs(1, 2, 3);
    want.extend(segs(1, 20, 30));
    assert_eq!(fx.wal_names().await, want);
    assert_eq!(fx.wal_objects().await, want);
    let tl = &out.plan.wal.timelines[0];
    assert_eq!(
        tl.cut.len(),
        1,
        "only segment 1 lies below every kept segment"
    );
    assert_eq!(tl.forget.len(), 16);
    // A late copy of a kept segment still shows (no cut covers it); a reread agrees.
    fx.repush(1, 2).await;
    assert_eq!(fx.wal_names().await, want);
    fx.assert_consistent().await;

    // The pin holds against --set too; unpinned, --set removes it.
    let err = cairn_expire::expire(
        &fx.repo,
        &fx.stanza,
        &rules,
        &ExpireOptions {
            set: Some(label("20261201-010000F")),
            ..Default::default()
        },
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExpireError::Pinned { .. }), "{err}");
    fx.repo
        .set_pinned(&fx.stanza, &label("20261201-010000F"), false)
        .await
        .unwrap();
    let out = fx.expire(&rules, &ExpireOptions::default()).await;
    assert_eq!(out.report.unwrap().backups_removed, 1);
    assert_eq!(fx.labels().await, ["20261203-010000F"]);
    assert_eq!(fx.wal_names().await, segs(1, 20, 30));
}

#[tokio::test]
async fn set_drops_exactly_one_backup_and_its_incr_still_reads_back() {
    let fx = three_chains().await;
    let names = fx.wal_names().await;
    let opts = ExpireOptions {
        set: Some(label("20261203-010000F")),
        ..Default::default()
    };
    let out = fx.expire(&full(2), &opts).await;
    assert_eq!(out.report.unwrap().backups_removed, 1);
    let labels = fx.labels().await;
    assert_eq!(labels.len(), 5);
    assert!(!labels.contains(&"20261203-010000F".to_string()));
    assert!(labels.contains(&"20261203-010000F_20261203-020000I".to_string()));
    // The oldest backup stays: only the WAL before it (segment 1) goes.
    let mut want = names.clone();
    want.retain(|n| n != &segs(1, 1, 1)[0]);
    assert_eq!(fx.wal_names().await, want);
    fx.assert_consistent().await;

    // --set of the oldest: WAL before the next oldest backup goes with it.
    let opts = ExpireOptions {
        set: Some(label("20261201-010000F")),
        ..Default::default()
    };
    fx.expire(&full(2), &opts).await;
    let names = fx.wal_names().await;
    assert!(names.contains(&segs(1, 5, 5)[0]), "{names:?}");
    assert!(!names.contains(&segs(1, 4, 4)[0]), "{names:?}");
    fx.assert_consistent().await;

    let err = cairn_expire::expire(
        &fx.repo,
        &fx.stanza,
        &full(2),
        &ExpireOptions {
            set: Some(label("20991201-010000F")),
            ..Default::default()
        },
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExpireError::NoSuchSet { .. }), "{err}");
}

#[tokio::test]
async fn a_backup_that_may_have_loaded_the_index_before_a_condemnation_keeps_the_pack() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 12).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1, 2]).await;
    fx.backup("20261202-010000F", None, 1, 5, 6, &[3]).await;
    fx.backup("20261203-010000F", None, 1, 8, 9, &[4]).await;
    // A backup starts (and holds the lock) before the first full's pack is condemned.
    let backup = fx
        .repo
        .lock(
            LockTarget::Backup(fx.stanza.clone()),
            "backup",
            &LockOptions::default(),
        )
        .await
        .unwrap();
    let first = fx.expire(&full(2), &grace0()).await;
    let condemned = first.report.unwrap().packs_condemned;
    assert_eq!(condemned, 1);
    // A backup starting now leaves the condemned pack's chunks out of its index.
    let index = fx.repo.backup_chunk_index(&fx.stanza).await.unwrap();
    let id = fx.repo.chunk_codec(&fx.stanza).content_id(&common::data(1));
    assert!(!index.contains(&id));
    assert!(fx.repo.chunk_index(&fx.stanza).await.unwrap().contains(&id));

    let blocked = fx.expire(&full(2), &grace0()).await;
    assert_eq!(blocked.report.unwrap().packs_deleted, 0);
    let text = blocked.plan.lines(false).join("\n");
    assert!(text.contains("may use it"), "{text}");
    backup.release().await.unwrap();
    let done = fx.expire(&full(2), &grace0()).await;
    assert_eq!(done.report.unwrap().packs_deleted, 1);
    fx.assert_consistent().await;
}

#[tokio::test]
async fn a_condemned_pack_referenced_again_is_uncondemned() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 12).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 5, 6, &[2]).await;
    fx.expire(&full(1), &ExpireOptions::default()).await;
    let gc = fx.repo.gc_state(&fx.stanza).await.unwrap();
    assert_eq!(gc.state.condemned.len(), 1);
    // A backup that loaded the index earlier references the condemned pack after all
    // (written here directly, as it would have been).
    let old = fx.repo.chunk_index(&fx.stanza).await.unwrap();
    let id = fx.repo.chunk_codec(&fx.stanza).content_id(&common::data(1));
    let loc = old.get(&id).unwrap();
    let mut m = fx
        .repo
        .manifest(&fx.stanza, &label("20261202-010000F"))
        .await
        .unwrap();
    m.label = label("20261203-010000F");
    m.start_time = cairn_repo::BackupTime::parse("2026-12-03T01:00:00Z").unwrap();
    m.stop_time = m.start_time;
    m.packs.push(loc.pack.clone());
    m.files[0].chunks[0] = cairn_repo::ChunkRef {
        id,
        pack: (m.packs.len() - 1) as u32,
        offset: loc.offset,
        len: loc.len,
        size: loc.size,
    };
    fx.repo.put_manifest(&fx.stanza, &m).await.unwrap();
    let out = fx.expire(&full(2), &grace0()).await;
    assert_eq!(out.plan.gc.uncondemn, vec![loc.pack.clone()]);
    assert_eq!(out.report.unwrap().packs_deleted, 0);
    assert!(
        fx.repo
            .gc_state(&fx.stanza)
            .await
            .unwrap()
            .state
            .condemned
            .is_empty()
    );
}

#[tokio::test]
async fn a_mostly_garbage_pack_is_repacked_and_the_kept_backup_reads_from_the_new_one() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 12).await;
    // One pack holding seeds 1..=8; the kept backup reuses only seed 1 of it.
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1, 2, 3, 4, 5, 6, 7, 8])
        .await;
    let kept = fx.backup("20261202-010000F", None, 1, 5, 6, &[1, 9]).await;
    let old_pack = kept.location(&kept.files[0].chunks[0]).unwrap().pack;
    let out = fx.expire(&full(1), &grace0()).await;
    assert_eq!(out.plan.gc.repack.len(), 1);
    assert_eq!(out.plan.gc.repack[0].pack, old_pack);
    let r = out.report.unwrap();
    assert_eq!((r.packs_repacked, r.manifests_revised), (1, 1));
    let revised = fx.repo.manifest(&fx.stanza, &kept.label).await.unwrap();
    let new_pack = revised.location(&revised.files[0].chunks[0]).unwrap().pack;
    assert_ne!(new_pack, old_pack);
    assert_eq!(
        fx.repo
            .manifest_revisions(&fx.stanza, &kept.label)
            .await
            .unwrap(),
        [0, 1]
    );
    fx.assert_consistent().await;
    // The old pack is condemned now and goes with the next run.
    let state = fx.repo.gc_state(&fx.stanza).await.unwrap().state;
    assert!(state.condemned.contains_key(&old_pack));
    let next = fx.expire(&full(1), &grace0()).await.report.unwrap();
    assert_eq!(next.packs_deleted, 1);
    assert!(
        !fx.repo
            .pack_listing(&fx.stanza)
            .await
            .unwrap()
            .all()
            .contains(&old_pack)
    );
    fx.assert_consistent().await;
    // A damaged newest revision no longer falls back: the old pack is gone.
    assert!(fx.repo.manifest(&fx.stanza, &kept.label).await.is_ok());
}

#[tokio::test]
async fn grace_is_waited_for() {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 8).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1]).await;
    fx.backup("20261202-010000F", None, 1, 5, 6, &[2]).await;
    let opts = ExpireOptions {
        gc_grace: Duration::from_secs(3600),
        ..Default::default()
    };
    fx.expire(&full(1), &opts).await;
    let out = fx.expire(&full(1), &opts).await;
    assert_eq!(out.plan.gc.waiting.len(), 1);
    let text = out.plan.lines(false).join("\n");
    assert!(text.contains("its grace runs until"), "{text}");
}
