//! Each kind of damage, in an in-memory repository: verify names the object, the kind of
//! damage and what it affects, and nothing else.

mod fixture;

use cairn_repo::test_util::RawBackend;
use std::time::Duration;

use cairn_repo::{BackupLabel, DbId, Identity, ObjectKind, WalDetail, layout};
use fixture::{Fixture, SEGMENTS};

use crate::report::{DamageKind, EffectKind, ObjectClass, Problem, Severity, Status};
use crate::{VerifyError, VerifyOptions, last_successful_verify, last_verify};

fn damaged(report: &crate::VerifyReport) -> Vec<&Problem> {
    report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Damage)
        .collect()
}

/// The one damage problem of the report.
fn only(report: &crate::VerifyReport) -> &Problem {
    let d = damaged(report);
    assert_eq!(d.len(), 1, "{}", report.text());
    d[0]
}

fn has_effect(p: &Problem, kind: EffectKind) -> bool {
    p.affects.iter().any(|e| e.kind == kind)
}

#[tokio::test]
async fn a_clean_repository_is_ok_and_everything_is_counted_once() {
    let fx = Fixture::new(&[]).await;
    let r = fx.verify().await;
    assert_eq!(r.status, Status::Ok, "{}", r.text());
    assert!(r.problems.is_empty(), "{}", r.text());
    let c = &r.checked;
    assert_eq!(c.key_files, 2);
    assert_eq!(c.stanza_info, 2);
    assert_eq!(c.wal_files, SEGMENTS as u64);
    // One `wal` entry per segment, one `backups` entry per backup.
    assert_eq!(c.journal_entries, SEGMENTS as u64 + 2);
    assert_eq!(c.manifests, 2);
    assert_eq!(c.backups, 2);
    // 5 + 2 chunks of the full, 4 new ones of the incr: the shared control file once.
    assert_eq!(c.chunks, 11);
    assert!(c.packs >= 4 && c.pack_indexes == c.packs, "{c:?}");
    assert!(c.bytes > (SEGMENTS as u64) * 1000, "{c:?}");
    assert!(r.summary().ends_with(": ok"), "{}", r.summary());
    // The result is recorded for info and metrics.
    let rec = last_verify(&fx.repo, &fx.stanza).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Ok);
    assert_eq!(rec.objects, c.objects);
    assert!(
        last_successful_verify(&fx.repo, &fx.stanza)
            .await
            .unwrap()
            .is_some()
    );
    // The progress counters saw it all.
    let p = VerifyOptions::default();
    fx.verify_with(p.clone()).await;
    let snap = p.progress.snapshot();
    assert_eq!(snap.phase, crate::Phase::Done);
    assert!(
        snap.objects >= c.objects && snap.bytes >= c.bytes,
        "{snap:?}"
    );
}

