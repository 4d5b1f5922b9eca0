//! WAL: every file the catalog lists, read under its own key and checked against the
//! catalog's content id; each backup's WAL from start to stop; gaps on each timeline; and
//! for each missing or damaged file, the backups and recovery windows it costs.

use std::collections::{BTreeMap, BTreeSet};

use cairn_pgformat::{SegmentName, WalFileName, WalSegmentSize, XLogSegNo};
use cairn_planner::{RecoveryWindow, recoverable_windows};
use cairn_repo::layout;
use cairn_repo::wal_index::PageId;
use cairn_repo::{
    BackupManifest, Damage, DbId, Identity, ObjectKey, ObjectKind, WalCatalog, WalDetail, WalEntry,
};
use futures::StreamExt;

use crate::backups::Backups;
use crate::report::{DamageKind, Effect, EffectKind, ObjectClass, Problem, Severity};
use crate::{Run, VerifyError};

/// What the WAL check found about each object it read, by key: whole and as listed, or not.
#[derive(Debug, Default)]
pub(crate) struct WalResults {
    pub good: BTreeMap<ObjectKey, bool>,
}

/// A segment position: generation, timeline, segment number.
type SegPos = (DbId, u32, u64);

fn seg_size(catalog: &WalCatalog) -> WalSegmentSize {
    catalog
        .entries()
        .find_map(|e| match &e.detail {
            WalDetail::Segment { summary } => Some(summary.seg_size()),
            _ => None,
        })
        .or_else(|| catalog.pages().values().next().map(|p| p.seg_size))
        .unwrap_or(WalSegmentSize::DEFAULT)
}

