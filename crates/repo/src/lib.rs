//! `cairn-repo`: the repository, in layers (as rustic_core does):
//!
//! 1. `backend` (private): storage (a local directory with fsync + create-if-absent, or
//!    any `object_store` store with conditional PUT). Other crates build a [`Backend`] and
//!    hand it to [`Repository::open`]; its raw reads and writes stay in here;
//! 2. `object` (private): the encoding of every object (zstd, AES-256-GCM frames,
//!    content id). Only typed access through [`Repository`] encodes and decodes;
//! 3. [`keys`]: the master key, its Argon2id wrap and the derived keys;
//! 4. typed files: [`stanza`] info, the [`wal`] archive and its [`catalog`], backup
//!    chunks in [`pack`]s and backup [`manifest`]s, and [`record`]s of what was done;
//! 5. [`lock`]s, for writers that must not overlap (one backup of a stanza at a time);
//! 6. [`check`]: what `cairn verify` needs to tell exactly what is wrong with an object;
//! 7. [`gc`]: condemned packs and what `expire` must finish, and manifest revisions
//!    (a repack points kept manifests at the chunks' new packs).
//!
//! The `test-util` feature (for dev-dependencies only) opens [`test_util`]: raw access
//! for fault injection and the encoder for benches.
//!
//! It knows nothing of PostgreSQL connections; PostgreSQL byte formats come from
//! `cairn-pgformat`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_repo::RepoError> {
//! use cairn_repo::{Backend, LocalBackend, OpenOptions, Repository, StanzaName};
//! let backend = Backend::Local(std::sync::Arc::new(LocalBackend::new("/var/lib/cairn")));
//! let (repo, _created) = Repository::open_or_create(backend, Some("passphrase"), &OpenOptions::default()).await?;
//! let info = repo.stanza_info(&StanzaName::new("main").unwrap()).await?;
//! # Ok(()) }
//! ```

mod backend;
mod backups;
pub mod catalog;
pub mod check;
mod chunk_snapshot;
mod content_tree;
mod error;
pub mod gc;
pub mod journal;
mod keyring;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod manifest;
mod object;
pub mod pack;
pub mod record;
mod repository;
mod revision;
pub mod stanza;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod wal;
pub mod wal_index;

pub use backend::{
    Backend, Listed, ListedAt, LocalBackend, PutOutcome, StoreBackend, TempLeftover,
};
pub use backups::{BackupCatalog, BackupEvent, BackupSummary};
pub use catalog::{DamagedSummary, TimelineArchive, WalCatalog, WalEvent};
pub use check::{CopyCheck, Damage, Decoded, ObjectCheck};
pub use chunk_snapshot::SNAPSHOT_AFTER;
pub use error::{BackendError, ObjectError, RepoError};
pub use gc::{GcState, GcStateRead, PackListing, StoredChunk};
pub use journal::{DamagedEntry, JournalCheck, JournalName};
pub use keyring::REPO_FORMAT;
pub use keys::{ContentId, KdfParams, KeySet};
pub use layout::{DbId, Identity, ObjectKey, StanzaName};
pub use lock::{LockGuard, LockOptions, LockTarget, LockWatch, Takeover};
pub use manifest::{
    BackupLabel, BackupListing, BackupManifest, BackupTime, BackupType, ChunkRef, DamagedBackup,
    FileKind, IncrementalMode, ManifestFile, TablespaceEntry,
};
pub use object::{ObjectKind, PlaintextSink, StreamError};
pub use pack::{
    ChunkCodec, ChunkIndex, ChunkLocation, IndexedChunk, PackId, PackIndexCheck, PackInventory,
    PackWriter,
};
pub use record::{Record, RecordKind};
pub use repository::{Encoded, OpenOptions, Rekeyed, Repository};
pub use stanza::{DbGeneration, StanzaCreated, StanzaInfo};
pub use wal::{DeliverError, PushOutcome, WalDetail, WalEntry};
pub use wal_index::{PageId, PageRef};