#[tokio::test]
async fn a_flipped_byte_in_a_pack_names_the_pack_and_the_backups_that_use_the_chunk() {
    let fx = Fixture::new(&[]).await;
    let (key, chunk) = fx.first_pack(&fx.full);
    fx.flip(&key, chunk.offset as usize + 300).await;
    let r = fx.verify().await;
    assert_eq!(r.status, Status::Damaged);
    let p = only(&r);
    assert_eq!(
        (p.object, p.key.as_str()),
        (ObjectClass::Pack, key.as_str())
    );
    assert_eq!(p.damage, DamageKind::Auth, "{}", r.text());
    assert_eq!(r.unrestorable, vec![fx.full.label.clone()]);
    assert!(has_effect(p, EffectKind::NewBackups), "{}", r.text());
    assert!(
        r.summary().contains(fx.full.label.as_str()),
        "{}",
        r.summary()
    );
    let rec = last_verify(&fx.repo, &fx.stanza).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.damaged), (Status::Damaged, 1));
    assert!(
        last_successful_verify(&fx.repo, &fx.stanza)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_shared_chunk_costs_every_backup_that_uses_it() {
    let fx = Fixture::new(&[]).await;
    // The control file's first chunk: stored by the full, reused by the incr.
    let c = fx.full.files[1].chunks[0].clone();
    let key = layout::pack(&fx.stanza, fx.full.packs[c.pack as usize].as_str());
    fx.flip(&key, c.offset as usize + c.len as usize - 3).await;
    let r = fx.verify().await;
    only(&r);
    assert_eq!(
        r.unrestorable,
        vec![fx.full.label.clone(), fx.incr.label.clone()]
    );
}

#[tokio::test]
async fn a_deleted_pack_is_missing_for_its_backups() {
    let fx = Fixture::new(&[]).await;
    let (key, _) = fx.first_pack(&fx.incr);
    fx.delete(&key).await;
    let r = fx.verify().await;
    let pack = r
        .problems
        .iter()
        .find(|p| p.object == ObjectClass::Pack)
        .unwrap();
    assert_eq!(pack.damage, DamageKind::Missing);
    assert!(pack.detail.starts_with("is missing"), "{}", pack.detail);
    // Its index now names a pack that is not there: new backups would reuse its chunks.
    let index = r
        .problems
        .iter()
        .find(|p| p.object == ObjectClass::PackIndex)
        .unwrap();
    assert!(index.detail.contains("missing"), "{}", r.text());
    assert!(r.unrestorable.contains(&fx.incr.label));
    assert!(!r.unrestorable.contains(&fx.full.label));
}

#[tokio::test]
async fn a_truncated_pack_is_truncated_damage() {
    let fx = Fixture::new(&[]).await;
    let (key, _) = fx.first_pack(&fx.full);
    let len = fx.bytes(&key).await.len();
    fx.truncate(&key, len - 10).await;
    let r = fx.verify().await;
    let p = r
        .problems
        .iter()
        .find(|p| p.object == ObjectClass::Pack)
        .unwrap();
    assert_eq!(p.damage, DamageKind::Truncated, "{}", r.text());
    assert!(r.unrestorable.contains(&fx.full.label));
}

#[tokio::test]
async fn a_damaged_pack_index_costs_new_backups_not_restores() {
    let fx = Fixture::new(&[]).await;
    let pack = &fx.full.packs[0];
    let key = layout::pack_index(&fx.stanza, pack.as_str());
    fx.flip(&key, 140).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.object, ObjectClass::PackIndex);
    assert_eq!(p.damage, DamageKind::Auth, "{}", r.text());
    assert!(has_effect(p, EffectKind::NewBackups));
    assert!(
        r.unrestorable.is_empty(),
        "the manifests still find the chunks"
    );
}

#[tokio::test]
async fn a_deleted_pack_index_is_missing_and_costs_new_backups_not_restores() {
    let fx = Fixture::new(&[]).await;
    let pack = &fx.full.packs[0];
    let key = layout::pack_index(&fx.stanza, pack.as_str());
    fx.delete(&key).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(
        (p.object, p.key.as_str()),
        (ObjectClass::PackIndex, key.as_str())
    );
    assert_eq!(p.damage, DamageKind::Missing, "{}", r.text());
    assert!(has_effect(p, EffectKind::NewBackups));
    assert!(r.unrestorable.is_empty(), "{}", r.text());
}

#[tokio::test]
async fn a_deleted_wal_segment_is_named_with_the_window_it_ends() {
    let fx = Fixture::new(&[]).await;
    fx.delete(&fx.wal_key(4)).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.object, ObjectClass::WalFile);
    assert_eq!(p.damage, DamageKind::Missing);
    assert!(p.key.ends_with(&fx.wal_name(4)), "{}", p.key);
    let w = p
        .affects
        .iter()
        .find(|e| e.kind == EffectKind::RecoveryWindow)
        .unwrap_or_else(|| panic!("{}", r.text()));
    assert_eq!(w.segment.as_deref(), Some(fx.wal_name(4).as_str()));
    assert_eq!(w.timeline, Some(1));
    assert!(w.windows_end.is_some(), "{w:?}");
    assert!(r.unrestorable.is_empty(), "{}", r.text());
}

#[tokio::test]
async fn a_segment_a_backup_needs_makes_it_unrestorable() {
    let fx = Fixture::new(&[]).await;
    fx.flip(&fx.wal_key(2), 500).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.object, ObjectClass::WalFile);
    assert_eq!(r.unrestorable, vec![fx.full.label.clone()], "{}", r.text());
}

#[tokio::test]
async fn a_wal_object_copied_over_another_is_misplaced() {
    let fx = Fixture::new(&[]).await;
    let other = fx.bytes(&fx.wal_key(4)).await;
    fx.replace(&fx.wal_key(3), other).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.damage, DamageKind::Misplaced, "{}", r.text());
    assert!(p.key.ends_with(&fx.wal_name(3)));
}

#[tokio::test]
async fn a_wal_object_with_other_content_than_listed_is_a_mismatch() {
    let fx = Fixture::new(&[]).await;
    let name = cairn_pgformat::WalFileName::Segment(fx.wal.segment_name(3));
    let enc = fx
        .repo
        .encode_wal(&fx.stanza, DbId(1), &name, fx.wal.segment(4).into())
        .await
        .unwrap();
    fx.replace(&fx.wal_key(3), enc.bytes().to_vec()).await;
    let r = fx.verify().await;
    assert_eq!(only(&r).damage, DamageKind::Mismatch, "{}", r.text());
}

