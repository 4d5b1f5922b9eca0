//! Locks: writers that must not overlap (two backups of a stanza; expire, stanza-delete
//! and stanza-upgrade; rekey) each take a lock object in the repository. Decision 011.
//!
//! A lock is a series of generations `<prefix>/<seq:08>` (keys in [`crate::layout`]), each
//! created by create-if-absent and never reused; the highest one is the lock's state:
//!
//! - **Take.** List the prefix. Nothing there: create seq 1. The highest generation is
//!   released: create the next one. It is held and its heartbeat is fresh: fail with
//!   [`RepoError::Locked`], naming the holder. It is held but (1) this process shares the
//!   holder's host boot and pid namespace and the holder's process is gone, or (2) its
//!   heartbeat is older than [`LockOptions::stale_after`]: take it over by creating the
//!   next generation, which records whom it replaced and why (a [`Takeover`] the caller
//!   reports; never silent). Create-if-absent lets exactly one contender win a
//!   generation; after creating it, the winner lists again and withdraws when a higher one
//!   exists; then it deletes the generations below its own.
//! - **Hold.** A background task rewrites the holder's own object every
//!   [`LockOptions::heartbeat`] and lists the prefix: a higher generation, or its own
//!   object gone or changed, means it was taken over. So does a heartbeat that could not
//!   be stored for half of `stale_after` (a contender may take over at `stale_after`):
//!   the holder gives up first. The work watches [`LockWatch`] and, before its commit
//!   point, calls [`LockWatch::ensure_held`].
//! - **Release.** The holder rewrites its own generation as released (it is not deleted,
//!   so generation numbers only grow and a slow contender's stale listing can never make
//!   it create a generation that looks current).
//!
//! ```no_run
//! # async fn demo(repo: &cairn_repo::Repository) -> Result<(), cairn_repo::RepoError> {
//! use cairn_repo::lock::{LockOptions, LockTarget};
//! let stanza = cairn_repo::StanzaName::new("main").unwrap();
//! let guard = repo.lock(LockTarget::Backup(stanza), "backup", &LockOptions::default()).await?;
//! if let Some(t) = guard.takeover() {
//!     println!("WARNING: {t}");
//! }
//! // ... work; before committing:
//! guard.watch().ensure_held().await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod owner;
mod record;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

pub use owner::LockOwner;
pub(crate) use record::age;
pub use record::{LockHolder, LockRecord, PreviousHolder, Takeover};

use crate::backend::PutOutcome;
use crate::error::RepoError;
use crate::layout::{self, Identity, ObjectKey, StanzaName};
use crate::object::ObjectKind;
use crate::repository::{Repository, now_rfc3339};

/// Rounds of list / decide / create before giving up on a lock that keeps changing hands.
const ATTEMPTS: usize = 16;

/// Which lock. A command that needs several takes them in one fixed order
/// ([`Repository::lock_all`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockTarget {
    /// One backup of a stanza at a time.
    Backup(StanzaName),
    /// One of expire, stanza-delete, stanza-upgrade of a stanza at a time.
    Maintenance(StanzaName),
    /// Repository-wide: rekey.
    Keys,
}

impl LockTarget {
    /// The fixed order in which a command takes several locks: stanzas by name (backup
    /// before maintenance within one), the repository key lock last.
    fn order(&self) -> (u8, &str, u8) {
        match self {
            LockTarget::Backup(s) => (0, s.as_str(), 0),
            LockTarget::Maintenance(s) => (0, s.as_str(), 1),
            LockTarget::Keys => (1, "", 0),
        }
    }
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTarget::Backup(s) => write!(f, "the backup lock of stanza '{s}'"),
            LockTarget::Maintenance(s) => write!(f, "the maintenance lock of stanza '{s}'"),
            LockTarget::Keys => f.write_str("the repository key lock"),
        }
    }
}

/// Timing of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How often the holder rewrites its heartbeat (at most a quarter of `stale_after`).
    pub heartbeat: Duration,
    /// A lock whose heartbeat is older than this may be taken over. Hosts' clocks must
    /// agree to well within half of it.
    pub stale_after: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            heartbeat: Duration::from_secs(30),
            stale_after: Duration::from_secs(15 * 60),
        }
    }
}

