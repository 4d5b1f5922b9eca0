//! `cairn-config`: cairn's configuration file and its environment overrides.
//!
//! The file is TOML (its keys are a contract scripts rely on). It is found from
//! `--config`, then `CAIRN_CONFIG`, then `/etc/cairn/cairn.toml`. Every key can be
//! overridden by an environment variable `CAIRN_<SECTION>_<KEY>` with dashes turned into
//! underscores (`CAIRN_REPO_CIPHER_PASS`, `CAIRN_REPO_S3_ENDPOINT`,
//! `CAIRN_STANZA_MAIN_PG_PORT`). Every key is described once, in [`KEYS`], which the
//! file check, the overrides and `docs/configuration.md` share.
//!
//! Errors name the file, the line and the key (or the variable) and what was expected,
//! never the value: a passphrase typed into a misspelt key must not reach a log.
//! [`Config::warnings`] lists what should be fixed but does not stop a command (secret
//! files that other users can read).
//!
//! ```
//! let cfg = cairn_config::Config::from_toml_str(
//!     "[repo]\npath = \"/tmp/repo\"\n[stanza.main]\npg-data = \"/pg\"\n",
//!     "inline".as_ref(),
//!     &cairn_config::Env::empty(),
//! ).unwrap();
//! assert_eq!(cfg.stanza(None).unwrap().0, "main");
//! assert_eq!(cfg.serve.listen.to_string(), "127.0.0.1:9187");
//!
//! let e = cairn_config::Config::from_toml_str(
//!     "[repo]\npath = \"/tmp/repo\"\ncipher-passwrd = \"hunter2\"\n",
//!     "/etc/cairn/cairn.toml".as_ref(),
//!     &cairn_config::Env::empty(),
//! ).unwrap_err().to_string();
//! assert_eq!(e, "/etc/cairn/cairn.toml, line 3: repo.cipher-passwrd is not a known key; did you mean cipher-pass?");
//! ```

mod cron;
mod document;
mod duration;
mod env;
mod error;
mod keys;
mod load;
mod model;
mod store;
mod value;
mod warning;

pub use cron::{CronError, CronSchedule};
pub use duration::{DurationError, HumanDuration};
pub use env::Env;
pub use error::ConfigError;
pub use keys::{KEYS, KeyDoc, ValueKind, reference_tables};
pub use model::{
    ArchiveConfig, ByteSize, Config, HealthConfig, LogConfig, LogFormat, LogLevel, RepoConfig,
    RepoLocation, RetentionConfig, S3Config, ScheduleConfig, Secret, ServeConfig, StanzaConfig,
};
pub use store::{AzureConfig, GcsConfig, StoreIo};
pub use warning::ConfigWarning;

/// The configuration file used when neither `--config` nor `CAIRN_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/cairn/cairn.toml";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[repo]
path = "/var/lib/cairn"
cipher-pass = "from-file"
compress-level = 6

[archive]
async = true
process-max = 4

