//! `full = N` and `diff = N`: the N newest fulls with their chains, and at most N diffs
//! per kept full.
//!
//! A chain is a full and every diff and incr whose label names it (the label's first
//! part). `diff = N` keeps the N newest usable diffs of each kept full; an incr whose
//! nearest diff ancestor (by parent links) is a diff the limit drops goes with it, as in
//! pgBackRest: it would still restore (every manifest is complete), but keeping it would
//! make the limit free next to nothing. An incr whose parent chain cannot be followed is
//! kept. Diffs and incrs whose full is damaged or gone are kept when they started after
//! the oldest kept full (they are newer than backups the rule keeps), or when fewer than
//! N usable fulls exist (the rule then keeps every usable backup).

use std::collections::{BTreeSet, HashMap};

use cairn_repo::{BackupLabel, BackupType};

use crate::facts::{BackupFacts, label_type};
use crate::plan::KeepReason;

/// Where an incr's parent links lead first.
enum Anchor<'a> {
    Full,
    Diff(&'a BackupLabel),
    /// A link leaves the list through an incr, or loops: keep.
    Unknown,
}

struct Chain<'a> {
    /// The diffs the limit keeps (all usable diffs without a limit).
    kept_diffs: BTreeSet<&'a BackupLabel>,
    /// `true` when the limit keeps exactly N diffs, so older diffs were dropped by it.
    saturated: bool,
}

pub(crate) fn apply(
    sorted: &[&BackupFacts],
    full_n: u32,
    diff_n: Option<u32>,
    reasons: &mut [Vec<KeepReason>],
) {
    let index: HashMap<&BackupLabel, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, b)| (&b.label, i))
        .collect();
    let kept_fulls: Vec<usize> = (0..sorted.len())
        .rev()
        .filter(|&i| sorted[i].usable && sorted[i].backup_type == BackupType::Full)
        .take(full_n as usize)
        .collect();
    // With fewer than N usable fulls, every orphan is kept.
    let oldest_kept = match kept_fulls.last() {
        Some(&f) if kept_fulls.len() == full_n as usize => f,
        _ => 0,
    };
    let mut chains: HashMap<&BackupLabel, Chain<'_>> = HashMap::new();
    for (rank, &f) in kept_fulls.iter().enumerate() {
        reasons[f].push(KeepReason::FullCount {
            rank: rank as u32 + 1,
        });
        let full = &sorted[f].label;
        let diffs: Vec<usize> = (0..sorted.len())
            .rev()
            .filter(|&i| {
                let b = sorted[i];
                b.usable && b.backup_type == BackupType::Diff && &b.label.full_label() == full
            })
            .collect();
        let limit = diff_n.map_or(usize::MAX, |n| n as usize);
        let mut kept_diffs = BTreeSet::new();
        for (rank, &d) in diffs.iter().take(limit).enumerate() {
            kept_diffs.insert(&sorted[d].label);
            reasons[d].push(match diff_n {
                Some(_) => KeepReason::DiffCount {
                    full: full.clone(),
                    rank: rank as u32 + 1,
                },
                None => KeepReason::ChainOfKeptFull { full: full.clone() },
            });
        }
        let saturated = diffs.len() >= limit;
        chains.insert(
            full,
            Chain {
                kept_diffs,
                saturated,
            },
        );
    }
    for (i, b) in sorted.iter().enumerate() {
        if !b.usable || b.backup_type != BackupType::Incr {
            // Fulls and diffs were decided above.
            if b.usable && b.backup_type == BackupType::Diff {
                orphan(sorted, &index, i, oldest_kept, reasons);
            }
            continue;
        }
        let full = b.label.full_label();
        let Some(chain) = chains.get(&full) else {
            orphan(sorted, &index, i, oldest_kept, reasons);
            continue;
        };
        let keep = match anchor(sorted, &index, b) {
            Anchor::Full | Anchor::Unknown => true,
            Anchor::Diff(d) => {
                chain.kept_diffs.contains(d)
                    || !chain.saturated
                    // A diff newer than the oldest one the limit keeps (damaged, or gone
                    // by `expire --set`) was not dropped by the limit.
                    || chain.kept_diffs.first().is_some_and(|oldest| d > *oldest)
                    || d.full_label() != full
            }
        };
        if keep {
            reasons[i].push(KeepReason::ChainOfKeptFull { full });
        }
    }
}

/// A diff or incr whose full is damaged or not listed, kept when it started after the
/// oldest kept full (`oldest_kept` is 0 when fewer than N usable fulls exist).
fn orphan(
    sorted: &[&BackupFacts],
    index: &HashMap<&BackupLabel, usize>,
    i: usize,
    oldest_kept: usize,
    reasons: &mut [Vec<KeepReason>],
) {
    let full = sorted[i].label.full_label();
    let full_usable = index.get(&full).is_some_and(|&f| sorted[f].usable);
    if !full_usable && i >= oldest_kept {
        reasons[i].push(KeepReason::OrphanOfKeptRange);
    }
}

fn anchor<'a>(
    sorted: &[&'a BackupFacts],
    index: &HashMap<&BackupLabel, usize>,
    b: &'a BackupFacts,
) -> Anchor<'a> {
    let mut cur = b;
    for _ in 0..=sorted.len() {
        let Some(p) = &cur.parent else {
            return Anchor::Full;
        };
        match index.get(p).map(|&j| sorted[j]) {
            Some(pb) => match pb.backup_type {
                BackupType::Full => return Anchor::Full,
                BackupType::Diff => return Anchor::Diff(&pb.label),
                BackupType::Incr => cur = pb,
            },
            None => {
                return match label_type(p) {
                    Some(BackupType::Full) => Anchor::Full,
                    Some(BackupType::Diff) => Anchor::Diff(p),
                    _ => Anchor::Unknown,
                };
            }
        }
    }
    Anchor::Unknown
}
