//! Manifest revisions. A repack moves live chunks into new packs; every kept manifest that
//! pointed into an old pack gets a new *revision* pointing at the new locations:
//!
//! ```text
//! stanza/S/backup/LABEL/manifest             revision 0, written by the backup (its commit point)
//! stanza/S/backup/LABEL/manifest.00000001    written by a repack, create-if-absent
//! ```
//!
//! The newest revision is the backup's manifest. Each revision is a complete manifest,
//! encoded under its own key. A revision that cannot be read falls back to the one before
//! it, but only while every pack that older revision names is still stored (after a repack
//! the old packs are deleted once the garbage-collection grace has passed). A repack keeps
//! the newest revision and the one before it; older ones are deleted.

use std::collections::HashMap;

use futures::StreamExt;

use crate::backend::PutOutcome;
use crate::error::RepoError;
use crate::layout::{self, ObjectKey, StanzaName};
use crate::manifest::{BackupLabel, BackupManifest, ChunkRef, DamagedBackup};
use crate::object::ObjectKind;
use crate::pack::{ChunkLocation, PackId};
use crate::repository::Repository;
use crate::stanza::StanzaInfo;

/// Revisions kept by [`Repository::revise_manifest`]: the new one and its fallback.
const REVISIONS_KEPT: u64 = 2;

impl BackupManifest {
    /// This manifest with every chunk found in `moves` (keyed by old pack and offset)
    /// pointing at its new location; `None` when no chunk moved. Packs no chunk uses any
    /// more leave the pack list; new ones are appended.
    pub fn relocated(
        &self,
        moves: &HashMap<(PackId, u64), ChunkLocation>,
    ) -> Option<BackupManifest> {
        let mut out = self.clone();
        let mut moved = false;
        let mut packs: Vec<PackId> = Vec::new();
        let mut positions: HashMap<PackId, u32> = HashMap::new();
        let mut position = |pack: &PackId| -> u32 {
            *positions.entry(pack.clone()).or_insert_with(|| {
                packs.push(pack.clone());
                (packs.len() - 1) as u32
            })
        };
        for file in &mut out.files {
            for c in &mut file.chunks {
                let Some(old) = self.packs.get(c.pack as usize) else {
                    // A reference outside the pack list: leave it for restore to report.
                    continue;
                };
                match moves.get(&(old.clone(), c.offset)) {
                    Some(new) if new.len == c.len && new.size == c.size => {
                        moved = true;
                        *c = ChunkRef {
                            id: c.id,
                            pack: position(&new.pack),
                            offset: new.offset,
                            len: new.len,
                            size: new.size,
                        };
                    }
                    _ => c.pack = position(old),
                }
            }
        }
        if !moved {
            return None;
        }
        out.packs = packs;
        Some(out)
    }
}

impl Repository {
    /// The manifest revisions stored for a backup, oldest first (empty: no manifest).
    pub async fn manifest_revisions(
        &self,
        stanza: &StanzaName,
        label: &BackupLabel,
    ) -> Result<Vec<u64>, RepoError> {
        let prefix = layout::backup_dir_prefix(stanza, label.as_str());
        let mut revs: Vec<u64> = self
            .backend()
            .list(&prefix, None)
            .await?
            .iter()
            .filter_map(|l| layout::parse_manifest_revision(l.key.strip_prefix(&prefix)?))
            .collect();
        revs.sort_unstable();
        Ok(revs)
    }

    /// The key of a backup's newest manifest revision (revision 0's when none is stored).
    pub async fn manifest_key(
        &self,
        stanza: &StanzaName,
        label: &BackupLabel,
    ) -> Result<ObjectKey, RepoError> {
        let rev = self
            .manifest_revisions(stanza, label)
            .await?
            .last()
            .copied()
            .unwrap_or(0);
        Ok(layout::backup_manifest_revision(
            stanza,
            label.as_str(),
            rev,
        ))
    }

