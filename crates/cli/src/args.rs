//! The command line, exactly as DESIGN.md section 2 fixes it.

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
    /// Check configuration, the connection, and that a WAL switch arrives in the repository.
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
    ArchivePush { wal_path: PathBuf },
    /// Fetch one WAL file (same as cairn-archive-get).
    ArchiveGet {
        /// The file PostgreSQL asks for (%f).
        wal_name: String,
        /// Where to write it (%p).
        dest: PathBuf,
        /// Standby mode: failures keep their own exit codes (below 126) so a standby
        /// retries, instead of 126, which stops recovery.
        #[arg(long)]
        standby: bool,
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
    },
    /// Restore a backup and configure recovery.
    Restore(RestoreArgs),
    /// Show stanzas, backups and the WAL archive.
    Info {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Remove backups and WAL that retention no longer needs.
    Expire {
        #[arg(long)]
        dry_run: bool,
    },
    /// Read and authenticate every object the stanza's catalogs reference, check each
    /// backup's WAL and each timeline for gaps, and say what any damage costs.
    Verify {
        /// Check only this backup (its manifest, chunks and WAL from start to stop).
        #[arg(long)]
        set: Option<String>,
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
    /// The backup set to restore (default: the newest).
    #[arg(long)]
    pub set: Option<String>,
    /// Restore over an existing data directory, rewriting only what differs.
    #[arg(long)]
    pub delta: bool,
    #[arg(long)]
    pub target_time: Option<String>,
    #[arg(long)]
    pub target_lsn: Option<String>,
    #[arg(long)]
    pub target_xid: Option<String>,
    #[arg(long)]
    pub target_name: Option<String>,
    /// `immediate`: stop as soon as the backup is consistent.
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// pause (PostgreSQL's default), promote or shutdown.
    #[arg(long, value_enum)]
    pub target_action: Option<ActionArg>,
    /// latest, current or a timeline number.
    #[arg(long)]
    pub target_timeline: Option<String>,
    /// Write standby.signal instead of recovery.signal.
    #[arg(long)]
    pub standby: bool,
    /// Relocate a tablespace: OID=DIR (repeatable).
    #[arg(long)]
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
