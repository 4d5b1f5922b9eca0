//! Damaged repository content stops the restore with a Corrupt error, and the directory
//! is left unable to start: no backup_label, no signal file, no control file.

mod common;

use cairn_exit::{Classify, ErrorKind};
use cairn_repo::layout;
use cairn_repo::test_util::RawBackend;
use cairn_restore::{INCOMPLETE_MARKER, RestoreError, RestoreOptions, restore_backup};
use common::{Backup, recovery};

async fn backup_with_big_file() -> Backup {
    let mut fx = common::Fixture::new().await;
    fx.dir("global", 0o700)
        .dir("base", 0o700)
        .dir("base/1", 0o700);
    fx.file("global/pg_control", 0o600, &[7u8; 8192], 4096)
        .await;
    let big: Vec<u8> = (0..40_000u32).map(|i| (i * 31 % 251) as u8).collect();
    fx.file("base/1/16385", 0o600, &big, 4096).await;
    fx.file("postgresql.auto.conf", 0o600, b"work_mem = '4MB'\n", 4096)
        .await;
    fx.manifest().await
}

fn assert_not_startable(pg_data: &std::path::Path, err: &RestoreError) {
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(matches!(err, RestoreError::Incomplete { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("incomplete"), "{msg}");
    assert!(msg.contains(INCOMPLETE_MARKER), "{msg}");
    assert!(
        err.hint().unwrap().contains("restore again"),
        "{:?}",
        err.hint()
    );
    assert!(pg_data.join(INCOMPLETE_MARKER).is_file());
    for absent in [
        "backup_label",
        "recovery.signal",
        "standby.signal",
        "global/pg_control",
    ] {
        assert!(!pg_data.join(absent).exists(), "{absent} was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_pack_object() {
    let (repo, stanza, manifest) = backup_with_big_file().await;
    let file = manifest
        .files
        .iter()
        .find(|f| f.path == "base/1/16385")
        .unwrap();
    let c = &file.chunks[5];
    let key = layout::pack(&stanza, manifest.packs[c.pack as usize].as_str());
    let mut bytes = RawBackend::of(&repo)
        .get(&key)
        .await
        .unwrap()
        .unwrap()
        .to_vec();
    bytes[(c.offset + u64::from(c.len) / 2) as usize] ^= 0x40;
    RawBackend::of(&repo).delete(&key).await.unwrap();
    RawBackend::of(&repo)
        .put_if_absent(&key, bytes.into())
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let pg_data = tmp.path().join("pgdata");
    let err = restore_backup(
        &repo,
        &stanza,
        &manifest,
        &RestoreOptions::new(&pg_data, recovery()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.root(), RestoreError::Repo { .. }), "{err}");
    assert!(err.to_string().contains("base/1/16385"), "{err}");
    assert_not_startable(&pg_data, &err);
}

#[tokio::test]
async fn missing_pack_object() {
    let (repo, stanza, manifest) = backup_with_big_file().await;
    let last = manifest.packs.last().unwrap();
    RawBackend::of(&repo)
        .delete(&layout::pack(&stanza, last.as_str()))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pg_data = tmp.path().join("pgdata");
    let err = restore_backup(
        &repo,
        &stanza,
        &manifest,
        &RestoreOptions::new(&pg_data, recovery()),
    )
    .await
    .unwrap_err();
    assert_not_startable(&pg_data, &err);
}

#[tokio::test]
async fn chunk_of_another_size_than_the_manifest_says() {
    let (repo, stanza, mut manifest) = backup_with_big_file().await;
    // Consistent with itself (chunk sizes add up), wrong about the stored chunk.
    let file = manifest
        .files
        .iter_mut()
        .find(|f| f.path == "base/1/16385")
        .unwrap();
    file.chunks[2].size -= 1;
    file.size -= 1;
    let tmp = tempfile::tempdir().unwrap();
    let pg_data = tmp.path().join("pgdata");
    let err = restore_backup(
        &repo,
        &stanza,
        &manifest,
        &RestoreOptions::new(&pg_data, recovery()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.root(), RestoreError::ChunkSize { index: 2, .. }),
        "{err}"
    );
    assert_not_startable(&pg_data, &err);
}
