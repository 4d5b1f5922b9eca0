//! Every configuration key, once: its section, type, default and meaning. The file check,
//! the environment overrides and `docs/configuration.md` (a test compares it with
//! [`reference_tables`]) all come from [`KEYS`], so they cannot drift apart.
//!
//! A new key is one row here plus its field in the model.

use std::fmt::Write as _;

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    /// A passphrase, password or key: never shown, and the file holding it should be
    /// private.
    Secret,
    Path,
    AbsolutePath,
    /// An object-store URL (`s3://`, `gs://`, `az://`, `abfs://`, `file://`).
    Url,
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    /// A [`crate::ByteSize`]: bytes, or a number with a unit.
    Size {
        nonzero: bool,
    },
    /// A [`crate::HumanDuration`] above zero.
    Duration,
    /// A [`crate::CronSchedule`].
    Cron,
    Choice(&'static [&'static str]),
    /// `IP:PORT`.
    SocketAddr,
}

impl ValueKind {
    /// How the reference names the type.
    pub fn describe(&self) -> String {
        match self {
            ValueKind::Text => "string".into(),
            ValueKind::Secret => "string (secret)".into(),
            ValueKind::Path => "path".into(),
            ValueKind::AbsolutePath => "absolute path".into(),
            ValueKind::Url => "URL".into(),
            ValueKind::Bool => "boolean".into(),
            ValueKind::Integer { min, max } => format!("integer, {min} to {max}"),
            ValueKind::Size { .. } => "size".into(),
            ValueKind::Duration => "duration".into(),
            ValueKind::Cron => "cron (5 fields, UTC)".into(),
            ValueKind::Choice(c) => c.join(" \\| "),
            ValueKind::SocketAddr => "IP:port".into(),
        }
    }
}

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// `repo`, `repo.s3`, ... ; `stanza.*` for the keys of every `[stanza.NAME]`.
    pub section: &'static str,
    pub key: &'static str,
    pub kind: ValueKind,
    /// The default as the reference shows it; `None`: unset unless given.
    pub default: Option<&'static str>,
    pub required: bool,
    pub doc: &'static str,
}

impl KeyDoc {
    /// `repo.cipher-pass`, `stanza.*.pg-port`.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// `CAIRN_REPO_CIPHER_PASS`; for stanza keys `CAIRN_STANZA_<NAME>_PG_PORT`.
    pub fn env_var(&self) -> String {
        match self.section.strip_prefix("stanza.") {
            Some(_) => self.env_var_for_stanza("<NAME>"),
            None => format!("CAIRN_{}_{}", env_part(self.section), env_part(self.key)),
        }
    }

    /// The variable of this stanza key for stanza `name` (`main-db` -> `MAIN_DB`).
    pub fn env_var_for_stanza(&self, name: &str) -> String {
        format!("CAIRN_STANZA_{}_{}", env_part(name), env_part(self.key))
    }
}

/// `repo.s3` -> `REPO_S3`, `cipher-pass` -> `CIPHER_PASS`.
pub(crate) fn env_part(s: &str) -> String {
    s.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// The keys of one section.
pub(crate) fn section(name: &str) -> impl Iterator<Item = &'static KeyDoc> + '_ {
    KEYS.iter().filter(move |k| k.section == name)
}

/// Whether `name` is a section (or has sub-sections) in [`KEYS`].
pub(crate) fn is_section(name: &str) -> bool {
    KEYS.iter().any(|k| {
        k.section == name
            || k.section
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with('.'))
    })
}

pub(crate) fn find(section: &str, key: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| k.section == section && k.key == key)
}

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
const LOG_FORMATS: &[&str] = &["text", "json"];
const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

macro_rules! key {
    ($section:literal, $key:literal, $kind:expr, $default:expr, $doc:literal) => {
        KeyDoc {
            section: $section,
            key: $key,
            kind: $kind,
            default: $default,
            required: false,
            doc: $doc,
        }
    };
}

