//! [`HumanDuration`]: the durations of the configuration and the command line (`90s`,
//! `10m`, `26h`, `7d`, or a sum such as `1h30m`).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The longest duration accepted: 100 years, far beyond any retention or threshold.
const MAX_SECS: u64 = 36_500 * 86_400;

/// A whole number of seconds, written with units: `s`, `m`, `h`, `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(std::time::Duration);

/// Why a text is not a duration. Messages never repeat the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is empty; give a duration such as 90s, 10m, 26h or 7d")]
    Empty,
    #[error("is not a duration: each number needs a unit, s, m, h or d (e.g. 90s, 10m, 26h, 7d)")]
    Syntax,
    #[error("is longer than 100 years")]
    TooLarge,
    #[error("must be more than zero")]
    Zero,
}

impl HumanDuration {
    pub fn from_secs(secs: u64) -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(secs))
    }

    /// Parses `90s`, `10m`, `26h`, `7d`, or a sum of those (`1h30m`); zero is allowed.
    pub fn parse(text: &str) -> Result<HumanDuration, DurationError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or(DurationError::Syntax)?;
            if digits == 0 {
                return Err(DurationError::Syntax);
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::TooLarge)?;
            let after = &rest[digits..];
            let unit_len = after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len());
            let scale = match after[..unit_len].trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(DurationError::Syntax),
            };
            total = n
                .checked_mul(scale)
                .and_then(|s| total.checked_add(s))
                .filter(|s| *s <= MAX_SECS)
                .ok_or(DurationError::TooLarge)?;
            rest = after[unit_len..].trim_start();
        }
        Ok(HumanDuration::from_secs(total))
    }

    /// [`parse`](Self::parse), refusing zero (thresholds and windows of zero mean nothing).
    pub fn parse_positive(text: &str) -> Result<HumanDuration, DurationError> {
        let d = HumanDuration::parse(text)?;
        if d.0.is_zero() {
            return Err(DurationError::Zero);
        }
        Ok(d)
    }

    pub fn as_duration(self) -> std::time::Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl From<HumanDuration> for std::time::Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HumanDuration::parse(s)
    }
}

/// In the largest unit that divides it: `26h`, `90s`, `7d`.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => f.write_str("0s"),
            _ if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("26h", 93_600),
            ("7d", 604_800),
            ("1h30m", 5400),
            (" 1d 12h ", 129_600),
            ("0s", 0),
        ] {
            assert_eq!(
                HumanDuration::parse(text).unwrap().as_secs(),
                secs,
                "{text}"
            );
        }
        assert_eq!(HumanDuration::from_secs(93_600).to_string(), "26h");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "90m");
    }

    #[test]
    fn refusals_never_repeat_the_text() {
        for (text, e) in [
            ("", DurationError::Empty),
            ("26", DurationError::Syntax),
            ("h", DurationError::Syntax),
            ("5 parsecs", DurationError::Syntax),
            ("-5m", DurationError::Syntax),
            ("1.5h", DurationError::Syntax),
            ("36501d", DurationError::TooLarge),
            ("18446744073709551615s", DurationError::TooLarge),
            ("99999999999999999999999d", DurationError::TooLarge),
        ] {
            assert_eq!(HumanDuration::parse(text), Err(e), "{text:?}");
        }
        assert_eq!(
            HumanDuration::parse_positive("0m"),
            Err(DurationError::Zero)
        );
        assert!(!DurationError::Syntax.to_string().contains("parsecs"));
    }
}
