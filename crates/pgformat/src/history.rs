//! Timeline history files (`00000002.history`), as readTimeLineHistory()
//! reads and writeTimeLineHistory() writes them.
//!
//! Each line names a parent timeline, the LSN where the child branched off
//! it, and a free-text reason, tab-separated:
//!
//! ```text
//! (\t stands for a tab)
//! 1\t0/3000158\tno recovery target specified
//!
//! 2\t0/5000000\tbefore 2026-11-22 14:05:00+00
//! ```
//!
//! `#` comments and blank lines are ignored. The file of timeline N lists
//! every ancestor of N, oldest first.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;
use crate::timeline::TimelineId;

/// One ancestor of the timeline: the parent `tli` ran until `switchpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub tli: TimelineId,
    /// Where its child branched off (the end of `tli` on this history).
    pub switchpoint: Lsn,
    /// Why: the recovery target or "no recovery target specified".
    pub reason: String,
}

/// The history of timeline `tli`: its ancestors and where each ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineHistory {
    /// The timeline this history leads to.
    pub tli: TimelineId,
    /// Its ancestors, oldest first, with strictly increasing ids below `tli`.
    pub entries: Vec<HistoryEntry>,
}

/// A stretch of WAL on one timeline of a history (TimeLineHistoryEntry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineSpan {
    /// The timeline.
    pub tli: TimelineId,
    /// Where it begins on this history (`None`: the start of WAL).
    pub begin: Option<Lsn>,
    /// Where it ends on this history (`None`: still running, the tip).
    pub end: Option<Lsn>,
}

/// A history file that readTimeLineHistory() would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A line that does not start with a timeline number.
    #[error("line {line} of timeline {tli}'s history: expected a numeric timeline ID: {text:?}")]
    TimelineSyntax {
        /// The history's timeline.
        tli: TimelineId,
        /// One-based line number.
        line: usize,
        /// The line (truncated to 200 bytes).
        text: String,
    },
    /// A line without a valid switchpoint after the timeline.
    #[error(
        "line {line} of timeline {tli}'s history: expected a WAL switchpoint location: {text:?}"
    )]
    SwitchpointSyntax {
        /// The history's timeline.
        tli: TimelineId,
        /// One-based line number.
        line: usize,
        /// The line (truncated to 200 bytes).
        text: String,
    },
    /// Timeline ids must increase from line to line.
    #[error(
        "line {line} of timeline {tli}'s history: timeline {found} after {previous}: timeline IDs must be in increasing sequence"
    )]
    NotIncreasing {
        /// The history's timeline.
        tli: TimelineId,
        /// One-based line number.
        line: usize,
        /// This line's timeline.
        found: TimelineId,
        /// The previous line's timeline.
        previous: TimelineId,
    },
    /// An ancestor at or above the history's own timeline.
    #[error(
        "timeline {tli}'s history lists timeline {found}: timeline IDs must be less than the child timeline's ID"
    )]
    NotBelowChild {
        /// The history's timeline.
        tli: TimelineId,
        /// The offending ancestor.
        found: TimelineId,
    },
}

impl TimelineHistory {
    /// The history of a timeline without ancestors (timeline 1 has no file).
    pub fn root(tli: TimelineId) -> Self {
        TimelineHistory {
            tli,
            entries: Vec::new(),
        }
    }

