//! Reading the drill server's log (messages forced to `lc_messages = C`) for why it
//! stopped: the segment `restore_command` could not deliver, recovery ending short of its
//! target, a port taken by someone else.

/// What the log says about a server that stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// `restore_command` failed hard (cairn-archive-get exits 126 when the archive lists a
    /// file it cannot deliver intact), and PostgreSQL aborted recovery.
    Undeliverable {
        segment: String,
        /// `cairn-archive-get`'s own error line, when it is in the log.
        detail: Option<String>,
    },
    /// `restore_command` said "not in the archive" before the target was reached.
    EndedBeforeTarget {
        last_restored: Option<String>,
    },
    /// The port was taken between choosing it and binding it.
    PortTaken,
    Unknown,
}

/// Read the log of one start of the server.
pub(crate) fn finding(log: &str) -> Finding {
    let lines: Vec<&str> = log.lines().collect();
    for (i, line) in lines.iter().enumerate().rev() {
        if let Some(segment) = quoted_after(line, "could not restore file \"")
            && line.contains("from archive")
        {
            let detail = lines[..i]
                .iter()
                .rev()
                .find_map(|l| l.split_once("cairn-archive-get: ERROR: ").map(|(_, d)| d))
                .map(|d| d.trim().to_string());
            return Finding::Undeliverable { segment, detail };
        }
        if line.contains("recovery ended before configured recovery target was reached") {
            return Finding::EndedBeforeTarget {
                last_restored: last_restored(log),
            };
        }
    }
    let port = [
        "could not bind",
        "Address already in use",
        "could not create any TCP/IP sockets",
    ];
    if lines.iter().any(|l| port.iter().any(|p| l.contains(p))) {
        return Finding::PortTaken;
    }
    Finding::Unknown
}

/// The last WAL segment (not history file) recovery fetched from the archive.
pub(crate) fn last_restored(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|l| quoted_after(l, "restored log file \""))
        .find(|name| name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn quoted_after(line: &str, opening: &str) -> Option<String> {
    let (_, rest) = line.split_once(opening)?;
    let (name, _) = rest.split_once('"')?;
    Some(name.to_string())
}

/// The last `n` non-empty lines.
pub(crate) fn tail(log: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNDELIVERABLE: &str = "\
2026-12-01 10:15:00.100 UTC [41] LOG:  starting point-in-time recovery to earliest consistent point
2026-12-01 10:15:00.200 UTC [41] LOG:  restored log file \"000000010000000000000004\" from archive
2026-12-01 10:15:00.300 UTC [41] LOG:  restored log file \"000000010000000000000005\" from archive
cairn-archive-get: ERROR: 000000010000000000000006 is listed in the archive but stanza/main/wal/1/00000001/000000010000000000000006 is missing
HINT: run cairn verify
2026-12-01 10:15:00.400 UTC [41] FATAL:  could not restore file \"000000010000000000000006\" from archive: child process exited with exit code 126
2026-12-01 10:15:00.500 UTC [40] LOG:  startup process (PID 41) exited with exit code 1
";

    #[test]
    fn a_segment_the_archive_could_not_deliver_is_named_with_archive_gets_reason() {
        assert_eq!(
            finding(UNDELIVERABLE),
            Finding::Undeliverable {
                segment: "000000010000000000000006".into(),
                detail: Some(
                    "000000010000000000000006 is listed in the archive but stanza/main/wal/1/00000001/000000010000000000000006 is missing"
                        .into()
                ),
            }
        );
    }

    #[test]
    fn recovery_ending_short_of_the_target_names_the_last_segment_fetched() {
        let log = "\
LOG:  restored log file \"00000002.history\" from archive
LOG:  restored log file \"000000020000000000000007\" from archive
LOG:  restored log file \"00000003.history\" from archive
LOG:  redo done at 0/7000100
FATAL:  recovery ended before configured recovery target was reached
";
        assert_eq!(
            finding(log),
            Finding::EndedBeforeTarget {
                last_restored: Some("000000020000000000000007".into())
            }
        );
    }

    #[test]
    fn a_taken_port_and_anything_else() {
        let log = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n\
                   FATAL:  could not create any TCP/IP sockets\n";
        assert_eq!(finding(log), Finding::PortTaken);
        let log =
            "FATAL:  could not access file \"pg_stat_statements\": No such file or directory\n";
        assert_eq!(finding(log), Finding::Unknown);
        assert_eq!(
            tail("a\n\nb\nc\n", 2),
            vec!["b".to_string(), "c".to_string()]
        );
        assert_eq!(tail("", 5), Vec::<String>::new());
    }
}
