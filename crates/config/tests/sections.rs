//! The sections of DESIGN.md section 2 beyond repo, archive and stanza.

use std::path::Path;

use cairn_config::{Config, CronSchedule, Env, HumanDuration, LogFormat, LogLevel};
use time::macros::datetime;

fn load(text: &str, env: &Env) -> Result<Config, cairn_config::ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/cairn/cairn.toml"), env)
}

const DESIGN_EXAMPLE: &str = r#"
[repo]
path = "/var/lib/cairn"
cipher-pass = "..."
compress-level = 3

[archive]
async = false
spool-path = "/var/spool/cairn"
process-max = 2

[retention]
full = 2
recovery-window = "30d"
diff = 4
keep-daily = 7
keep-weekly = 8
keep-monthly = 36
keep-yearly = 3
auto = true

[health]
max-backup-age = "26h"
max-archive-lag = "10m"

[serve]
listen = "127.0.0.1:9187"
token-file = "/etc/cairn/api-token"

[schedule]
backup-full = "0 2 * * 0"
backup-incr = "0 2 * * 1-6"
expire = "30 3 * * *"
verify = "0 4 * * 6"
drill = "0 5 1 * *"
max-replay = "8GiB"

[log]
level = "debug"
file = "/var/log/cairn/cairn.log"
format = "json"

[stanza.main]
pg-data = "/var/lib/postgresql/15/main"
pg-host = "/var/run/postgresql"
pg-port = 5432
pg-user = "postgres"
pg-database = "app"
pg-sslmode = "verify-full"
pg-bin = "/usr/lib/postgresql/15/bin"
"#;

#[test]
fn the_design_example_reads() {
    let c = load(DESIGN_EXAMPLE, &Env::empty()).unwrap();
    let r = &c.retention;
    assert_eq!((r.full, r.diff), (Some(2), Some(4)));
    assert_eq!(
        r.recovery_window,
        Some(HumanDuration::from_secs(30 * 86_400))
    );
    assert_eq!(
        (r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly),
        (Some(7), Some(8), Some(36), Some(3))
    );
    assert!(r.auto && r.has_rules());
    assert_eq!(c.health.max_backup_age.unwrap().as_secs(), 26 * 3600);
    assert_eq!(c.health.max_archive_lag.unwrap().to_string(), "10m");
    assert_eq!(c.serve.listen.port(), 9187);
    assert_eq!(
        c.serve.token_file.as_deref(),
        Some(Path::new("/etc/cairn/api-token"))
    );
    let s = &c.schedule;
    let sunday = datetime!(2026-11-22 12:00 UTC);
    assert_eq!(
        s.backup_full.as_ref().unwrap().next_after(sunday),
        datetime!(2026-11-29 02:00 UTC)
    );
    assert_eq!(
        s.backup_incr.as_ref().unwrap().next_after(sunday),
        datetime!(2026-11-23 02:00 UTC)
    );
    assert_eq!(
        s.drill.as_ref().unwrap().next_after(sunday),
        datetime!(2026-12-01 05:00 UTC)
    );
    assert!(s.backup_diff.is_none());
    assert_eq!(s.max_replay.unwrap().0, 8 << 30);
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.log.format, LogFormat::Json);
    let st = &c.stanzas["main"];
    assert_eq!(st.pg_database, "app");
    assert_eq!(
        st.pg_bin.as_deref(),
        Some(Path::new("/usr/lib/postgresql/15/bin"))
    );
    assert!(c.warnings.is_empty());
}

#[test]
fn defaults_when_absent() {
    let c = load("[repo]\npath = \"/r\"\n", &Env::empty()).unwrap();
    assert!(!c.retention.has_rules() && !c.retention.auto);
    assert!(c.health.max_backup_age.is_none());
    assert_eq!(c.serve.listen.to_string(), "127.0.0.1:9187");
    assert!(c.schedule.expire.is_none());
    assert_eq!(
        (c.log.level, c.log.format),
        (LogLevel::Info, LogFormat::Text)
    );
    assert_eq!(c.log.level.as_str(), "info");
}

