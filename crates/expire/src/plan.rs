//! Gathering the facts and composing the plan. The parts are pure ([`crate::backups`],
//! [`crate::wal`], [`crate::gc`]); this module reads the repository, in an order that
//! matters: the backup lock before the backup catalog and the manifests (a backup that
//! releases its lock after the check has stored its manifest before the catalog is read,
//! so what it references is seen).

use std::time::Duration;

use cairn_repo::lock::{LockOwner, LockTarget};
use cairn_repo::{BackupLabel, ObjectKey, RepoError, Repository, StanzaName};
use cairn_retention::RetentionRules;
use futures::StreamExt;
use time::OffsetDateTime;

use crate::backups::{self, BackupDecisions};
use crate::error::ExpireError;
use crate::gc::{self, GcInput, GcPlan, LiveSet};
use crate::wal::{self, WalDrops};

/// Where a run stops and waits (fault injection for tests: a killed run must leave every
/// listed backup restorable, and a rerun must finish the job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// After the removal event of a backup, before its manifest is deleted.
    BackupRecorded,
    /// After a backup's manifests are deleted.
    BackupRemoved,
    /// After a batch of WAL removal events, before its files are deleted.
    WalRecorded,
    /// After one WAL file (or journal entry) is deleted.
    WalDeleted,
    /// After the GC state is written, before condemned packs are deleted.
    GcRecorded,
    /// After one pack (index and pack) is deleted.
    PackDeleted,
    /// After the live chunks of mostly-garbage packs are copied into new packs.
    RepackCopied,
    /// After one kept manifest's new revision is stored.
    ManifestRevised,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::BackupRecorded,
        Step::BackupRemoved,
        Step::WalRecorded,
        Step::WalDeleted,
        Step::GcRecorded,
        Step::PackDeleted,
        Step::RepackCopied,
        Step::ManifestRevised,
    ];

    /// Whether reaching this step means an object was deleted.
    pub fn deletes(self) -> bool {
        matches!(
            self,
            Step::BackupRemoved | Step::WalDeleted | Step::PackDeleted
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::BackupRecorded => "backup-recorded",
            Step::BackupRemoved => "backup-removed",
            Step::WalRecorded => "wal-recorded",
            Step::WalDeleted => "wal-deleted",
            Step::GcRecorded => "gc-recorded",
            Step::PackDeleted => "pack-deleted",
            Step::RepackCopied => "repack-copied",
            Step::ManifestRevised => "manifest-revised",
        }
    }

    /// `NAME:N` (the N-th time the run reaches that step, from 1).
    pub fn parse_pause(text: &str) -> Option<(Step, usize)> {
        let (name, n) = text.split_once(':')?;
        let step = Step::ALL.into_iter().find(|s| s.name() == name)?;
        Some((step, n.parse().ok().filter(|n| *n > 0)?))
    }
}

/// How `expire` runs.
#[derive(Debug, Clone)]
pub struct ExpireOptions {
    /// Print the plan and change nothing.
    pub dry_run: bool,
    /// Drop exactly this backup (of any type) instead of applying the rules.
    pub set: Option<BackupLabel>,
    /// How long a condemned pack waits before it may be deleted (`[retention] gc-grace`).
    pub gc_grace: Duration,
    /// Deletes in flight at once.
    pub concurrency: usize,
    /// WAL files per removal event (and per recorded batch of deletes).
    pub batch: usize,
    /// Stop for good at the N-th time this step is reached (tests of killed runs).
    pub pause: Option<(Step, usize)>,
    /// What the run has deleted so far, for a progress display.
    pub progress: std::sync::Arc<ExpireProgress>,
}

/// Counters a running expire only adds to; a display reads them while it runs.
#[derive(Debug, Default)]
pub struct ExpireProgress {
    /// Objects deleted: WAL files, manifests, packs and their indexes.
    pub objects: std::sync::atomic::AtomicU64,
    /// Bytes of packs deleted.
    pub pack_bytes: std::sync::atomic::AtomicU64,
}

/// The default `[retention] gc-grace`.
pub const GC_GRACE: Duration = Duration::from_secs(3600);

impl Default for ExpireOptions {
    fn default() -> Self {
        ExpireOptions {
            dry_run: false,
            set: None,
            gc_grace: GC_GRACE,
            concurrency: 16,
            batch: 1000,
            pause: None,
            progress: Default::default(),
        }
    }
}

/// A backup that holds the stanza's backup lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningBackup {
    pub started: OffsetDateTime,
    /// Who holds it, for messages.
    pub holder: String,
}

/// Everything one run does, decided before anything changes.
#[derive(Debug, Clone)]
pub struct ExpirePlan {
    pub stanza: StanzaName,
    pub now: OffsetDateTime,
    pub set: Option<BackupLabel>,
    /// No retention rule is set (then no backup and no WAL expires).
    pub no_rules: bool,
    pub backups: BackupDecisions,
    pub wal: WalDrops,
    pub gc: GcPlan,
    pub gc_grace: Duration,
    /// The highest GC state generation stored; this run writes the next ones.
    pub gc_seq: u64,
    /// The GC state this run starts from: every state it writes keeps these condemnations
    /// until the GC step decides on them, so no backup starting meanwhile reuses a pack
    /// that is about to be deleted.
    pub gc_previous: cairn_repo::GcState,
    /// Deletes a killed run recorded but may not have finished: done first.
    pub pending: Vec<ObjectKey>,
    pub running_backup: Option<RunningBackup>,
    pub warnings: Vec<String>,
}

