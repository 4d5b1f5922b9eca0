//! Durations on the command line (`--archive-timeout 90s`): a number of seconds, or a
//! number with a unit as DESIGN.md writes them (`90s`, `10m`, `26h`, `7d`). A value out
//! of range is a usage error, never an overflow later.

use std::time::Duration;

/// The longest wait a timeout flag accepts: a week is already far beyond any archive lag
/// worth waiting for, and keeps deadline arithmetic far from overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parse a duration of at most [`MAX_TIMEOUT`] (clap value parser).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_bounded(text, MAX_TIMEOUT)
}

fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_secs: u64 = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err("not a duration: use seconds or e.g. 90s, 10m, 26h, 7d".into()),
    };
    if num.is_empty() {
        return Err("not a duration: use seconds or e.g. 90s, 10m, 26h, 7d".into());
    }
    let out_of_range = || format!("out of range: at most {}", describe(max));
    // Digits only, so a parse failure is a number too large for u64.
    let n: u64 = num.parse().map_err(|_| out_of_range())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(out_of_range)?;
    let d = Duration::from_secs(secs);
    if d > max {
        return Err(out_of_range());
    }
    Ok(d)
}

fn describe(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86400) => format!("{}d", s / 86400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_units() {
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("26h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(MAX_TIMEOUT));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn out_of_range_and_malformed_are_refused() {
        for big in [
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "8d",
            "604801",
            "3074457345618258603m",
        ] {
            let e = parse_duration(big).unwrap_err();
            assert_eq!(e, "out of range: at most 7d", "{big}");
        }
        for bad in ["", "s", "-1", "1.5h", "10 years", "1w"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .starts_with("not a duration"),
                "{bad}"
            );
        }
    }
}