    /// Parses the history file of timeline `tli`.
    pub fn parse(tli: TimelineId, bytes: &[u8]) -> Result<Self, HistoryError> {
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let text = || String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
            let trimmed = raw.trim_ascii_start();
            if trimmed.is_empty() || trimmed[0] == b'#' {
                continue;
            }
            let digits = trimmed.iter().take_while(|b| b.is_ascii_digit()).count();
            let parent = std::str::from_utf8(&trimmed[..digits])
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| HistoryError::TimelineSyntax {
                    tli,
                    line,
                    text: text(),
                })?;
            let (switchpoint, reason) =
                parse_rest(&trimmed[digits..]).ok_or_else(|| HistoryError::SwitchpointSyntax {
                    tli,
                    line,
                    text: text(),
                })?;
            let parent = TimelineId(parent);
            if let Some(last) = entries.last()
                && parent <= last.tli
            {
                return Err(HistoryError::NotIncreasing {
                    tli,
                    line,
                    found: parent,
                    previous: last.tli,
                });
            }
            entries.push(HistoryEntry {
                tli: parent,
                switchpoint,
                reason,
            });
        }
        if let Some(last) = entries.last()
            && last.tli >= tli
        {
            return Err(HistoryError::NotBelowChild {
                tli,
                found: last.tli,
            });
        }
        Ok(TimelineHistory { tli, entries })
    }

    /// The file's bytes as writeTimeLineHistory() produces them: each entry
    /// is appended to the parent's file after an extra newline, so entries
    /// are separated by a blank line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{}\t{}\t{}", e.tli, e.switchpoint, e.reason);
        }
        out.into_bytes()
    }

    /// The history of a child timeline branching off this one at
    /// `switchpoint`, as writeTimeLineHistory() would record it.
    pub fn child(&self, child: TimelineId, switchpoint: Lsn, reason: &str) -> TimelineHistory {
        let mut entries = self.entries.clone();
        entries.push(HistoryEntry {
            tli: self.tli,
            switchpoint,
            reason: reason.to_owned(),
        });
        TimelineHistory {
            tli: child,
            entries,
        }
    }

    /// The immediate parent, if any.
    pub fn parent(&self) -> Option<TimelineId> {
        self.entries.last().map(|e| e.tli)
    }

    /// Whether `tli` is this timeline or one of its ancestors (tliInHistory()).
    pub fn contains(&self, tli: TimelineId) -> bool {
        tli == self.tli || self.entries.iter().any(|e| e.tli == tli)
    }

    /// Where `tli` ended on this history (tliSwitchPoint()): `None` for the
    /// history's own timeline, which has not ended, and for timelines not
    /// in it (see [`contains`](Self::contains)).
    pub fn switchpoint_of(&self, tli: TimelineId) -> Option<Lsn> {
        self.entries
            .iter()
            .find(|e| e.tli == tli)
            .map(|e| e.switchpoint)
    }

    /// The timelines of this history with the WAL range each covers, oldest
    /// first, ending with the history's own timeline.
    pub fn spans(&self) -> Vec<TimelineSpan> {
        let mut begin = None;
        let mut out = Vec::with_capacity(self.entries.len() + 1);
        for e in &self.entries {
            out.push(TimelineSpan {
                tli: e.tli,
                begin,
                end: Some(e.switchpoint),
            });
            begin = Some(e.switchpoint);
        }
        out.push(TimelineSpan {
            tli: self.tli,
            begin,
            end: None,
        });
        out
    }

    /// The timeline that wrote WAL position `lsn` on this history
    /// (tliOfPointInHistory()): a position at a switchpoint belongs to the child.
    pub fn timeline_at(&self, lsn: Lsn) -> TimelineId {
        self.entries
            .iter()
            .find(|e| lsn < e.switchpoint)
            .map_or(self.tli, |e| e.tli)
    }
}

