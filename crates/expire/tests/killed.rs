//! Expire killed at every step: every listed backup still reads back whole, every listed
//! WAL file is stored, no pack index names a missing pack; a rerun finishes the job and
//! ends where an uninterrupted run ends.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_expire::{ExpireOptions, Step};
use cairn_repo::lock::LockTarget;
use common::{Fx, full, grace0, label};

/// A stanza where one run goes through every step: a pack condemned by an earlier run,
/// two backups to drop, WAL in several batches, a pack to repack for two kept backups.
async fn scenario() -> Fx {
    let mut fx = Fx::new().await;
    fx.push_segments(1, 1, 16).await;
    fx.backup("20261130-010000F", None, 1, 1, 1, &[20]).await;
    fx.backup("20261201-010000F", None, 1, 2, 3, &[1, 2, 3, 4, 5, 6, 7, 8])
        .await;
    fx.backup(
        "20261201-010000F_20261201-020000I",
        Some("20261201-010000F"),
        1,
        4,
        5,
        &[1, 2, 9],
    )
    .await;
    fx.backup("20261202-010000F", None, 1, 10, 11, &[1, 10])
        .await;
    fx.backup(
        "20261202-010000F_20261202-020000I",
        Some("20261202-010000F"),
        1,
        12,
        13,
        &[1, 10, 11],
    )
    .await;
    let first = ExpireOptions {
        set: Some(label("20261130-010000F")),
        ..grace0()
    };
    fx.expire(&full(1), &first).await;
    fx
}

fn opts(pause: Option<(Step, usize)>) -> ExpireOptions {
    ExpireOptions {
        batch: 2,
        pause,
        ..grace0()
    }
}

/// Run until nothing is left to collect; returns the number of runs.
async fn settle(fx: &Fx) -> usize {
    for runs in 1..=4 {
        let r = fx.expire(&full(1), &opts(None)).await.report.unwrap();
        if r.packs_deleted + r.packs_condemned + r.packs_repacked + r.backups_removed == 0
            && r.wal_files_removed == 0
            && r.pending_finished == 0
        {
            return runs;
        }
    }
    panic!("expire keeps finding work");
}

async fn end_state(fx: &Fx) -> (Vec<String>, Vec<String>, Vec<String>, usize) {
    let gc = fx.repo.gc_state(&fx.stanza).await.unwrap();
    assert!(gc.state.pending.is_empty());
    (
        fx.labels().await,
        fx.wal_names().await,
        fx.wal_objects().await,
        gc.state.condemned.len(),
    )
}

async fn maintenance_free(fx: &Fx) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = LockTarget::Maintenance(fx.stanza.clone());
    while fx.repo.lock_holder(&target).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the killed run's lock was never given back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_step_leaves_every_backup_whole_and_a_rerun_finishes() {
    let reference = scenario().await;
    let plan = reference.expire(&full(1), &opts(None)).await;
    let r = plan.report.unwrap();
    assert_eq!(r.backups_removed, 2);
    assert_eq!(r.packs_deleted, 1);
    assert_eq!(r.packs_repacked, 1);
    assert_eq!(r.manifests_revised, 2);
    assert!(r.wal_files_removed >= 6);
    settle(&reference).await;
    reference.assert_consistent().await;
    let want = end_state(&reference).await;
    assert_eq!(
        want.0,
        ["20261202-010000F", "20261202-010000F_20261202-020000I"]
    );
    assert_eq!(want.1, want.2, "catalog and stored WAL agree");
    assert_eq!(want.3, 0, "nothing is left condemned");

    let points: Vec<(Step, usize)> = Step::ALL
        .into_iter()
        .map(|s| (s, 1))
        .chain([
            (Step::BackupRecorded, 2),
            (Step::WalRecorded, 3),
            (Step::WalDeleted, 5),
        ])
        .collect();
    for (step, n) in points {
        let fx = scenario().await;
        let (tx, rx) = mpsc::channel::<String>();
        let tx = std::sync::Mutex::new(tx);
        let notify = move |w: &str| {
            let _ = tx.lock().unwrap().send(w.to_string());
        };
        let (rules, o) = (full(1), opts(Some((step, n))));
        let run = cairn_expire::expire(&fx.repo, &fx.stanza, &rules, &o, &notify);
        let paused = async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if rx.try_recv().is_ok_and(|m| m.starts_with("paused at")) {
                    return;
                }
                assert!(Instant::now() < deadline, "{}:{n} timed out", step.name());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        // Dropping the run where it stopped is the kill.
        tokio::select! {
            r = run => panic!("{}:{n} was never reached: {:?}", step.name(), r.map(|o| o.report)),
            () = paused => {}
        }
        fx.assert_consistent().await;
        maintenance_free(&fx).await;
        settle(&fx).await;
        fx.assert_consistent().await;
        assert_eq!(end_state(&fx).await, want, "killed at {}:{n}", step.name());
    }
}
