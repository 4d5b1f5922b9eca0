//! Garbage collection of packs, two-phase (decision 014). Pure: the packs stored, what
//! the kept manifests reference, the GC state and the running backup in; what to condemn,
//! delete, keep waiting and repack out.
//!
//! - A pack no kept manifest references is *condemned* (recorded with the time).
//! - A condemned pack is deleted by a later run when it is still unreferenced, the grace
//!   has passed since its condemnation, and no backup holds the backup lock that started
//!   before the condemnation time plus the grace (that backup may have loaded the chunk
//!   index before the condemnation and may reference the pack).
//! - A condemned pack that a manifest references again is un-condemned.
//! - A referenced pack whose live chunks take less than half its bytes is repacked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_repo::{BackupLabel, BackupManifest, GcState, PackId, PackListing, StoredChunk};
use time::OffsetDateTime;

/// A referenced pack is repacked when its live bytes are less than `size / REPACK_BELOW`.
pub const REPACK_BELOW: u64 = 2;

/// What the kept manifests reference in one pack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePack {
    /// Referenced chunks by offset.
    pub chunks: BTreeMap<u64, StoredChunk>,
    /// The backups referencing it.
    pub backups: BTreeSet<BackupLabel>,
}

impl LivePack {
    pub fn bytes(&self) -> u64 {
        self.chunks.values().map(|c| u64::from(c.len)).sum()
    }
}

/// Every pack the kept manifests reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSet {
    pub packs: BTreeMap<PackId, LivePack>,
}

impl LiveSet {
    /// Add what one kept manifest references.
    pub fn add(&mut self, m: &BackupManifest) {
        for c in m.files.iter().flat_map(|f| &f.chunks) {
            let Some(pack) = m.packs.get(c.pack as usize) else {
                continue;
            };
            let p = self.packs.entry(pack.clone()).or_default();
            p.chunks.entry(c.offset).or_insert(StoredChunk {
                offset: c.offset,
                len: c.len,
                size: c.size,
                id: c.id,
            });
            if !p.backups.contains(&m.label) {
                p.backups.insert(m.label.clone());
            }
        }
    }
}

/// Why a condemned pack is not deleted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// The grace runs until then.
    Grace { until: OffsetDateTime },
    /// A backup that started at `started` holds the backup lock.
    Backup { started: OffsetDateTime },
}

/// A pack to repack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repack {
    pub pack: PackId,
    pub size: u64,
    /// Its live chunks, by offset.
    pub live: Vec<StoredChunk>,
    /// The kept backups referencing it: each gets a new manifest revision.
    pub backups: Vec<BackupLabel>,
}

impl Repack {
    pub fn live_bytes(&self) -> u64 {
        self.live.iter().map(|c| u64::from(c.len)).sum()
    }
}

/// The GC part of the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Why this run neither condemns, deletes nor repacks anything.
    pub blocked: Option<String>,
    /// Packs condemned by this run, with their sizes.
    pub condemn: Vec<(PackId, u64)>,
    /// Condemned packs referenced again.
    pub uncondemn: Vec<PackId>,
    /// Condemned packs deleted by this run (pack and index), with their sizes.
    pub delete: Vec<(PackId, u64)>,
    /// Condemned packs not deleted yet.
    pub waiting: Vec<(PackId, u64, Waiting)>,
    pub repack: Vec<Repack>,
    /// Packs referenced by kept manifests but not stored (damage: `cairn verify`).
    pub missing: Vec<(PackId, BackupLabel)>,
    /// The GC state this run writes (before repacking; repacked packs are condemned after
    /// the kept manifests' new revisions are stored).
    pub state: GcState,
    pub live_packs: usize,
    pub live_bytes: u64,
}

impl GcPlan {
    pub fn deleted_bytes(&self) -> u64 {
        self.delete.iter().map(|(_, s)| s).sum()
    }
    pub fn condemned_bytes(&self) -> u64 {
        self.condemn.iter().map(|(_, s)| s).sum()
    }
    /// Bytes a repack frees once the old packs are deleted.
    pub fn repack_frees(&self) -> u64 {
        self.repack
            .iter()
            .map(|r| r.size.saturating_sub(r.live_bytes()))
            .sum()
    }
}

/// What the GC plan is made from.
#[derive(Debug, Clone)]
pub struct GcInput<'a> {
    pub listing: &'a PackListing,
    pub state: &'a GcState,
    /// What kept manifests reference, or why it cannot be known (then nothing is done).
    pub live: Result<&'a LiveSet, String>,
    /// The start of the backup holding the backup lock, if one runs.
    pub backup_started: Option<OffsetDateTime>,
    pub now: OffsetDateTime,
    pub grace: Duration,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Plan garbage collection.
