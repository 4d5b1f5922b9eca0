//! What `keep-monthly = 36` costs: 36 full backups of one database with a month's worth of
//! changes between them (new rows, updates among recent ones; old rows frozen). Content addressing stores each unchanged chunk once, so the
//! repository holds little more than one full copy plus the changes. The numbers are
//! printed (run with `--nocapture`) and bounded.

#[path = "expire_support/mod.rs"]
mod expire_support;
mod support;

use cairn_testkit::TestDir;
use expire_support::{Store, backup};
use support::{small_wal_cluster, start_archiving};

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

#[test]
fn pg15_what_36_monthly_fulls_cost() {
    let dir = TestDir::with_prefix("retention-cost").unwrap();
    let mut pg = small_wal_cluster(15, &dir);
    let cairn = Store::Local.cairn(&dir, &pg);
    start_archiving(&mut pg, &cairn);
    cairn.cairn_ok(&["stanza-create"]);
    // A database of ~30 MiB: random text, so chunks compress like real data.
    pg.psql("CREATE TABLE t (id bigserial PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    pg.psql("INSERT INTO t (v) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 150000)")
        .unwrap();
    // Old rows settle: frozen, hint bits set, as in a database that has run for a while.
    pg.psql("VACUUM FREEZE t").unwrap();
    for month in 0..36 {
        // A month of changes: new rows, and updates among the recent ones.
        pg.psql(&format!(
            "INSERT INTO t (v) SELECT md5(random()::text) FROM generate_series(1, 2000); \
             UPDATE t SET v = md5(v) WHERE id > (SELECT max(id) - 4000 FROM t) AND id % 10 = {}",
            month % 10
        ))
        .unwrap();
        backup(&cairn, &["--type", "full"]);
    }
    let doc = cairn.info_json();
    let backups = doc["stanzas"][0]["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 36);
    let sum = |f: &str| backups.iter().map(|b| b[f].as_u64().unwrap()).sum::<u64>();
    let (db_total, added_total) = (sum("db_size"), sum("repo_added"));
    let one_copy = backups.last().unwrap()["repo_size"].as_u64().unwrap();
    let packs: u64 = Store::Local
        .objects(&cairn)
        .iter()
        .filter(|(k, _)| k.starts_with("stanza/main/pack/"))
        .map(|(_, s)| s)
        .sum();
    let repo = Store::Local.bytes(&cairn);
    eprintln!(
        "36 full backups of a {:.1} MiB database: {:.1} MiB read in total; one backup alone \
         stores {:.1} MiB; the repository holds {:.1} MiB of packs ({:.1} MiB in all, WAL \
         included), {:.2} times one backup, {:.1}% of 36 separate copies; the backups added \
         {:.1} MiB",
        mib(backups[0]["db_size"].as_u64().unwrap()),
        mib(db_total),
        mib(one_copy),
        mib(packs),
        mib(repo),
        packs as f64 / one_copy as f64,
        100.0 * packs as f64 / (36.0 * one_copy as f64),
        mib(added_total),
    );
    assert_eq!(
        packs, added_total,
        "the packs hold exactly what the backups added"
    );
    assert!(
        packs < 3 * one_copy,
        "36 fulls take {packs} bytes of packs, one takes {one_copy}"
    );
    pg.stop().unwrap();
}
