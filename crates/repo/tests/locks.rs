//! Lock scenarios (decision 011), each run against the in-memory store, a local directory
//! and a real S3 server (moto on 127.0.0.1).

use cairn_repo::test_util::RawBackend;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_exit::{Classify, ErrorKind};
use cairn_repo::ObjectKind;
use cairn_repo::lock::{LockOwner, LockRecord};
use cairn_repo::{
    Backend, KdfParams, LocalBackend, LockGuard, LockOptions, LockTarget, OpenOptions, RepoError,
    Repository, StanzaName, StoreBackend, layout,
};
use cairn_testkit::{S3Server, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open(backend: Backend) -> Repository {
    let opts = OpenOptions {
        kdf: KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        ..Default::default()
    };
    Repository::open_or_create(backend, Some("locks"), &opts)
        .await
        .unwrap()
        .0
}

/// Poll `f` until it yields a value (testkit's `wait_until`, from async code).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::task::block_in_place(|| {
        let rt = tokio::runtime::Handle::current();
        wait_until(what, DEADLINE, || Ok::<_, String>(rt.block_on(f()))).unwrap()
    })
}

fn now_minus(d: Duration) -> String {
    (time::OffsetDateTime::now_utc() - d)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A lock generation as another process would have written it.
async fn plant(repo: &Repository, target: &LockTarget, seq: u64, owner: LockOwner, beat: Duration) {
    let record = LockRecord {
        id: format!("planted-{seq}"),
        command: "backup".into(),
        owner,
        started: now_minus(beat + Duration::from_secs(60)),
        heartbeat: now_minus(beat),
        version: "0.0.0".into(),
        took_over: None,
        released: None,
    };
    let key = layout::lock(target, seq);
    repo.put_json(&key, ObjectKind::Lock, &record)
        .await
        .unwrap();
}

async fn generations(repo: &Repository, target: &LockTarget) -> Vec<String> {
    RawBackend::of(repo)
        .list(&layout::lock_prefix(target), None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect()
}

fn backup(stanza: &str) -> LockTarget {
    LockTarget::Backup(StanzaName::new(stanza).unwrap())
}

fn locked_by(err: RepoError) -> LockRecord {
    match err {
        RepoError::Locked { holder } => holder.record.expect("the holder is named"),
        other => panic!("expected Locked, got {other}"),
    }
}

async fn take(repo: &Repository, target: &LockTarget, opts: &LockOptions) -> LockGuard {
    repo.lock(target.clone(), "backup", opts).await.unwrap()
}

/// Six acquirers at once: exactly one wins, the others name it; after its release the
/// next one takes the lock without a takeover, in a new generation.
async fn exactly_one_of_concurrent_acquirers_wins(repo: &Repository) {
    let target = backup("race");
    let opts = LockOptions::default();
    let tries = (0..6).map(|_| {
        let repo = repo.clone();
        let target = target.clone();
        tokio::spawn(async move { repo.lock(target, "backup", &opts).await })
    });
    let mut won = Vec::new();
    let mut refused = Vec::new();
    for t in tries.collect::<Vec<_>>() {
        match t.await.unwrap() {
            Ok(g) => won.push(g),
            Err(e) => refused.push(locked_by(e)),
        }
    }
    assert_eq!(won.len(), 1, "exactly one acquirer wins");
    let winner = won.pop().unwrap();
    for r in &refused {
        assert_eq!(r.id, winner.record().id, "the refused name the winner");
    }
    assert!(winner.takeover().is_none());
    let held = repo.lock_holder(&target).await.unwrap().unwrap();
    assert_eq!(held.id, winner.record().id);
    winner.release().await.unwrap();
    assert_eq!(repo.lock_holder(&target).await.unwrap(), None);

    let next = take(repo, &target, &opts).await;
    assert!(next.takeover().is_none(), "a released lock is free");
    assert_eq!(layout::parse_seq(next.key().as_str()), Some(2));
    assert_eq!(
        generations(repo, &target).await,
        vec![next.key().to_string()]
    );
    next.release().await.unwrap();
}

/// A fresh lock is refused with the holder named, as exit code 11 with a hint.
async fn a_fresh_lock_is_refused_naming_its_holder(repo: &Repository) {
    let target = backup("fresh");
    let guard = take(repo, &target, &LockOptions::default()).await;
    let err = repo
        .lock(target.clone(), "backup", &LockOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert_eq!(err.kind().code(), 11);
    let line = err.to_string();
    let me = LockOwner::current();
    for part in [
        "the backup lock of stanza 'fresh'",
        "`cairn backup`",
        &format!("host {}", me.host),
        &format!("pid {}", me.pid),
        "last heartbeat",
    ] {
        assert!(line.contains(part), "{part:?} missing from: {line}");
    }
    assert!(!line.contains('\n'));
    assert!(err.hint().unwrap().contains("15m00s"), "{:?}", err.hint());
    // Still held, by the first.
    assert_eq!(
        repo.lock_holder(&target).await.unwrap().unwrap().id,
        guard.record().id
    );
    guard.release().await.unwrap();
}

/// A holder on this host whose process has exited is taken over at once, even with a
/// fresh heartbeat; the takeover is reported and recorded, and the old generation deleted.
async fn a_gone_holder_on_this_host_is_taken_over_at_once(repo: &Repository) {
    let target = backup("dead");
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = child.id();
    plant(
        repo,
        &target,
        1,
        LockOwner::of_process(pid).unwrap(),
        Duration::ZERO,
    )
    .await;
    let alive = repo
        .lock(target.clone(), "backup", &LockOptions::default())
        .await
        .unwrap_err();
    assert_eq!(locked_by(alive).owner.pid, pid, "a running holder keeps it");

    child.kill().unwrap();
    child.wait().unwrap();
    let guard = take(repo, &target, &LockOptions::default()).await;
    let takeover = guard
        .takeover()
        .expect("a takeover is reported")
        .to_string();
    assert!(
        takeover.contains(&format!("pid {pid}")) && takeover.contains("is gone"),
        "{takeover}"
    );
    let recorded = guard.record().took_over.expect("recorded");
    assert_eq!((recorded.pid, recorded.id.as_str()), (pid, "planted-1"));
    assert_eq!(
        generations(repo, &target).await,
        vec![guard.key().to_string()]
    );
    guard.release().await.unwrap();
}

/// A holder elsewhere is never proven gone: its lock is taken over only once its
/// heartbeat is older than the stale timeout.
async fn a_stale_heartbeat_is_taken_over(repo: &Repository) {
    let target = backup("stale");
    let elsewhere = LockOwner {
        host: "elsewhere".into(),
        pid: 4242,
        pid_start: Some(1),
        boot_id: Some("another-boot".into()),
        pid_ns: Some("pid:[1]".into()),
    };
    plant(repo, &target, 3, elsewhere, Duration::from_secs(600)).await;
    // Ten minutes old: fresh under the default 15 minutes.
    let err = repo
        .lock(target.clone(), "backup", &LockOptions::default())
        .await
        .unwrap_err();
    assert_eq!(locked_by(err).owner.host, "elsewhere");
    let shrunk = LockOptions {
        heartbeat: Duration::from_secs(30),
        stale_after: Duration::from_secs(300),
    };
    let guard = take(repo, &target, &shrunk).await;
    let takeover = guard.takeover().unwrap().to_string();
    assert!(
        takeover.contains("host elsewhere")
            && takeover.contains("pid 4242")
            && takeover.contains("stale"),
        "{takeover}"
    );
    assert_eq!(layout::parse_seq(guard.key().as_str()), Some(4));
    guard.release().await.unwrap();
}

/// The holder's heartbeat advances in the stored object.
async fn the_heartbeat_advances(repo: &Repository) {
    let target = backup("beat");
    let opts = LockOptions {
        heartbeat: Duration::from_millis(100),
        stale_after: Duration::from_secs(10),
    };
    let guard = take(repo, &target, &opts).await;
    let first = guard.record().heartbeat;
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let later = eventually("the heartbeat to advance", || async {
        let r = repo.lock_holder(&target).await.unwrap()?;
        (parse(&r.heartbeat) > parse(&first)).then_some(r)
    })
    .await;
    assert_eq!(later.id, guard.record().id);
    guard.watch().ensure_held().await.unwrap();
    assert_eq!(guard.watch().lost(), None);
    guard.release().await.unwrap();
}

/// A holder that is taken over learns it: its watch reports the loss, `ensure_held`
/// fails with exit code 11, and its release leaves the new holder alone.
async fn a_taken_over_holder_reports_lost(repo: &Repository) {
    let target = backup("lost");
    let slow = LockOptions {
        heartbeat: Duration::from_millis(100),
        stale_after: Duration::from_secs(60),
    };
    let old = take(repo, &target, &slow).await;
    let mut watch = old.watch();
    // A contender with a tiny stale timeout sees the old holder's heartbeat as stale.
    let eager = LockOptions {
        heartbeat: Duration::from_secs(30),
        stale_after: Duration::from_millis(1),
    };
    let new = eventually("the contender to take over", || async {
        repo.lock(target.clone(), "expire", &eager).await.ok()
    })
    .await;
    assert!(
        new.takeover()
            .unwrap()
            .to_string()
            .contains(&format!("pid {}", std::process::id()))
    );
    let reason = tokio::time::timeout(DEADLINE, watch.until_lost())
        .await
        .expect("the old holder notices");
    assert!(reason.contains("taken over by `cairn expire`"), "{reason}");
    let err = old.watch().ensure_held().await.unwrap_err();
    assert!(matches!(err, RepoError::LockLost { .. }), "{err}");
    assert_eq!(err.kind().code(), 11);
    old.release().await.unwrap();
    let holder = repo.lock_holder(&target).await.unwrap().unwrap();
    assert_eq!(
        holder.id,
        new.record().id,
        "the old holder's release left it alone"
    );
    new.release().await.unwrap();
}

/// Several locks in one call: all or none; a dropped guard is released in the background.
async fn several_locks_are_all_or_nothing(repo: &Repository) {
    let s = StanzaName::new("multi").unwrap();
    let maint = LockTarget::Maintenance(s.clone());
    let blocker = take(repo, &maint, &LockOptions::default()).await;
    let err = repo
        .lock_all(
            vec![maint.clone(), LockTarget::Backup(s.clone())],
            "stanza-delete",
            &LockOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert_eq!(
        repo.lock_holder(&LockTarget::Backup(s.clone()))
            .await
            .unwrap(),
        None,
        "the backup lock taken first was given back"
    );
    drop(blocker);
    eventually("the dropped guard to be released", || async {
        repo.lock_holder(&maint)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let both = repo
        .lock_all(
            vec![maint, LockTarget::Backup(s), LockTarget::Keys],
            "stanza-delete",
            &LockOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(both.len(), 3);
    for g in both {
        g.release().await.unwrap();
    }
}

async fn all_scenarios(repo: Repository) {
    exactly_one_of_concurrent_acquirers_wins(&repo).await;
    a_fresh_lock_is_refused_naming_its_holder(&repo).await;
    a_gone_holder_on_this_host_is_taken_over_at_once(&repo).await;
    a_stale_heartbeat_is_taken_over(&repo).await;
    the_heartbeat_advances(&repo).await;
    a_taken_over_holder_reports_lost(&repo).await;
    several_locks_are_all_or_nothing(&repo).await;
}

#[test]
fn locks_in_memory() {
    runtime().block_on(async { all_scenarios(Repository::in_memory().await).await });
}

#[test]
fn locks_in_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Local(Arc::new(LocalBackend::new(dir.path())));
    runtime().block_on(async { all_scenarios(open(backend).await).await });
    // Heartbeats replace the object whole: no temporary file is left behind.
    let lock_dir = dir.path().join("stanza/beat/lock/backup");
    let names: Vec<String> = std::fs::read_dir(&lock_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["00000001".to_string()]);
}

#[test]
fn locks_on_s3() {
    let s3 = S3Server::start().unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_bucket_name(s3.bucket())
        .with_region(s3.region())
        .with_access_key_id(s3.access_key_id())
        .with_secret_access_key(s3.secret_access_key())
        .with_allow_http(true)
        .build()
        .unwrap();
    let backend = Backend::Store(Arc::new(StoreBackend::new(
        Arc::new(store),
        "locks",
        &s3.url("locks"),
    )));
    runtime().block_on(async { all_scenarios(open(backend).await).await });
    let keys = s3.list_keys("locks/stanza/beat/lock/").unwrap();
    assert_eq!(
        keys,
        vec!["locks/stanza/beat/lock/backup/00000001".to_string()]
    );
}
