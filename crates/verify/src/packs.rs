//! Reading packs: each pack once, in ranged spans of at most [`SPAN_MAX`] bytes with a
//! bounded number in flight, every planned chunk in a span decoded on all cores.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use cairn_repo::layout;
use cairn_repo::{BackupLabel, ChunkCodec, Damage, ObjectError, ObjectKey, PackId, Repository};
use futures::StreamExt;
use rayon::prelude::*;

use crate::backups::{Backups, PackPlan, PlannedChunk};
use crate::report::{Effect, EffectKind, ObjectClass, Problem};
use crate::{Run, VerifyError};

/// Largest ranged read; bounds memory to about this much per span in flight.
pub(crate) const SPAN_MAX: u64 = 8 << 20;
/// Unplanned bytes between two chunks read through rather than split into two requests.
const GAP_READ_THROUGH: u64 = 1 << 20;

/// One ranged read of a pack and the chunks in it.
struct Span {
    pack: PackId,
    key: ObjectKey,
    start: u64,
    end: u64,
    chunks: Vec<PlannedChunk>,
}

/// Cut a pack's planned chunks into spans; chunks beyond the pack's end are not read.
fn spans(pack: &PackId, key: &ObjectKey, size: u64, chunks: &[PlannedChunk]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for c in chunks {
        let end = c.offset + u64::from(c.len);
        if end > size {
            continue;
        }
        match out.last_mut() {
            Some(s) if c.offset <= s.end + GAP_READ_THROUGH && end - s.start <= SPAN_MAX => {
                s.end = s.end.max(end);
                s.chunks.push(*c);
            }
            _ => out.push(Span {
                pack: pack.clone(),
                key: key.clone(),
                start: c.offset,
                end,
                chunks: vec![*c],
            }),
        }
    }
    out
}

/// Read a span and decode its chunks; `None` when the pack is gone.
async fn read_span(
    repo: &Repository,
    codec: &ChunkCodec,
    span: Span,
) -> Result<(Span, u64, Vec<Result<(), Damage>>), VerifyError> {
    let Some(bytes) = repo
        .get_stored_range(&span.key, span.start..span.end)
        .await?
    else {
        let n = span.chunks.len();
        return Ok((span, 0, vec![Err(Damage::Missing); n]));
    };
    let read = bytes.len() as u64;
    let codec = codec.clone();
    let (span, results) = tokio::task::spawn_blocking(move || {
        let results = decode_span(&codec, &span, &bytes);
        (span, results)
    })
    .await
    .expect("chunk decoding panicked");
    Ok((span, read, results))
}

fn decode_span(codec: &ChunkCodec, span: &Span, bytes: &Bytes) -> Vec<Result<(), Damage>> {
    span.chunks
        .par_iter()
        .map(|c| {
            let from = (c.offset - span.start) as usize;
            let to = from + c.len as usize;
            match bytes.get(from..to) {
                Some(b) => codec.check(&c.id, b).map_err(Damage::Object),
                None => Err(Damage::Object(ObjectError::Truncated {
                    have: bytes.len().saturating_sub(from) as u64,
                    want: u64::from(c.len),
                })),
            }
        })
        .collect()
}

/// Damaged chunks of one pack.
#[derive(Default)]
struct PackDamage {
    chunks: Vec<(PlannedChunk, Damage)>,
    planned: usize,
}

/// Read every planned pack and report damaged chunks with the backups they cost.
pub(crate) async fn check(
    run: &mut Run<'_>,
    backups: &Backups,
    plan: PackPlan,
) -> Result<(), VerifyError> {
    let codec = run.repo.chunk_codec(run.stanza);
    let mut damage: BTreeMap<PackId, PackDamage> = BTreeMap::new();
    let mut all_spans = Vec::new();
    for (pack, work) in &plan.packs {
        let key = layout::pack(run.stanza, pack.as_str());
        let entry = damage.entry(pack.clone()).or_default();
        entry.planned = work.chunks.len();
        let Some(size) = work.size else {
            entry
                .chunks
                .extend(work.chunks.iter().map(|c| (*c, Damage::Missing)));
            continue;
        };
        run.read(0);
        run.report.checked.packs += 1;
        for c in &work.chunks {
            let end = c.offset + u64::from(c.len);
            if end > size {
                entry.chunks.push((
                    *c,
                    Damage::Object(ObjectError::Truncated {
                        have: size.saturating_sub(c.offset),
                        want: u64::from(c.len),
                    }),
                ));
            }
        }
        all_spans.extend(spans(pack, &key, size, &work.chunks));
    }
    let repo = run.repo;
    let codec = Arc::new(codec);
    let mut results = futures::stream::iter(all_spans)
        .map(|span| {
            let codec = codec.clone();
            async move { read_span(repo, &codec, span).await }
        })
        .buffer_unordered(run.inflight());
    while let Some(r) = results.next().await {
        let (span, read, outcomes) = r?;
        run.report.checked.bytes += read;
        run.opts.progress.bytes(read);
        run.report.checked.chunks += span.chunks.len() as u64;
        let entry = damage.entry(span.pack.clone()).or_default();
        for (c, o) in span.chunks.iter().zip(outcomes) {
            if let Err(d) = o {
                entry.chunks.push((*c, d));
            }
        }
    }
    drop(results);
    for (pack, mut d) in damage {
        if d.chunks.is_empty() {
            continue;
        }
        d.chunks.sort_by_key(|(c, _)| *c);
        let key = layout::pack(run.stanza, pack.as_str());
        let indexed = plan.packs.get(&pack).map(|w| &w.indexed);
        run.problem(pack_problem(&key, &pack, &d, backups, indexed));
    }
    Ok(())
}