/// The backup holding the stanza's backup lock, unless its process is provably gone.
async fn running_backup(
    repo: &Repository,
    stanza: &StanzaName,
) -> Result<Option<RunningBackup>, ExpireError> {
    let holder = match repo.lock_holder(&LockTarget::Backup(stanza.clone())).await {
        Ok(h) => h,
        // A lock nobody can read: assume the worst, a backup running since ever.
        Err(RepoError::Object { key, .. } | RepoError::Malformed { key, .. }) => {
            return Ok(Some(RunningBackup {
                started: OffsetDateTime::UNIX_EPOCH,
                holder: format!("an unreadable lock ({key})"),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(r) = holder else { return Ok(None) };
    if LockOwner::current().proves_gone(&r.owner).is_some() {
        return Ok(None);
    }
    let started = OffsetDateTime::parse(&r.started, &time::format_description::well_known::Rfc3339)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(Some(RunningBackup {
        started,
        holder: format!(
            "`cairn {}` on {} (pid {})",
            r.command, r.owner.host, r.owner.pid
        ),
    }))
}

/// What the backups that stay reference, or why that cannot be known.
async fn live_set(
    repo: &Repository,
    stanza: &StanzaName,
    catalog: &cairn_repo::BackupCatalog,
    decisions: &BackupDecisions,
) -> Result<Result<LiveSet, String>, ExpireError> {
    if let Some(d) = catalog
        .damaged
        .iter()
        .find(|d| !decisions.dropped(&d.label))
    {
        return Ok(Err(format!(
            "backup {} cannot be read ({}), so what it references is unknown; packs are \
             collected again once it is repaired or `cairn expire --set {}` removes it",
            d.label, d.reason, d.label
        )));
    }
    // Owned labels: a stream over borrowed items makes the future not `Send` (rustc).
    let remaining: Vec<BackupLabel> = catalog
        .usable
        .iter()
        .map(|s| s.label.clone())
        .filter(|l| !decisions.dropped(l))
        .collect();
    let mut reads = futures::stream::iter(remaining)
        .map(|label| async move {
            let m = repo.manifest(stanza, &label).await;
            (label, m)
        })
        .buffer_unordered(8);
    let mut live = LiveSet::default();
    while let Some((label, read)) = reads.next().await {
        match read {
            Ok(m) => live.add(&m),
            Err(RepoError::BackupDamaged { reason, .. }) => {
                return Ok(Err(format!(
                    "backup {label} cannot be read ({reason}), so what it references is \
                     unknown; packs are collected again once it is repaired or `cairn expire \
                     --set {label}` removes it"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(live))
}

/// Read the repository and decide what this run does. Changes nothing.
pub async fn plan(
    repo: &Repository,
    stanza: &StanzaName,
    rules: &RetentionRules,
    opts: &ExpireOptions,
    now: OffsetDateTime,
) -> Result<ExpirePlan, ExpireError> {
    let info = repo.require_stanza(stanza).await?;
    let gc_read = repo.gc_state(stanza).await?;
    // Before the catalog and the manifests: see the module documentation.
    let running = running_backup(repo, stanza).await?;
    let catalog = repo.backup_catalog(stanza).await?;
    // Through the index: pages are read only where retention cuts through them.
    let mut wal_catalog = repo.wal_catalog_paged(stanza).await?;
    let listing = repo.pack_listing(stanza).await?;

    let decisions = backups::decide(
        stanza,
        &catalog,
        rules,
        opts.set.as_ref(),
        info.current().db_id,
        now,
    )?;
    let load = wal::pages_to_load(&wal_catalog, &decisions.retention);
    repo.load_wal_pages(stanza, &mut wal_catalog, &load).await?;
    let wal = wal::plan(stanza, &wal_catalog, &decisions.retention);
    let live = live_set(repo, stanza, &catalog, &decisions).await?;
    let gc = gc::plan(&GcInput {
        listing: &listing,
        state: &gc_read.state,
        live: live.as_ref().map_err(Clone::clone),
        backup_started: running.as_ref().map(|r| r.started),
        now,
        grace: opts.gc_grace,
    });

    let mut warnings: Vec<String> = repo.warnings().to_vec();
    warnings.extend(catalog.warnings.iter().cloned());
    warnings.extend(wal_catalog.warnings().iter().cloned());
    warnings.extend(wal_catalog.damaged().iter().map(|d| {
        format!(
            "the summary of {} cannot be read ({}): that file is never expired",
            d.name, d.reason
        )
    }));
    warnings.extend(wal.warnings.iter().cloned());
    warnings.extend(gc_read.warnings.iter().cloned());
    if !gc_read.newest_readable {
        warnings.push(
            "the newest garbage collection state cannot be read: backups store every chunk \
             again until this expire writes a new one"
                .into(),
        );
    }
    warnings.extend(gc.missing.iter().map(|(pack, by)| {
        format!("pack {pack}, which backup {by} references, is not stored (run `cairn verify`)")
    }));
    Ok(ExpirePlan {
        stanza: stanza.clone(),
        now,
        set: opts.set.clone(),
        no_rules: rules.is_empty(),
        backups: decisions,
        wal,
        gc,
        gc_grace: opts.gc_grace,
        gc_seq: gc_read.seq,
        pending: gc_read.state.pending.clone(),
        gc_previous: gc_read.state,
        running_backup: running,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_points_parse() {
        assert_eq!(
            Step::parse_pause("wal-deleted:3"),
            Some((Step::WalDeleted, 3))
        );
        for s in Step::ALL {
            assert_eq!(Step::parse_pause(&format!("{}:1", s.name())), Some((s, 1)));
        }
        for bad in ["wal-deleted", "wal-deleted:0", "nothing:1", "wal-deleted:x"] {
            assert_eq!(Step::parse_pause(bad), None, "{bad}");
        }
    }
}
