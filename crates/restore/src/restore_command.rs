//! The `restore_command` PostgreSQL runs to fetch WAL during recovery.

use std::path::{Path, PathBuf};

use cairn_repo::{DbId, StanzaName};

/// What `restore_command` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreCommand {
    /// `cairn-archive-get` with the restore's configuration file and stanza, so it works
    /// whatever the server's environment: `PROGRAM --config FILE --stanza NAME %f "%p"`.
    ArchiveGet {
        program: PathBuf,
        config: PathBuf,
        stanza: StanzaName,
        /// Fetch only this cluster generation's WAL (`--db-id`): an older generation's
        /// restore must never be served a newer generation's file of the same name.
        generation: Option<DbId>,
    },
    /// A command written as given (e.g. `cp /mnt/archive/%f "%p"`).
    Custom(String),
}

impl RestoreCommand {
    /// This installation's `cairn-archive-get`: the one beside `exe` (the running `cairn`)
    /// when it exists there, else the one on the server's `PATH`. `config` is made absolute,
    /// as PostgreSQL runs the command from the data directory.
    pub fn archive_get(exe: Option<&Path>, config: &Path, stanza: &StanzaName) -> RestoreCommand {
        let program = exe
            .and_then(Path::parent)
            .map(|d| d.join("cairn-archive-get"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("cairn-archive-get"));
        RestoreCommand::ArchiveGet {
            program,
            config: std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf()),
            stanza: stanza.clone(),
            generation: None,
        }
    }

    /// The same command, fetching only generation `db`'s WAL.
    pub fn for_generation(self, db: DbId) -> RestoreCommand {
        match self {
            RestoreCommand::ArchiveGet {
                program,
                config,
                stanza,
                ..
            } => RestoreCommand::ArchiveGet {
                program,
                config,
                stanza,
                generation: Some(db),
            },
            custom => custom,
        }
    }

    /// The command line. For a standby, `cairn-archive-get` gets `--standby`: its errors
    /// then exit below 126, so the standby retries instead of aborting recovery.
    pub fn render(&self, standby: bool) -> String {
        match self {
            RestoreCommand::ArchiveGet {
                program,
                config,
                stanza,
                generation,
            } => format!(
                "{} --config {} --stanza {}{}{} %f \"%p\"",
                sh_quote(&program.to_string_lossy()),
                sh_quote(&config.to_string_lossy()),
                sh_quote(stanza.as_str()),
                generation.map_or_else(String::new, |db| format!(" --db-id {db}")),
                if standby { " --standby" } else { "" }
            ),
            RestoreCommand::Custom(command) => command.clone(),
        }
    }
}

/// Quote for a POSIX shell (the one PostgreSQL runs restore_command with), only when
/// needed.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(program: &str, config: &str) -> RestoreCommand {
        RestoreCommand::ArchiveGet {
            program: program.into(),
            config: config.into(),
            stanza: StanzaName::new("main").unwrap(),
            generation: None,
        }
    }

    #[test]
    fn archive_get_with_config_and_stanza() {
        let c = get("/usr/bin/cairn-archive-get", "/etc/cairn/cairn.toml");
        assert_eq!(
            c.render(false),
            "/usr/bin/cairn-archive-get --config /etc/cairn/cairn.toml --stanza main %f \"%p\""
        );
        assert_eq!(
            c.render(true),
            "/usr/bin/cairn-archive-get --config /etc/cairn/cairn.toml --stanza main --standby %f \"%p\""
        );
        assert_eq!(
            c.for_generation(DbId(1)).render(false),
            "/usr/bin/cairn-archive-get --config /etc/cairn/cairn.toml --stanza main --db-id 1 %f \"%p\""
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        let c = get("/opt/it's here/cairn-archive-get", "/etc/c a.toml");
        assert_eq!(
            c.render(false),
            r#"'/opt/it'\''s here/cairn-archive-get' --config '/etc/c a.toml' --stanza main %f "%p""#
        );
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn beside_the_running_binary_else_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("cairn");
        let stanza = StanzaName::new("main").unwrap();
        let c = RestoreCommand::archive_get(Some(&exe), Path::new("rel.toml"), &stanza);
        let RestoreCommand::ArchiveGet {
            program, config, ..
        } = &c
        else {
            unreachable!()
        };
        assert_eq!(program, Path::new("cairn-archive-get"));
        assert!(config.is_absolute() && config.ends_with("rel.toml"));
        std::fs::write(dir.path().join("cairn-archive-get"), b"").unwrap();
        let c = RestoreCommand::archive_get(Some(&exe), Path::new("/c.toml"), &stanza);
        assert!(c.render(false).starts_with(&format!(
            "{}/cairn-archive-get --config /c.toml",
            dir.path().display()
        )));
        // Custom commands are written as given, standby or not.
        let custom = RestoreCommand::Custom("cp /a/%f \"%p\"".into());
        assert_eq!(custom.render(true), "cp /a/%f \"%p\"");
    }
}
