//! `cairn-info`: the info document, one per repository, with each stanza's generations,
//! backups (usable and damaged), WAL archive per timeline, recoverable windows and last
//! verify. `cairn info --output json` prints it and `cairn serve` answers with its parts
//! (`/api/v1/stanzas/{stanza}`); the schema is docs/info-json.md, and fields are only
//! ever added. It reads catalog objects only: stanza info, the backup and WAL catalogs,
//! records.
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository) -> Result<(), cairn_repo::RepoError> {
//! let main = cairn_repo::StanzaName::new("main").unwrap();
//! let doc = cairn_info::InfoDoc::gather(repo, &[main]).await?;
//! println!("{}", serde_json::to_string_pretty(&doc).unwrap());
//! # Ok(()) }
//! ```

use cairn_planner::RecoveryWindow;
use cairn_repo::{BackupSummary, RepoError, Repository, StanzaName, TimelineArchive};
use cairn_verify::VerifyRecord;
use serde::Serialize;

/// Version of the JSON document; bumped only for incompatible changes.
pub const INFO_FORMAT: u32 = 1;

#[derive(Debug, Serialize)]
pub struct InfoDoc {
    pub format: u32,
    pub repository: RepoDoc,
    pub stanzas: Vec<StanzaDoc>,
    /// With `[archive] async`: the async workers logged errors in the last hour, and where
    /// (filled in by the caller, which knows the configuration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_log_warning: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RepoDoc {
    pub location: String,
    pub repo_id: String,
    pub encrypted: bool,
}

#[derive(Debug, Serialize)]
pub struct StanzaDoc {
    pub name: String,
    pub status: &'static str,
    pub db: Vec<DbDoc>,
    pub backups: Vec<BackupDoc>,
    /// Backups whose manifest cannot be used, also listed in `backups` with
    /// `"status": "damaged"`; kept apart here so the usable list keeps its full shape.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_backups: Vec<DamagedDoc>,
    /// What reading the repository worked around (a damaged snapshot or key file copy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub archive: Vec<TimelineArchive>,
    pub recovery_windows: Vec<RecoveryWindow>,
    /// The newest `cairn verify` run recorded, `None` before the first.
    pub last_verify: Option<VerifyRecord>,
    /// The newest `cairn drill` recorded, `None` before the first.
    pub last_drill: Option<cairn_drill::DrillRecord>,
}

/// A backup that cannot be used: its label, type (from the label) and why.
#[derive(Debug, Serialize)]
pub struct DamagedDoc {
    pub label: String,
    #[serde(rename = "type")]
    pub backup_type: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub key: String,
}

impl DamagedDoc {
    pub fn from_damaged(d: &cairn_repo::DamagedBackup) -> DamagedDoc {
        DamagedDoc {
            label: d.label.to_string(),
            backup_type: match d.label.as_str().as_bytes().last() {
                Some(b'D') => "diff",
                Some(b'I') => "incr",
                _ => "full",
            },
            status: "damaged",
            reason: d.reason.clone(),
            key: d.key.to_string(),
        }
    }
}

/// One backup, as `info` shows it (docs/info-json.md).
#[derive(Debug, Serialize)]
pub struct BackupDoc {
    pub label: String,
    /// `ok`; damaged backups are in `damaged_backups`.
    pub status: &'static str,
    #[serde(rename = "type")]
    pub backup_type: String,
    pub parent: Option<String>,
    pub db_id: u32,
    pub timeline: u32,
    pub start: PointDoc,
    pub stop: PointDoc,
    pub incremental_mode: String,
    pub db_size: u64,
    pub bytes_received: u64,
    pub repo_added: u64,
    pub repo_size: u64,
    pub repo_reused: u64,
    pub files: usize,
    /// Never expired while pinned (`cairn pin`).
    pub pinned: bool,
    /// `cairn backup --annotation KEY=VALUE`.
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct PointDoc {
    pub lsn: String,
    pub time: String,
}

impl BackupDoc {
    pub fn from_summary(m: &BackupSummary) -> BackupDoc {
        BackupDoc {
            label: m.label.to_string(),
            status: "ok",
            backup_type: m.backup_type.to_string(),
            parent: m.parent.as_ref().map(|p| p.to_string()),
            db_id: m.db_id.0,
            timeline: m.timeline.0,
            start: PointDoc {
                lsn: m.start_lsn.to_string(),
                time: m.start_time.to_string(),
            },
            stop: PointDoc {
                lsn: m.stop_lsn.to_string(),
                time: m.stop_time.to_string(),
            },
            incremental_mode: serde_json::to_value(m.incremental_mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            db_size: m.db_size,
            bytes_received: m.bytes_received,
            repo_added: m.repo_added,
            repo_size: m.repo_size,
            repo_reused: m.repo_size.saturating_sub(m.repo_added),
            files: m.files as usize,
            pinned: m.pinned,
            annotations: m.annotations.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DbDoc {
    pub db_id: u32,
    pub system_id: String,
    pub pg_version: u32,
    pub current: bool,
}

impl InfoDoc {
    /// The document for `stanzas` (each listed, `"status": "missing"` when it was never
    /// created).
    pub async fn gather(repo: &Repository, stanzas: &[StanzaName]) -> Result<InfoDoc, RepoError> {
        let mut doc = InfoDoc {
            format: INFO_FORMAT,
            repository: RepoDoc {
                location: repo.location(),
                repo_id: repo.repo_id().to_string(),
                encrypted: repo.keys().encrypts(),
            },
            stanzas: Vec::new(),
            worker_log_warning: None,
        };
        for name in stanzas {
            doc.stanzas.push(StanzaDoc::gather(repo, name).await?);
        }
        Ok(doc)
    }
}

impl StanzaDoc {
    /// One stanza's part of the document.
    pub async fn gather(repo: &Repository, name: &StanzaName) -> Result<StanzaDoc, RepoError> {
        let Some(info) = repo.stanza_info(name).await? else {
            return Ok(StanzaDoc {
                name: name.to_string(),
                status: "missing",
                db: vec![],
                backups: vec![],
                damaged_backups: vec![],
                warnings: vec![],
                archive: vec![],
                recovery_windows: vec![],
                last_verify: None,
                last_drill: None,
            });
        };
        let mut catalog = repo.wal_catalog_paged(name).await?;
        let listing = repo.backup_catalog(name).await?;
        let backups = listing.usable;
        let current = info.current().db_id;
        let recovery_windows = loop {
            match cairn_planner::recoverable_windows(&backups, &catalog, current) {
                Ok(w) => break w,
                Err(cairn_planner::PageNotLoaded(page)) => {
                    repo.load_wal_pages(name, &mut catalog, &[page]).await?
                }
            }
        };
        let mut warnings: Vec<String> = repo.warnings().to_vec();
        warnings.extend(listing.warnings.iter().cloned());
        warnings.extend(catalog.warnings().iter().cloned());
        warnings.extend(catalog.damaged().iter().map(|d| {
            format!(
                "the summary of {} ({}) cannot be read: {}",
                d.name, d.log_key, d.reason
            )
        }));
        Ok(StanzaDoc {
            name: name.to_string(),
            status: "ok",
            db: info
                .history
                .iter()
                .map(|g| DbDoc {
                    db_id: g.db_id.0,
                    system_id: g.system_id.to_string(),
                    pg_version: g.pg_major,
                    current: g.db_id == current,
                })
                .collect(),
            backups: backups.iter().map(BackupDoc::from_summary).collect(),
            damaged_backups: listing
                .damaged
                .iter()
                .map(DamagedDoc::from_damaged)
                .collect(),
            warnings,
            archive: catalog.timelines(),
            recovery_windows,
            last_verify: cairn_verify::last_verify(repo, name).await?,
            last_drill: cairn_drill::last_drill(repo, name).await?,
        })
    }
}