impl LockOptions {
    fn beat_every(&self) -> Duration {
        self.heartbeat
            .min(self.stale_after / 4)
            .max(Duration::from_millis(10))
    }

    /// A holder that could not store a heartbeat for this long gives the lock up: from
    /// `stale_after` on, a contender may take it over.
    fn give_up_after(&self) -> Duration {
        self.stale_after / 2
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LockState {
    Held,
    Lost(String),
}

/// What the heartbeat and the release share; its mutex keeps them from overlapping.
#[derive(Debug)]
struct Beat {
    /// When the last heartbeat that was stored started.
    last_stored: Instant,
    released: bool,
}

#[derive(Debug)]
struct Shared {
    repo: Repository,
    target: LockTarget,
    seq: u64,
    key: ObjectKey,
    opts: LockOptions,
    record: Mutex<LockRecord>,
    beat: tokio::sync::Mutex<Beat>,
    state: watch::Sender<LockState>,
}

impl Shared {
    fn lose(&self, reason: String) -> RepoError {
        self.state.send_replace(LockState::Lost(reason.clone()));
        self.lost(reason)
    }

    fn lost(&self, reason: String) -> RepoError {
        RepoError::LockLost {
            lock: self.target.to_string(),
            reason,
        }
    }

    async fn store(&self, record: &LockRecord) -> Result<(), RepoError> {
        let json = serde_json::to_vec(record).map_err(|e| RepoError::Encode {
            message: e.to_string(),
        })?;
        let encoded = self
            .repo
            .encode_as(ObjectKind::Lock, Identity::of(&self.key), Bytes::from(json))
            .await?;
        Ok(self
            .repo
            .backend()
            .put_overwrite(&self.key, encoded.bytes().clone())
            .await?)
    }

    /// Check that this holder still holds the lock (no higher generation, its own object
    /// unchanged), with `beat` locked. A storage error is returned as is: the lock may
    /// still be held, and the next beat tries again.
    async fn check(&self, beat: &Beat) -> Result<(), RepoError> {
        if beat.released {
            return Err(self.lost("it was released".into()));
        }
        if let LockState::Lost(reason) = &*self.state.borrow() {
            return Err(self.lost(reason.clone()));
        }
        let since = beat.last_stored.elapsed();
        if since >= self.opts.give_up_after() {
            return Err(self.lose(format!(
                "no heartbeat could be stored for {}; from {} on another process may take it over",
                age(since),
                age(self.opts.stale_after)
            )));
        }
        let generations = self.repo.lock_generations(&self.target).await?;
        if let Some((_, key)) = generations.iter().rev().find(|(s, _)| *s > self.seq) {
            let by = match self.repo.read_lock(key).await {
                Ok(Some(r)) => r.holder(),
                _ => "another process".into(),
            };
            return Err(self.lose(format!("it was taken over by {by}")));
        }
        let id = self.record.lock().expect("lock record").id.clone();
        match self.repo.read_lock(&self.key).await {
            Ok(Some(r)) if r.id == id => Ok(()),
            Ok(Some(_)) => Err(self.lose("its lock object now belongs to another holder".into())),
            Ok(None) => Err(self.lose("its lock object was removed".into())),
            Err(e @ RepoError::Backend(_)) => Err(e),
            Err(e) => Err(self.lose(format!("its lock object cannot be read: {e}"))),
        }
    }

    /// One heartbeat: check, then store the record with a new heartbeat time.
    async fn beat(&self) -> Result<(), RepoError> {
        let mut beat = self.beat.lock().await;
        let started = Instant::now();
        self.check(&beat).await?;
        let record = {
            let mut r = self.record.lock().expect("lock record");
            r.heartbeat = now_rfc3339();
            r.clone()
        };
        self.store(&record).await?;
        beat.last_stored = started;
        Ok(())
    }

    /// Mark the generation released, unless it is no longer ours; no beat follows. Even a
    /// holder that gave up (no heartbeat stored for too long) frees what is still its own.
    async fn release(&self) -> Result<(), RepoError> {
        let mut beat = self.beat.lock().await;
        if beat.released {
            return Ok(());
        }
        beat.released = true;
        if matches!(&*self.state.borrow(), LockState::Held) {
            self.state
                .send_replace(LockState::Lost("it was released".into()));
        }
        let generations = self.repo.lock_generations(&self.target).await?;
        if generations.iter().any(|(s, _)| *s > self.seq) {
            return Ok(());
        }
        let id = self.record.lock().expect("lock record").id.clone();
        match self.repo.read_lock(&self.key).await {
            Ok(Some(r)) if r.id == id => {}
            Err(e @ RepoError::Backend(_)) => return Err(e),
            // Gone, someone else's, or unreadable: nothing of ours to release.
            _ => return Ok(()),
        }
        let record = {
            let mut r = self.record.lock().expect("lock record");
            r.released = Some(now_rfc3339());
            r.clone()
        };
        self.store(&record).await
    }
}

/// A view of a held lock for the work done under it: has it been lost?
#[derive(Debug, Clone)]
pub struct LockWatch {
    shared: Arc<Shared>,
    rx: watch::Receiver<LockState>,
}

impl LockWatch {
    pub fn target(&self) -> &LockTarget {
        &self.shared.target
    }

    /// Why the lock was lost, once it has been (as last seen by the heartbeat).
    pub fn lost(&self) -> Option<String> {
        match &*self.rx.borrow() {
            LockState::Held => None,
            LockState::Lost(reason) => Some(reason.clone()),
        }
    }

    /// Resolves when the lock is lost, with the reason (for `select!`).
    pub async fn until_lost(&mut self) -> String {
        loop {
            if let Some(reason) = self.lost() {
                return reason;
            }
            if self.rx.changed().await.is_err() {
                // The guard is gone: the lock is no longer held for this work.
                return self.lost().unwrap_or_else(|| "it was released".into());
            }
        }
    }

    /// The error to return when the lock was lost ([`RepoError::LockLost`]), if it was.
    pub fn check(&self) -> Result<(), RepoError> {
        match self.lost() {
            None => Ok(()),
            Some(reason) => Err(self.shared.lost(reason)),
        }
    }

    /// Make sure, now, against the repository, that the lock is still held (and refresh
    /// its heartbeat): call right before a commit point.
    pub async fn ensure_held(&self) -> Result<(), RepoError> {
        self.shared.beat().await
    }
}

/// A held lock. Release it with [`LockGuard::release`]; dropping it releases it on a best
/// effort basis (only if the runtime lives on long enough).
#[derive(Debug)]
pub struct LockGuard {
    watch: LockWatch,
    stop: Option<watch::Sender<()>>,
    takeover: Option<Takeover>,
}

impl LockGuard {
    fn start(shared: Arc<Shared>, takeover: Option<Takeover>) -> LockGuard {
        let (stop, mut stopped) = watch::channel(());
        let rx = shared.state.subscribe();
        let every = shared.opts.beat_every();
        let beating = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
                // Never cancelled halfway: a write in flight must not land after a release.
                match beating.beat().await {
                    Ok(()) => {}
                    Err(RepoError::LockLost { .. }) => return,
                    // Storage trouble: try again; giving up is decided in `check`.
                    Err(_) => {}
                }
            }
        });
        LockGuard {
            watch: LockWatch { shared, rx },
            stop: Some(stop),
            takeover,
        }
    }

    pub fn target(&self) -> &LockTarget {
        &self.watch.shared.target
    }

    /// The record as stored when the lock was taken.
    pub fn record(&self) -> LockRecord {
        self.watch
            .shared
            .record
            .lock()
            .expect("lock record")
            .clone()
    }

    /// The key of this holder's generation.
    pub fn key(&self) -> &ObjectKey {
        &self.watch.shared.key
    }

    /// Set when the lock was taken over from a gone or stale holder: report it.
    pub fn takeover(&self) -> Option<&Takeover> {
        self.takeover.as_ref()
    }

    pub fn watch(&self) -> LockWatch {
        self.watch.clone()
    }

    /// Release the lock. A lock that was lost meanwhile is left to its new holder.
    pub async fn release(mut self) -> Result<(), RepoError> {
        self.stop.take();
        self.watch.shared.release().await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.stop.take().is_none() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.watch.shared.clone();
            rt.spawn(async move {
                let _ = shared.release().await;
            });
        }
    }
}

