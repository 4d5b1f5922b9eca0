//! [`TimelineId`]: PostgreSQL's `TimeLineID`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A timeline: each promotion or point-in-time recovery starts a new one,
/// numbered above its parent. Timeline 1 is the one initdb starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimelineId(pub u32);

impl TimelineId {
    /// The timeline every cluster starts on.
    pub const FIRST: TimelineId = TimelineId(1);

    /// The timeline that a promotion from this one would create.
    pub fn next(self) -> Option<TimelineId> {
        self.0.checked_add(1).map(TimelineId)
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A string that is not a decimal timeline number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timeline {input:?}: expected a decimal number from 1 to 4294967295")]
pub struct TimelineParseError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for TimelineId {
    type Err = TimelineParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TimelineParseError {
            input: s.to_owned(),
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        match s.parse::<u32>() {
            Ok(0) | Err(_) => Err(err()),
            Ok(v) => Ok(TimelineId(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("12".parse::<TimelineId>().unwrap(), TimelineId(12));
        assert_eq!(TimelineId(12).to_string(), "12");
        for bad in ["", "0", "-1", "+1", "1a", "4294967296", " 1"] {
            assert!(bad.parse::<TimelineId>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&TimelineId(3)).unwrap(), "3");
    }

    proptest! {
        #[test]
        fn round_trip(v in 1u32..) {
            let t = TimelineId(v);
            prop_assert_eq!(t.to_string().parse::<TimelineId>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<TimelineId>(&json).unwrap(), t);
        }
    }
}