/// After the timeline number: whitespace, `%X/%X`, then optionally one
/// whitespace character and the reason (the rest of the line).
fn parse_rest(rest: &[u8]) -> Option<(Lsn, String)> {
    let rest = rest.trim_ascii_start();
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let lsn: Lsn = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let mut reason = rest.get(end + 1..).unwrap_or_default();
    if let Some(stripped) = reason.strip_suffix(b"\r") {
        reason = stripped;
    }
    Some((lsn, String::from_utf8_lossy(reason).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &str = "1\t0/3000158\tno recovery target specified\n\n\
                        2\t0/5000000\tbefore 2026-11-22 14:05:00+00\n";

    #[test]
    fn parses_what_postgres_writes() {
        let h = TimelineHistory::parse(TimelineId(3), FILE.as_bytes()).unwrap();
        assert_eq!(h.entries.len(), 2);
        assert_eq!(h.entries[0].switchpoint, Lsn(0x300_0158));
        assert_eq!(h.entries[1].reason, "before 2026-11-22 14:05:00+00");
        assert_eq!(h.to_bytes(), FILE.as_bytes());
        assert_eq!(h.parent(), Some(TimelineId(2)));
        assert_eq!(h.switchpoint_of(TimelineId(1)), Some(Lsn(0x300_0158)));
        assert_eq!(h.switchpoint_of(TimelineId(3)), None);
        assert!(
            h.contains(TimelineId(3)) && h.contains(TimelineId(1)) && !h.contains(TimelineId(4))
        );
        assert_eq!(h.timeline_at(Lsn(0x300_0157)), TimelineId(1));
        assert_eq!(h.timeline_at(Lsn(0x300_0158)), TimelineId(2));
        assert_eq!(h.timeline_at(Lsn(0x900_0000)), TimelineId(3));
        let spans = h.spans();
        assert_eq!(spans.len(), 3);
        assert_eq!(
            spans[0],
            TimelineSpan {
                tli: TimelineId(1),
                begin: None,
                end: Some(Lsn(0x300_0158))
            }
        );
        assert_eq!(spans[2].end, None);
        let child = h.child(
            TimelineId(5),
            Lsn(0x600_0000),
            "no recovery target specified",
        );
        assert_eq!(child.parent(), Some(TimelineId(3)));
        assert_eq!(
            TimelineHistory::parse(TimelineId(5), &child.to_bytes()).unwrap(),
            child
        );
    }

    #[test]
    fn tolerates_comments_spaces_and_crlf() {
        let text = "# comment\n   \n  1 0/30000A0\r\n\t# another\n2\t0/5000000\tx y\r\n";
        let h = TimelineHistory::parse(TimelineId(4), text.as_bytes()).unwrap();
        assert_eq!(h.entries[0].reason, "");
        assert_eq!(h.entries[0].switchpoint, Lsn(0x30000A0));
        assert_eq!(h.entries[1].reason, "x y");
        assert!(
            TimelineHistory::parse(TimelineId(2), b"")
                .unwrap()
                .entries
                .is_empty()
        );
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        let t = TimelineId(3);
        assert!(matches!(
            TimelineHistory::parse(t, b"x\t0/1\tr\n"),
            Err(HistoryError::TimelineSyntax { line: 1, .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(t, b"\n1\tnope\n"),
            Err(HistoryError::SwitchpointSyntax { line: 2, .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(t, b"1\n"),
            Err(HistoryError::SwitchpointSyntax { .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(t, b"2\t0/1\ta\n1\t0/2\tb\n"),
            Err(HistoryError::NotIncreasing { line: 2, .. })
        ));
        assert!(matches!(
            TimelineHistory::parse(t, b"1\t0/1\ta\n3\t0/2\tb\n"),
            Err(HistoryError::NotBelowChild { .. })
        ));
    }

    fn any_history() -> impl Strategy<Value = TimelineHistory> {
        proptest::collection::vec((1u32..1000, any::<u64>(), "[^\n\r]{0,40}"), 0..6).prop_map(
            |raw| {
                let mut tli = 0;
                let entries: Vec<HistoryEntry> = raw
                    .into_iter()
                    .map(|(step, lsn, reason)| {
                        tli += step;
                        HistoryEntry {
                            tli: TimelineId(tli),
                            switchpoint: Lsn(lsn),
                            reason,
                        }
                    })
                    .collect();
                TimelineHistory {
                    tli: TimelineId(tli + 1),
                    entries,
                }
            },
        )
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(h in any_history()) {
            prop_assert_eq!(TimelineHistory::parse(h.tli, &h.to_bytes()).unwrap(), h);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TimelineHistory::parse(TimelineId(9), &bytes);
        }
    }
}
