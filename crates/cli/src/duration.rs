//! Durations on the command line (`--archive-timeout 90s`): a number of seconds, or a
//! duration as the configuration writes them (`90s`, `10m`, `26h`, `7d`, `1h30m`:
//! `cairn_config::HumanDuration`). A value out of range is a usage error, never an
//! overflow later.

use std::time::Duration;

use cairn_config::{DurationError, HumanDuration};

/// The longest wait a timeout flag accepts: a week is already far beyond any archive lag
/// worth waiting for, and keeps deadline arithmetic far from overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest health threshold (`--max-backup-age`): ten years.
pub const MAX_THRESHOLD: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Parse a health threshold: a positive duration of at most [`MAX_THRESHOLD`].
pub fn parse_threshold(text: &str) -> Result<Duration, String> {
    let d = parse_bounded(text, MAX_THRESHOLD)?;
    if d.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(d)
}

/// Parse a duration of at most [`MAX_TIMEOUT`] (clap value parser).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_bounded(text, MAX_TIMEOUT)
}

fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let out_of_range = || {
        format!(
            "out of range: at most {}",
            HumanDuration::from_secs(max.as_secs())
        )
    };
    let t = text.trim();
    // Plain seconds, as the flag always took.
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(t.parse().map_err(|_| out_of_range())?)
    } else {
        match HumanDuration::parse(t) {
            Ok(d) => d.as_duration(),
            Err(DurationError::TooLarge) => return Err(out_of_range()),
            Err(e) => return Err(format!("not a duration: {e}")),
        }
    };
    if d > max {
        return Err(out_of_range());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_units() {
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
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
            "99999999999999999999999h",
        ] {
            let e = parse_duration(big).unwrap_err();
            assert_eq!(e, "out of range: at most 7d", "{big}");
        }
        for bad in ["", "s", "-1", "1.5h", "10 years", "1w", "ten"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .starts_with("not a duration"),
                "{bad}"
            );
        }
    }
}