/// Every key of the configuration file, in the order the reference lists them.
pub const KEYS: &[KeyDoc] = &[
    key!(
        "repo",
        "path",
        ValueKind::AbsolutePath,
        None,
        "A local repository directory. Give `path` or `url`."
    ),
    key!(
        "repo",
        "url",
        ValueKind::Url,
        None,
        "An object-store repository: `s3://bucket/prefix` (then `[repo.s3]`), `gs://`, `az://`, `abfs://`, `file://`."
    ),
    key!(
        "repo",
        "cipher-pass",
        ValueKind::Secret,
        None,
        "The passphrase that encrypts the repository. Omit it (and `cipher-pass-file`) for no encryption; content is still authenticated by hash."
    ),
    key!(
        "repo",
        "cipher-pass-file",
        ValueKind::AbsolutePath,
        None,
        "A file whose content (without the trailing newline) is the passphrase. Keep it mode 0600."
    ),
    key!(
        "repo",
        "compress-level",
        ValueKind::Integer { min: -7, max: 22 },
        Some("3"),
        "zstd compression level of stored objects."
    ),
    key!(
        "repo",
        "io-timeout",
        ValueKind::Duration,
        Some("60s"),
        "Object stores: how long one request may take, from connecting to the last byte. Not for a local `path`."
    ),
    key!(
        "repo",
        "retry-max",
        ValueKind::Integer { min: 0, max: 100 },
        Some("10"),
        "Object stores: retries of a failed request (server error, refused connection, timeout of a read), with backoff; 0 turns them off. Reads and writes alike."
    ),
    key!(
        "repo",
        "retry-timeout",
        ValueKind::Duration,
        Some("3m"),
        "Object stores: no retry starts later than this after a request's first attempt."
    ),
    key!(
        "repo.s3",
        "endpoint",
        ValueKind::Text,
        None,
        "S3 endpoint URL, for stores other than AWS. `AWS_*` environment variables are honoured too."
    ),
    key!("repo.s3", "region", ValueKind::Text, None, "S3 region."),
    key!(
        "repo.s3",
        "access-key-id",
        ValueKind::Text,
        None,
        "S3 access key id."
    ),
    key!(
        "repo.s3",
        "secret-access-key",
        ValueKind::Secret,
        None,
        "S3 secret access key."
    ),
    key!(
        "repo.s3",
        "allow-http",
        ValueKind::Bool,
        Some("false"),
        "Allow a plain-HTTP endpoint (test servers on loopback)."
    ),
    key!(
        "repo.gcs",
        "service-account-path",
        ValueKind::AbsolutePath,
        None,
        "GCS: a service-account key file (JSON). Or `GOOGLE_APPLICATION_CREDENTIALS`; without any credentials `gs://` is refused."
    ),
    key!(
        "repo.gcs",
        "use-metadata-server",
        ValueKind::Bool,
        Some("false"),
        "GCS: take credentials from the GCE/GKE instance metadata server."
    ),
    key!(
        "repo.gcs",
        "endpoint",
        ValueKind::Text,
        None,
        "GCS: another endpoint than Google's (an emulator)."
    ),
    key!(
        "repo.gcs",
        "anonymous",
        ValueKind::Bool,
        Some("false"),
        "GCS: send unsigned requests (emulators that check no credentials)."
    ),
    key!(
        "repo.gcs",
        "allow-http",
        ValueKind::Bool,
        Some("false"),
        "GCS: allow a plain-HTTP endpoint."
    ),
    key!(
        "repo.azure",
        "account",
        ValueKind::Text,
        None,
        "Azure: the storage account (or `AZURE_STORAGE_ACCOUNT_NAME`, or the `abfs://` URL's host)."
    ),
    key!(
        "repo.azure",
        "access-key",
        ValueKind::Secret,
        None,
        "Azure: the account's shared key. Or `AZURE_STORAGE_*` credentials, or `use-managed-identity`."
    ),
    key!(
        "repo.azure",
        "endpoint",
        ValueKind::Text,
        None,
        "Azure: another endpoint than `https://ACCOUNT.blob.core.windows.net`, e.g. `http://127.0.0.1:10000/devstoreaccount1`."
    ),
    key!(
        "repo.azure",
        "use-emulator",
        ValueKind::Bool,
        Some("false"),
        "Azure: Azurite, with its development account and key on `http://127.0.0.1:10000` unless `endpoint` says otherwise."
    ),
    key!(
        "repo.azure",
        "use-managed-identity",
        ValueKind::Bool,
        Some("false"),
        "Azure: take credentials from the host's managed identity."
    ),
    key!(
        "repo.azure",
        "allow-http",
        ValueKind::Bool,
        Some("false"),
        "Azure: allow a plain-HTTP endpoint."
    ),
    key!(
        "archive",
        "async",
        ValueKind::Bool,
        Some("false"),
        "Push WAL through the spool with a background worker, and let `archive-get` fetch ahead during recovery."
    ),
    key!(
        "archive",
        "spool-path",
        ValueKind::AbsolutePath,
        Some("/var/spool/cairn"),
        "Local scratch directory: async queues, prefetched WAL, the cached derived key (mode 0600)."
    ),
    key!(
        "archive",
        "process-max",
        ValueKind::Integer { min: 1, max: 64 },
        Some("2"),
        "Segments pushed or fetched at once by the async workers."
    ),
    key!(
        "archive",
        "get-queue-max",
        ValueKind::Size { nonzero: false },
        Some("128MiB"),
        "With `async`: how much WAL `archive-get` keeps fetched ahead of recovery."
    ),
    key!(
        "retention",
        "full",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "Keep the N newest full backups, each with the diffs and incrs that hang on it."
    ),
    key!(
        "retention",
        "diff",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "With `full`: keep at most N diffs per kept full; incrs that hang on a dropped diff go with it."
    ),
    key!(
        "retention",
        "recovery-window",
        ValueKind::Duration,
        None,
        "Keep every backup needed to reach any moment of this last stretch of time: the newest backup that stopped before it, and all after."
    ),
    key!(
        "retention",
        "keep-daily",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "Keep the newest backup of each of the N most recent UTC days that have one."
    ),
    key!(
        "retention",
        "keep-weekly",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "Keep the newest backup of each of the N most recent ISO weeks that have one."
    ),
    key!(
        "retention",
        "keep-monthly",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "Keep the newest backup of each of the N most recent months that have one."
    ),
    key!(
        "retention",
        "keep-yearly",
        ValueKind::Integer {
            min: 1,
            max: 100_000
        },
        None,
        "Keep the newest backup of each of the N most recent years that have one."
    ),
    key!(
        "retention",
        "auto",
        ValueKind::Bool,
        Some("false"),
        "Run `expire` after every successful backup."
    ),
    key!(
        "retention",
        "gc-grace",
        ValueKind::Duration,
        Some("1h"),
        "How long a pack no backup references waits, condemned, before a later `expire` deletes it (decision 014)."
    ),
    key!(
        "health",
        "max-backup-age",
        ValueKind::Duration,
        None,
        "`check`, `/healthz` and `cairn_stanza_healthy` fail when the newest backup is older."
    ),
    key!(
        "health",
        "max-archive-lag",
        ValueKind::Duration,
        None,
        "... and when the newest archived WAL is older than this."
    ),
    key!(
        "serve",
        "listen",
        ValueKind::SocketAddr,
        Some("127.0.0.1:9187"),
        "Where `cairn serve` listens for the API, `/metrics`, `/healthz` and the status page."
    ),
    key!(
        "serve",
        "token-file",
        ValueKind::AbsolutePath,
        None,
        "A file holding the bearer token that `/api/*` requires. Keep it mode 0600."
    ),
    key!(
        "serve",
        "shutdown-grace",
        ValueKind::Duration,
        Some("60s"),
        "On SIGTERM, how long a running job may go on before it is abandoned (a backup without its manifest is never listed)."
    ),
    key!(
        "schedule",
        "backup-full",
        ValueKind::Cron,
        None,
        "When `cairn serve` takes a full backup."
    ),
    key!(
        "schedule",
        "backup-diff",
        ValueKind::Cron,
        None,
        "When it takes a diff backup."
    ),
    key!(
        "schedule",
        "backup-incr",
        ValueKind::Cron,
        None,
        "When it takes an incr backup."
    ),
    key!(
        "schedule",
        "expire",
        ValueKind::Cron,
        None,
        "When it runs `expire`."
    ),
    key!(
        "schedule",
        "verify",
        ValueKind::Cron,
        None,
        "When it runs `verify`."
    ),
    key!(
        "schedule",
        "drill",
        ValueKind::Cron,
        None,
        "When it runs a restore drill."
    ),
    key!(
        "schedule",
        "max-replay",
        ValueKind::Size { nonzero: true },
        None,
        "Also take an incr once this much WAL has been archived since the last backup (bounds any PITR's replay)."
    ),
    key!(
        "log",
        "level",
        ValueKind::Choice(LOG_LEVELS),
        Some("info"),
        "Least severe messages logged; `--log-level`, `-v` and `-q` override it."
    ),
    key!(
        "log",
        "file",
        ValueKind::AbsolutePath,
        None,
        "Log file (appended). Unset: standard error; async workers log under the spool."
    ),
    key!(
        "log",
        "format",
        ValueKind::Choice(LOG_FORMATS),
        Some("text"),
        "`text` for people, `json` for log collectors (one object per line)."
    ),
    KeyDoc {
        section: "stanza.*",
        key: "pg-data",
        kind: ValueKind::AbsolutePath,
        default: None,
        required: true,
        doc: "The cluster's data directory; must match the server's `data_directory`.",
    },
    key!(
        "stanza.*",
        "pg-host",
        ValueKind::Text,
        Some("/var/run/postgresql"),
        "Unix socket directory (starts with `/`) or host name."
    ),
    key!(
        "stanza.*",
        "pg-port",
        ValueKind::Integer {
            min: 1,
            max: 65_535
        },
        Some("5432"),
        "Server port (also names the socket file)."
    ),
    key!(
        "stanza.*",
        "pg-user",
        ValueKind::Text,
        Some("postgres"),
        "Role for SQL and replication connections (needs REPLICATION, or superuser)."
    ),
    key!(
        "stanza.*",
        "pg-password",
        ValueKind::Secret,
        None,
        "Password for md5 / SCRAM-SHA-256 authentication."
    ),
    key!(
        "stanza.*",
        "pg-database",
        ValueKind::Text,
        Some("postgres"),
        "Database that `check`, `stanza-create` and drills connect to for SQL."
    ),
    key!(
        "stanza.*",
        "pg-sslmode",
        ValueKind::Choice(SSLMODES),
        None,
        "libpq's TLS modes; unset means `prefer` over TCP."
    ),
    key!(
        "stanza.*",
        "pg-bin",
        ValueKind::AbsolutePath,
        None,
        "Directory of this cluster's PostgreSQL binaries (`postgres`, `pg_ctl`) for drills; unset: from `PATH`."
    ),
];