/// The pages of a catalog read through its index that hold segments the checked backups
/// need: all a `--set` run reads (a whole run reads the whole catalog, with no pages).
pub(crate) fn pages_needed(catalog: &WalCatalog, backups: &Backups) -> Vec<PageId> {
    let seg = seg_size(catalog);
    let want: BTreeSet<SegPos> = backups.checked().flat_map(|b| needed(b, seg)).collect();
    catalog
        .pages()
        .iter()
        .filter(|(id, p)| {
            want.iter()
                .any(|&(db, tli, n)| db == id.db_id && tli == id.timeline && p.holds(n))
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The segments a backup needs to become consistent: start to stop, on its timeline.
fn needed(b: &BackupManifest, seg: WalSegmentSize) -> impl Iterator<Item = SegPos> + '_ {
    let from = b.start_lsn.segment_number(seg).0;
    let to = b.stop_lsn.segment_number(seg).0;
    (from..=to).map(move |n| (b.db_id, b.timeline.0, n))
}

fn pos_of(e: &WalEntry, seg: WalSegmentSize) -> Option<SegPos> {
    match e.file_name()? {
        WalFileName::Segment(s) => Some((e.db_id, s.tli.0, s.segno(seg).0)),
        _ => None,
    }
}

fn name_at(p: SegPos, seg: WalSegmentSize) -> SegmentName {
    SegmentName::from_segno(cairn_pgformat::TimelineId(p.1), XLogSegNo(p.2), seg)
}

/// The entries this run reads: all of them, or those the set's backup needs.
fn to_check<'c>(run: &Run<'_>, catalog: &'c WalCatalog, backups: &Backups) -> Vec<&'c WalEntry> {
    if run.full() {
        return catalog.entries().collect();
    }
    let seg = seg_size(catalog);
    let want: BTreeSet<SegPos> = backups.checked().flat_map(|b| needed(b, seg)).collect();
    catalog
        .entries()
        .filter(|e| pos_of(e, seg).is_some_and(|p| want.contains(&p)))
        .collect()
}

/// Bytes the WAL check will read (plaintext sizes: an estimate).
pub(crate) fn planned_bytes(run: &Run<'_>, catalog: &WalCatalog, backups: &Backups) -> u64 {
    to_check(run, catalog, backups).iter().map(|e| e.size).sum()
}

/// A catalog entry whose object is not what the catalog says.
struct Bad {
    entry: WalEntry,
    key: ObjectKey,
    damage: DamageKind,
    detail: String,
}

pub(crate) async fn check(
    run: &mut Run<'_>,
    catalog: &WalCatalog,
    backups: &Backups,
) -> Result<WalResults, VerifyError> {
    let seg = seg_size(catalog);
    let entries = to_check(run, catalog, backups);
    let repo = run.repo;
    let stanza = run.stanza;
    let mut reads = futures::stream::iter(entries)
        .map(|e| async move {
            let name = e.file_name().expect("catalog entries have valid names");
            let key = layout::wal_file(stanza, e.db_id, &name);
            let c = repo
                .check_object(&key, ObjectKind::WalFile, &Identity::of(&key))
                .await;
            (e, c)
        })
        .buffer_unordered(run.inflight());
    let mut results = WalResults::default();
    let mut bad = Vec::new();
    while let Some((e, c)) = reads.next().await {
        let c = c?;
        run.read(c.bytes);
        run.report.checked.wal_files += 1;
        let problem = match &c.result {
            Ok(d) if d.content_id == e.content_id => None,
            Ok(d) => Some((
                DamageKind::Mismatch,
                format!(
                    "holds other content (id {}) than the catalog lists (id {}): another file \
                     under this name",
                    short(&d.content_id.to_string()),
                    short(&e.content_id.to_string())
                ),
            )),
            Err(d) => Some((DamageKind::of(d), damage_detail(d))),
        };
        results.good.insert(c.key.clone(), problem.is_none());
        if let Some((damage, detail)) = problem {
            bad.push(Bad {
                entry: e.clone(),
                key: c.key,
                damage,
                detail,
            });
        }
    }
    drop(reads);
    let bad_keys: BTreeSet<&ObjectKey> = bad.iter().map(|b| &b.key).collect();
    let effective = WalCatalog::from_entries(
        catalog
            .entries()
            .filter(|e| {
                let key = e.file_name().map(|n| layout::wal_file(stanza, e.db_id, &n));
                !key.is_some_and(|k| bad_keys.contains(&k))
            })
            .map(|e| (String::new(), e.clone())),
    );
    let ctx = Coverage::new(run, catalog, &effective, backups, seg);
    for b in &bad {
        let p = Problem {
            severity: Severity::Damage,
            object: ObjectClass::WalFile,
            key: b.key.to_string(),
            damage: b.damage,
            detail: b.detail.clone(),
            affects: ctx.effects_of_file(
                &b.entry,
                if b.damage == DamageKind::Missing {
                    "missing"
                } else {
                    "damaged"
                },
            ),
        };
        run.problem(p);
    }
    run.report.checked.backups += backups.in_scope.len() as u64;
    for p in ctx.missing_problems(run) {
        run.problem(p);
    }
    Ok(results)
}

fn short(id: &str) -> &str {
    &id[..16.min(id.len())]
}

fn damage_detail(d: &Damage) -> String {
    match d {
        Damage::Missing => "is missing from the store, although the catalog lists it".into(),
        other => other.to_string(),
    }
}

/// What missing or damaged WAL costs: backups that cannot become consistent, and where
/// recovery windows end.
struct Coverage<'a> {
    stanza: &'a cairn_repo::StanzaName,
    seg: WalSegmentSize,
    full: bool,
    /// Segments in the catalog.
    listed: BTreeSet<SegPos>,
    /// Backups checked, with the segments each needs.
    needs: Vec<(&'a BackupManifest, Vec<SegPos>)>,
    usable: &'a [BackupManifest],
    /// Windows over the archive without the damaged files, per generation.
    windows: Vec<(DbId, RecoveryWindow)>,
    catalog: &'a WalCatalog,
}

impl<'a> Coverage<'a> {
    fn new(
        run: &Run<'a>,
        catalog: &'a WalCatalog,
        effective: &WalCatalog,
        backups: &'a Backups,
        seg: WalSegmentSize,
    ) -> Coverage<'a> {
        let listed = catalog.entries().filter_map(|e| pos_of(e, seg)).collect();
        let needs = backups
            .in_scope
            .iter()
            .map(|&i| {
                let b = &backups.usable[i];
                (b, needed(b, seg).collect())
            })
            .collect();
        let dbs: BTreeSet<DbId> = catalog
            .entries()
            .map(|e| e.db_id)
            .chain(backups.usable.iter().map(|b| b.db_id))
            .collect();
        let summaries: Vec<cairn_repo::BackupSummary> = backups
            .usable
            .iter()
            .map(cairn_repo::BackupSummary::of)
            .collect();
        // Only a whole run says which windows a file costs; it reads the whole catalog,
        // which has no pages to load (a `--set` run's may).
        let windows = match run.full() {
            false => Vec::new(),
            true => dbs
                .into_iter()
                .flat_map(|db| {
                    recoverable_windows(&summaries, effective, db)
                        .expect("a whole WAL catalog has no pages")
                        .into_iter()
                        .map(move |w| (db, w))
                })
                .collect(),
        };
        Coverage {
            stanza: run.stanza,
            seg,
            full: run.full(),
            listed,
            needs,
            usable: &backups.usable,
            windows,
            catalog,
        }
    }

    /// Backups that need segment `p` to become consistent.
    fn backups_needing(&self, p: SegPos, what: &str) -> Vec<Effect> {
        self.needs
            .iter()
            .filter(|(_, segs)| segs.contains(&p))
            .map(|(b, _)| {
                Effect::backup(
                    &b.label,
                    &format!(
                        ": its WAL from start to stop is incomplete ({} {what})",
                        name_at(p, self.seg)
                    ),
                )
            })
            .collect()
    }

    /// Where recovery windows end because segment `p` cannot be read.
    fn window_effects(&self, p: SegPos, what: &str) -> Vec<Effect> {
        if !self.full {
            return Vec::new();
        }
        let segment = name_at(p, self.seg);
        let name = segment.to_string();
        let mut out = Vec::new();
        for (db, w) in &self.windows {
            if *db != p.0 {
                continue;
            }
            let ends_here = w.gap == Some(segment);
            // The last window of the timeline, which would reach past `p`.
            let open_end = w.gap.is_none()
                && w.timeline.0 == p.1
                && self
                    .usable
                    .iter()
                    .any(|b| b.label == w.backup && b.stop_lsn.segment_number(self.seg).0 < p.2);
            if !(ends_here || open_end) {
                continue;
            }
            let end = match &w.to {
                Some(t) => format!(
                    "recovery windows end at {t} (the window from backup {})",
                    w.backup
                ),
                None => format!(
                    "recovery from backup {} reaches no commit after the backup",
                    w.backup
                ),
            };
            out.push(Effect {
                timeline: Some(w.timeline.0),
                segment: Some(name.clone()),
                windows_end: w.to.map(|t| t.to_string()),
                ..Effect::new(
                    EffectKind::RecoveryWindow,
                    format!("timeline {}: segment {name} {what}; {end}", w.timeline),
                )
            });
        }
        out
    }

    /// Effects of one damaged or missing file the catalog lists.
    fn effects_of_file(&self, e: &WalEntry, what: &str) -> Vec<Effect> {
        let Some(name) = e.file_name() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match name {
            WalFileName::Segment(s) => {
                let p = (e.db_id, s.tli.0, s.segno(self.seg).0);
                out.extend(self.backups_needing(p, what));
                out.extend(self.window_effects(p, what));
            }
            WalFileName::History(tli) => out.push(Effect {
                timeline: Some(tli.0),
                ..Effect::new(
                    EffectKind::RecoveryWindow,
                    format!(
                        "recovery onto timeline {} needs it: restores that follow timeline {} \
                         (or the latest) fail",
                        tli.0, tli.0
                    ),
                )
            }),
            WalFileName::Partial(s) => out.push(Effect {
                timeline: Some(s.tli.0),
                segment: Some(name.to_string()),
                ..Effect::new(
                    EffectKind::RecoveryWindow,
                    format!(
                        "the last WAL of timeline {} before its switch cannot be replayed",
                        s.tli.0
                    ),
                )
            }),
            WalFileName::BackupHistory { .. } => {}
        }
        if out.is_empty() {
            out.push(Effect::new(
                EffectKind::Nothing,
                "no restore needs it (no backup's recovery reaches it)",
            ));
        }
        out
    }

    /// Problems for WAL the catalog does not list: gaps on each timeline (full runs), and
    /// backups' WAL from start to stop outside any gap.
    fn missing_problems(&self, run: &Run<'_>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut in_gaps: BTreeSet<SegPos> = BTreeSet::new();
        if self.full {
            for tl in self.catalog.timelines() {
                for g in &tl.gaps {
                    let (Ok(first), Ok(last)) = (
                        g.first.parse::<SegmentName>(),
                        g.last.parse::<SegmentName>(),
                    ) else {
                        continue;
                    };
                    let (a, b) = (first.segno(self.seg).0, last.segno(self.seg).0);
                    let mut affects = Vec::new();
                    let mut seen = BTreeSet::new();
                    for n in a..=b {
                        let p = (tl.db_id, tl.timeline, n);
                        in_gaps.insert(p);
                        for e in self.backups_needing(p, "missing") {
                            if seen.insert(e.backup.clone()) {
                                affects.push(e);
                            }
                        }
                    }
                    affects.extend(self.window_effects((tl.db_id, tl.timeline, a), "missing"));
                    let severity = if affects.is_empty() {
                        affects.push(Effect::new(
                            EffectKind::Nothing,
                            "no restore needs it: no backup's recovery reaches it",
                        ));
                        Severity::Warning
                    } else {
                        Severity::Damage
                    };
                    out.push(Problem {
                        severity,
                        object: ObjectClass::WalFile,
                        key: layout::wal_file(self.stanza, tl.db_id, &WalFileName::Segment(first))
                            .to_string(),
                        damage: DamageKind::Gap,
                        detail: format!(
                            "timeline {}: {} segment(s) {}..{} are not in the archive",
                            tl.timeline, g.segments, g.first, g.last
                        ),
                        affects,
                    });
                }
            }
        }
        for (b, segs) in &self.needs {
            let missing: Vec<SegPos> = segs
                .iter()
                .copied()
                .filter(|p| !self.listed.contains(p) && !in_gaps.contains(p))
                .collect();
            let Some(&first) = missing.first() else {
                continue;
            };
            let name = name_at(first, self.seg);
            out.push(Problem {
                severity: Severity::Damage,
                object: ObjectClass::WalFile,
                key: layout::wal_file(run.stanza, first.0, &WalFileName::Segment(name)).to_string(),
                damage: DamageKind::Missing,
                detail: format!(
                    "{} of the {} segment(s) backup {} needs from start to stop are not in the \
                     archive, from {name} on",
                    missing.len(),
                    segs.len(),
                    b.label
                ),
                affects: vec![Effect::backup(
                    &b.label,
                    &format!(": its WAL from start to stop is incomplete ({name} missing)"),
                )],
            });
        }
        out
    }
}