fn pack_problem(
    key: &ObjectKey,
    pack: &PackId,
    d: &PackDamage,
    backups: &Backups,
    indexed: Option<&BTreeSet<cairn_repo::ContentId>>,
) -> Problem {
    let (first, first_damage) = &d.chunks[0];
    let all_missing = d.chunks.iter().all(|(_, x)| *x == Damage::Missing);
    let mut p = Problem::damage(ObjectClass::Pack, key.to_string(), first_damage);
    p.detail = if all_missing && d.chunks.len() == d.planned {
        format!("is missing ({} chunks)", d.planned)
    } else {
        format!(
            "{} of {} chunks damaged; the first, {} at offset {} ({} bytes): {first_damage}",
            d.chunks.len(),
            d.planned,
            first.id,
            first.offset,
            first.len
        )
    };
    let bad: BTreeSet<(u64, u32, cairn_repo::ContentId)> = d
        .chunks
        .iter()
        .map(|(c, _)| (c.offset, c.len, c.id))
        .collect();
    let mut labels: BTreeSet<BackupLabel> = BTreeSet::new();
    for m in &backups.usable {
        let uses = m.files.iter().flat_map(|f| &f.chunks).any(|c| {
            m.packs.get(c.pack as usize) == Some(pack) && bad.contains(&(c.offset, c.len, c.id))
        });
        if uses {
            labels.insert(m.label.clone());
        }
    }
    for l in &labels {
        p = p.with(Effect::backup(l, &format!(": pack {pack} is damaged")));
    }
    let reused = d
        .chunks
        .iter()
        .filter(|(c, _)| indexed.is_some_and(|i| i.contains(&c.id)))
        .count();
    if reused > 0 {
        p = p.with(Effect::new(
            EffectKind::NewBackups,
            format!(
                "new backups reuse {reused} damaged chunk(s) the pack index lists instead of \
                 storing them again, and would not restore either"
            ),
        ));
    }
    if p.affects.is_empty() {
        p = p.with(Effect::new(
            EffectKind::Nothing,
            "no backup and no pack index uses the damaged chunks",
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, len: u32) -> PlannedChunk {
        PlannedChunk {
            offset,
            len,
            id: cairn_repo::ContentId([offset as u8; 32]),
        }
    }

    #[test]
    fn spans_cover_chunks_within_the_bound_and_skip_what_lies_beyond_the_end() {
        let pack = PackId::random();
        let key = ObjectKey::new("stanza/main/pack/ab/x").unwrap();
        let mib = 1u64 << 20;
        let chunks: Vec<PlannedChunk> = (0..40).map(|i| chunk(i * mib / 4, 256 << 10)).collect();
        let s = spans(&pack, &key, 10 * mib, &chunks);
        assert_eq!(s.len(), 2, "10 MiB of chunks in spans of at most 8 MiB");
        assert!(s.iter().all(|s| s.end - s.start <= SPAN_MAX));
        assert_eq!(s.iter().map(|s| s.chunks.len()).sum::<usize>(), 40);
        // A pack cut short: its last chunks are not read.
        let s = spans(&pack, &key, 2 * mib, &chunks);
        assert_eq!(s.iter().map(|s| s.chunks.len()).sum::<usize>(), 8);
        // Far apart: two requests, not one reading the gap.
        let s = spans(
            &pack,
            &key,
            100 * mib,
            &[chunk(0, 100), chunk(50 * mib, 100)],
        );
        assert_eq!(s.len(), 2);
    }
}
