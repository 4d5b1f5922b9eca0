//! Progress of a run, as counters a terminal (or anything else) reads whenever it likes:
//! the checks only add to them, and never wait for whoever shows them.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// What a run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Metadata,
    Catalog,
    Manifests,
    Packs,
    Wal,
    Cleanup,
    Done,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Metadata,
        Phase::Catalog,
        Phase::Manifests,
        Phase::Packs,
        Phase::Wal,
        Phase::Cleanup,
        Phase::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Metadata => "key files and stanza info",
            Phase::Catalog => "catalogs",
            Phase::Manifests => "manifests and pack indexes",
            Phase::Packs => "packs",
            Phase::Wal => "WAL",
            Phase::Cleanup => "leftovers",
            Phase::Done => "done",
        }
    }
}

/// Shared counters of a run.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    objects: AtomicU64,
    bytes: AtomicU64,
    /// Bytes the run expects to read in all (packs and WAL), once known; 0 before.
    planned: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub phase: Phase,
    pub objects: u64,
    pub bytes: u64,
    /// The bytes the run will read in all, once it knows (an estimate: WAL counts at its
    /// plaintext size, which its encoded objects are usually smaller than).
    pub planned: Option<u64>,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        let phase = Phase::ALL
            .get(self.phase.load(Ordering::Relaxed) as usize)
            .copied()
            .unwrap_or(Phase::Done);
        let planned = self.planned.load(Ordering::Relaxed);
        ProgressSnapshot {
            phase,
            objects: self.objects.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            planned: (planned > 0).then_some(planned),
        }
    }

    pub(crate) fn phase(&self, phase: Phase) {
        let i = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        self.phase.store(i as u8, Ordering::Relaxed);
    }

    /// One object read (`bytes` of it).
    pub(crate) fn object(&self, bytes: u64) {
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes read of an object counted already (a pack is read in spans).
    pub(crate) fn bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn plan(&self, bytes: u64) {
        self.planned.store(
            self.bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
    }
}