#[tokio::test]
async fn gaps_in_the_catalog_are_reported_and_harmless_ones_only_warned() {
    // Segment 1 is before every backup; segment 4 lies between the full and the incr.
    let fx = Fixture::new(&[1, 4]).await;
    let r = fx.verify().await;
    let gaps: Vec<&Problem> = r
        .problems
        .iter()
        .filter(|p| p.damage == DamageKind::Gap)
        .collect();
    assert_eq!(gaps.len(), 2, "{}", r.text());
    let early = gaps
        .iter()
        .find(|p| p.key.ends_with(&fx.wal_name(1)))
        .unwrap();
    assert_eq!(early.severity, Severity::Warning, "{}", r.text());
    let mid = gaps
        .iter()
        .find(|p| p.key.ends_with(&fx.wal_name(4)))
        .unwrap();
    assert_eq!(mid.severity, Severity::Damage);
    assert!(has_effect(mid, EffectKind::RecoveryWindow), "{}", r.text());
    assert_eq!(r.status, Status::Damaged);
}

#[tokio::test]
async fn a_truncated_manifest_names_its_backup_only() {
    let fx = Fixture::new(&[]).await;
    let key = layout::backup_manifest(&fx.stanza, fx.incr.label.as_str());
    fx.truncate(&key, 200).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.object, ObjectClass::Manifest);
    assert_eq!(p.damage, DamageKind::Truncated);
    assert_eq!(r.unrestorable, vec![fx.incr.label.clone()]);
    // The backup catalog learns of it (info lists it as damaged), once.
    let catalog = fx.repo.backup_catalog(&fx.stanza).await.unwrap();
    assert_eq!(catalog.damaged.len(), 1);
    assert_eq!(catalog.damaged[0].label, fx.incr.label);
    let log = layout::journal_log_prefix(&fx.stanza, "backups");
    let entries = RawBackend::of(&fx.repo)
        .list(&log, None)
        .await
        .unwrap()
        .len();
    fx.verify().await;
    assert_eq!(
        RawBackend::of(&fx.repo)
            .list(&log, None)
            .await
            .unwrap()
            .len(),
        entries
    );
}

/// A deleted manifest is not in the listing; the backup catalog still knows the backup.
#[tokio::test]
async fn a_deleted_manifest_is_missing_for_its_backup() {
    let fx = Fixture::new(&[]).await;
    let key = layout::backup_manifest(&fx.stanza, fx.incr.label.as_str());
    fx.delete(&key).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(p.object, ObjectClass::Manifest);
    assert_eq!(p.key, key.to_string());
    assert_eq!(p.damage, DamageKind::Missing);
    assert_eq!(r.status, Status::Damaged);
    assert_eq!(r.unrestorable, vec![fx.incr.label.clone()]);
}

#[tokio::test]
async fn damaged_key_file_and_stanza_info_copies_are_named_and_the_rest_works() {
    let fx = Fixture::new(&[]).await;
    let kf = layout::key_file(1, true);
    let mut b = fx.bytes(&kf).await;
    let at = b.len() / 2;
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    fx.replace(&kf, b).await;
    let info = layout::stanza_info_copy(&fx.stanza, 1);
    fx.flip(&info, 150).await;
    let r = fx.verify().await;
    let d = damaged(&r);
    assert_eq!(d.len(), 2, "{}", r.text());
    for (class, key) in [
        (ObjectClass::KeyFile, kf.as_str()),
        (ObjectClass::StanzaInfo, info.as_str()),
    ] {
        let p = d.iter().find(|p| p.object == class).unwrap();
        assert_eq!(p.key, key);
        assert!(has_effect(p, EffectKind::Redundancy), "{}", r.text());
    }
    assert!(r.unrestorable.is_empty());
    assert_eq!(r.checked.wal_files, SEGMENTS as u64);
}

