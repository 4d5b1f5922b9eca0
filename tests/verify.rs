//! `cairn verify` end to end against PostgreSQL 15, on a local repository and on the moto S3
//! server: a clean repository exits 0 (text and JSON); then, one at a time and undone after,
//! a flipped byte in a pack, a deleted WAL segment, a truncated manifest, damaged key file and
//! stanza info copies, a WAL object copied over another's key, and `--set` limited to one
//! backup. Each damaged run exits 6 naming the object and what it costs; `info` keeps working.

mod support;

use std::path::{Path, PathBuf};

use cairn_testkit::{PgCluster, S3Server, TestDir};
use serde_json::Value;
use support::{
    Cairn, RepoSpec, describe, next_segment, segment_of, small_wal_cluster, start_archiving,
    wait_archived, workload,
};

const SEG: u64 = 1 << 20;

/// Raw access to the repository's objects, to damage and repair them behind cairn's back.
trait Store {
    fn get(&self, key: &str) -> Vec<u8>;
    /// Write (or overwrite) `key`, readable by cairn.
    fn put(&self, key: &str, bytes: &[u8]);
    fn delete(&self, key: &str);
    fn list(&self, prefix: &str) -> Vec<String>;
}

struct LocalStore(PathBuf);

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() {
            name.clone()
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

impl Store for LocalStore {
    fn get(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.0.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.0.join(key);
        std::fs::write(&path, bytes).unwrap();
        cairn_testkit::chown_to_postgres(&path).unwrap();
    }
    fn delete(&self, key: &str) {
        std::fs::remove_file(self.0.join(key)).unwrap();
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.0, "", &mut out);
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        out
    }
}

/// The bucket under the prefix `cairn-test/` that support::Cairn configures.
struct S3Store<'a>(&'a S3Server);

const S3_PREFIX: &str = "cairn-test/";

impl Store for S3Store<'_> {
    fn get(&self, key: &str) -> Vec<u8> {
        self.0
            .get_object(&format!("{S3_PREFIX}{key}"))
            .unwrap()
            .unwrap_or_else(|| panic!("{key} is not in the bucket"))
    }
    fn put(&self, key: &str, bytes: &[u8]) {
        self.0
            .put_object(&format!("{S3_PREFIX}{key}"), bytes)
            .unwrap();
    }
    fn delete(&self, key: &str) {
        self.0.delete_object(&format!("{S3_PREFIX}{key}")).unwrap();
    }
    fn list(&self, prefix: &str) -> Vec<String> {
        self.0
            .list_keys(&format!("{S3_PREFIX}{prefix}"))
            .unwrap()
            .into_iter()
            .map(|k| k[S3_PREFIX.len()..].to_string())
            .collect()
    }
}

/// `cairn verify ARGS --output json --progress never`: exit code, document, stderr.
fn verify_json(cairn: &Cairn, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["verify", "--output", "json", "--progress", "never"];
    all.extend_from_slice(args);
    let out = cairn.run("cairn", &all);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify JSON does not parse ({e}): {}", describe(&out)));
    (
        out.status.code().unwrap(),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn damage(doc: &Value) -> Vec<&Value> {
    doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == "damage")
        .collect()
}

/// A damaged run: exit 6, status damaged, one `cairn: ERROR` summary line on stderr.
fn assert_damaged(code: i32, doc: &Value, err: &str) {
    assert_eq!(code, 6, "{doc:#}\n{err}");
    assert_eq!(doc["status"], "damaged");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("cairn: ERROR: verify stanza main"))
            .count(),
        1,
        "{err}"
    );
}

fn flip(store: &dyn Store, key: &str, at: usize) -> Vec<u8> {
    let original = store.get(key);
    let mut b = original.clone();
    b[at] ^= 0x10;
    store.put(key, &b);
    original
}

fn wal_key(segment: &str) -> String {
    format!("stanza/main/wal/1/{}/{segment}", &segment[..8])
}