impl Repository {
    /// Take `target` for `command`, or fail with [`RepoError::Locked`] naming the holder.
    /// See the module documentation for the rule.
    pub async fn lock(
        &self,
        target: LockTarget,
        command: &str,
        opts: &LockOptions,
    ) -> Result<LockGuard, RepoError> {
        let me = LockOwner::current();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut last_seen = None;
        for _ in 0..ATTEMPTS {
            let generations = self.lock_generations(&target).await?;
            let (seq, previous) = match generations.last() {
                None => (1, None),
                Some((top, key)) => match self.read_lock(key).await {
                    Ok(None) => continue,
                    // A damaged generation tells nothing of its holder (decision 011).
                    Err(e @ (RepoError::Object { .. } | RepoError::Malformed { .. })) => {
                        last_seen = None;
                        let previous = self.damaged_holder(&target, key, &e, opts).await?;
                        (top + 1, Some(previous))
                    }
                    Err(e) => return Err(e),
                    Ok(Some(holder)) => {
                        let heartbeat_age = holder.heartbeat_age(key)?;
                        let reason = if holder.released.is_some() {
                            None
                        } else if let Some(why) = me.proves_gone(&holder.owner) {
                            Some(why)
                        } else if heartbeat_age > opts.stale_after {
                            Some(format!(
                                "its heartbeat is {} old, more than the {} after which a lock is stale",
                                age(heartbeat_age),
                                age(opts.stale_after)
                            ))
                        } else {
                            return Err(RepoError::Locked {
                                holder: Box::new(LockHolder {
                                    lock: target.clone(),
                                    record: Some(holder),
                                    heartbeat_age,
                                    stale_after: opts.stale_after,
                                }),
                            });
                        };
                        let previous = reason.map(|reason| PreviousHolder {
                            id: holder.id.clone(),
                            command: holder.command.clone(),
                            host: holder.owner.host.clone(),
                            pid: holder.owner.pid,
                            started: holder.started.clone(),
                            heartbeat: holder.heartbeat.clone(),
                            reason,
                        });
                        last_seen = Some((holder, heartbeat_age));
                        (top + 1, previous)
                    }
                },
            };
            let now = now_rfc3339();
            let record = LockRecord {
                id: id.clone(),
                command: command.to_string(),
                owner: me.clone(),
                started: now.clone(),
                heartbeat: now,
                version: env!("CARGO_PKG_VERSION").to_string(),
                took_over: previous.clone(),
                released: None,
            };
            let key = layout::lock(&target, seq);
            let started = Instant::now();
            if self.put_json(&key, ObjectKind::Lock, &record).await? == PutOutcome::Exists {
                continue;
            }
            // A contender deciding on an older listing may have created a higher
            // generation meanwhile: then it is the holder, and this one withdraws.
            let after = self.lock_generations(&target).await?;
            if after.iter().any(|(s, _)| *s > seq) {
                self.backend().delete(&key).await?;
                continue;
            }
            for (_, old) in after.iter().filter(|(s, _)| *s < seq) {
                // Superseded; one left behind is deleted by the next holder.
                let _ = self.backend().delete(old).await;
            }
            let shared = Arc::new(Shared {
                repo: self.clone(),
                target: target.clone(),
                seq,
                key,
                opts: *opts,
                record: Mutex::new(record),
                beat: tokio::sync::Mutex::new(Beat {
                    last_stored: started,
                    released: false,
                }),
                state: watch::Sender::new(LockState::Held),
            });
            let takeover = previous.map(|previous| Takeover {
                lock: target.clone(),
                previous,
                heartbeat_age: last_seen.as_ref().map_or(Duration::ZERO, |(_, a)| *a),
            });
            return Ok(LockGuard::start(shared, takeover));
        }
        let (record, heartbeat_age) = match last_seen {
            Some((r, a)) => (Some(r), a),
            None => (None, Duration::ZERO),
        };
        Err(RepoError::Locked {
            holder: Box::new(LockHolder {
                lock: target,
                record,
                heartbeat_age,
                stale_after: opts.stale_after,
            }),
        })
    }

