//! The command line. Its commands, options and their names are a contract scripts rely on:
//! change them only by adding.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::duration::{parse_duration, parse_threshold};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "PostgreSQL WAL archiving, backup and point-in-time recovery"
)]
pub struct Cli {
    /// Configuration file (default: $CAIRN_CONFIG, then /etc/cairn/cairn.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Stanza to act on (default: $CAIRN_STANZA, or the only one configured).
    #[arg(long, global = true, env = "CAIRN_STANZA")]
    pub stanza: Option<String>,
    #[command(flatten)]
    pub log: cairn_startup::LogFlags,
    /// Progress of backup, restore, verify and expire on stderr: a bar on a terminal, a
    /// line every ten seconds otherwise (auto), or none (never).
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Whether to show progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, a plain line every ten seconds otherwise.
    Auto,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    Immediate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    Pause,
    Promote,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveModeArg {
    Preserve,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the stanza for the configured cluster (a no-op when it already exists).
    StanzaCreate,
    /// Record a new cluster generation after a major-version upgrade.
    StanzaUpgrade,
    /// Delete the stanza and everything archived for it.
    StanzaDelete {
        /// Required: this removes every backup and WAL file of the stanza.
        #[arg(long)]
        force: bool,
    },
    /// Check the configuration, the server (the checks backup makes), and that a WAL switch
    /// reaches the repository.
    Check {
        /// How long to wait for the switched segment to be archived: seconds, or a
        /// duration like 90s, 10m, 2h (at most 7d).
        #[arg(long, value_name = "DUR", default_value = "60", value_parser = parse_duration)]
        archive_timeout: Duration,
        /// Fail (exit 17) when the newest backup finished longer ago than this, e.g. 26h
        /// (default: [health] max-backup-age; unset: not checked).
        #[arg(long, value_name = "DUR", value_parser = parse_threshold)]
        max_backup_age: Option<Duration>,
        /// Fail (exit 17) when the last WAL segment was archived longer ago than this,
        /// e.g. 10m (default: [health] max-archive-lag; unset: not checked).
        #[arg(long, value_name = "DUR", value_parser = parse_threshold)]
        max_archive_lag: Option<Duration>,
    },
    /// Archive one WAL file (same as cairn-archive-push).
    ArchivePush {
        /// The WAL file to archive, as PostgreSQL's %p (relative to the current directory).
        wal_path: PathBuf,
    },
    /// Fetch one WAL file (same as cairn-archive-get).
    ArchiveGet {
        /// The file PostgreSQL asks for, as its %f (a WAL segment, .history or .partial file).
        wal_name: String,
        /// Where to write it, as PostgreSQL's %p.
        dest: PathBuf,
        /// Standby mode: failures keep their own exit codes (below 126) so a standby
        /// retries, instead of 126, which stops recovery.
        #[arg(long)]
        standby: bool,
        /// Fetch only this cluster generation's WAL (a backup from before a stanza-upgrade).
        #[arg(long, value_name = "DB_ID")]
        db_id: Option<u32>,
    },
    /// Take a base backup.
    Backup {
        /// full, diff or incr (default incr; a full when none exists).
        #[arg(long = "type", value_enum)]
        backup_type: Option<BackupType>,
        /// How long to wait for the WAL that makes the backup consistent to be archived:
        /// seconds, or a duration like 90s, 10m, 2h (at most 7d).
        #[arg(long, value_name = "DUR", default_value = "120", value_parser = parse_duration)]
        archive_timeout: Duration,
        /// Let the server's checkpoint spread out (CHECKPOINT 'spread') instead of 'fast'.
        #[arg(long)]
        spread: bool,
        /// Pin the backup: expire never removes it until `cairn unpin`.
        #[arg(long)]
        pin: bool,
        /// A note stored with the backup and shown by `info`: KEY=VALUE (repeatable).
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
    },
    /// Keep a backup whatever [retention] says, until `cairn unpin`.
    Pin {
        /// The backup to pin, by label (as `cairn info` lists it).
        label: String,
    },
    /// Let [retention] decide about a pinned backup again.
    Unpin {
        /// The backup to unpin, by label.
        label: String,
    },
    /// Restore a backup and configure recovery.
    Restore(RestoreArgs),
    /// Show stanzas, backups and the WAL archive.
    Info {
        /// text for people, json for machines (schema: docs/info-json.md).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove backups and WAL that [retention] no longer keeps, and collect garbage.
    Expire {
        /// Print what would go and how many bytes that frees; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove exactly this backup (of any type) instead of applying [retention].
        #[arg(long, value_name = "LABEL")]
        set: Option<String>,
    },
    /// Read and authenticate every object the stanza's catalogs reference, check each
    /// backup's WAL and each timeline for gaps, and say what any damage costs.
    Verify {
        /// Check only this backup (its manifest, chunks and WAL from start to stop).
        #[arg(long)]
        set: Option<String>,
        /// text for people, json for machines (schema: docs/verify-json.md).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the stanzas' metrics in the Prometheus text format (docs/metrics.md), or
    /// push them to a Pushgateway. Reads catalog objects only.
    Metrics {
        /// The Pushgateway's address (http://host:9091): each stanza's metrics are PUT to
        /// URL/metrics/job/cairn/stanza/NAME instead of printed.
        #[arg(long, value_name = "URL")]
        push: Option<String>,
    },
    /// Run the [schedule] jobs, the HTTP API, /metrics, /healthz and the status page
    /// ([serve]) until SIGTERM.
    Serve,
    /// Test a restore: restore the newest suitable backup into a scratch directory, start
    /// PostgreSQL on it (archive_mode = off, a private socket), wait for recovery, run a
    /// sanity query and --sql, record the outcome in the repository, and remove it all.
    Drill(DrillArgs),
    /// Change the repository's passphrase: re-wraps the master key, rewrites no data.
    Rekey {
        /// File holding the new passphrase (one line). Or set CAIRN_NEW_CIPHER_PASS.
        #[arg(long)]
        new_pass_file: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The data directory to restore into (must not exist or be empty, unless --delta).
    #[arg(long)]
    pub pg_data: PathBuf,
    /// The backup to restore, by label (default: the newest backup that can reach the target).
    #[arg(long, value_name = "LABEL")]
    pub set: Option<String>,
    /// Restore over an existing data directory, rewriting only what differs.
    #[arg(long)]
    pub delta: bool,
    /// Recover up to this time, which needs an explicit offset: '2026-11-22 14:05:00+00'
    /// (RFC 3339 works too). Give at most one --target*; none recovers to the end of the
    /// archive.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Recover up to this WAL position, e.g. 0/16B3748.
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Recover up to and including this transaction id.
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<String>,
    /// Recover up to this restore point (made with pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
    /// immediate: stop as soon as the backup is consistent.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// What PostgreSQL does on reaching the target: pause (the default with a target; resume
    /// with SELECT pg_wal_replay_resume()), promote, or shutdown.
    #[arg(long, value_enum)]
    pub target_action: Option<ActionArg>,
    /// Timeline to recover along: latest (default), current (the backup's) or a number.
    #[arg(long, value_name = "TIMELINE")]
    pub target_timeline: Option<String>,
    /// Write standby.signal instead of recovery.signal.
    #[arg(long)]
    pub standby: bool,
    /// Relocate a tablespace: OID=DIR (repeatable).
    #[arg(long, value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// preserve: keep the backup's archive_mode and archive_command; off: write
    /// archive_mode = off, so the restored copy does not archive into the repository.
    #[arg(long, value_enum, default_value_t = ArchiveModeArg::Preserve)]
    pub archive_mode: ArchiveModeArg,
    /// Print what would be done and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Format of the --dry-run plan.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// Recover to this time (with an offset, e.g. 2026-11-22 14:05:00+00) and pause there.
    /// Default: the end of the archive, where the copy promotes.
    #[arg(long, value_name = "TIME", conflicts_with = "random")]
    pub target_time: Option<String>,
    /// Recover to a random moment inside a recoverable window (see `cairn info`).
    #[arg(long)]
    pub random: bool,
    /// A query that must return at least one row in the restored copy (run in the stanza's
    /// pg-database, read-only at a target time).
    #[arg(long, value_name = "QUERY")]
    pub sql: Option<String>,
    /// Leave the stopped copy in place and print how to start it and connect.
    #[arg(long)]
    pub keep: bool,
    /// The scratch directory: must not exist (its parent must) or be empty. Default:
    /// <spool-path>/drill/<stanza>-<time>.
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// How long recovery may take, from starting the server to reaching the target:
    /// seconds, or a duration like 90s, 10m, 2h (at most 7d).
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,
    /// text, or json (the record written to the repository).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command has an about line and every argument a help text, so `--help` says
    /// what each one does.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd.get_about().is_none() {
            out.push(format!("command `{path}`"));
        }
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                out.push(format!("`{path}` argument `{}`", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                undocumented(sub, &path, out);
            }
        }
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cmd, "", &mut missing);
        assert!(
            missing.is_empty(),
            "no help text for: {}",
            missing.join(", ")
        );
        // The walk sees the arguments: a command without any would pass vacuously.
        let restore = cmd.find_subcommand("restore").unwrap();
        assert!(restore.get_arguments().any(|a| a.get_id() == "target_time"));
    }
}
