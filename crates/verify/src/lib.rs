//! `cairn-verify`: read every object a stanza's catalogs reference, authenticate each one,
//! check its content id, and say what each damaged object costs. No terminal here: the
//! result is a [`VerifyReport`] (the JSON of `cairn verify --output json`, see
//! docs/verify-json.md), and progress is a set of counters anyone may read.
//!
//! What a run checks, in order (decision 018):
//! 1. both copies of every key file generation and of every stanza info generation;
//! 2. every snapshot and log entry of the stanza's journals (the WAL catalog), and its
//!    records;
//! 3. every backup's manifest (or only `set`'s), every pack index, and every chunk through
//!    its pack: each pack is read once, in ranged spans, and each chunk in it decoded once
//!    however many backups use it;
//! 4. every WAL file the catalog lists, decoded under its own key and checked against the
//!    catalog's content id; each backup's WAL from start to stop; gaps on each timeline, and
//!    where recovery windows end because of them;
//! 5. then it removes what killed writers left (temporary files, WAL repair copies whose
//!    main object is whole) once older than an hour, and records its result in the
//!    repository for `info` and metrics.
//!
//! ```no_run
//! # async fn demo(repo: cairn_repo::Repository) -> Result<(), cairn_verify::VerifyError> {
//! use cairn_repo::StanzaName;
//! use cairn_verify::{VerifyOptions, verify};
//! let stanza = StanzaName::new("main").unwrap();
//! let report = verify(&repo, &stanza, &VerifyOptions::default()).await?;
//! println!("{}{}", report.text(), report.summary());
//! # Ok(()) }
//! ```

mod backups;
mod cleanup;
mod error;
mod metadata;
mod packs;
mod progress;
mod record;
mod report;
mod wal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_repo::{BackupLabel, Repository, StanzaName};

pub use error::VerifyError;
pub use progress::{Phase, Progress, ProgressSnapshot};
pub use record::{VerifyRecord, last_successful_verify, last_verify};
pub use report::{
    Checked, DamageKind, Effect, EffectKind, ObjectClass, Problem, REPORT_FORMAT, Removed,
    Severity, Status, VerifyReport,
};

/// How to run.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check only this backup (with the key files and stanza info it needs).
    pub set: Option<BackupLabel>,
    /// Objects decoded at once; memory stays within about `concurrency + 1` packs' spans
    /// (8 MiB each) or WAL files (twice their size) in flight.
    pub concurrency: usize,
    /// Counters to show progress from.
    pub progress: Arc<Progress>,
    /// Leftovers of killed writers older than this are removed.
    pub leftover_age: Duration,
    /// Record the result in the repository.
    pub record: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            set: None,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            progress: Arc::new(Progress::default()),
            leftover_age: Duration::from_secs(3600),
            record: true,
        }
    }
}

/// One run in progress: what it reads and what it found so far.
pub(crate) struct Run<'a> {
    pub repo: &'a Repository,
    pub stanza: &'a StanzaName,
    pub opts: &'a VerifyOptions,
    pub report: VerifyReport,
}

impl Run<'_> {
    /// One object read, `bytes` long.
    pub(crate) fn read(&mut self, bytes: u64) {
        self.report.checked.objects += 1;
        self.report.checked.bytes += bytes;
        self.opts.progress.object(bytes);
    }

    pub(crate) fn problem(&mut self, p: report::Problem) {
        self.report.problems.push(p);
    }

    pub(crate) fn full(&self) -> bool {
        self.opts.set.is_none()
    }

    pub(crate) fn inflight(&self) -> usize {
        self.opts.concurrency.max(1) + 1
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Verify a stanza (or one backup of it) and record the result. Damage is reported, not
/// returned as an error; an error means the run could not finish (the store unreachable,
/// the stanza or the set unknown).
pub async fn verify(
    repo: &Repository,
    stanza: &StanzaName,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let clock = Instant::now();
    let mut run = Run {
        repo,
        stanza,
        opts,
        report: VerifyReport {
            format: REPORT_FORMAT,
            repository: repo.location(),
            stanza: stanza.clone(),
            set: opts.set.clone(),
            started: now_rfc3339(),
            finished: String::new(),
            duration_seconds: 0.0,
            status: Status::Ok,
            checked: Checked::default(),
            problems: Vec::new(),
            unrestorable: Vec::new(),
            removed: Vec::new(),
            notes: Vec::new(),
        },
    };
    let progress = &opts.progress;
    progress.phase(Phase::Metadata);
    metadata::key_files(&mut run).await?;
    let info = metadata::stanza_info(&mut run).await?;
    progress.phase(Phase::Catalog);
    // `--set` reads the WAL catalog through its index, and only the pages its backup's WAL
    // is in (decision 025); a whole run reads everything.
    let mut catalog = match run.full() {
        true => repo.wal_catalog(stanza).await?,
        false => repo.wal_catalog_paged(stanza).await?,
    };
    if run.full() {
        metadata::journals(&mut run, &catalog, info.as_ref()).await?;
        metadata::records(&mut run).await?;
        metadata::locks(&mut run).await?;
    }
    progress.phase(Phase::Manifests);
    let backups = backups::manifests(&mut run).await?;
    let pages = wal::pages_needed(&catalog, &backups);
    repo.load_wal_pages(stanza, &mut catalog, &pages).await?;
    let plan = backups::pack_plan(&mut run, &backups).await?;
    progress.plan(plan.bytes() + wal::planned_bytes(&run, &catalog, &backups));
    progress.phase(Phase::Packs);
    packs::check(&mut run, &backups, plan).await?;
    progress.phase(Phase::Wal);
    let wal_results = wal::check(&mut run, &catalog, &backups).await?;
    progress.phase(Phase::Cleanup);
    cleanup::run(&mut run, info.as_ref(), &wal_results).await?;
    run.report.finished = now_rfc3339();
    run.report.duration_seconds = clock.elapsed().as_secs_f64();
    run.report.finish();
    if opts.record {
        if let Err(e) = record::mark_damaged_manifests(repo, stanza, &run.report).await {
            run.report.notes.push(format!(
                "damaged manifests could not be recorded in the backup catalog: {e}"
            ));
        }
        if let Err(e) = record::write(repo, stanza, &run.report).await {
            run.report
                .notes
                .push(format!("the result could not be recorded: {e}"));
        }
    }
    progress.phase(Phase::Done);
    Ok(run.report)
}

#[cfg(test)]
mod tests;