    /// Take several locks in their fixed order ([`LockTarget`]); on a failure, release
    /// the ones already taken.
    pub async fn lock_all(
        &self,
        mut targets: Vec<LockTarget>,
        command: &str,
        opts: &LockOptions,
    ) -> Result<Vec<LockGuard>, RepoError> {
        targets.sort_by(|a, b| a.order().cmp(&b.order()));
        targets.dedup();
        let mut held: Vec<LockGuard> = Vec::new();
        for target in targets {
            match self.lock(target, command, opts).await {
                Ok(g) => held.push(g),
                Err(e) => {
                    while let Some(g) = held.pop() {
                        let _ = g.release().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// The current holder of `target`, if it is held (released generations are free).
    pub async fn lock_holder(&self, target: &LockTarget) -> Result<Option<LockRecord>, RepoError> {
        let Some((_, key)) = self.lock_generations(target).await?.pop() else {
            return Ok(None);
        };
        Ok(self.read_lock(&key).await?.filter(|r| r.released.is_none()))
    }

    /// The generations of a lock, lowest first.
    async fn lock_generations(
        &self,
        target: &LockTarget,
    ) -> Result<Vec<(u64, ObjectKey)>, RepoError> {
        let listed = self
            .backend()
            .list(&layout::lock_prefix(target), None)
            .await?;
        let mut out: Vec<(u64, ObjectKey)> = listed
            .into_iter()
            .filter_map(|l| Some((layout::parse_seq(&l.key)?, ObjectKey::new(l.key).ok()?)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// A generation that cannot be read: its last write stands in for its heartbeat. Older
    /// than `stale_after`, it is taken over (the reason names the damage); newer, its holder
    /// may be alive and rewriting it, so the lock is refused.
    async fn damaged_holder(
        &self,
        target: &LockTarget,
        key: &ObjectKey,
        damage: &RepoError,
        opts: &LockOptions,
    ) -> Result<PreviousHolder, RepoError> {
        let written = self
            .backend()
            .list_modified(&layout::lock_prefix(target))
            .await?
            .into_iter()
            .find(|l| l.key == key.as_str())
            .map(|l| l.modified);
        let written_ago = written
            .and_then(|t| t.elapsed().ok())
            .unwrap_or(Duration::ZERO);
        if written_ago <= opts.stale_after {
            return Err(RepoError::LockDamaged {
                lock: target.to_string(),
                key: key.clone(),
                reason: damage.to_string(),
                written_ago,
                stale_after: opts.stale_after,
            });
        }
        Ok(PreviousHolder {
            id: String::new(),
            command: "(unknown)".into(),
            host: "(unknown)".into(),
            pid: 0,
            started: String::new(),
            heartbeat: String::new(),
            reason: format!(
                "its object {key} is damaged ({damage}) and was last written {} ago, more than \
                 the {} after which a lock is stale",
                age(written_ago),
                age(opts.stale_after)
            ),
        })
    }

    async fn read_lock(&self, key: &ObjectKey) -> Result<Option<LockRecord>, RepoError> {
        self.get_json::<LockRecord>(key, ObjectKind::Lock, "lock")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flipped byte and every truncation of a lock object fails to decode, and a
    /// lock never decodes as another kind (as `object.rs` tests for all kinds).
    #[tokio::test]
    async fn a_damaged_lock_object_never_reads_as_a_lock() {
        let repo = Repository::in_memory().await;
        let target = LockTarget::Backup(StanzaName::new("main").unwrap());
        let guard = repo
            .lock(target, "backup", &LockOptions::default())
            .await
            .unwrap();
        let key = guard.key().clone();
        let good = repo.backend().get(&key).await.unwrap().unwrap();
        assert_eq!(repo.read_lock(&key).await.unwrap(), Some(guard.record()));
        assert!(
            repo.get(&key, ObjectKind::StanzaInfo).await.is_err(),
            "read as another kind"
        );
        for i in 0..good.len() {
            let mut bad = good.to_vec();
            bad[i] ^= 0x01;
            repo.backend()
                .put_overwrite(&key, bad.into())
                .await
                .unwrap();
            assert!(repo.read_lock(&key).await.is_err(), "flip at {i} read");
        }
        for n in 0..good.len() {
            let cut = good.slice(..n);
            repo.backend().put_overwrite(&key, cut).await.unwrap();
            assert!(repo.read_lock(&key).await.is_err(), "cut at {n} read");
        }
    }

    /// A damaged generation says nothing of its holder: refused (exit 11, naming it) while
    /// it was written recently, taken over with a report once older than `stale_after`.
    #[tokio::test]
    async fn a_damaged_generation_is_refused_while_fresh_and_taken_over_when_stale() {
        let repo = Repository::in_memory().await;
        let target = LockTarget::Backup(StanzaName::new("main").unwrap());
        let guard = repo
            .lock(target.clone(), "backup", &LockOptions::default())
            .await
            .unwrap();
        let key = guard.key().clone();
        guard.release().await.unwrap();
        let mut bad = repo.backend().get(&key).await.unwrap().unwrap().to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        repo.backend()
            .put_overwrite(&key, bad.into())
            .await
            .unwrap();
        let Err(e) = repo
            .lock(target.clone(), "backup", &LockOptions::default())
            .await
        else {
            panic!("a fresh damaged generation is refused");
        };
        assert!(matches!(e, RepoError::LockDamaged { .. }), "{e}");
        assert!(e.to_string().contains(key.as_str()), "{e}");
        assert_eq!(
            cairn_exit::Classify::kind(&e),
            cairn_exit::ErrorKind::Locked
        );

        tokio::time::sleep(Duration::from_millis(50)).await;
        let quick = LockOptions {
            heartbeat: Duration::from_secs(30),
            stale_after: Duration::from_millis(20),
        };
        let guard = repo.lock(target, "backup", &quick).await.unwrap();
        assert_eq!(layout::parse_seq(guard.key().as_str()), Some(2));
        let t = guard
            .takeover()
            .expect("the takeover is reported")
            .to_string();
        assert!(t.contains(key.as_str()) && t.contains("damaged"), "{t}");
        assert!(
            repo.backend().get(&key).await.unwrap().is_none(),
            "the damaged generation is removed"
        );
    }

    #[test]
    fn several_locks_are_taken_in_one_order() {
        let a = StanzaName::new("a").unwrap();
        let b = StanzaName::new("b").unwrap();
        let mut v = vec![
            LockTarget::Keys,
            LockTarget::Maintenance(b.clone()),
            LockTarget::Backup(b.clone()),
            LockTarget::Maintenance(a.clone()),
            LockTarget::Backup(a.clone()),
        ];
        v.sort_by(|x, y| x.order().cmp(&y.order()));
        assert_eq!(
            v,
            vec![
                LockTarget::Backup(a.clone()),
                LockTarget::Maintenance(a),
                LockTarget::Backup(b.clone()),
                LockTarget::Maintenance(b),
                LockTarget::Keys,
            ]
        );
    }

    #[test]
    fn heartbeat_is_well_inside_the_stale_timeout() {
        let o = LockOptions {
            heartbeat: Duration::from_secs(60),
            stale_after: Duration::from_secs(40),
        };
        assert_eq!(o.beat_every(), Duration::from_secs(10));
        assert_eq!(o.give_up_after(), Duration::from_secs(20));
        let d = LockOptions::default();
        assert_eq!(d.beat_every(), Duration::from_secs(30));
    }
}
