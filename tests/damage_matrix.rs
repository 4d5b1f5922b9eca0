//! The damage matrix (issue 8, "What must be shown"): one small repository, built once with
//! PostgreSQL 15 on a local repository (a full, changes, an incr, enough WAL for a WAL
//! catalog snapshot, more WAL, a verify record, a released backup lock). Then, for each
//! object kind and each fault (a flipped byte, a truncation, a deletion, another object of
//! the same kind copied over its key), on a fresh copy of that repository:
//!
//! - `cairn verify` exits 6 and names the damaged object's key (or, for what the design
//!   tolerates or does not check, exits as documented below);
//! - `cairn info` still works, and lists a backup whose manifest is damaged as damaged;
//! - a restore that does not need the object works and writes exactly what a restore from
//!   the undamaged repository writes;
//! - a restore (or `cairn-archive-get`) that needs the object fails, naming it, and writes
//!   nothing when the damage is known before writing.
//!
//! Restored directories are compared file by file with restores from the undamaged
//! repository; PostgreSQL is not started on them (backup_restore.rs does that).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_testkit::{PgCluster, TestDir};
use serde_json::Value;
use support::{
    Cairn, RepoSpec, describe, next_segment, segment_of, small_wal_cluster, start_archiving,
    wait_archived, workload,
};

const SEG: u64 = 1 << 20;

/// The repository every case starts from, and what restores of it write.
struct Built {
    dir: TestDir,
    cairn: Cairn,
    pristine: PathBuf,
    full: String,
    incr: String,
    /// A WAL segment after the full's stop and before the incr's start: the full's
    /// recovery needs it, the incr's does not.
    wal_victim: String,
    /// Restores of the undamaged repository, by label.
    reference: BTreeMap<String, PathBuf>,
}

