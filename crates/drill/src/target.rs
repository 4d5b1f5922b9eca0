//! What a drill recovers to: the end of the archive, a time, or a random moment in a
//! recoverable window.

use cairn_pgformat::PgTimestamp;
use cairn_planner::CommitSpan;
use cairn_target::TargetTime;

/// The target a drill was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillTarget {
    /// Replay everything archived; PostgreSQL then ends recovery and promotes the copy
    /// (only the copy: it does not archive).
    EndOfArchive,
    /// Recover to this time and pause there.
    Time(TargetTime),
    /// A moment drawn at random from the recoverable windows, weighted by their length,
    /// between the first commit known inside a window and its last.
    Random,
}

/// Draw a moment from `spans` with `draw` (uniform in `0..=n`). The moment is later than
/// the window's start (the backup's consistency point) and no later than its last commit,
/// so the plan takes a backup of that window and recovery stops after a commit inside it.
pub(crate) fn pick(
    spans: &[CommitSpan],
    mut draw: impl FnMut(u64) -> u64,
) -> Option<(PgTimestamp, &CommitSpan)> {
    let ranges: Vec<(i64, i64, &CommitSpan)> = spans
        .iter()
        .filter_map(|s| {
            let from = s
                .window
                .from
                .pg()
                .map_or(s.first.0, |f| f.0.saturating_add(1));
            let lo = s.first.0.max(from);
            (lo <= s.last.0).then_some((lo, s.last.0, s))
        })
        .collect();
    // Each range counts its end points: a one-commit window can still be drawn.
    let total: u64 = ranges.iter().map(|(lo, hi, _)| (hi - lo) as u64 + 1).sum();
    if total == 0 {
        return None;
    }
    let mut r = draw(total - 1).min(total - 1);
    for (lo, hi, s) in ranges {
        let len = (hi - lo) as u64 + 1;
        if r < len {
            return Some((PgTimestamp(lo + r as i64), s));
        }
        r -= len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_planner::RecoveryWindow;

    fn span(from_micros: i64, first: i64, last: i64) -> CommitSpan {
        CommitSpan {
            window: RecoveryWindow {
                timeline: cairn_pgformat::TimelineId(1),
                backup: cairn_repo::BackupLabel::new("20270101-000000F").unwrap(),
                from: cairn_planner::BackupTime(PgTimestamp(from_micros).to_offset_datetime()),
                to: Some(PgTimestamp(last)),
                gap: None,
            },
            first: PgTimestamp(first),
            last: PgTimestamp(last),
        }
    }

    #[test]
    fn draws_cover_every_window_and_stay_inside_each() {
        let spans = vec![span(100, 150, 200), span(1_000, 1_000, 1_010)];
        // The first window holds 51 moments (150..=200), the second 10 (1001..=1010: a
        // commit at the very start is not after the consistency point).
        assert_eq!(pick(&spans, |_| 0).map(|(t, _)| t.0), Some(150));
        assert_eq!(pick(&spans, |n| n).map(|(t, _)| t.0), Some(1_010));
        assert_eq!(pick(&spans, |_| 50).map(|(t, _)| t.0), Some(200));
        let (t, s) = pick(&spans, |_| 51).unwrap();
        assert_eq!((t.0, s.window.from), (1_001, spans[1].window.from));
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..61 {
            let (t, s) = pick(&spans, |_| k).unwrap();
            assert!(t >= s.first && t <= s.last && t.0 > s.window.from.pg().unwrap().0);
            seen.insert(t.0);
        }
        assert_eq!(seen.len(), 61, "every moment once");
        assert_eq!(pick(&[], |_| 0), None);
        // A window whose only commit is its start cannot be drawn from.
        assert_eq!(pick(&[span(500, 500, 500)], |_| 0), None);
    }
}
