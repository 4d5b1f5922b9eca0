//! One key's value, from the file or from the environment, checked against its
//! [`ValueKind`]. Messages say what was expected and never repeat the value: it may be a
//! secret typed into the wrong key.

use crate::cron::CronSchedule;
use crate::duration::HumanDuration;
use crate::keys::ValueKind;
use crate::model::ByteSize;

/// A value as written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Given<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    /// Another TOML type, by name ("a float", "an array", ...).
    Other(&'static str),
}

const URL_SCHEMES: [&str; 6] = ["s3://", "gs://", "az://", "azure://", "abfs://", "file://"];

fn expected(kind: ValueKind) -> String {
    match kind {
        ValueKind::Text | ValueKind::Secret => "must be a string".into(),
        ValueKind::Path => "must be a path (a string)".into(),
        ValueKind::AbsolutePath => "must be an absolute path".into(),
        ValueKind::Url => "must be a URL starting with s3://, gs://, az://, abfs:// or file://".into(),
        ValueKind::Bool => "must be true or false".into(),
        ValueKind::Integer { min, max } => format!("must be an integer from {min} to {max}"),
        ValueKind::Size { .. } => {
            "must be a size: a number of bytes, or a number with a unit such as 128MiB (kB, MB, GB, TB; KiB, MiB, GiB, TiB)".into()
        }
        ValueKind::Duration => "must be a duration such as 90s, 10m, 26h or 7d".into(),
        ValueKind::Cron => "must be a 5-field cron expression (minute hour day-of-month month day-of-week, UTC)".into(),
        ValueKind::Choice(c) => format!("must be one of: {}", c.join(", ")),
        ValueKind::SocketAddr => "must be an IP address and port, such as 127.0.0.1:9187".into(),
    }
}

/// Checks `v` and turns it into the TOML value the model deserializes.
pub(crate) fn check(kind: ValueKind, v: Given<'_>) -> Result<toml::Value, String> {
    let given = match v {
        Given::Str(_) => "a string",
        Given::Int(_) => "an integer",
        Given::Bool(_) => "a boolean",
        Given::Other(t) => t,
    };
    let wrong = || {
        let same = matches!(
            (kind, v),
            (ValueKind::Bool, Given::Bool(_)) | (ValueKind::Integer { .. }, Given::Int(_))
        ) || (matches!(v, Given::Str(_))
            && !matches!(kind, ValueKind::Bool | ValueKind::Integer { .. }));
        if same {
            Err(expected(kind))
        } else {
            Err(format!("{}, not {given}", expected(kind)))
        }
    };
    match (kind, v) {
        (ValueKind::Bool, Given::Bool(b)) => Ok(toml::Value::Boolean(b)),
        (ValueKind::Integer { min, max }, Given::Int(n)) if (min..=max).contains(&n) => {
            Ok(toml::Value::Integer(n))
        }
        (ValueKind::Size { nonzero }, Given::Int(n)) if n >= 0 && !(nonzero && n == 0) => {
            Ok(toml::Value::Integer(n))
        }
        (ValueKind::Size { nonzero }, Given::Str(s)) => match ByteSize::parse(s) {
            Ok(ByteSize(0)) if nonzero => Err("must be more than zero".into()),
            Ok(_) => Ok(toml::Value::String(s.to_string())),
            Err(_) => wrong(),
        },
        (ValueKind::Duration, Given::Str(s)) => HumanDuration::parse_positive(s)
            .map(|_| toml::Value::String(s.to_string()))
            .map_err(|e| format!("{e}")),
        (ValueKind::Cron, Given::Str(s)) => CronSchedule::parse(s)
            .map(|_| toml::Value::String(s.to_string()))
            .map_err(|e| format!("{e}")),
        (ValueKind::Choice(c), Given::Str(s)) if c.contains(&s) => {
            Ok(toml::Value::String(s.to_string()))
        }
        (ValueKind::SocketAddr, Given::Str(s)) if s.parse::<std::net::SocketAddr>().is_ok() => {
            Ok(toml::Value::String(s.to_string()))
        }
        (ValueKind::AbsolutePath, Given::Str(s)) if s.starts_with('/') => {
            Ok(toml::Value::String(s.to_string()))
        }
        (ValueKind::Url, Given::Str(s)) if URL_SCHEMES.iter().any(|p| s.starts_with(p)) => {
            Ok(toml::Value::String(s.to_string()))
        }
        (ValueKind::Text | ValueKind::Secret | ValueKind::Path, Given::Str(s)) => {
            Ok(toml::Value::String(s.to_string()))
        }
        _ => wrong(),
    }
}

/// An environment variable's text as the kind reads it.
pub(crate) fn from_env(kind: ValueKind, text: &str) -> Result<Given<'_>, String> {
    match kind {
        ValueKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Given::Bool(true)),
            "0" | "false" | "no" | "off" => Ok(Given::Bool(false)),
            _ => Err("must be true or false (or 1/0, yes/no, on/off)".into()),
        },
        ValueKind::Integer { .. } => text
            .trim()
            .parse()
            .map(Given::Int)
            .map_err(|_| expected(kind)),
        ValueKind::Size { .. } => Ok(match text.trim().parse::<i64>() {
            Ok(n) => Given::Int(n),
            Err(_) => Given::Str(text),
        }),
        _ => Ok(Given::Str(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_hold_the_value() {
        let secret = "hunter2-secret";
        for kind in [
            ValueKind::Bool,
            ValueKind::Integer { min: 1, max: 5 },
            ValueKind::Size { nonzero: true },
            ValueKind::Duration,
            ValueKind::Cron,
            ValueKind::Choice(&["a", "b"]),
            ValueKind::SocketAddr,
            ValueKind::AbsolutePath,
            ValueKind::Url,
        ] {
            let e = check(kind, Given::Str(secret)).unwrap_err();
            assert!(!e.contains(secret), "{kind:?}: {e}");
            let e = from_env(kind, secret).and_then(|g| check(kind, g));
            assert!(!e.unwrap_err().contains(secret), "{kind:?}");
        }
    }

    #[test]
    fn kinds() {
        let int = ValueKind::Integer { min: 1, max: 64 };
        assert!(check(int, Given::Int(64)).is_ok());
        assert!(check(int, Given::Int(0)).is_err());
        assert!(check(int, Given::Str("3")).is_err());
        let size = ValueKind::Size { nonzero: true };
        assert!(check(size, Given::Str("8GiB")).is_ok());
        assert_eq!(
            check(size, Given::Str("0MiB")).unwrap_err(),
            "must be more than zero"
        );
        assert!(check(ValueKind::Duration, Given::Str("0s")).is_err());
        assert!(check(ValueKind::SocketAddr, Given::Str("[::1]:9187")).is_ok());
        assert!(check(ValueKind::Url, Given::Str("ftp://x")).is_err());
        assert!(matches!(
            from_env(ValueKind::Size { nonzero: false }, "4096"),
            Ok(Given::Int(4096))
        ));
    }
}