fn build() -> (Built, PgCluster) {
    let dir = TestDir::new().unwrap();
    let mut primary = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    start_archiving(&mut primary, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    workload(&primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    workload(&primary, 3);
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    // Enough WAL files that a reader of the catalog writes a snapshot (64 new entries),
    // then more that only the log holds.
    let mut last = String::new();
    for i in 0..66 {
        primary
            .psql(&format!("INSERT INTO t (v) VALUES ('filler {i}')"))
            .unwrap();
        last = primary
            .psql("SELECT pg_walfile_name(pg_switch_wal())")
            .unwrap();
    }
    wait_archived(&primary, &last);
    cairn.cairn_ok(&["info"]);
    let last = workload(&primary, 2);
    wait_archived(&primary, &last);
    primary.stop().unwrap();
    let out = cairn.run("cairn", &["verify", "--progress", "never"]);
    assert!(out.status.success(), "{}", describe(&out));

    let info = cairn.info_json();
    let backups = info["stanzas"][0]["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 2, "{info:#}");
    let full = backups[0]["label"].as_str().unwrap().to_string();
    let incr = backups[1]["label"].as_str().unwrap().to_string();
    let full_stop = segment_of(backups[0]["stop"]["lsn"].as_str().unwrap(), 1, SEG);
    let wal_victim = next_segment(&full_stop, SEG);
    let incr_start = segment_of(backups[1]["start"]["lsn"].as_str().unwrap(), 1, SEG);
    assert!(wal_victim < incr_start, "{wal_victim} {incr_start}");

    let pristine = dir.path().join("pristine");
    copy_tree(&cairn.repo_dir, &pristine);
    let mut reference = BTreeMap::new();
    for label in [&full, &incr] {
        let target = dir.path().join(format!("reference-{label}"));
        support::restore(&cairn, &target, &["--set", label]);
        reference.insert(label.clone(), target);
    }
    let built = Built {
        dir,
        cairn,
        pristine,
        full,
        incr,
        wal_victim,
        reference,
    };
    (built, primary)
}

/// `cp -a`: modes and owners kept, so cairn (as `postgres`) owns the copy.
fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The faults, each applied to one object of a fresh copy of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Flip,
    Truncate,
    Delete,
    /// Another object of the same kind copied over the victim's key (the source's own
    /// deletion is the `Delete` case).
    Move,
}

const FAULTS: [Fault; 4] = [Fault::Flip, Fault::Truncate, Fault::Delete, Fault::Move];

/// What a case must show.
#[derive(Default)]
struct Expect<'a> {
    /// `verify` exits 6 with a damage problem of this key; `None`: it exits 0 (what the
    /// design tolerates: a deleted cache or history object, healed by its reader).
    named: Option<String>,
    /// Labels `verify` reports as unrestorable.
    unrestorable: Vec<&'a str>,
    /// Labels `info` lists with status damaged.
    info_damaged: Vec<&'a str>,
    /// Something `info`'s warnings must mention.
    info_warns: Option<String>,
    /// Backups whose restore must work and write what the undamaged repository's does.
    restorable: Vec<&'a str>,
    /// A backup whose restore needs the object: it fails naming `named`; `true` when the
    /// damage is known before writing (then nothing is written).
    needs: Option<(&'a str, bool)>,
    /// A WAL file archive-get must refuse (exit 126, naming it, nothing written).
    wal_refused: Option<&'a str>,
    /// `cairn backup --type incr` must still run.
    backup_runs: bool,
}

struct Matrix<'a> {
    b: &'a Built,
    primary: &'a PgCluster,
    cases: usize,
}

impl Matrix<'_> {
    fn repo(&self) -> &Path {
        &self.b.cairn.repo_dir
    }

    /// A fresh copy of the undamaged repository, with `fault` applied to `key`
    /// (`source`: the object of the same kind a move puts there).
    fn damage(&self, key: &str, fault: Fault, source: &str) {
        let repo = self.repo();
        std::fs::remove_dir_all(repo).unwrap();
        copy_tree(&self.b.pristine, repo);
        let path = repo.join(key);
        match fault {
            Fault::Flip => {
                let mut bytes = std::fs::read(&path).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x10;
                std::fs::write(&path, bytes).unwrap();
            }
            Fault::Truncate => {
                let len = std::fs::metadata(&path).unwrap().len();
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }
            Fault::Delete => std::fs::remove_file(&path).unwrap(),
            Fault::Move => {
                assert_ne!(key, source);
                std::fs::copy(repo.join(source), &path).unwrap();
                cairn_testkit::chown_to_postgres(&path).unwrap();
            }
        }
    }

    fn case(&mut self, what: &str, key: &str, fault: Fault, source: &str, e: Expect<'_>) {
        let case = format!("{what} {key}: {fault:?}");
        eprintln!("case {}: {case}", self.cases);
        self.cases += 1;
        self.damage(key, fault, source);
        let cairn = &self.b.cairn;

        // info works, and lists what it must.
        let out = cairn.run("cairn", &["info", "--output", "json"]);
        assert!(out.status.success(), "{case}: info: {}", describe(&out));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let st = &info["stanzas"][0];
        if let Some(w) = &e.info_warns {
            assert!(
                st["warnings"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str().unwrap().contains(w))),
                "{case}: info warns about {w}: {info:#}"
            );
        }
        let text = cairn.run("cairn", &["info"]);
        assert!(text.status.success(), "{case}: info: {}", describe(&text));

        // verify names it, and what it costs.
        let out = cairn.run(
            "cairn",
            &["verify", "--output", "json", "--progress", "never"],
        );
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{case}: verify JSON ({err}): {}", describe(&out)));
        let problems: Vec<&Value> = doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["severity"] == "damage")
            .collect();
        match &e.named {
            Some(named) => {
                assert_eq!(out.status.code(), Some(6), "{case}: {}", describe(&out));
                assert!(
                    problems.iter().any(|p| p["key"] == named.as_str()),
                    "{case}: verify names {named}: {doc:#}"
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("cairn: ERROR: verify stanza main"),
                    "{stderr}"
                );
            }
            None => {
                assert_eq!(out.status.code(), Some(0), "{case}: {}", describe(&out));
                assert!(problems.is_empty(), "{case}: {doc:#}");
            }
        }
        let lost: Vec<&str> = doc["unrestorable"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(lost, e.unrestorable, "{case}: {doc:#}");

        // A damaged manifest is known to info once a reader (here verify) found it.
        let info = cairn.info_json();
        let st = &info["stanzas"][0];
        let damaged: Vec<&str> = st["damaged_backups"]
            .as_array()
            .map(|a| a.iter().map(|d| d["label"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(damaged, e.info_damaged, "{case}: {info:#}");
        for d in st["damaged_backups"].as_array().into_iter().flatten() {
            assert_eq!(d["status"], "damaged", "{case}: {d}");
            assert!(!d["reason"].as_str().unwrap().is_empty(), "{case}: {d}");
        }

        // Restores that do not need it: whole, and the same as from the undamaged copy.
        for label in &e.restorable {
            let target = self.b.dir.path().join("restored");
            let out = cairn.run(
                "cairn",
                &[
                    "restore",
                    "--pg-data",
                    target.to_str().unwrap(),
                    "--set",
                    label,
                ],
            );
            assert!(
                out.status.success(),
                "{case}: restore {label}: {}",
                describe(&out)
            );
            same_tree(&self.b.reference[*label], &target, &case);
            std::fs::remove_dir_all(&target).unwrap();
        }

        // The restore that needs it fails, naming it.
        if let Some((label, up_front)) = e.needs {
            let named = e.named.as_deref().unwrap();
            let target = self.b.dir.path().join("refused");
            let out = cairn.run(
                "cairn",
                &[
                    "restore",
                    "--pg-data",
                    target.to_str().unwrap(),
                    "--set",
                    label,
                ],
            );
            assert_eq!(out.status.code(), Some(6), "{case}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let errors: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("cairn: ERROR: "))
                .collect();
            assert_eq!(errors.len(), 1, "{case}: {stderr}");
            assert!(errors[0].contains(named), "{case}: names {named}: {stderr}");
            assert!(stderr.contains("HINT: "), "{case}: {stderr}");
            if up_front {
                assert!(
                    !target.exists(),
                    "{case}: the refused restore wrote {target:?}"
                );
            } else {
                // Found while reading: the directory is marked and cannot start.
                assert!(
                    target.join("cairn-restore.incomplete").is_file(),
                    "{case}: {stderr}"
                );
                assert!(!target.join("global/pg_control").exists(), "{case}");
                std::fs::remove_dir_all(&target).unwrap();
            }
        }

        if let Some(segment) = e.wal_refused {
            let dest = self.b.dir.path().join("fetched");
            let out = cairn.run("cairn-archive-get", &[segment, dest.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(126), "{case}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(segment), "{case}: {stderr}");
            assert!(!dest.exists(), "{case}: archive-get wrote {dest:?}");
        }

        if e.backup_runs {
            let out = cairn.run("cairn", &["backup", "--type", "incr"]);
            assert!(out.status.success(), "{case}: backup: {}", describe(&out));
            let _ = self.primary;
        }
    }
}

impl Matrix<'_> {
    /// A damaged lock generation: a backup is refused (exit 11, naming it) while the object
    /// is young, and takes the lock over, with a warning naming it, once it is stale.
    fn damaged_lock(&self, key: &str) {
        let cairn = &self.b.cairn;
        let out = cairn.run("cairn", &["backup", "--type", "incr"]);
        assert_eq!(out.status.code(), Some(11), "{key}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("cairn: ERROR: ") && l.contains(key)),
            "{stderr}"
        );
        assert!(stderr.contains("HINT: "), "{stderr}");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(self.repo().join(key))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let out = cairn.run("cairn", &["backup", "--type", "incr"]);
        assert!(out.status.success(), "{key}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("cairn: WARNING: took over") && l.contains(key)),
            "{stderr}"
        );
    }
}

/// The same files, links, directories and modes, with the same contents.
fn same_tree(want: &Path, got: &Path, case: &str) {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>) {
        use std::os::unix::fs::MetadataExt;
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if md.is_dir() {
                out.insert(rel, (md.mode(), None));
                walk(root, &p, out);
            } else if md.file_type().is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.insert(
                    rel,
                    (md.mode(), Some(to.into_os_string().into_encoded_bytes())),
                );
            } else {
                out.insert(rel, (md.mode(), Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    walk(want, want, &mut a);
    walk(got, got, &mut b);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{case}: restored paths differ"
    );
    for (path, entry) in &a {
        assert!(b[path] == *entry, "{case}: {} differs", path.display());
    }
}

/// The keys under `prefix` in the undamaged repository, sorted.
fn keys(b: &Built, prefix: &str) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &key, out);
            } else {
                out.push(key);
            }
        }
    }
    let mut out = Vec::new();
    walk(&b.pristine, "", &mut out);
    out.retain(|k| k.starts_with(prefix));
    out.sort();
    out
}

fn modified(b: &Built, key: &str) -> std::time::SystemTime {
    std::fs::metadata(b.pristine.join(key))
        .unwrap()
        .modified()
        .unwrap()
}

#[test]
fn damage_matrix() {
    let (b, mut primary) = build();
    // Running again for the cases where new backups must still run.
    primary.start().unwrap();
    let mut m = Matrix {
        b: &b,
        primary: &primary,
        cases: 0,
    };
    let (full, incr) = (b.full.as_str(), b.incr.as_str());
    let s = "stanza/main";

    // WAL: the segment after the full's stop. The full's recovery needs it (archive-get
    // refuses it with 126, so PostgreSQL stops instead of promoting); the incr does not.
    let wal = format!("{s}/wal/1/{}/{}", &b.wal_victim[..8], b.wal_victim);
    let wal_next = {
        let n = next_segment(&b.wal_victim, SEG);
        format!("{s}/wal/1/{}/{n}", &n[..8])
    };
    for fault in FAULTS {
        m.case(
            "WAL file",
            &wal,
            fault,
            &wal_next,
            Expect {
                named: Some(wal.clone()),
                restorable: vec![incr],
                wal_refused: Some(&b.wal_victim),
                ..Default::default()
            },
        );
    }

    // The incr's manifest: only the incr is lost; info lists it damaged; the full restores
    // and new backups run.
    let manifest = format!("{s}/backup/{incr}/manifest");
    let full_manifest = format!("{s}/backup/{full}/manifest");
    for fault in FAULTS {
        m.case(
            "manifest",
            &manifest,
            fault,
            &full_manifest,
            Expect {
                named: Some(manifest.clone()),
                unrestorable: vec![incr],
                info_damaged: vec![incr],
                restorable: vec![full],
                needs: Some((incr, true)),
                backup_runs: fault == Fault::Flip,
                ..Default::default()
            },
        );
    }

    // The incr's own pack (written after the full's manifest): the full restores.
    let packs = keys(&b, &format!("{s}/pack/"));
    assert_eq!(packs.len(), 2, "{packs:?}");
    let full_time = modified(&b, &full_manifest);
    let (incr_pack, full_pack) = if modified(&b, &packs[0]) > full_time {
        (&packs[0], &packs[1])
    } else {
        (&packs[1], &packs[0])
    };
    assert!(modified(&b, incr_pack) > full_time && modified(&b, full_pack) < full_time);
    for fault in FAULTS {
        m.case(
            "pack",
            incr_pack,
            fault,
            full_pack,
            Expect {
                named: Some(incr_pack.clone()),
                unrestorable: vec![incr],
                restorable: vec![full],
                needs: Some((incr, false)),
                ..Default::default()
            },
        );
    }

    // Its pack index: no restore reads it; new backups store its chunks again.
    let id = |k: &str| k.rsplit('/').next().unwrap().to_string();
    let incr_index = format!("{s}/pack-index/{}", id(incr_pack));
    let full_index = format!("{s}/pack-index/{}", id(full_pack));
    for fault in FAULTS {
        m.case(
            "pack index",
            &incr_index,
            fault,
            &full_index,
            Expect {
                named: Some(incr_index.clone()),
                restorable: vec![incr],
                backup_runs: fault == Fault::Flip,
                ..Default::default()
            },
        );
    }

    // The WAL catalog snapshot: readers fall back to the log. Deleting a snapshot (a
    // cache) loses nothing and is no damage. Moved: a copy under the next sequence number.
    // `info` reads the WAL index derived from it, not the snapshot: no warning there.
    let snaps = keys(&b, &format!("{s}/journal/wal/snap/"));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0];
    let snap2 = format!("{s}/journal/wal/snap/{:016}", 2);
    for fault in FAULTS {
        let key = if fault == Fault::Move { &snap2 } else { snap };
        m.case(
            "WAL catalog snapshot",
            key,
            fault,
            snap,
            Expect {
                named: (fault != Fault::Delete).then(|| key.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // The WAL index (decision 025): readers pass over it to the whole catalog, with a
    // warning; deleted, it is a cache that is not there yet. Moved: a copy under the next
    // sequence number.
    let indexes = keys(&b, &format!("{s}/journal/wal/index/"));
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let index = &indexes[0];
    let index2 = format!("{s}/journal/wal/index/{:016}", 2);
    for fault in FAULTS {
        let key = if fault == Fault::Move { &index2 } else { index };
        m.case(
            "WAL index",
            key,
            fault,
            index,
            Expect {
                named: (fault != Fault::Delete).then(|| key.clone()),
                info_warns: (fault != Fault::Delete).then(|| key.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // A page of the WAL index: `info` needs it for the recoverable windows, reads the
    // whole catalog instead with a warning naming it, and writes it again, so the
    // `verify` that follows finds nothing wrong. Moved: the index copied over it.
    let pages = keys(&b, &format!("{s}/journal/wal/page/"));
    assert_eq!(pages.len(), 1, "{pages:?}");
    let page = &pages[0];
    for fault in FAULTS {
        m.case(
            "WAL index page",
            page,
            fault,
            index,
            Expect {
                info_warns: Some(page.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // The newest WAL catalog entry (after the snapshot): the file itself is whole, and
    // archive-get still serves it. A deleted entry is not detectable without a listing of
    // the whole archive (decision 018, known limits): not asserted as damage.
    let entries = keys(&b, &format!("{s}/journal/wal/log/"));
    let (entry, before) = (&entries[entries.len() - 1], &entries[entries.len() - 2]);
    for fault in FAULTS {
        m.case(
            "WAL catalog entry",
            entry,
            fault,
            before,
            Expect {
                named: (fault != Fault::Delete).then(|| entry.clone()),
                info_warns: (fault != Fault::Delete).then(|| entry.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // The backup catalog's entry about the incr: the catalog reads the manifest instead
    // and announces it again; both backups stay usable.
    let entries = keys(&b, &format!("{s}/journal/backups/log/"));
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (entry, other) = if entries[0].ends_with(incr) {
        (&entries[0], &entries[1])
    } else {
        (&entries[1], &entries[0])
    };
    for fault in FAULTS {
        m.case(
            "backup catalog entry",
            entry,
            fault,
            other,
            Expect {
                named: (fault != Fault::Delete).then(|| entry.clone()),
                info_warns: (fault != Fault::Delete).then(|| incr.to_string()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // One key file copy: the other is used, with a warning. Moved: generation 1 under the
    // key of a generation 2 (as a rekey killed half-way could leave it): generation 1,
    // the newest with a good copy, stays in force.
    let kf = "keyring/00000001";
    let kf_copy = "keyring/00000001.copy";
    for fault in FAULTS {
        let key = if fault == Fault::Move {
            "keyring/00000002"
        } else {
            kf_copy
        };
        m.case(
            "key file copy",
            key,
            fault,
            kf,
            Expect {
                named: Some(key.to_string()),
                info_warns: Some(key.to_string()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // One stanza info copy: the other is used.
    let si_copy = format!("{s}/info/00000001.copy");
    for fault in [Fault::Flip, Fault::Truncate, Fault::Delete] {
        m.case(
            "stanza info copy",
            &si_copy,
            fault,
            "",
            Expect {
                named: Some(si_copy.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // The record of the last verify: info shows the one before it (none here).
    let records = keys(&b, &format!("{s}/record/verify/"));
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    let later = format!("{s}/record/verify/29991231T000000.000000Z-00000000");
    for fault in FAULTS {
        let key = if fault == Fault::Move { &later } else { record };
        m.case(
            "verify record",
            key,
            fault,
            record,
            Expect {
                named: (fault != Fault::Delete).then(|| key.clone()),
                restorable: vec![incr],
                ..Default::default()
            },
        );
    }

    // The backup lock's newest generation (released). Damaged, it is refused while young
    // (its holder might be alive and rewriting it) and taken over once older than the stale
    // timeout, with a warning naming it. Deleted, the next backup starts a new generation.
    let locks = keys(&b, &format!("{s}/lock/backup/"));
    assert_eq!(locks.len(), 1, "{locks:?}");
    let lock = &locks[0];
    let next = format!("{s}/lock/backup/{:08}", 3);
    for fault in FAULTS {
        let key = if fault == Fault::Move { &next } else { lock };
        m.case(
            "backup lock",
            key,
            fault,
            lock,
            Expect {
                named: (fault != Fault::Delete).then(|| key.clone()),
                restorable: vec![incr],
                backup_runs: fault == Fault::Delete,
                ..Default::default()
            },
        );
        if fault != Fault::Delete {
            m.damaged_lock(key);
        }
    }

    eprintln!("{} cases", m.cases);
    primary.stop().unwrap();
}