pub fn plan(input: &GcInput<'_>) -> GcPlan {
    let live = match &input.live {
        Ok(l) => l,
        Err(why) => {
            return GcPlan {
                blocked: Some(why.clone()),
                state: input.state.clone(),
                ..Default::default()
            };
        }
    };
    let grace = time::Duration::try_from(input.grace).unwrap_or(time::Duration::MAX);
    let stored = input.listing.all();
    let size = |p: &PackId| input.listing.packs.get(p).copied().unwrap_or(0);
    let mut out = GcPlan {
        live_packs: live.packs.len(),
        live_bytes: live.packs.values().map(LivePack::bytes).sum(),
        ..Default::default()
    };
    for pack in &stored {
        if let Some(lp) = live.packs.get(pack) {
            if input.state.condemned.contains_key(pack) {
                out.uncondemn.push(pack.clone());
            }
            if let Some(&s) = input.listing.packs.get(pack)
                && lp.bytes().saturating_mul(REPACK_BELOW) < s
            {
                out.repack.push(Repack {
                    pack: pack.clone(),
                    size: s,
                    live: lp.chunks.values().copied().collect(),
                    backups: lp.backups.iter().cloned().collect(),
                });
            }
            continue;
        }
        let condemned = input.state.condemned.get(pack).and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        let Some(at) = condemned else {
            out.condemn.push((pack.clone(), size(pack)));
            out.state.condemned.insert(pack.clone(), rfc3339(input.now));
            continue;
        };
        out.state
            .condemned
            .insert(pack.clone(), input.state.condemned[pack].clone());
        let until = at.saturating_add(grace);
        let wait = if input.now < until {
            Some(Waiting::Grace { until })
        } else {
            input
                .backup_started
                .filter(|s| *s < until)
                .map(|started| Waiting::Backup { started })
        };
        match wait {
            Some(w) => out.waiting.push((pack.clone(), size(pack), w)),
            None => out.delete.push((pack.clone(), size(pack))),
        }
    }
    for (pack, lp) in &live.packs {
        if !stored.contains(pack) {
            let by = lp.backups.iter().next().cloned();
            if let Some(by) = by {
                out.missing.push((pack.clone(), by));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_repo::ContentId;
    use time::macros::datetime;

    fn pack(n: u8) -> PackId {
        PackId::try_from(format!("{n:02x}").repeat(16)).unwrap()
    }

    fn label(s: &str) -> BackupLabel {
        BackupLabel::new(s).unwrap()
    }

    fn chunk(offset: u64, len: u32) -> StoredChunk {
        StoredChunk {
            offset,
            len,
            size: len * 2,
            id: ContentId([offset as u8; 32]),
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const HOUR: Duration = Duration::from_secs(3600);

    fn at(t: OffsetDateTime) -> String {
        rfc3339(t)
    }

    struct Case {
        listing: PackListing,
        state: GcState,
        live: LiveSet,
    }

    impl Case {
        fn new() -> Case {
            Case {
                listing: PackListing::default(),
                state: GcState::default(),
                live: LiveSet::default(),
            }
        }
        fn stored(mut self, p: u8, size: u64) -> Case {
            self.listing.packs.insert(pack(p), size);
            self.listing.indexes.insert(pack(p));
            self
        }
        fn condemned(mut self, p: u8, t: OffsetDateTime) -> Case {
            self.state.condemned.insert(pack(p), at(t));
            self
        }
        fn live(mut self, p: u8, chunks: &[StoredChunk], by: &str) -> Case {
            let lp = self.live.packs.entry(pack(p)).or_default();
            for c in chunks {
                lp.chunks.insert(c.offset, *c);
            }
            lp.backups.insert(label(by));
            self
        }
        fn plan(&self, backup_started: Option<OffsetDateTime>) -> GcPlan {
            plan(&GcInput {
                listing: &self.listing,
                state: &self.state,
                live: Ok(&self.live),
                backup_started,
                now: NOW,
                grace: HOUR,
            })
        }
    }

    #[test]
    fn unreferenced_packs_are_condemned_first_and_deleted_only_after_the_grace() {
        let c = Case::new()
            .stored(1, 1000)
            .stored(2, 2000)
            .stored(3, 3000)
            .stored(4, 4000)
            .live(1, &[chunk(0, 900)], "20261201-100000F")
            .condemned(3, NOW - time::Duration::minutes(30))
            .condemned(4, NOW - time::Duration::minutes(61));
        let p = c.plan(None);
        assert_eq!(p.condemn, vec![(pack(2), 2000)]);
        assert_eq!(
            p.waiting,
            vec![(
                pack(3),
                3000,
                Waiting::Grace {
                    until: NOW + time::Duration::minutes(30)
                }
            )]
        );
        assert_eq!(p.delete, vec![(pack(4), 4000)]);
        assert!(p.repack.is_empty() && p.uncondemn.is_empty());
        // The new state: 2 condemned now, 3 and 4 with their old times (4 stays listed
        // until a run no longer finds it stored).
        assert_eq!(p.state.condemned[&pack(2)], at(NOW));
        assert_eq!(
            p.state.condemned[&pack(3)],
            at(NOW - time::Duration::minutes(30))
        );
        assert!(p.state.condemned.contains_key(&pack(4)));
        assert!(!p.state.condemned.contains_key(&pack(1)));
        assert_eq!(p.deleted_bytes(), 4000);
        assert_eq!(p.condemned_bytes(), 2000);
    }

    #[test]
    fn a_backup_that_may_have_loaded_the_index_before_the_condemnation_blocks_the_delete() {
        let condemned = NOW - time::Duration::minutes(90);
        let c = Case::new().stored(4, 4000).condemned(4, condemned);
        // Started before condemnation + grace (30 minutes ago): may reference pack 4.
        for started in [
            condemned - time::Duration::hours(5),
            condemned + time::Duration::minutes(59),
        ] {
            let p = c.plan(Some(started));
            assert!(p.delete.is_empty(), "{started}");
            assert_eq!(p.waiting[0].2, Waiting::Backup { started });
        }
        // Started after it: it saw the condemnation and stores those chunks again.
        let p = c.plan(Some(condemned + time::Duration::minutes(60)));
        assert_eq!(p.delete, vec![(pack(4), 4000)]);
    }

    #[test]
    fn a_referenced_condemned_pack_is_uncondemned_and_packs_mostly_garbage_are_repacked() {
        let c = Case::new()
            .stored(1, 1000)
            .stored(2, 1000)
            .stored(3, 1000)
            .live(1, &[chunk(0, 499)], "20261201-100000F")
            .live(1, &[chunk(600, 1)], "20261202-100000F")
            .live(2, &[chunk(0, 500)], "20261201-100000F")
            .live(3, &[chunk(0, 900)], "20261201-100000F")
            .condemned(3, NOW - time::Duration::hours(5));
        let p = c.plan(None);
        assert_eq!(p.uncondemn, vec![pack(3)]);
        assert!(p.delete.is_empty() && p.condemn.is_empty());
        assert!(p.state.condemned.is_empty());
        // Pack 1: 500 live bytes of 1000 is not under half; pack 2 neither.
        assert!(p.repack.is_empty(), "{:?}", p.repack);
        // A smaller chunk at offset 0 instead: 401 of 1000 bytes live.
        let c = c.live(1, &[chunk(0, 400)], "20261201-100000F");
        let p = c.plan(None);
        assert_eq!(p.repack.len(), 1);
        let r = &p.repack[0];
        assert_eq!(
            (r.pack.clone(), r.size, r.live_bytes()),
            (pack(1), 1000, 401)
        );
        assert_eq!(
            r.backups,
            vec![label("20261201-100000F"), label("20261202-100000F")]
        );
        assert_eq!(p.repack_frees(), 599);
    }

    #[test]
    fn an_index_without_its_pack_is_collected_and_a_missing_referenced_pack_reported() {
        let mut c = Case::new().live(9, &[chunk(0, 10)], "20261201-100000F");
        c.listing.indexes.insert(pack(5));
        let p = c.plan(None);
        assert_eq!(p.condemn, vec![(pack(5), 0)]);
        assert_eq!(p.missing, vec![(pack(9), label("20261201-100000F"))]);
    }

    #[test]
    fn without_knowing_what_is_live_nothing_is_done() {
        let c = Case::new()
            .stored(1, 10)
            .condemned(1, NOW - time::Duration::days(9));
        let p = plan(&GcInput {
            listing: &c.listing,
            state: &c.state,
            live: Err("backup X is damaged".into()),
            backup_started: None,
            now: NOW,
            grace: HOUR,
        });
        assert_eq!(p.blocked.as_deref(), Some("backup X is damaged"));
        assert!(p.delete.is_empty() && p.condemn.is_empty() && p.repack.is_empty());
        assert_eq!(p.state, c.state);
    }
}