#[test]
fn env_overrides_of_the_new_sections() {
    let env = Env::empty()
        .with("CAIRN_RETENTION_RECOVERY_WINDOW", "7d")
        .with("CAIRN_RETENTION_KEEP_MONTHLY", "12")
        .with("CAIRN_RETENTION_AUTO", "yes")
        .with("CAIRN_HEALTH_MAX_BACKUP_AGE", "90s")
        .with("CAIRN_SERVE_LISTEN", "[::1]:9000")
        .with("CAIRN_SCHEDULE_EXPIRE", "*/5 * * * *")
        .with("CAIRN_SCHEDULE_MAX_REPLAY", "1GiB")
        .with("CAIRN_LOG_LEVEL", "trace")
        .with("CAIRN_LOG_FORMAT", "json");
    let c = load("[repo]\npath = \"/r\"\n[retention]\nfull = 1\n", &env).unwrap();
    assert_eq!(c.retention.full, Some(1));
    assert_eq!(c.retention.recovery_window.unwrap().to_string(), "7d");
    assert_eq!(c.retention.keep_monthly, Some(12));
    assert!(c.retention.auto);
    assert_eq!(c.health.max_backup_age.unwrap().as_secs(), 90);
    assert_eq!(c.serve.listen.to_string(), "[::1]:9000");
    assert_eq!(
        c.schedule.expire.as_ref().map(CronSchedule::as_str),
        Some("*/5 * * * *")
    );
    assert_eq!(c.schedule.max_replay.unwrap().0, 1 << 30);
    assert_eq!(
        (c.log.level, c.log.format),
        (LogLevel::Trace, LogFormat::Json)
    );
}

#[test]
fn meaningless_values_are_refused_naming_the_key() {
    for (text, key, what) in [
        (
            "[retention]\nrecovery-window = \"0s\"",
            "retention.recovery-window",
            "more than zero",
        ),
        ("[retention]\nfull = 0", "retention.full", "from 1"),
        (
            "[retention]\ndiff = 2",
            "retention.diff",
            "needs retention.full",
        ),
        (
            "[retention]\nrecovery-window = \"36501d\"",
            "retention.recovery-window",
            "100 years",
        ),
        (
            "[retention]\nrecovery-window = \"30\"",
            "retention.recovery-window",
            "unit",
        ),
        (
            "[health]\nmax-archive-lag = \"-1m\"",
            "health.max-archive-lag",
            "duration",
        ),
        (
            "[health]\nmax-backup-age = 26",
            "health.max-backup-age",
            "not an integer",
        ),
        (
            "[schedule]\nverify = \"0 4 * *\"",
            "schedule.verify",
            "5 fields",
        ),
        (
            "[schedule]\nmax-replay = \"0\"",
            "schedule.max-replay",
            "more than zero",
        ),
        (
            "[serve]\nlisten = \"localhost\"",
            "serve.listen",
            "IP address and port",
        ),
        (
            "[serve]\ntoken-file = \"token\"",
            "serve.token-file",
            "absolute",
        ),
        ("[log]\nformat = \"xml\"", "log.format", "text, json"),
        ("[log]\nfile = \"cairn.log\"", "log.file", "absolute"),
        (
            "[stanza.main]\npg-data = \"/d\"\npg-sslmode = \"on\"",
            "stanza.main.pg-sslmode",
            "verify-full",
        ),
        (
            "[stanza.main]\npg-data = \"/d\"\npg-bin = \"bin\"",
            "stanza.main.pg-bin",
            "absolute",
        ),
        (
            "[stanza.m]\npg-data = \"/d\"\n[stanza.m.x]\ny = 1",
            "stanza.m.x",
            "not a known section",
        ),
    ] {
        let text = format!("[repo]\npath = \"/r\"\n{text}\n");
        let e = load(&text, &Env::empty()).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(what), "{text}: {e}");
        assert!(e.contains("line "), "{e}");
    }
    let e = load("retention = 3\n[repo]\npath = \"/r\"\n", &Env::empty())
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1: retention must be a section"), "{e}");
}

#[test]
fn either_or_keys_from_the_environment() {
    // The environment's location replaces the file's, instead of clashing with it.
    let env = Env::empty().with("CAIRN_REPO_URL", "s3://bucket/prefix");
    let c = load("[repo]\npath = \"/r\"\n", &env).unwrap();
    assert_eq!(
        c.repo.location,
        cairn_config::RepoLocation::Url("s3://bucket/prefix".into())
    );
    let env = Env::empty()
        .with("CAIRN_REPO_CIPHER_PASS", "a")
        .with("CAIRN_REPO_CIPHER_PASS_FILE", "/p");
    let e = load("[repo]\npath = \"/r\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not both"), "{e}");
    // Two stanzas whose variable names share a prefix: the key decides.
    let text = "[repo]\npath = \"/r\"\n[stanza.main]\npg-data = \"/a\"\n[stanza.main_db]\npg-data = \"/b\"\n";
    let env = Env::empty().with("CAIRN_STANZA_MAIN_DB_PG_PORT", "6000");
    let c = load(text, &env).unwrap();
    assert_eq!(
        (c.stanzas["main"].pg_port, c.stanzas["main_db"].pg_port),
        (5432, 6000)
    );
}
