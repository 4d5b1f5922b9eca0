//! The small objects everything else depends on: key files, stanza info, the journals
//! (catalog snapshots and entries) and records.

use cairn_pgformat::WalFileName;
use cairn_repo::catalog::WalState;
use cairn_repo::layout::{self, records_prefix};
use cairn_repo::lock::LockTarget;
use cairn_repo::{
    BackupEvent, CopyCheck, Damage, Identity, JournalCheck, JournalName, ObjectKey, ObjectKind,
    RepoError, StanzaInfo, WalCatalog, WalEvent,
};

use crate::report::{DamageKind, Effect, EffectKind, ObjectClass, Problem, Severity};
use crate::{Run, VerifyError};

/// Both copies of every key file generation.
pub(crate) async fn key_files(run: &mut Run<'_>) -> Result<(), VerifyError> {
    let copies = run.repo.check_key_files().await?;
    run.report.checked.key_files = copies.len() as u64;
    for c in &copies {
        run.read(c.bytes);
    }
    copy_problems(run, &copies, ObjectClass::KeyFile, "key file", || {
        "the repository cannot be opened: no object can be read".into()
    });
    for &seq in run.repo.older_key_generations() {
        run.problem(Problem {
            severity: Severity::Warning,
            object: ObjectClass::KeyFile,
            key: layout::key_file(seq, false).to_string(),
            damage: DamageKind::Leftover,
            detail: format!(
                "key file generation {seq} is still present although generation {} is in force \
                 (a rekey did not finish removing it)",
                run.repo.key_generation()
            ),
            affects: vec![Effect::new(
                EffectKind::Nothing,
                "it still holds the master key under the previous passphrase: whoever knows that \
                 passphrase can read the repository",
            )],
        });
    }
    Ok(())
}

