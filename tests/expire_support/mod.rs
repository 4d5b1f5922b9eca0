//! Pieces the expire end-to-end tests share: a repository on a local disk or on the S3
//! server, listed with sizes; backups taken and restored by label.

#![allow(dead_code)]

use std::path::Path;

use cairn_testkit::{PgCluster, S3Server, TestDir};

use crate::support::{self, Cairn, Recovered, RepoSpec};

/// Where the repository lives.
#[derive(Clone, Copy)]
pub enum Store<'a> {
    Local,
    S3(&'a S3Server),
}

impl Store<'_> {
    pub fn cairn(&self, dir: &TestDir, cluster: &PgCluster) -> Cairn {
        match self {
            Store::Local => Cairn::new(dir, cluster, RepoSpec::Local),
            Store::S3(s3) => {
                let endpoint = s3.endpoint();
                Cairn::new(
                    dir,
                    cluster,
                    RepoSpec::S3 {
                        endpoint: &endpoint,
                        bucket: s3.bucket(),
                        access_key: s3.access_key_id(),
                        secret_key: s3.secret_access_key(),
                    },
                )
            }
        }
    }

    /// Every object of the repository (key relative to its root) with its stored size.
    pub fn objects(&self, cairn: &Cairn) -> Vec<(String, u64)> {
        let mut out = match self {
            Store::Local => {
                let mut v = Vec::new();
                walk(&cairn.repo_dir, &cairn.repo_dir, &mut v);
                v
            }
            Store::S3(s3) => s3
                .list_objects("cairn-test/")
                .unwrap()
                .into_iter()
                .map(|(k, s)| (k.trim_start_matches("cairn-test/").to_string(), s))
                .collect(),
        };
        out.sort();
        out
    }

    pub fn bytes(&self, cairn: &Cairn) -> u64 {
        self.objects(cairn).iter().map(|(_, s)| s).sum()
    }

    /// Keys under `prefix` (relative to the repository root).
    pub fn keys(&self, cairn: &Cairn, prefix: &str) -> Vec<String> {
        self.objects(cairn)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(prefix))
            .collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Store::Local => "local",
            Store::S3(_) => "s3",
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            walk(root, &p, out);
        } else if !name.starts_with(".tmp.") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
}

/// Append TOML to the configuration (a new table after `[repo]`'s).
pub fn add_config(cairn: &Cairn, text: &str) {
    let mut config = std::fs::read_to_string(&cairn.config).unwrap();
    config.push('\n');
    config.push_str(text);
    std::fs::write(&cairn.config, config).unwrap();
}

/// `cairn backup ARGS`; returns the new backup's label and the command's stdout.
pub fn backup(cairn: &Cairn, args: &[&str]) -> (String, String) {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    let out = cairn.cairn_ok(&all);
    let label = out
        .lines()
        .find_map(|l| {
            // "full backup LABEL[ on top of ...] complete: ..."
            let (_, rest) = l.split_once(" backup ")?;
            rest.contains(" complete")
                .then(|| rest.split_whitespace().next())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no label in: {out}"))
        .to_string();
    (label, out)
}

/// The labels `info` lists, oldest first.
pub fn labels(cairn: &Cairn) -> Vec<String> {
    cairn.info_json()["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap().to_string())
        .collect()
}

/// A backup as `info` shows it.
pub fn backup_doc(cairn: &Cairn, label: &str) -> serde_json::Value {
    cairn.info_json()["stanzas"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["label"] == label)
        .unwrap_or_else(|| panic!("{label} is not listed"))
        .clone()
}

/// Restore `label` (to its consistency point, or with `args`), start it, and return the
/// table's checksum.
pub fn restored_checksum(
    dir: &TestDir,
    primary: &PgCluster,
    cairn: &Cairn,
    label: &str,
    args: &[&str],
) -> String {
    let data = dir
        .path()
        .join(format!("restore-{label}-{}", rand_suffix()));
    let mut all = vec!["--set", label];
    if args.is_empty() {
        all.extend_from_slice(&["--target", "immediate"]);
    } else {
        all.extend_from_slice(args);
    }
    support::restore(cairn, &data, &all);
    let until = if args.is_empty() {
        Recovered::Consistent
    } else {
        Recovered::Promoted
    };
    let mut pg = support::start_restored(dir, primary, &data, false, until);
    let sum = support::table_checksum(&pg);
    pg.stop().unwrap();
    let _ = std::fs::remove_dir_all(&data);
    sum
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The current time of the server in UTC, as `--target-time` takes it.
pub fn server_now(pg: &PgCluster) -> String {
    pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .unwrap()
}

/// The archive's timelines as `info` shows them.
pub fn archive(cairn: &Cairn) -> Vec<serde_json::Value> {
    cairn.info_json()["stanzas"][0]["archive"]
        .as_array()
        .unwrap()
        .clone()
}

/// `cairn verify`: it must find nothing damaged (warnings are allowed). Returns its output.
pub fn verify_clean(cairn: &Cairn, when: &str) -> String {
    let out = cairn.run("cairn", &["verify", "--progress", "never"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "verify {when}: {}",
        support::describe(&out)
    );
    text
}
