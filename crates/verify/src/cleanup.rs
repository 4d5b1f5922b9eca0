//! The only repairs verify makes: it removes what killed writers left behind, once older
//! than [`crate::VerifyOptions::leftover_age`]: temporary files of the local backend, and
//! WAL repair copies whose main object is whole.

use std::time::SystemTime;

use cairn_pgformat::WalFileName;
use cairn_repo::layout;
use cairn_repo::{DbId, Identity, ObjectKey, ObjectKind, StanzaInfo};

use crate::metadata::stray;
use crate::report::{DamageKind, Effect, EffectKind, ObjectClass, Problem, Removed, Severity};
use crate::wal::WalResults;
use crate::{Run, VerifyError};

pub(crate) async fn run(
    run: &mut Run<'_>,
    info: Option<&StanzaInfo>,
    wal: &WalResults,
) -> Result<(), VerifyError> {
    let age = run.opts.leftover_age;
    for t in run.repo.remove_stale_temps(age).await? {
        run.report.removed.push(Removed {
            key: t.path,
            bytes: t.size,
            reason: format!(
                "temporary file of a writer killed {} minutes ago",
                t.age.as_secs() / 60
            ),
        });
    }
    repair_copies(run, info, wal).await
}

/// `wal-repair/DB/NAME.RAND` -> (DB, NAME).
fn parse_repair_key(rest: &str) -> Option<(DbId, WalFileName)> {
    let (db, file) = rest.split_once('/')?;
    let (name, rand) = file.rsplit_once('.')?;
    if rand.len() != 16 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((DbId(db.parse().ok()?), name.parse().ok()?))
}

async fn repair_copies(
    run: &mut Run<'_>,
    info: Option<&StanzaInfo>,
    wal: &WalResults,
) -> Result<(), VerifyError> {
    let root = layout::wal_repair_root(run.stanza);
    let listed = run.repo.list_modified(&root).await?;
    let now = SystemTime::now();
    for l in listed {
        let parsed = l
            .key
            .strip_prefix(&root)
            .and_then(parse_repair_key)
            .filter(|(db, _)| info.is_none_or(|i| i.generation(*db).is_some()));
        let (Some((db, name)), Ok(side)) = (parsed, ObjectKey::new(l.key.clone())) else {
            stray(run, &l.key);
            continue;
        };
        let main = layout::wal_file(run.stanza, db, &name);
        let side_check = run
            .repo
            .check_object(&side, ObjectKind::WalFile, &Identity::of(&main))
            .await?;
        run.read(side_check.bytes);
        let main_good = match wal.good.get(&main) {
            Some(g) => *g,
            None => {
                let c = run
                    .repo
                    .check_object(&main, ObjectKind::WalFile, &Identity::of(&main))
                    .await?;
                run.read(c.bytes);
                match (&c.result, &side_check.result) {
                    (Ok(m), Ok(s)) => m.content_id == s.content_id,
                    (Ok(_), Err(_)) => true,
                    (Err(_), _) => false,
                }
            }
        };
        let old = now.duration_since(l.modified).unwrap_or_default() > run.opts.leftover_age;
        if main_good {
            if old {
                run.repo.delete(&side).await?;
                run.report.removed.push(Removed {
                    key: l.key,
                    bytes: l.size,
                    reason: format!(
                        "copy left by an interrupted repair of {name}; the main object is whole"
                    ),
                });
            }
            continue;
        }
        let problem = match &side_check.result {
            Ok(_) => Problem {
                severity: Severity::Warning,
                object: ObjectClass::WalRepairCopy,
                key: l.key,
                damage: DamageKind::Leftover,
                detail: format!("a whole copy of {name}, whose main object is not whole"),
                affects: vec![Effect::new(
                    EffectKind::Nothing,
                    format!(
                        "kept: archive-get serves it while {main} is missing; pushing {name} \
                         again replaces the damaged main object"
                    ),
                )],
            },
            Err(d) => Problem::damage(ObjectClass::WalRepairCopy, l.key, d).with(Effect::new(
                EffectKind::Nothing,
                format!("no whole copy of {name} is left in wal-repair"),
            )),
        };
        run.problem(problem);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_keys_parse() {
        let (db, name) = parse_repair_key("1/000000010000000000000003.00000000deadbeef").unwrap();
        assert_eq!(db, DbId(1));
        assert_eq!(name.to_string(), "000000010000000000000003");
        let (_, name) =
            parse_repair_key("2/000000010000000000000003.partial.0123456789abcdef").unwrap();
        assert_eq!(name.to_string(), "000000010000000000000003.partial");
        assert!(parse_repair_key("1/000000010000000000000003").is_none());
        assert!(parse_repair_key("x/000000010000000000000003.0123456789abcdef").is_none());
    }
}
