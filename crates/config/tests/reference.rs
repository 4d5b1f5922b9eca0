//! `docs/configuration.md` against the configuration model: the reference tables are
//! exactly what [`cairn_config::reference_tables`] renders from `KEYS`, every key's
//! environment variable overrides it, and every documented default is the real one.
//!
//! After changing `KEYS`, regenerate the tables with
//! `UPDATE_CONFIG_REFERENCE=1 cargo test -p cairn-config --test reference`.

use std::path::{Path, PathBuf};

use cairn_config::{
    ByteSize, Config, CronSchedule, Env, HumanDuration, KEYS, KeyDoc, RepoLocation, ValueKind,
    reference_tables,
};

const BEGIN: &str = "<!-- BEGIN KEYS (generated from crates/config/src/keys.rs) -->\n";
const END: &str = "<!-- END KEYS -->";

fn doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

#[test]
fn the_reference_tables_match_the_keys() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc.find(BEGIN).expect("the BEGIN KEYS marker") + BEGIN.len();
    let end = doc.find(END).expect("the END KEYS marker");
    let want = reference_tables();
    if doc[start..end] != want {
        if std::env::var_os("UPDATE_CONFIG_REFERENCE").is_some() {
            let updated = format!("{}{}{}", &doc[..start], want, &doc[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        panic!(
            "docs/configuration.md is out of date with KEYS; run \
             UPDATE_CONFIG_REFERENCE=1 cargo test -p cairn-config --test reference"
        );
    }
    // Every key appears, with its variable.
    for k in KEYS {
        let row = format!("| `{}` |", k.key);
        assert!(
            doc.contains(&row) && doc.contains(&k.env_var()),
            "{}",
            k.dotted()
        );
    }
}

/// A key's value in the loaded configuration, as text (None: unset). Adding a key to
/// `KEYS` without a line here fails the tests below.
fn shown(c: &Config, k: &KeyDoc) -> Option<String> {
    let st = c.stanzas.get("main");
    let p = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let n = |n: Option<u32>| n.map(|n| n.to_string());
    let d = |d: Option<HumanDuration>| d.map(|d| d.as_secs().to_string());
    let cron = |s: &Option<CronSchedule>| s.as_ref().map(|s| s.to_string());
    let r = &c.retention;
    let s = &c.schedule;
    match (k.section, k.key) {
        ("repo", "path") => match &c.repo.location {
            RepoLocation::Path(p) => Some(p.display().to_string()),
            RepoLocation::Url(_) => None,
        },
        ("repo", "url") => match &c.repo.location {
            RepoLocation::Url(u) => Some(u.clone()),
            RepoLocation::Path(_) => None,
        },
        ("repo", "cipher-pass") => c.repo.cipher_pass.as_ref().map(|s| s.expose().into()),
        // The file is read at load time; the passphrase is what shows.
        ("repo", "cipher-pass-file") => c.repo.cipher_pass.as_ref().map(|s| s.expose().into()),
        ("repo", "compress-level") => Some(c.repo.compress_level.to_string()),
        ("repo.s3", "endpoint") => c.repo.s3.endpoint.clone(),
        ("repo.s3", "region") => c.repo.s3.region.clone(),
        ("repo.s3", "access-key-id") => c.repo.s3.access_key_id.clone(),
        ("repo.s3", "secret-access-key") => c
            .repo
            .s3
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().into()),
        ("repo.s3", "allow-http") => Some(c.repo.s3.allow_http.to_string()),
        ("repo", "io-timeout") => Some(c.repo.io.io_timeout.as_secs().to_string()),
        ("repo", "retry-max") => Some(c.repo.io.retry_max.to_string()),
        ("repo", "retry-timeout") => Some(c.repo.io.retry_timeout.as_secs().to_string()),
        ("repo.gcs", "service-account-path") => p(&c.repo.gcs.service_account_path),
        ("repo.gcs", "use-metadata-server") => Some(c.repo.gcs.use_metadata_server.to_string()),
        ("repo.gcs", "endpoint") => c.repo.gcs.endpoint.clone(),
        ("repo.gcs", "anonymous") => Some(c.repo.gcs.anonymous.to_string()),
        ("repo.gcs", "allow-http") => Some(c.repo.gcs.allow_http.to_string()),
        ("repo.azure", "account") => c.repo.azure.account.clone(),
        ("repo.azure", "access-key") => c.repo.azure.access_key.as_ref().map(|s| s.expose().into()),
        ("repo.azure", "endpoint") => c.repo.azure.endpoint.clone(),
        ("repo.azure", "use-emulator") => Some(c.repo.azure.use_emulator.to_string()),
        ("repo.azure", "use-managed-identity") => {
            Some(c.repo.azure.use_managed_identity.to_string())
        }
        ("repo.azure", "allow-http") => Some(c.repo.azure.allow_http.to_string()),
        ("archive", "async") => Some(c.archive.async_.to_string()),
        ("archive", "spool-path") => Some(c.archive.spool_path.display().to_string()),
        ("archive", "process-max") => Some(c.archive.process_max.to_string()),
        ("archive", "get-queue-max") => Some(c.archive.get_queue_max.0.to_string()),
        ("retention", "full") => n(r.full),
        ("retention", "diff") => n(r.diff),
        ("retention", "recovery-window") => d(r.recovery_window),
        ("retention", "keep-daily") => n(r.keep_daily),
        ("retention", "keep-weekly") => n(r.keep_weekly),
        ("retention", "keep-monthly") => n(r.keep_monthly),
        ("retention", "keep-yearly") => n(r.keep_yearly),
        ("retention", "auto") => Some(r.auto.to_string()),
        ("retention", "gc-grace") => Some(r.gc_grace.as_secs().to_string()),
        ("health", "max-backup-age") => d(c.health.max_backup_age),
        ("health", "max-archive-lag") => d(c.health.max_archive_lag),
        ("serve", "listen") => Some(c.serve.listen.to_string()),
        ("serve", "token-file") => p(&c.serve.token_file),
        ("serve", "shutdown-grace") => Some(c.serve.shutdown_grace.as_secs().to_string()),
        ("schedule", "backup-full") => cron(&s.backup_full),
        ("schedule", "backup-diff") => cron(&s.backup_diff),
        ("schedule", "backup-incr") => cron(&s.backup_incr),
        ("schedule", "expire") => cron(&s.expire),
        ("schedule", "verify") => cron(&s.verify),
        ("schedule", "drill") => cron(&s.drill),
        ("schedule", "max-replay") => s.max_replay.map(|b| b.0.to_string()),
        ("log", "level") => Some(c.log.level.as_str().into()),
        ("log", "file") => p(&c.log.file),
        ("log", "format") => Some(format!("{:?}", c.log.format).to_lowercase()),
        ("stanza.*", "pg-data") => st.map(|s| s.pg_data.display().to_string()),
        ("stanza.*", "pg-host") => st.map(|s| s.pg_host.clone()),
        ("stanza.*", "pg-port") => st.map(|s| s.pg_port.to_string()),
        ("stanza.*", "pg-user") => st.map(|s| s.pg_user.clone()),
        ("stanza.*", "pg-password") => st
            .and_then(|s| s.pg_password.as_ref())
            .map(|s| s.expose().into()),
        ("stanza.*", "pg-database") => st.map(|s| s.pg_database.clone()),
        ("stanza.*", "pg-sslmode") => st.and_then(|s| s.pg_sslmode.clone()),
        ("stanza.*", "pg-bin") => st.and_then(|s| p(&s.pg_bin)),
        _ => panic!("{} is in KEYS but not in this test's shown()", k.dotted()),
    }
}

/// The text as the model holds it (sizes in bytes, durations in seconds).
fn normal(kind: ValueKind, text: &str) -> String {
    match kind {
        ValueKind::Size { .. } => ByteSize::parse(text).unwrap().0.to_string(),
        ValueKind::Duration => HumanDuration::parse(text).unwrap().as_secs().to_string(),
        ValueKind::Cron => CronSchedule::parse(text).unwrap().to_string(),
        _ => text.to_string(),
    }
}

/// A valid value that differs from the default.
fn sample(k: &KeyDoc) -> String {
    match k.kind {
        ValueKind::Text => "sample-text".into(),
        ValueKind::Secret => "sample-secret".into(),
        ValueKind::Path | ValueKind::AbsolutePath => "/sample/path".into(),
        ValueKind::Url => "s3://sample-bucket/prefix".into(),
        ValueKind::Bool => "true".into(),
        ValueKind::Integer { max, .. } => max.to_string(),
        ValueKind::Size { .. } => "64MiB".into(),
        ValueKind::Duration => "26h".into(),
        ValueKind::Cron => "15 3 * * 1-5".into(),
        ValueKind::Choice(c) => c[c.len() - 1].into(),
        ValueKind::SocketAddr => "127.0.0.1:9999".into(),
    }
}

const BASE: &str =
    "[repo]\npath = \"/r\"\n[retention]\nfull = 1\n[stanza.main]\npg-data = \"/d\"\n";

#[test]
fn every_key_is_overridden_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    for k in KEYS {
        let var = match k.section {
            "stanza.*" => k.env_var_for_stanza("main"),
            _ => k.env_var(),
        };
        let mut value = sample(k);
        let mut expect = normal(k.kind, &value);
        if k.dotted() == "repo.cipher-pass-file" {
            let f = dir.path().join("pass");
            std::fs::write(&f, "from-the-file\n").unwrap();
            value = f.display().to_string();
            expect = "from-the-file".into();
        }
        let env = Env::empty().with(&var, &value);
        let c = Config::from_toml_str(BASE, Path::new("inline"), &env)
            .unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!(shown(&c, k), Some(expect), "{var}");
    }
}

#[test]
fn every_documented_default_is_the_real_one() {
    let c = Config::from_toml_str(BASE, Path::new("inline"), &Env::empty()).unwrap();
    for k in KEYS {
        let got = shown(&c, k);
        match (k.default, k.required, k.dotted().as_str()) {
            (Some(d), _, _) => assert_eq!(got, Some(normal(k.kind, d)), "{}", k.dotted()),
            (None, true, _) => assert!(got.is_some(), "{} is in BASE", k.dotted()),
            // Given by BASE.
            (None, false, "repo.path" | "retention.full") => {}
            (None, false, _) => assert_eq!(got, None, "{} has no default", k.dotted()),
        }
    }
}