#[tokio::test]
async fn a_damaged_catalog_entry_and_snapshot_are_named() {
    let fx = Fixture::new(&[]).await;
    // Enough entries for the catalog to write a snapshot.
    for tli in 2..70u32 {
        let text = format!("1\t0/{:X}\tno recovery target specified\n", tli * 0x10_0000);
        let name = cairn_pgformat::WalFileName::History(cairn_pgformat::TimelineId(tli));
        let enc = fx
            .repo
            .encode_wal(&fx.stanza, DbId(1), &name, text.clone().into())
            .await
            .unwrap();
        fx.repo
            .push_wal(
                &fx.stanza,
                DbId(1),
                &name,
                &enc,
                WalDetail::History { text },
            )
            .await
            .unwrap();
    }
    fx.repo.wal_catalog(&fx.stanza).await.unwrap();
    let snap = layout::journal_snap(&fx.stanza, "wal", 1);
    assert!(RawBackend::of(&fx.repo).get(&snap).await.unwrap().is_some());
    // The entry of segment 5 damaged: the snapshot still holds its summary.
    let log = RawBackend::of(&fx.repo)
        .list(&layout::journal_log_prefix(&fx.stanza, "wal"), None)
        .await
        .unwrap();
    let entry = log
        .iter()
        .find(|l| l.key.ends_with(&fx.wal_name(5)))
        .unwrap();
    let entry = cairn_repo::ObjectKey::new(entry.key.clone()).unwrap();
    fx.flip(&entry, 200).await;
    let r = fx.verify().await;
    let e = only(&r);
    assert_eq!(
        (e.object, e.key.as_str()),
        (ObjectClass::JournalEntry, entry.as_str())
    );
    assert!(
        e.affects[0].text.contains("a snapshot still holds"),
        "{}",
        r.text()
    );
    // The snapshot damaged too: the catalog is rebuilt from the log, which lacks segment 5,
    // so the archive has a gap there.
    fx.flip(&snap, 300).await;
    let r = fx.verify().await;
    let d = damaged(&r);
    assert_eq!(d.len(), 3, "{}", r.text());
    let s = d
        .iter()
        .find(|p| p.object == ObjectClass::JournalSnapshot)
        .unwrap();
    assert_eq!(s.key, snap.as_str());
    assert!(has_effect(s, EffectKind::Catalog));
    let e = d
        .iter()
        .find(|p| p.object == ObjectClass::JournalEntry)
        .unwrap();
    assert!(
        e.affects[0].text.contains("is not in the WAL catalog"),
        "{}",
        r.text()
    );
    let gap = d.iter().find(|p| p.damage == DamageKind::Gap).unwrap();
    assert!(gap.key.ends_with(&fx.wal_name(5)));
    assert!(has_effect(gap, EffectKind::RecoveryWindow), "{}", r.text());
}

