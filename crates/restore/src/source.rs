//! What a restore is planned from, read once from the repository, and the planning step
//! itself: `cairn restore` and `cairn drill` both go through here, so they pick the same
//! backup for the same target and pass over a damaged manifest the same way.

use cairn_planner::{CommitSpan, PageNotLoaded, Plan, PlanError, PlanRequest, RecoveryWindow};
use cairn_repo::{
    BackupCatalog, BackupLabel, BackupManifest, DbId, PageId, RepoError, Repository, StanzaInfo,
    StanzaName, WalCatalog,
};

use crate::error::RestoreError;
use crate::restore_command::RestoreCommand;

/// The stanza's identity, backup catalog and WAL catalog.
#[derive(Debug)]
pub struct RestoreSource {
    pub stanza: StanzaName,
    pub info: StanzaInfo,
    pub backups: BackupCatalog,
    pub wal: WalCatalog,
    /// What reading the repository and the backup catalog worked around.
    pub warnings: Vec<String>,
}

/// A plan and the manifest of the backup it chose.
#[derive(Debug)]
pub struct PlannedRestore {
    pub plan: Plan,
    pub manifest: BackupManifest,
    /// Backups passed over because their manifest turned out damaged.
    pub warnings: Vec<String>,
}

impl RestoreSource {
    /// Read the stanza info (the stanza must exist) and both catalogs.
    pub async fn load(repo: &Repository, stanza: &StanzaName) -> Result<RestoreSource, RepoError> {
        let info = repo.require_stanza(stanza).await?;
        let backups = repo.backup_catalog(stanza).await?;
        let mut warnings = backups.warnings.clone();
        warnings.extend(repo.warnings().iter().cloned());
        let wal = repo.wal_catalog_paged(stanza).await?;
        Ok(RestoreSource {
            stanza: stanza.clone(),
            info,
            backups,
            wal,
            warnings,
        })
    }

    /// The stanza's current cluster generation: what a restore restores.
    pub fn db_id(&self) -> DbId {
        self.info.current().db_id
    }

    /// The generation a restore of `set` plans in: a backup taken before a stanza-upgrade
    /// restores with its own generation's WAL; otherwise the current one.
    pub fn db_id_for(&self, set: Option<&BackupLabel>) -> DbId {
        set.and_then(|l| self.backups.usable.iter().find(|b| &b.label == l))
            .map_or(self.db_id(), |b| b.db_id)
    }

    /// `command` as the restored copy of `manifest` must run it: fetching from the
    /// backup's own generation when that is not the current one.
    pub fn restore_command_for(
        &self,
        command: RestoreCommand,
        manifest: &BackupManifest,
    ) -> RestoreCommand {
        if manifest.db_id == self.db_id() {
            command
        } else {
            command.for_generation(manifest.db_id)
        }
    }

    /// The recoverable windows of the current generation.
    pub async fn windows(&mut self, repo: &Repository) -> Result<Vec<RecoveryWindow>, RepoError> {
        loop {
            match cairn_planner::recoverable_windows(&self.backups.usable, &self.wal, self.db_id())
            {
                Ok(w) => return Ok(w),
                Err(PageNotLoaded(page)) => self.load_page(repo, page).await?,
            }
        }
    }

    /// The commit spans of the current generation's windows (`cairn drill --random`).
    pub async fn commit_spans(&mut self, repo: &Repository) -> Result<Vec<CommitSpan>, RepoError> {
        loop {
            match cairn_planner::commit_spans(&self.backups.usable, &self.wal, self.db_id()) {
                Ok(w) => return Ok(w),
                Err(PageNotLoaded(page)) => self.load_page(repo, page).await?,
            }
        }
    }

    /// Read a page of WAL summaries the planner asked for.
    async fn load_page(&mut self, repo: &Repository, page: PageId) -> Result<(), RepoError> {
        repo.load_wal_pages(&self.stanza, &mut self.wal, &[page])
            .await?;
        self.warnings.extend(self.wal.warnings().iter().cloned());
        Ok(())
    }

    /// Plan `request` and read the chosen backup's manifest. A `--set` naming a backup the
    /// catalog knows is damaged is refused; a manifest found damaged only now costs only its
    /// backup: the plan is made again without it, unless `request.set` names it.
    pub async fn plan(
        &mut self,
        repo: &Repository,
        request: &PlanRequest,
    ) -> Result<PlannedRestore, RestoreError> {
        if let Some(d) = request
            .set
            .as_ref()
            .and_then(|l| self.backups.damaged.iter().find(|d| &d.label == l))
        {
            return Err(RestoreError::Catalog(Box::new(RepoError::BackupDamaged {
                label: d.label.to_string(),
                key: d.key.clone(),
                reason: d.reason.clone(),
            })));
        }
        let mut usable = self.backups.usable.clone();
        let mut warnings = Vec::new();
        loop {
            let plan = match cairn_planner::plan(&usable, &self.wal, request) {
                Err(PlanError::PageNotLoaded(PageNotLoaded(page))) => {
                    self.load_page(repo, page)
                        .await
                        .map_err(|e| RestoreError::Catalog(Box::new(e)))?;
                    continue;
                }
                other => other?,
            };
            match repo.manifest(&self.stanza, &plan.backup).await {
                Ok(manifest) => {
                    return Ok(PlannedRestore {
                        plan,
                        manifest,
                        warnings,
                    });
                }
                Err(RepoError::BackupDamaged { reason, .. }) if request.set.is_none() => {
                    warnings.push(format!(
                        "backup {} cannot be used ({reason}); planning without it",
                        plan.backup
                    ));
                    usable.retain(|b| b.label != plan.backup);
                }
                Err(e) => return Err(RestoreError::Catalog(Box::new(e))),
            }
        }
    }
}