/// Both copies of every stanza info generation; returns the info in force, if readable.
pub(crate) async fn stanza_info(run: &mut Run<'_>) -> Result<Option<StanzaInfo>, VerifyError> {
    let copies = run.repo.check_stanza_info(run.stanza).await?;
    if copies.is_empty() {
        return Err(RepoError::NoStanza {
            stanza: run.stanza.to_string(),
        }
        .into());
    }
    run.report.checked.stanza_info = copies.len() as u64;
    for c in &copies {
        run.read(c.bytes);
    }
    let stanza = run.stanza.to_string();
    copy_problems(run, &copies, ObjectClass::StanzaInfo, "stanza info", || {
        format!(
            "stanza {stanza} cannot be used: info, backup, restore and archive-get all need its info"
        )
    });
    match run.repo.stanza_info(run.stanza).await {
        Ok(info) => Ok(info),
        Err(RepoError::StanzaInfoDamaged { .. }) => {
            run.report.notes.push(
                "backups were not checked against their cluster generation: no copy of the \
                 stanza info is whole"
                    .into(),
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Problems for damaged copies; `lost` says what losing both copies in force costs.
fn copy_problems(
    run: &mut Run<'_>,
    copies: &[CopyCheck],
    class: ObjectClass,
    what: &str,
    lost: impl Fn() -> String,
) {
    for c in copies {
        let Some(d) = &c.damage else { continue };
        let other_good = copies
            .iter()
            .any(|o| o.generation == c.generation && o.copy != c.copy && o.damage.is_none());
        let effect = if !c.in_force {
            Effect::new(
                EffectKind::Nothing,
                format!(
                    "{what} generation {} is not in force; nothing reads it",
                    c.generation
                ),
            )
        } else if other_good {
            Effect::new(
                EffectKind::Redundancy,
                format!(
                    "{what} copy damaged: the other copy of generation {} is in use; \
                     there is no second copy left",
                    c.generation
                ),
            )
        } else {
            Effect::new(EffectKind::Stanza, lost())
        };
        run.problem(Problem::damage(class, c.key.to_string(), d).with(effect));
    }
}

/// Every snapshot and entry of the `wal` and `backups` journals.
pub(crate) async fn journals(
    run: &mut Run<'_>,
    catalog: &WalCatalog,
    info: Option<&StanzaInfo>,
) -> Result<(), VerifyError> {
    let progress = run.opts.progress.clone();
    let count = move |bytes: u64| progress.object(bytes);
    let wal = run
        .repo
        .check_journal::<WalState, WalEvent>(run.stanza, JournalName::Wal, &count)
        .await?;
    let backups = run
        .repo
        .check_journal::<serde_json::Value, BackupEvent>(run.stanza, JournalName::Backups, &count)
        .await?;
    for (name, j) in [("WAL", &wal), ("backup", &backups)] {
        tally(run, j);
        for (key, _, damage) in &j.snapshots {
            let Some(d) = damage else { continue };
            run.problem(
                Problem::damage(ObjectClass::JournalSnapshot, key.to_string(), d).with(
                    Effect::new(
                        EffectKind::Catalog,
                        format!(
                            "readers of the {name} catalog fall back to an older snapshot or \
                             rebuild it from the log: nothing is lost (a snapshot is a cache of \
                             the log, safe to delete)"
                        ),
                    ),
                ),
            );
        }
    }
    let index = run.repo.check_wal_index(run.stanza, &count).await?;
    for (key, bytes, damage) in &index.objects {
        let c = &mut run.report.checked;
        c.journal_snapshots += 1;
        c.objects += 1;
        c.bytes += bytes;
        let Some(d) = damage else { continue };
        run.problem(
            Problem::damage(ObjectClass::JournalSnapshot, key.to_string(), d).with(Effect::new(
                EffectKind::Catalog,
                "readers of the WAL catalog fall back to an older index or to the whole \
                 catalog: nothing is lost, only speed (the WAL index is a cache of a snapshot, \
                 safe to delete; the next snapshot writes a new one)"
                    .to_string(),
            )),
        );
    }
    for e in &wal.damaged_entries {
        let effect = wal_entry_effect(run, catalog, info, &e.tag).await?;
        run.problem(
            Problem::damage(ObjectClass::JournalEntry, e.key.to_string(), &e.damage).with(effect),
        );
    }
    for e in &backups.damaged_entries {
        run.problem(
            Problem::damage(ObjectClass::JournalEntry, e.key.to_string(), &e.damage).with(
                Effect::new(
                    EffectKind::Catalog,
                    format!("the backup catalog cannot read its entry about {}", e.tag),
                ),
            ),
        );
    }
    Ok(())
}

fn tally(run: &mut Run<'_>, j: &JournalCheck) {
    let c = &mut run.report.checked;
    c.journal_snapshots += j.snapshots.len() as u64;
    c.journal_entries += j.entries;
    let bytes: u64 = j.snapshots.iter().map(|s| s.1).sum::<u64>() + j.entry_bytes;
    c.objects += j.snapshots.len() as u64 + j.entries;
    c.bytes += bytes;
}

/// What an unreadable `wal` journal entry about `tag` costs.
async fn wal_entry_effect(
    run: &Run<'_>,
    catalog: &WalCatalog,
    info: Option<&StanzaInfo>,
    tag: &str,
) -> Result<Effect, VerifyError> {
    let Ok(name) = tag.parse::<WalFileName>() else {
        return Ok(Effect::new(
            EffectKind::Catalog,
            format!(
                "an expiry record ({tag}) is unreadable: the catalog may still list WAL that \
                 expire removed"
            ),
        ));
    };
    if catalog.entries().any(|e| e.name == tag) {
        return Ok(Effect::new(
            EffectKind::Catalog,
            format!(
                "a snapshot still holds the summary of {tag}; a catalog rebuilt from the log \
                 would lack it"
            ),
        ));
    }
    // Is the file itself stored and whole, in any cluster generation?
    let mut stored = false;
    for g in info.into_iter().flat_map(|i| i.newest_first()) {
        let key = layout::wal_file(run.stanza, g.db_id, &name);
        let c = run
            .repo
            .check_object(&key, ObjectKind::WalFile, &Identity::of(&key))
            .await?;
        if c.result.is_ok() {
            stored = true;
            break;
        }
    }
    let file = if stored {
        "the file itself is stored and whole"
    } else {
        "the file itself is not stored intact either"
    };
    Ok(Effect {
        segment: Some(tag.to_string()),
        timeline: Some(name.timeline().0),
        ..Effect::new(
            EffectKind::Catalog,
            format!(
                "{tag} is not in the WAL catalog ({file}): info and restore do not see it, \
                 so recovery stops before it"
            ),
        )
    })
}

/// Every record of the stanza (verify results, drills, jobs) decodes.
pub(crate) async fn records(run: &mut Run<'_>) -> Result<(), VerifyError> {
    let listed = run.repo.list(&records_prefix(run.stanza)).await?;
    for l in listed {
        let Ok(key) = ObjectKey::new(l.key.clone()) else {
            stray(run, &l.key);
            continue;
        };
        let c = run
            .repo
            .check_object(&key, ObjectKind::Record, &Identity::of(&key))
            .await?;
        run.read(c.bytes);
        run.report.checked.records += 1;
        let damage = match c.result {
            Err(Damage::Missing) => continue,
            Err(d) => d,
            Ok(d) => match serde_json::from_slice::<serde_json::Value>(&d.plaintext) {
                Ok(_) => continue,
                Err(e) => Damage::Content(format!("not a record: {e}")),
            },
        };
        run.problem(
            Problem::damage(ObjectClass::Record, key.to_string(), &damage).with(Effect::new(
                EffectKind::Nothing,
                "info and metrics show the record before it",
            )),
        );
    }
    Ok(())
}

/// The stanza's lock generations and the repository's keys lock decode: a damaged one is
/// refused by the next command that takes the lock until it is stale (decision 011).
pub(crate) async fn locks(run: &mut Run<'_>) -> Result<(), VerifyError> {
    let targets = [
        LockTarget::Backup(run.stanza.clone()),
        LockTarget::Maintenance(run.stanza.clone()),
        LockTarget::Keys,
    ];
    for target in targets {
        let prefix = layout::lock_prefix(&target);
        for l in run.repo.list(&prefix).await? {
            let Ok(key) = ObjectKey::new(l.key.clone()) else {
                stray(run, &l.key);
                continue;
            };
            let c = run
                .repo
                .check_object(&key, ObjectKind::Lock, &Identity::of(&key))
                .await?;
            run.read(c.bytes);
            let damage = match c.result {
                Err(Damage::Missing) => continue,
                Err(d) => d,
                Ok(d) => match serde_json::from_slice::<serde_json::Value>(&d.plaintext) {
                    Ok(_) => continue,
                    Err(e) => Damage::Content(format!("not a lock: {e}")),
                },
            };
            run.problem(
                Problem::damage(ObjectClass::Lock, key.to_string(), &damage).with(Effect::new(
                    EffectKind::Nothing,
                    format!(
                        "{target} is refused while this object was written less than the stale \
                         timeout ago, then taken over with a warning; no data depends on it"
                    ),
                )),
            );
        }
    }
    Ok(())
}

/// A name in the repository that is not one cairn writes.
pub(crate) fn stray(run: &mut Run<'_>, key: &str) {
    run.problem(Problem {
        severity: Severity::Warning,
        object: ObjectClass::Stray,
        key: key.to_string(),
        damage: DamageKind::Leftover,
        detail: "not a name cairn writes".into(),
        affects: vec![Effect::new(EffectKind::Nothing, "nothing reads it")],
    });
}