    /// Store `m` as the next revision of its backup's manifest (a repack moved its chunks)
    /// and delete revisions older than the previous one. Returns the new revision.
    pub async fn revise_manifest(
        &self,
        stanza: &StanzaName,
        m: &BackupManifest,
    ) -> Result<u64, RepoError> {
        let revs = self.manifest_revisions(stanza, &m.label).await?;
        let Some(&newest) = revs.last() else {
            return Err(RepoError::NoBackup {
                label: m.label.to_string(),
            });
        };
        let rev = newest + 1;
        let key = layout::backup_manifest_revision(stanza, m.label.as_str(), rev);
        if self.put_json(&key, ObjectKind::BackupManifest, m).await? == PutOutcome::Exists {
            return Err(RepoError::Concurrent {
                what: "backup manifest revision",
                key,
            });
        }
        for old in revs.iter().filter(|r| **r + REVISIONS_KEPT <= rev) {
            let key = layout::backup_manifest_revision(stanza, m.label.as_str(), *old);
            self.backend().delete(&key).await?;
        }
        Ok(rev)
    }

    /// Delete every revision of a backup's manifest, oldest first (so a reader never sees
    /// an older revision as the newest). Returns how many were deleted.
    pub async fn delete_manifests(
        &self,
        stanza: &StanzaName,
        label: &BackupLabel,
    ) -> Result<usize, RepoError> {
        let revs = self.manifest_revisions(stanza, label).await?;
        for rev in &revs {
            let key = layout::backup_manifest_revision(stanza, label.as_str(), *rev);
            self.backend().delete(&key).await?;
        }
        Ok(revs.len())
    }

    /// The newest readable revision of a backup's manifest among `revs` (oldest first). An
    /// older revision stands in for a damaged newer one only while all its packs exist.
    pub(crate) async fn read_newest_manifest(
        &self,
        stanza: &StanzaName,
        info: Option<&StanzaInfo>,
        label: &BackupLabel,
        revs: &[u64],
    ) -> Result<BackupManifest, DamagedBackup> {
        let Some((&newest, older)) = revs.split_last() else {
            return Err(DamagedBackup {
                label: label.clone(),
                key: layout::backup_manifest(stanza, label.as_str()),
                reason: "the manifest is missing".into(),
            });
        };
        let damage = match self.read_revision(stanza, info, label, newest).await {
            Ok(m) => return Ok(m),
            Err(d) => d,
        };
        for &rev in older.iter().rev() {
            if let Ok(m) = self.read_revision(stanza, info, label, rev).await
                && self.packs_stored(stanza, &m).await
            {
                return Ok(m);
            }
        }
        Err(damage)
    }