[stanza.main]
pg-data = "/var/lib/postgresql/15/main"
pg-port = 5433
"#;

    fn load(text: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/cairn/cairn.toml"), env)
    }

    #[test]
    fn reads_contract_keys() {
        let c = load(BASE, &Env::empty()).unwrap();
        assert_eq!(c.repo.location, RepoLocation::Path("/var/lib/cairn".into()));
        assert_eq!(c.repo.cipher_pass.as_ref().unwrap().expose(), "from-file");
        assert_eq!(c.repo.compress_level, 6);
        assert!(c.archive.async_);
        assert_eq!(c.archive.process_max, 4);
        let (name, st) = c.stanza(None).unwrap();
        assert_eq!(name, "main");
        assert_eq!(st.pg_port, 5433);
        assert_eq!(st.pg_host, "/var/run/postgresql");
    }

    #[test]
    fn env_overrides_win() {
        let env = Env::empty()
            .with("CAIRN_REPO_CIPHER_PASS", "from-env")
            .with("CAIRN_STANZA_MAIN_PG_PORT", "6000")
            .with("CAIRN_ARCHIVE_ASYNC", "false");
        let c = load(BASE, &env).unwrap();
        assert_eq!(c.repo.cipher_pass.unwrap().expose(), "from-env");
        assert_eq!(c.stanzas["main"].pg_port, 6000);
        assert!(!c.archive.async_);
    }

    #[test]
    fn get_queue_max_takes_bytes_or_a_unit() {
        let c = load(BASE, &Env::empty()).unwrap();
        assert_eq!(c.archive.get_queue_max, ByteSize(128 << 20), "default");
        let with = |v: &str| {
            load(
                &BASE.replace(
                    "process-max = 4",
                    &format!("process-max = 4\nget-queue-max = {v}"),
                ),
                &Env::empty(),
            )
        };
        assert_eq!(
            with("\"256MiB\"").unwrap().archive.get_queue_max,
            ByteSize(256 << 20)
        );
        assert_eq!(
            with("\"1GB\"").unwrap().archive.get_queue_max,
            ByteSize(1 << 30)
        );
        assert_eq!(with("4096").unwrap().archive.get_queue_max, ByteSize(4096));
        let e = with("\"12 parsecs\"").unwrap_err().to_string();
        assert!(e.contains("archive.get-queue-max"), "{e}");
        assert!(
            !e.contains("parsecs"),
            "a config error never repeats the value: {e}"
        );
        let env = Env::empty().with("CAIRN_ARCHIVE_GET_QUEUE_MAX", "64MiB");
        assert_eq!(
            load(BASE, &env).unwrap().archive.get_queue_max,
            ByteSize(64 << 20)
        );
        let env = Env::empty().with("CAIRN_ARCHIVE_GET_QUEUE_MAX", "lots");
        let e = load(BASE, &env).unwrap_err().to_string();
        assert!(e.contains("CAIRN_ARCHIVE_GET_QUEUE_MAX"), "{e}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let env = Env::empty().with("CAIRN_STANZA_MAIN_PG_PORT", "many");
        let e = load(BASE, &env).unwrap_err().to_string();
        assert!(e.contains("CAIRN_STANZA_MAIN_PG_PORT"), "{e}");
        let env = Env::empty().with("CAIRN_REPO_CIPHER_PAS", "typo");
        assert!(
            load(BASE, &env)
                .unwrap_err()
                .to_string()
                .contains("CAIRN_REPO_CIPHER_PAS")
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = load("[repo]\npath = \"/r\"\ncompress = 3\n", &Env::empty()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("compress") && msg.contains("/etc/cairn/cairn.toml"),
            "{msg}"
        );
    }

    #[test]
    fn missing_repo_and_relative_paths_are_refused() {
        let e = load("[stanza.main]\npg-data = \"/d\"\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("repo.path"), "{e}");
        let e = load("[repo]\npath = \"rel\"\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = load("[repo]\nurl = \"ftp://x\"\n", &Env::empty()).unwrap_err();
        assert!(e.to_string().contains("repo.url"), "{e}");
    }

    #[test]
    fn passphrase_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let pf = dir.path().join("pass");
        std::fs::write(&pf, "s3cret\n").unwrap();
        let text = format!(
            "[repo]\npath = \"/r\"\ncipher-pass-file = \"{}\"\n",
            pf.display()
        );
        let c = load(&text, &Env::empty()).unwrap();
        assert_eq!(c.repo.cipher_pass.unwrap().expose(), "s3cret");
        let text = "[repo]\npath = \"/r\"\ncipher-pass-file = \"/nonexistent/pass\"\n";
        assert!(matches!(
            load(text, &Env::empty()),
            Err(ConfigError::PassFile { .. })
        ));
    }

    #[test]
    fn stanza_selection() {
        let two =
            "[repo]\npath = \"/r\"\n[stanza.a]\npg-data = \"/a\"\n[stanza.b]\npg-data = \"/b\"\n";
        let c = load(two, &Env::empty()).unwrap();
        assert!(matches!(
            c.stanza(None),
            Err(ConfigError::AmbiguousStanza { .. })
        ));
        assert_eq!(c.stanza(Some("b")).unwrap().1.pg_data, Path::new("/b"));
        assert!(matches!(
            c.stanza(Some("z")),
            Err(ConfigError::UnknownStanza { .. })
        ));
    }

    #[test]
    fn secrets_do_not_leak_in_debug() {
        let c = load(BASE, &Env::empty()).unwrap();
        assert!(!format!("{c:?}").contains("from-file"));
    }
}
