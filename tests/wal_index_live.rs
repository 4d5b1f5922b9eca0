//! The WAL index kept current by its readers, against a real PostgreSQL 15 (decision 025):
//! once 64 or more segments have been archived since the index, `cairn info` writes the
//! next index from the pages the new segments touch, without a snapshot; it shows every
//! segment, and a restore to a time between two commits inside the new segments lands
//! exactly.

mod support;

use std::path::Path;

use cairn_testkit::{PgCluster, TestDir};
use support::Cairn;

/// Object names under `journal/wal/<what>/` of stanza `main`.
fn journal(repo: &Path, what: &str) -> Vec<String> {
    let dir = repo.join("stanza/main/journal/wal").join(what);
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `n` transactions of one row each, a WAL switch after each; waits until all are archived.
fn commits_and_switches(pg: &PgCluster, n: usize) {
    pg.psql(&format!(
        "DO $$ BEGIN FOR i IN 1..{n} LOOP INSERT INTO r DEFAULT VALUES; COMMIT; \
         PERFORM pg_switch_wal(); COMMIT; END LOOP; END $$"
    ))
    .unwrap();
    let last = pg.psql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    support::wait_archived(pg, &last);
}

/// Archived segments per timeline, from `info --output json`.
fn segments(cairn: &Cairn) -> u64 {
    let info = cairn.info_json();
    info["stanzas"][0]["archive"]
        .as_array()
        .unwrap_or_else(|| panic!("{info:#}"))
        .iter()
        .map(|t| {
            t["ranges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["segments"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn pg15_info_extends_the_index_and_a_restore_lands_inside_the_new_segments() {
    let dir = TestDir::new().unwrap();
    let (primary, cairn) = support::commit_log_cluster(&dir);
    cairn.cairn_ok(&["backup", "--type", "full"]);

    // 70 entries: this info folds the whole catalog and writes snapshot and index 1.
    commits_and_switches(&primary, 70);
    cairn.cairn_ok(&["info"]);
    let (snaps, indexes) = (
        journal(&cairn.repo_dir, "snap"),
        journal(&cairn.repo_dir, "index"),
    );
    assert_eq!(
        (snaps.len(), indexes.len()),
        (1, 1),
        "{snaps:?} {indexes:?}"
    );
    let before = segments(&cairn);

    // 70 more: this info extends the index instead.
    commits_and_switches(&primary, 70);
    let archived = segments(&cairn);
    assert!(archived >= before + 70, "{before} then {archived}");
    assert_eq!(
        journal(&cairn.repo_dir, "snap"),
        snaps,
        "no snapshot written"
    );
    let after = journal(&cairn.repo_dir, "index");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after[1] > indexes[0], "{after:?}");
    // A reader of the new index has nothing left to fold and sees the same archive.
    assert_eq!(segments(&cairn), archived);
    assert_eq!(journal(&cairn.repo_dir, "index"), after);

    // A time between rows 120 and 121: inside the segments the new index paged.
    let at = |id: u32| {
        primary
            .psql(&format!(
                "SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD HH24:MI:SS.US') FROM r WHERE id = {id}"
            ))
            .unwrap()
    };
    let target = format!("{}+00", at(120));
    assert!(at(121) > at(120));
    let data = dir.path().join("restored");
    support::restore(
        &cairn,
        &data,
        &["--target-time", &target, "--target-action", "promote"],
    );
    let mut pg =
        support::start_restored(&dir, &primary, &data, false, support::Recovered::Promoted);
    assert_eq!(pg.psql("SELECT max(id) FROM r").unwrap(), "120");
    pg.stop().unwrap();
}