#[tokio::test]
async fn set_checks_only_that_backup_and_an_unknown_set_is_refused() {
    let fx = Fixture::new(&[]).await;
    // Damage only the incr's own relation chunk and a segment only the full needs.
    let (key, chunk) = fx.first_pack(&fx.incr);
    fx.flip(&key, chunk.offset as usize + 300).await;
    let opts = VerifyOptions {
        set: Some(fx.full.label.clone()),
        ..Default::default()
    };
    let r = fx.verify_with(opts.clone()).await;
    assert_eq!(r.status, Status::Ok, "{}", r.text());
    assert_eq!(r.checked.manifests, 1);
    assert_eq!(r.checked.backups, 1);
    assert_eq!(r.checked.wal_files, 2, "segments 2 and 3 only");
    assert_eq!(r.set.as_ref(), Some(&fx.full.label));
    let r = fx
        .verify_with(VerifyOptions {
            set: Some(fx.incr.label.clone()),
            ..Default::default()
        })
        .await;
    assert_eq!(r.unrestorable, vec![fx.incr.label.clone()], "{}", r.text());
    let err = crate::verify(
        &fx.repo,
        &fx.stanza,
        &VerifyOptions {
            set: Some(BackupLabel::new("20270101-000000F").unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::NoSuchSet { .. }), "{err}");
    assert_eq!(
        cairn_exit::Classify::kind(&err),
        cairn_exit::ErrorKind::Usage
    );
}

/// `--set` over a WAL catalog read through its index (pages of 2 segments): the same
/// answers, from the pages holding the backup's WAL only.
#[tokio::test]
async fn set_reads_the_pages_its_backup_needs() {
    let mut fx = Fixture::new(&[]).await;
    fx.repo = fx.repo.clone().with_wal_page_segments(2);
    fx.repo.refresh_wal_index(&fx.stanza).await.unwrap();
    let paged = fx.repo.wal_catalog_paged(&fx.stanza).await.unwrap();
    assert!(paged.pages().len() >= 4, "{}", paged.pages().len());
    assert_eq!(paged.entries().count(), 0, "every segment is in a page");
    let set = |label: &BackupLabel| VerifyOptions {
        set: Some(label.clone()),
        ..Default::default()
    };
    let r = fx.verify_with(set(&fx.full.label)).await;
    assert_eq!(r.status, Status::Ok, "{}", r.text());
    assert_eq!(r.checked.wal_files, 2, "segments 2 and 3 only");
    // A segment the full needs, damaged, then gone: the full cannot be restored.
    fx.flip(&fx.wal_key(2), 500).await;
    let r = fx.verify_with(set(&fx.full.label)).await;
    assert_eq!(r.unrestorable, vec![fx.full.label.clone()], "{}", r.text());
    assert!(only(&r).key.ends_with(&fx.wal_name(2)), "{}", r.text());
    fx.delete(&fx.wal_key(2)).await;
    let r = fx.verify_with(set(&fx.full.label)).await;
    assert_eq!(r.unrestorable, vec![fx.full.label.clone()], "{}", r.text());
    assert_eq!(only(&r).damage, DamageKind::Missing, "{}", r.text());
    // The incr needs other pages: unaffected.
    let r = fx.verify_with(set(&fx.incr.label)).await;
    assert!(r.unrestorable.is_empty(), "{}", r.text());
    assert_eq!(r.checked.wal_files, 1, "segment 6 only");
}

#[tokio::test]
async fn repair_copies_are_removed_when_the_main_object_is_whole_and_kept_otherwise() {
    let fx = Fixture::new(&[]).await;
    let name = cairn_pgformat::WalFileName::Segment(fx.wal.segment_name(4));
    let side = layout::wal_repair(&fx.stanza, DbId(1), &name);
    let good = fx.bytes(&fx.wal_key(4)).await;
    fx.replace(&side, good).await;
    // Young: kept, and nothing to say.
    let r = fx.verify().await;
    assert!(
        r.problems.is_empty() && r.removed.is_empty(),
        "{}",
        r.text()
    );
    // Old enough (here: any age): removed.
    let now = VerifyOptions {
        leftover_age: Duration::ZERO,
        ..Default::default()
    };
    let r = fx.verify_with(now.clone()).await;
    assert_eq!(r.removed.len(), 1, "{}", r.text());
    assert_eq!(r.removed[0].key, side.as_str());
    assert!(RawBackend::of(&fx.repo).get(&side).await.unwrap().is_none());
    // With the main object damaged, a good side copy is kept and pointed out.
    let side = layout::wal_repair(&fx.stanza, DbId(1), &name);
    fx.replace(&side, fx.bytes(&fx.wal_key(4)).await).await;
    fx.flip(&fx.wal_key(4), 700).await;
    let r = fx.verify_with(now).await;
    assert!(r.removed.is_empty());
    let w = r
        .problems
        .iter()
        .find(|p| p.object == ObjectClass::WalRepairCopy)
        .unwrap();
    assert_eq!(w.severity, Severity::Warning);
    assert!(RawBackend::of(&fx.repo).get(&side).await.unwrap().is_some());
    // The side copy decodes as the main object, which is what archive-get serves.
    let c = fx
        .repo
        .check_object(&side, ObjectKind::WalFile, &Identity::of(&fx.wal_key(4)))
        .await
        .unwrap();
    assert!(c.result.is_ok());
}

#[tokio::test]
async fn a_damaged_record_is_named_and_the_one_before_it_is_shown() {
    let fx = Fixture::new(&[]).await;
    fx.verify().await;
    let first = last_verify(&fx.repo, &fx.stanza).await.unwrap().unwrap();
    fx.verify().await;
    let kind = cairn_repo::RecordKind::new("verify").unwrap();
    let keys = fx.repo.record_keys(&fx.stanza, &kind).await.unwrap();
    fx.flip(keys.last().unwrap(), 150).await;
    assert_eq!(
        last_verify(&fx.repo, &fx.stanza).await.unwrap().unwrap(),
        first
    );
    let r = fx
        .verify_with(VerifyOptions {
            record: false,
            ..Default::default()
        })
        .await;
    assert_eq!(only(&r).object, ObjectClass::Record);
}

#[tokio::test]
async fn a_damaged_lock_is_named() {
    let fx = Fixture::new(&[]).await;
    let target = cairn_repo::LockTarget::Backup(fx.stanza.clone());
    let guard = fx
        .repo
        .lock(target, "backup", &Default::default())
        .await
        .unwrap();
    let key = guard.key().clone();
    guard.release().await.unwrap();
    assert!(damaged(&fx.verify().await).is_empty());
    fx.flip(&key, 100).await;
    let r = fx.verify().await;
    let p = only(&r);
    assert_eq!(
        (p.object, p.key.as_str()),
        (ObjectClass::Lock, key.as_str())
    );
    assert!(r.unrestorable.is_empty());
}
