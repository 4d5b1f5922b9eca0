//! Whether the restored cluster archives WAL. `--archive-mode preserve` keeps the backup's
//! settings; `off` writes `archive_mode = off`, so a restored copy never archives its new
//! timeline into the repository of the cluster it was taken from.

use crate::recovery::assignment;

/// What a restore does about the backup's archive settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveMode {
    /// Keep `archive_mode` and `archive_command` as the backup has them.
    #[default]
    Preserve,
    /// Write `archive_mode = off` into `postgresql.auto.conf`.
    Off,
}

/// What the restored cluster will do with its WAL once it runs, as its `postgresql.conf`
/// and `postgresql.auto.conf` say (files they include are not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archiving {
    /// `archive_mode = off`, written by this restore.
    Disabled,
    /// The restored configuration leaves `archive_mode` off.
    Off,
    /// The restored configuration archives: `archive_mode` is `on` or `always`.
    On {
        mode: String,
        /// `archive_command`, when set and not empty.
        command: Option<String>,
        /// `archive_library`, when set and not empty (it wins over the command).
        library: Option<String>,
    },
}

impl Archiving {
    /// Read from the restored configuration files; later assignments win, and
    /// `postgresql.auto.conf` wins over `postgresql.conf`, as in PostgreSQL.
    pub(crate) fn of(mode: ArchiveMode, conf: Option<&[u8]>, auto_conf: &[u8]) -> Archiving {
        if mode == ArchiveMode::Off {
            return Archiving::Disabled;
        }
        let (mut archive_mode, mut command, mut library) = (None, None, None);
        let lines = conf
            .unwrap_or_default()
            .split(|b| *b == b'\n')
            .chain(auto_conf.split(|b| *b == b'\n'));
        for (name, value) in lines.filter_map(assignment) {
            match name.as_str() {
                "archive_mode" => archive_mode = Some(value.to_ascii_lowercase()),
                "archive_command" => command = Some(value),
                "archive_library" => library = Some(value),
                _ => {}
            }
        }
        let mode = match archive_mode.as_deref() {
            Some("always") => "always",
            // PostgreSQL reads archive_mode as a boolean besides always.
            Some("on" | "true" | "yes" | "1") => "on",
            _ => return Archiving::Off,
        };
        let set = |v: Option<String>| v.filter(|v| !v.is_empty());
        Archiving::On {
            mode: mode.into(),
            command: set(command),
            library: set(library),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_conf_wins_and_off_is_written_by_restore() {
        let conf = b"archive_mode = on\narchive_command = 'cairn-archive-push %p'\n";
        assert_eq!(
            Archiving::of(ArchiveMode::Preserve, Some(conf), b""),
            Archiving::On {
                mode: "on".into(),
                command: Some("cairn-archive-push %p".into()),
                library: None
            }
        );
        assert_eq!(
            Archiving::of(ArchiveMode::Preserve, Some(conf), b"archive_mode = 'off'\n"),
            Archiving::Off
        );
        assert_eq!(
            Archiving::of(
                ArchiveMode::Preserve,
                None,
                b"archive_mode = always\narchive_command = ''\n"
            ),
            Archiving::On {
                mode: "always".into(),
                command: None,
                library: None
            }
        );
        assert_eq!(
            Archiving::of(ArchiveMode::Preserve, None, b""),
            Archiving::Off
        );
        assert_eq!(
            Archiving::of(ArchiveMode::Off, Some(conf), b""),
            Archiving::Disabled
        );
    }
}
