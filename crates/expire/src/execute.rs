//! Carrying a plan out, in the order that keeps every listed backup restorable if the run
//! is killed at any point, each step idempotent so a rerun finishes the job:
//!
//! 0. deletes a killed run recorded but may not have finished;
//! 1. backups: the removal event, then every manifest revision (newest backup first, so
//!    an incr goes before what it hangs on);
//! 2. WAL, in batches: the batch's objects recorded as pending in the GC state, the
//!    `Expired`/`Forgotten` events, then the files and their journal entries;
//! 3. GC: the new state (condemned, un-condemned), then the deletes of packs whose grace
//!    has passed (index first);
//! 4. repack: live chunks copied into new packs, a new manifest revision for each kept
//!    backup that referenced an old pack, then the old packs condemned.
//!
//! The maintenance lock is confirmed before every batch of deletes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use cairn_repo::lock::LockWatch;
use cairn_repo::{
    BackupEvent, ChunkLocation, GcState, ObjectKey, PackId, PackWriter, RepoError, Repository,
    WalEvent,
};
use futures::StreamExt;

use crate::error::ExpireError;
use std::sync::atomic::Ordering;

use crate::plan::{ExpireOptions, ExpirePlan, Step};
use crate::wal::{PageDrop, TimelineDrop, WalFileDrop};

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Deletes left by a killed run, finished now.
    pub pending_finished: usize,
    pub backups_removed: usize,
    pub wal_files_removed: usize,
    /// Before compression.
    pub wal_bytes_removed: u64,
    pub packs_deleted: usize,
    pub pack_bytes_deleted: u64,
    pub packs_condemned: usize,
    pub pack_bytes_condemned: u64,
    pub packs_repacked: usize,
    pub repack_bytes_copied: u64,
    pub manifests_revised: usize,
    pub warnings: Vec<String>,
}

struct Run<'a> {
    repo: &'a Repository,
    plan: &'a ExpirePlan,
    lock: Option<&'a LockWatch>,
    opts: &'a ExpireOptions,
    seq: u64,
    state: GcState,
    reached: Mutex<HashMap<Step, usize>>,
    notify: &'a (dyn Fn(&str) + Send + Sync),
}