/// The reference tables of `docs/configuration.md`: one per section, in [`KEYS`] order.
pub fn reference_tables() -> String {
    let mut out = String::new();
    let mut sections: Vec<&str> = Vec::new();
    for k in KEYS {
        if !sections.contains(&k.section) {
            sections.push(k.section);
        }
    }
    for s in sections {
        let title = s.replace('*', "NAME");
        let _ = writeln!(out, "### `[{title}]`\n");
        out.push_str("| key | type | default | environment | meaning |\n");
        out.push_str("|---|---|---|---|---|\n");
        for k in section(s) {
            let default = match (k.default, k.required) {
                (Some(d), _) => format!("`{d}`"),
                (None, true) => "required".into(),
                (None, false) => "unset".into(),
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | `{}` | {} |",
                k.key,
                k.kind.describe(),
                default,
                k.env_var(),
                k.doc
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        let k = find("repo.s3", "secret-access-key").unwrap();
        assert_eq!(k.env_var(), "CAIRN_REPO_S3_SECRET_ACCESS_KEY");
        let k = find("stanza.*", "pg-port").unwrap();
        assert_eq!(
            k.env_var_for_stanza("main-db"),
            "CAIRN_STANZA_MAIN_DB_PG_PORT"
        );
        assert!(is_section("repo") && is_section("repo.s3") && !is_section("rep"));
    }

    #[test]
    fn keys_are_unique() {
        for (i, a) in KEYS.iter().enumerate() {
            for b in &KEYS[i + 1..] {
                assert!(a.dotted() != b.dotted(), "{} twice", a.dotted());
                if !a.section.starts_with("stanza.") && !b.section.starts_with("stanza.") {
                    assert!(a.env_var() != b.env_var(), "{} twice", a.env_var());
                }
            }
        }
    }
}
