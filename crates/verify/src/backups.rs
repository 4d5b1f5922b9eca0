//! Backups: their manifests, and the plan of which chunks to check in which pack (every
//! chunk a manifest references, and in a full run every chunk a pack index lists, since
//! new backups reuse those).

use std::collections::{BTreeMap, BTreeSet};

use cairn_repo::layout;
use cairn_repo::{
    BackupLabel, BackupListing, BackupManifest, ContentId, Identity, ObjectKind, PackId, RepoError,
};
use futures::StreamExt;

use crate::metadata::stray;
use crate::report::{DamageKind, Effect, EffectKind, ObjectClass, Problem, Severity};
use crate::{Run, VerifyError};

/// The stanza's usable backups, and which of them this run checks.
pub(crate) struct Backups {
    /// Every usable backup (the recovery windows need them all).
    pub usable: Vec<BackupManifest>,
    /// Positions in `usable` of the backups checked.
    pub in_scope: Vec<usize>,
}

impl Backups {
    pub(crate) fn checked(&self) -> impl Iterator<Item = &BackupManifest> {
        self.in_scope.iter().map(|&i| &self.usable[i])
    }
}

/// Read and check each manifest in scope (damaged ones become problems).
pub(crate) async fn manifests(run: &mut Run<'_>) -> Result<Backups, VerifyError> {
    let mut listing = match run.repo.backup_listing(run.stanza).await {
        Ok(l) => l,
        Err(RepoError::StanzaInfoDamaged { .. }) => BackupListing::default(),
        Err(e) => return Err(e.into()),
    };
    // A backup the catalog knows whose manifest is gone is not in the listing: it is
    // damage too. (A catalog that cannot be read is reported with the journals.)
    if let Ok(catalog) = run.repo.backup_catalog(run.stanza).await {
        for d in catalog.damaged {
            let listed = listing.usable.iter().any(|m| m.label == d.label)
                || listing.damaged.iter().any(|l| l.label == d.label);
            if !listed {
                listing.damaged.push(d);
            }
        }
    }
    let set = run.opts.set.clone();
    let wanted = |l: &BackupLabel| set.as_ref().is_none_or(|s| s == l);
    if let Some(set) = &set
        && !listing.usable.iter().any(|m| &m.label == set)
        && !listing.damaged.iter().any(|d| &d.label == set)
    {
        return Err(VerifyError::NoSuchSet {
            label: set.clone(),
            stanza: run.stanza.to_string(),
            known: listing
                .usable
                .iter()
                .map(|m| m.label.to_string())
                .chain(listing.damaged.iter().map(|d| d.label.to_string()))
                .collect(),
        });
    }
    // Read each manifest once more as an object, for what exactly is wrong and its size.
    let labels: Vec<BackupLabel> = listing
        .usable
        .iter()
        .map(|m| m.label.clone())
        .chain(listing.damaged.iter().map(|d| d.label.clone()))
        .filter(|l| wanted(l))
        .collect();
    let repo = run.repo;
    let stanza = run.stanza;
    let checks: Vec<_> = futures::stream::iter(labels)
        .map(|label| async move {
            // The newest revision is the manifest (a repack writes revisions).
            let c = async {
                let key = repo.manifest_key(stanza, &label).await?;
                let c = repo
                    .check_object(&key, ObjectKind::BackupManifest, &Identity::of(&key))
                    .await?;
                Ok::<_, VerifyError>(c)
            }
            .await;
            (label, c)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut bad: BTreeSet<BackupLabel> = BTreeSet::new();
    for (label, c) in checks {
        let c = c?;
        run.read(c.bytes);
        run.report.checked.manifests += 1;
        let damaged = listing.damaged.iter().find(|d| d.label == label);
        let problem = match (&c.result, damaged) {
            (Err(d), _) => Problem::damage(ObjectClass::Manifest, c.key.to_string(), d),
            (Ok(_), Some(d)) => Problem {
                severity: Severity::Damage,
                object: ObjectClass::Manifest,
                key: c.key.to_string(),
                damage: DamageKind::Malformed,
                detail: d.reason.clone(),
                affects: Vec::new(),
            },
            (Ok(_), None) => continue,
        };
        run.problem(problem.with(Effect::backup(&label, "")));
        bad.insert(label);
    }
    let in_scope = listing
        .usable
        .iter()
        .enumerate()
        .filter(|(_, m)| wanted(&m.label) && !bad.contains(&m.label))
        .map(|(i, _)| i)
        .collect();
    Ok(Backups {
        usable: listing.usable,
        in_scope,
    })
}

/// One chunk to decode in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PlannedChunk {
    pub offset: u64,
    pub len: u32,
    pub id: ContentId,
}

/// What to read in one pack.
#[derive(Debug, Default)]
pub(crate) struct PackWork {
    /// The pack's size, `None` when it is missing.
    pub size: Option<u64>,
    /// Sorted, each once.
    pub chunks: Vec<PlannedChunk>,
    /// Chunks a good pack index lists (new backups reuse them).
    pub indexed: BTreeSet<ContentId>,
}

/// Every pack to read.
#[derive(Debug, Default)]
pub(crate) struct PackPlan {
    pub packs: BTreeMap<PackId, PackWork>,
}

impl PackPlan {
    /// Bytes the plan reads (each pack that exists, in full at most).
    pub(crate) fn bytes(&self) -> u64 {
        self.packs
            .values()
            .filter_map(|w| {
                let end = w.chunks.iter().map(|c| c.offset + u64::from(c.len)).max()?;
                Some(end.min(w.size?))
            })
            .sum()
    }
}

/// Which chunks to check where: the manifests' references, checked against the pack
/// indexes (read and checked here).
pub(crate) async fn pack_plan(
    run: &mut Run<'_>,
    backups: &Backups,
) -> Result<PackPlan, VerifyError> {
    let mut plan = PackPlan::default();
    let mut broken: Vec<(BackupLabel, String)> = Vec::new();
    for m in backups.checked() {
        for f in &m.files {
            for c in &f.chunks {
                let Some(loc) = m.location(c) else {
                    broken.push((
                        m.label.clone(),
                        format!(
                            "file {} refers to pack #{}, but the manifest lists {} packs",
                            f.path,
                            c.pack,
                            m.packs.len()
                        ),
                    ));
                    continue;
                };
                plan.packs
                    .entry(loc.pack)
                    .or_default()
                    .chunks
                    .push(PlannedChunk {
                        offset: loc.offset,
                        len: loc.len,
                        id: c.id,
                    });
            }
        }
    }
    broken.dedup_by(|a, b| a.0 == b.0);
    for (label, why) in broken {
        let key = run.repo.manifest_key(run.stanza, &label).await?;
        run.problem(
            Problem {
                severity: Severity::Damage,
                object: ObjectClass::Manifest,
                key: key.to_string(),
                damage: DamageKind::Malformed,
                detail: why,
                affects: Vec::new(),
            }
            .with(Effect::backup(&label, "")),
        );
    }
    let only: Option<BTreeSet<PackId>> =
        (!run.full()).then(|| plan.packs.keys().cloned().collect());
    let inv = run.repo.pack_inventory(run.stanza, only.as_ref()).await?;
    for key in &inv.strays {
        stray(run, key);
    }
    for ix in &inv.indexes {
        run.read(ix.bytes);
        run.report.checked.pack_indexes += 1;
        match (&ix.damage, &ix.listed) {
            (None, Some(listed)) => {
                // A whole-stanza run checks what new backups would reuse too; a --set run
                // only what its backup needs.
                let full = run.full();
                let work = plan.packs.entry(ix.pack.clone()).or_default();
                for c in listed {
                    work.indexed.insert(c.id);
                    if full {
                        work.chunks.push(PlannedChunk {
                            offset: c.offset,
                            len: c.len,
                            id: c.id,
                        });
                    }
                }
            }
            (Some(d), listed) => {
                let text = if listed.is_none() {
                    "new backups skip it and store the chunks it lists again; restores read \
                     chunks through their manifests and are not affected"
                } else {
                    "new backups reuse the chunks it lists, which are not where it says: they \
                     would not restore; restores of existing backups read chunks through their \
                     manifests"
                };
                run.problem(
                    Problem::damage(ObjectClass::PackIndex, ix.key.to_string(), d)
                        .with(Effect::new(EffectKind::NewBackups, text)),
                );
            }
            (None, None) => {}
        }
    }
    let indexed: BTreeSet<&PackId> = inv.indexes.iter().map(|ix| &ix.pack).collect();
    for (pack, size) in &inv.packs {
        match plan.packs.get_mut(pack) {
            Some(work) => {
                work.size = Some(*size);
                // A backup's pack is indexed before its manifest is written: without an
                // index, it was lost.
                if !indexed.contains(pack) {
                    run.problem(
                        Problem {
                            severity: Severity::Damage,
                            object: ObjectClass::PackIndex,
                            key: layout::pack_index(run.stanza, pack.as_str()).to_string(),
                            damage: DamageKind::Missing,
                            detail: "is missing, although backups use its pack".into(),
                            affects: Vec::new(),
                        }
                        .with(Effect::new(
                            EffectKind::NewBackups,
                            "new backups do not know the chunks of its pack and store them \
                             again; restores read chunks through their manifests and are not \
                             affected",
                        )),
                    );
                }
            }
            None if run.full() && !indexed.contains(pack) => run.problem(Problem {
                severity: Severity::Warning,
                object: ObjectClass::Pack,
                key: layout::pack(run.stanza, pack.as_str()).to_string(),
                damage: DamageKind::Leftover,
                detail: format!("a pack without an index that no backup uses ({size} bytes)"),
                affects: vec![Effect::new(
                    EffectKind::Nothing,
                    "left by an interrupted backup; nothing reads it",
                )],
            }),
            None => {}
        }
    }
    for work in plan.packs.values_mut() {
        work.chunks.sort_unstable();
        work.chunks.dedup();
    }
    Ok(plan)
}