fn scenario(dir: &TestDir, primary: &mut PgCluster, cairn: &Cairn, store: &dyn Store) {
    start_archiving(primary, cairn);
    cairn.cairn_ok(&["stanza-create"]);
    workload(primary, 2);
    cairn.cairn_ok(&["backup", "--type", "full"]);
    workload(primary, 3);
    cairn.cairn_ok(&["backup", "--type", "incr"]);
    let last = workload(primary, 2);
    wait_archived(primary, &last);
    let info = cairn.info_json();
    let backups = info["stanzas"][0]["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 2);
    let full = backups[0]["label"].as_str().unwrap().to_string();
    let incr = backups[1]["label"].as_str().unwrap().to_string();

    // Clean: exit 0, in text (the summary line last) and in JSON.
    let out = cairn.run("cairn", &["verify", "--progress", "never"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("verify stanza main: ") && summary.ends_with(": ok"),
        "{text}"
    );
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_eq!(code, 0, "{doc:#}\n{err}");
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 0, "{doc:#}");
    let checked = &doc["checked"];
    assert_eq!(checked["manifests"], 2);
    assert_eq!(checked["key_files"], 2);
    assert_eq!(checked["stanza_info"], 2);
    assert!(checked["packs"].as_u64().unwrap() >= 1, "{checked}");
    assert!(checked["chunks"].as_u64().unwrap() > 100, "{checked}");
    assert!(checked["wal_files"].as_u64().unwrap() >= 7, "{checked}");
    assert!(
        err.contains(": ok"),
        "the summary goes to stderr with JSON: {err}"
    );
    let last_verify = &cairn.info_json()["stanzas"][0]["last_verify"];
    assert_eq!(last_verify["status"], "ok", "{last_verify}");
    assert_eq!(last_verify["objects"], checked["objects"]);
    assert!(
        cairn.cairn_ok(&["info"]).contains("last verify: ok at "),
        "info shows the last verify"
    );

    // A flipped byte in a pack: named, with the backups it costs.
    let pack = store.list("stanza/main/pack/").into_iter().next().unwrap();
    let len = store.get(&pack).len();
    let original = flip(store, &pack, len / 2);
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_damaged(code, &doc, &err);
    let d = damage(&doc);
    let p = d.iter().find(|p| p["object"] == "pack").unwrap();
    assert_eq!(p["key"], pack.as_str());
    let lost: Vec<&str> = doc["unrestorable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(!lost.is_empty(), "{doc:#}");
    for l in &lost {
        assert!(*l == full || *l == incr, "{l}");
        assert!(err.contains(l), "the summary names {l}: {err}");
    }
    let info = cairn.info_json();
    assert_eq!(
        info["stanzas"][0]["last_verify"]["status"], "damaged",
        "info still works and shows it"
    );
    store.put(&pack, &original);

    // A deleted WAL segment between the two backups: named, with where recovery stops.
    let full_stop = segment_of(backups[0]["stop"]["lsn"].as_str().unwrap(), 1, SEG);
    let gone = next_segment(&full_stop, SEG);
    let incr_start = segment_of(backups[1]["start"]["lsn"].as_str().unwrap(), 1, SEG);
    assert!(gone < incr_start, "{gone} {incr_start}");
    let key = wal_key(&gone);
    let original = store.get(&key);
    store.delete(&key);
    let out = cairn.run("cairn", &["verify", "--progress", "never"]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&gone),
        "{}",
        describe(&out)
    );
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_damaged(code, &doc, &err);
    let p = damage(&doc)
        .into_iter()
        .find(|p| p["object"] == "wal-file")
        .unwrap();
    assert_eq!(
        (p["key"].as_str(), p["damage"].as_str()),
        (Some(key.as_str()), Some("missing"))
    );
    let window = p["affects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "recovery-window")
        .unwrap_or_else(|| panic!("{p:#}"));
    assert_eq!(window["segment"], gone.as_str());
    assert_eq!(window["timeline"], 1);
    store.put(&key, &original);

    // A truncated manifest: named with its backup; info still works.
    let manifest = format!("stanza/main/backup/{incr}/manifest");
    let original = store.get(&manifest);
    store.put(&manifest, &original[..original.len() / 2]);
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_damaged(code, &doc, &err);
    let d = damage(&doc);
    assert_eq!(d.len(), 1, "{doc:#}");
    assert_eq!(
        (d[0]["object"].as_str(), d[0]["key"].as_str()),
        (Some("manifest"), Some(manifest.as_str()))
    );
    assert_eq!(doc["unrestorable"], serde_json::json!([incr]));
    assert!(err.contains(&incr), "{err}");
    cairn.info_json();

    // --set: only that backup. The full is whole; the incr is not.
    let (code, doc, err) = verify_json(cairn, &["--set", &full]);
    assert_eq!(code, 0, "{doc:#}\n{err}");
    assert_eq!(doc["set"], full.as_str());
    assert_eq!(doc["checked"]["manifests"], 1);
    assert_eq!(doc["checked"]["backups"], 1);
    let (code, doc, err) = verify_json(cairn, &["--set", &incr]);
    assert_damaged(code, &doc, &err.replace(&format!("backup {incr} of "), ""));
    let out = cairn.run("cairn", &["verify", "--set", "20200101-000000F"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    store.put(&manifest, &original);

    // Damaged second copies of the key file and the stanza info: named, the rest works.
    let kf = "keyring/00000001.copy";
    let original_kf = store.get(kf);
    let mut b = original_kf.clone();
    let at = b.windows(7).position(|w| w == b"\"check\"").unwrap() + 12;
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    store.put(kf, &b);
    let si = "stanza/main/info/00000001.copy";
    let original_si = flip(store, si, 140);
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_damaged(code, &doc, &err);
    let d = damage(&doc);
    assert_eq!(d.len(), 2, "{doc:#}");
    for (object, key) in [("key-file", kf), ("stanza-info", si)] {
        let p = d.iter().find(|p| p["object"] == object).unwrap();
        assert_eq!(p["key"], key);
        assert_eq!(p["affects"][0]["kind"], "redundancy", "{p:#}");
    }
    assert_eq!(doc["unrestorable"], serde_json::json!([]));
    cairn.info_json();
    let target = dir.path().join("restored-dry-run");
    cairn.cairn_ok(&[
        "restore",
        "--pg-data",
        target.to_str().unwrap(),
        "--dry-run",
    ]);
    store.put(kf, &original_kf);
    store.put(si, &original_si);

    // A WAL object copied over another's key: misplaced.
    let victim = wal_key(&incr_start);
    let original = store.get(&victim);
    store.put(&victim, &store.get(&wal_key(&gone)));
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_damaged(code, &doc, &err);
    let d = damage(&doc);
    assert_eq!(d.len(), 1, "{doc:#}");
    assert_eq!(
        (d[0]["key"].as_str(), d[0]["damage"].as_str()),
        (Some(victim.as_str()), Some("misplaced"))
    );
    assert_eq!(
        doc["unrestorable"],
        serde_json::json!([incr]),
        "the incr needs it"
    );
    store.put(&victim, &original);

    // Everything undone: clean again.
    let (code, doc, err) = verify_json(cairn, &[]);
    assert_eq!(code, 0, "{doc:#}\n{err}");
}

#[test]
fn verify_on_a_local_repository() {
    let dir = TestDir::new().unwrap();
    let mut primary = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(&dir, &primary, RepoSpec::Local);
    let store = LocalStore(cairn.repo_dir.clone());
    scenario(&dir, &mut primary, &cairn, &store);

    // A killed writer's temporary file, two hours old: removed and reported.
    let pack_dir = cairn.repo_dir.join("stanza/main/pack");
    let sub = std::fs::read_dir(&pack_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let stale = sub.join(".tmp.0123.4242.00000000000000ff");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let fresh = sub.join(".tmp.0123.4243.00000000000000fe");
    std::fs::write(&fresh, b"being written").unwrap();
    let (code, doc, err) = verify_json(&cairn, &[]);
    assert_eq!(code, 0, "{doc:#}\n{err}");
    let removed = doc["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{doc:#}");
    assert!(
        removed[0]["key"]
            .as_str()
            .unwrap()
            .ends_with(".tmp.0123.4242.00000000000000ff")
    );
    assert_eq!(removed[0]["bytes"], 4096);
    assert!(!stale.exists() && fresh.exists());
    primary.stop().unwrap();
}

#[test]
fn verify_on_s3() {
    let dir = TestDir::new().unwrap();
    let s3 = S3Server::start().unwrap();
    let mut primary = small_wal_cluster(15, &dir);
    let cairn = Cairn::new(
        &dir,
        &primary,
        RepoSpec::S3 {
            endpoint: &s3.endpoint(),
            bucket: s3.bucket(),
            access_key: s3.access_key_id(),
            secret_key: s3.secret_access_key(),
        },
    );
    scenario(&dir, &mut primary, &cairn, &S3Store(&s3));
    // Nothing went to the local directory.
    assert!(std::fs::read_dir(&cairn.repo_dir).unwrap().next().is_none());
    primary.stop().unwrap();
}
