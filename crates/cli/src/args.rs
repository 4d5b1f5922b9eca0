//! The command line, exactly as DESIGN.md section 2 fixes it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackupType {
    Full,
    Diff,
    Incr,
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
        /// Seconds to wait for the switched segment to be archived.
        #[arg(long, default_value_t = 60)]
        archive_timeout: u64,
    },
    /// Archive one WAL file (same as cairn-archive-push).
    ArchivePush { wal_path: PathBuf },
    /// Fetch one WAL file (same as cairn-archive-get).
    ArchiveGet { wal_name: String, dest: PathBuf },
    /// Take a base backup.
    Backup {
        #[arg(long = "type", value_enum)]
        backup_type: Option<BackupType>,
    },
    /// Restore a backup and configure recovery.
    Restore {
        #[arg(long)]
        pg_data: PathBuf,
        #[arg(long)]
        set: Option<String>,
        #[arg(long)]
        delta: bool,
        #[arg(long)]
        target_time: Option<String>,
        #[arg(long)]
        target_lsn: Option<String>,
        #[arg(long)]
        target_xid: Option<String>,
        #[arg(long)]
        target_name: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        target_action: Option<String>,
        #[arg(long)]
        target_timeline: Option<String>,
        #[arg(long)]
        standby: bool,
        #[arg(long)]
        tablespace_map: Vec<String>,
        #[arg(long)]
        dry_run: bool,
    },
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
    /// Verify every object of the repository.
    Verify,
}