    /// Whether every pack `m` names is still stored.
    async fn packs_stored(&self, stanza: &StanzaName, m: &BackupManifest) -> bool {
        let found: Vec<bool> = futures::stream::iter(m.packs.clone())
            .map(|p| async move {
                let key = layout::pack(stanza, p.as_str());
                matches!(self.backend().get_range(&key, 0..1).await, Ok(Some(_)))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        found.into_iter().all(|f| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ContentId;
    use crate::manifest::{FileKind, ManifestFile};

    fn pack(n: u8) -> PackId {
        PackId::try_from(format!("{n:02x}").repeat(16)).unwrap()
    }

    fn chunk(id: u8, pack: u32, offset: u64) -> ChunkRef {
        ChunkRef {
            id: ContentId([id; 32]),
            pack,
            offset,
            len: 100,
            size: 200,
        }
    }

    pub(crate) fn manifest_with(files: Vec<Vec<ChunkRef>>, packs: Vec<PackId>) -> BackupManifest {
        let mut m = crate::backups::tests::manifest("20261201-100000F", 0);
        m.packs = packs;
        m.files = files
            .into_iter()
            .enumerate()
            .map(|(i, chunks)| ManifestFile {
                path: format!("base/1/{i}"),
                kind: FileKind::File,
                mode: 0o600,
                size: 200 * chunks.len() as u64,
                mtime: 0,
                link: None,
                chunks,
            })
            .collect();
        m
    }

    #[test]
    fn relocation_moves_chunks_and_rebuilds_the_pack_list() {
        let (a, b, c) = (pack(0xa), pack(0xb), pack(0xc));
        let m = manifest_with(
            vec![
                vec![chunk(1, 0, 0), chunk(2, 1, 0)],
                vec![chunk(3, 0, 100), chunk(1, 0, 0)],
            ],
            vec![a.clone(), b.clone()],
        );
        assert_eq!(m.relocated(&HashMap::new()), None);
        // Pack a's two chunks move to c; b stays.
        let moves: HashMap<(PackId, u64), ChunkLocation> = [
            (
                (a.clone(), 0),
                ChunkLocation {
                    pack: c.clone(),
                    offset: 500,
                    len: 100,
                    size: 200,
                },
            ),
            (
                (a.clone(), 100),
                ChunkLocation {
                    pack: c.clone(),
                    offset: 0,
                    len: 100,
                    size: 200,
                },
            ),
        ]
        .into();
        let r = m.relocated(&moves).unwrap();
        assert_eq!(r.packs, vec![c.clone(), b.clone()]);
        let locs: Vec<ChunkLocation> = r
            .files
            .iter()
            .flat_map(|f| &f.chunks)
            .map(|c| r.location(c).unwrap())
            .collect();
        assert_eq!(
            locs.iter()
                .map(|l| (l.pack.clone(), l.offset))
                .collect::<Vec<_>>(),
            vec![(c.clone(), 500), (b, 0), (c.clone(), 0), (c, 500)]
        );
        // Ids, lengths and files are unchanged.
        for (x, y) in m.files.iter().zip(&r.files) {
            assert_eq!(x.path, y.path);
            let ids = |f: &ManifestFile| f.chunks.iter().map(|c| (c.id, c.len)).collect::<Vec<_>>();
            assert_eq!(ids(x), ids(y));
        }
        // A move whose length does not match is not applied.
        let bad: HashMap<(PackId, u64), ChunkLocation> = [(
            (a, 0),
            ChunkLocation {
                pack: pack(0xd),
                offset: 0,
                len: 99,
                size: 200,
            },
        )]
        .into();
        assert_eq!(m.relocated(&bad), None);
    }

    #[tokio::test]
    async fn the_newest_revision_is_the_manifest_and_a_damaged_one_falls_back_while_its_packs_exist()
     {
        let repo = Repository::in_memory().await;
        let s = StanzaName::new("main").unwrap();
        repo.create_stanza(&s, 42, 15).await.unwrap();
        let (a, b) = (pack(0xa), pack(0xb));
        for p in [&a, &b] {
            repo.backend()
                .put_if_absent(
                    &layout::pack(&s, p.as_str()),
                    bytes::Bytes::from_static(b"x"),
                )
                .await
                .unwrap();
        }
        let m0 = manifest_with(vec![vec![chunk(1, 0, 0)]], vec![a.clone()]);
        repo.put_manifest(&s, &m0).await.unwrap();
        let moves: HashMap<(PackId, u64), ChunkLocation> = [(
            (a.clone(), 0),
            ChunkLocation {
                pack: b.clone(),
                offset: 7,
                len: 100,
                size: 200,
            },
        )]
        .into();
        let m1 = m0.relocated(&moves).unwrap();
        assert_eq!(repo.revise_manifest(&s, &m1).await.unwrap(), 1);
        assert_eq!(repo.manifest(&s, &m0.label).await.unwrap(), m1);
        assert_eq!(repo.backups(&s).await.unwrap(), vec![m1.clone()]);
        assert_eq!(repo.backup_catalog(&s).await.unwrap().usable.len(), 1);

        // Revision 1 damaged: revision 0 stands in while pack a exists.
        let k1 = layout::backup_manifest_revision(&s, m0.label.as_str(), 1);
        let good = repo.backend().get(&k1).await.unwrap().unwrap();
        repo.backend().delete(&k1).await.unwrap();
        repo.backend()
            .put_if_absent(&k1, bytes::Bytes::from_static(b"damaged"))
            .await
            .unwrap();
        assert_eq!(repo.manifest(&s, &m0.label).await.unwrap(), m0);
        repo.backend()
            .delete(&layout::pack(&s, a.as_str()))
            .await
            .unwrap();
        assert!(matches!(
            repo.manifest(&s, &m0.label).await,
            Err(RepoError::BackupDamaged { .. })
        ));
        let listing = repo.backup_listing(&s).await.unwrap();
        assert!(listing.usable.is_empty());
        assert_eq!(listing.damaged[0].key, k1);

        // A third revision deletes revision 0 and keeps 1 as the fallback.
        repo.backend().delete(&k1).await.unwrap();
        repo.backend().put_if_absent(&k1, good).await.unwrap();
        assert_eq!(repo.revise_manifest(&s, &m1).await.unwrap(), 2);
        assert_eq!(
            repo.manifest_revisions(&s, &m0.label).await.unwrap(),
            [1, 2]
        );
        assert_eq!(repo.delete_manifests(&s, &m0.label).await.unwrap(), 2);
        assert!(
            repo.manifest_revisions(&s, &m0.label)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