impl Run<'_> {
    /// Count a step; at the configured pause point, stop here for good.
    async fn reached(&self, step: Step) {
        if step.deletes() {
            self.opts.progress.objects.fetch_add(1, Ordering::Relaxed);
        }
        let n = {
            let mut r = self.reached.lock().expect("step counts");
            let n = r.entry(step).or_default();
            *n += 1;
            *n
        };
        if self.opts.pause == Some((step, n)) {
            (self.notify)(&format!("paused at {}:{n} (test hook)", step.name()));
            std::future::pending::<()>().await;
        }
    }

    async fn held(&self) -> Result<(), ExpireError> {
        if let Some(l) = self.lock {
            l.ensure_held().await?;
        }
        Ok(())
    }

    async fn write_state(&mut self, state: GcState) -> Result<(), ExpireError> {
        self.seq += 1;
        self.repo
            .write_gc_state(&self.plan.stanza, self.seq, &state)
            .await?;
        self.state = state;
        Ok(())
    }

    /// Delete objects, `concurrency` at a time, counting each as `step`.
    async fn delete_all(&self, keys: &[ObjectKey], step: Step) -> Result<(), ExpireError> {
        let results: Vec<Result<(), RepoError>> = futures::stream::iter(keys.to_vec())
            .map(|k| async move {
                self.repo.delete(&k).await?;
                self.reached(step).await;
                Ok(())
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<(), RepoError>>()?;
        Ok(())
    }
}

/// Carry out `plan`. `lock` is the maintenance lock the run holds.
pub async fn execute(
    repo: &Repository,
    plan: &ExpirePlan,
    lock: Option<&LockWatch>,
    opts: &ExpireOptions,
    notify: &(dyn Fn(&str) + Send + Sync),
) -> Result<ExpireReport, ExpireError> {
    let mut run = Run {
        repo,
        plan,
        lock,
        opts,
        seq: plan.gc_seq,
        state: plan.gc_previous.clone(),
        reached: Mutex::new(HashMap::new()),
        notify,
    };
    let mut report = ExpireReport::default();
    let stanza = &plan.stanza;

    // 0. What a killed run left.
    if !plan.pending.is_empty() {
        run.held().await?;
        run.delete_all(&plan.pending, Step::WalDeleted).await?;
        report.pending_finished = plan.pending.len();
    }

    // 1. Backups.
    for label in &plan.backups.drop {
        run.held().await?;
        let leftover = plan
            .backups
            .lines
            .iter()
            .any(|l| &l.label == label && l.drop == Some(crate::backups::DropReason::Leftover));
        if !leftover {
            repo.record_backup_event(
                stanza,
                &BackupEvent::Removed {
                    label: label.clone(),
                },
            )
            .await?;
        }
        run.reached(Step::BackupRecorded).await;
        repo.delete_manifests(stanza, label).await?;
        report.backups_removed += 1;
        run.reached(Step::BackupRemoved).await;
    }

    // 2. WAL.
    let batch = opts.batch.max(1);
    for tl in &plan.wal.timelines {
        // Files and whole pages in LSN order; a page is read when the run gets to it.
        let mut queue: Vec<WalFileDrop> = Vec::new();
        let mut files = tl.cut.iter().peekable();
        for page in &tl.cut_pages {
            while let Some(f) = files.next_if(|f| f.end.is_some_and(|e| e <= page.start())) {
                queue.push(f.clone());
            }
            queue.extend(page_files(repo, stanza, page).await?);
            while queue.len() >= batch {
                let rest = queue.split_off(batch);
                cut_batch(&mut run, tl, &queue, &mut report).await?;
                queue = rest;
            }
        }
        queue.extend(files.cloned());
        for chunk in queue.chunks(batch) {
            cut_batch(&mut run, tl, chunk, &mut report).await?;
        }
        for batch in tl.forget.chunks(opts.batch.max(1)) {
            let event = WalEvent::Forgotten {
                db_id: tl.db_id,
                names: batch.iter().map(|f| f.name.clone()).collect(),
            };
            wal_batch(&mut run, batch, &event, &mut report).await?;
        }
    }

    // Readers fold the whole WAL catalog while removals sit after its index: write a
    // new one now. Best effort: the removals are recorded either way.
    if report.wal_files_removed > 0
        && let Err(e) = repo.refresh_wal_index(stanza).await
    {
        let w = format!("the WAL index was not written again: {e}");
        notify(&w);
        report.warnings.push(w);
    }

    // 3. GC.
    let gc = &plan.gc;
    if gc.blocked.is_none() {
        run.write_state(gc.state.clone()).await?;
    } else if !run.state.pending.is_empty() {
        let state = GcState {
            condemned: gc.state.condemned.clone(),
            pending: Vec::new(),
        };
        run.write_state(state).await?;
    }
    run.reached(Step::GcRecorded).await;
    report.packs_condemned = gc.condemn.len();
    report.pack_bytes_condemned = gc.condemned_bytes();
    for batch in gc.delete.chunks(opts.concurrency.max(1)) {
        run.held().await?;
        let results: Vec<Result<u64, RepoError>> = futures::stream::iter(batch.to_vec())
            .map(|(pack, size)| {
                let run = &run;
                async move {
                    repo.delete_pack(stanza, &pack).await?;
                    opts.progress.pack_bytes.fetch_add(size, Ordering::Relaxed);
                    run.reached(Step::PackDeleted).await;
                    Ok(size)
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        for r in results {
            report.pack_bytes_deleted += r?;
            report.packs_deleted += 1;
        }
    }

    // 4. Repack.
    if !gc.repack.is_empty() {
        repack(&mut run, &mut report).await?;
    }
    Ok(report)
}

/// The files of a page that goes whole, in LSN order: only the segments it was judged
/// by (a page never names anything else, but what it holds is checked all the same).
async fn page_files(
    repo: &Repository,
    stanza: &cairn_repo::StanzaName,
    page: &PageDrop,
) -> Result<Vec<WalFileDrop>, ExpireError> {
    let mut out: Vec<WalFileDrop> = repo
        .wal_page_files(stanza, &page.id, &page.page)
        .await?
        .iter()
        .filter(|(e, _)| page.covers(e))
        .filter_map(|(e, keys)| WalFileDrop::of(stanza, e, keys))
        .collect();
    out.sort_by_key(|f| f.end);
    Ok(out)
}

/// Remove a batch of cut files with an `Expired` event below the last one.
async fn cut_batch(
    run: &mut Run<'_>,
    tl: &TimelineDrop,
    batch: &[WalFileDrop],
    report: &mut ExpireReport,
) -> Result<(), ExpireError> {
    let below = batch
        .last()
        .and_then(|f| f.end)
        .expect("cut files have an end");
    let event = WalEvent::Expired {
        db_id: tl.db_id,
        timeline: tl.timeline.0,
        below,
    };
    wal_batch(run, batch, &event, report).await
}

/// Record a batch of WAL removals (pending in the GC state, then the event), then delete.
async fn wal_batch(
    run: &mut Run<'_>,
    batch: &[WalFileDrop],
    event: &WalEvent,
    report: &mut ExpireReport,
) -> Result<(), ExpireError> {
    run.held().await?;
    let keys: Vec<ObjectKey> = batch
        .iter()
        .flat_map(|f| std::iter::once(f.key.clone()).chain(f.log_keys.iter().cloned()))
        .collect();
    let state = GcState {
        condemned: run.state.condemned.clone(),
        pending: keys.clone(),
    };
    run.write_state(state).await?;
    run.repo.record_wal_event(&run.plan.stanza, event).await?;
    run.reached(Step::WalRecorded).await;
    run.delete_all(&keys, Step::WalDeleted).await?;
    report.wal_files_removed += batch.len();
    report.wal_bytes_removed += batch.iter().map(|f| f.size).sum::<u64>();
    Ok(())
}

/// Copy the live chunks of mostly-garbage packs into new packs, point the kept manifests
/// at them, then condemn the old packs.
async fn repack(run: &mut Run<'_>, report: &mut ExpireReport) -> Result<(), ExpireError> {
    let (repo, stanza) = (run.repo, &run.plan.stanza);
    let mut writer = PackWriter::new(repo.clone(), stanza.clone());
    let mut moves: HashMap<(PackId, u64), ChunkLocation> = HashMap::new();
    let mut copied: Vec<&crate::gc::Repack> = Vec::new();
    for r in &run.plan.gc.repack {
        run.held().await?;
        match repo
            .copy_chunks(stanza, &r.pack, &r.live, &mut writer)
            .await
        {
            Ok(moved) => {
                for (offset, loc) in moved {
                    moves.insert((r.pack.clone(), offset), loc);
                }
                report.repack_bytes_copied += r.live_bytes();
                copied.push(r);
            }
            Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                let w = format!("pack {} was not repacked: {e}", r.pack);
                (run.notify)(&w);
                report.warnings.push(w);
            }
            Err(e) => return Err(e.into()),
        }
    }
    writer.flush().await?;
    run.reached(Step::RepackCopied).await;
    // Old packs a manifest still points into after this (it could not be revised) stay.
    let mut still_used: BTreeSet<PackId> = BTreeSet::new();
    let affected: BTreeSet<_> = copied.iter().flat_map(|r| r.backups.iter()).collect();
    for label in affected {
        run.held().await?;
        let m = match repo.manifest(stanza, label).await {
            Ok(m) => m,
            Err(RepoError::BackupDamaged { reason, .. }) => {
                let w = format!("backup {label} was not revised: {reason}");
                (run.notify)(&w);
                report.warnings.push(w);
                still_used.extend(copied.iter().map(|r| r.pack.clone()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let m = match m.relocated(&moves) {
            Some(new) => {
                repo.revise_manifest(stanza, &new).await?;
                report.manifests_revised += 1;
                run.reached(Step::ManifestRevised).await;
                new
            }
            None => m,
        };
        still_used.extend(m.packs.iter().cloned());
    }
    let mut state = run.state.clone();
    state.pending.clear();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for r in copied.iter().filter(|r| !still_used.contains(&r.pack)) {
        state.condemned.insert(r.pack.clone(), now.clone());
        report.packs_repacked += 1;
    }
    run.write_state(state).await?;
    Ok(())
}
