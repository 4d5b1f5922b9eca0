//! Reading the file: TOML with positions, every key checked against [`crate::keys::KEYS`].
//! An error names the file, the line and the key, never the value (a misspelt
//! `cipher-passwrd = "..."` must not put the passphrase in PostgreSQL's log).

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::error::ConfigError;
use crate::keys::{self, KEYS, ValueKind};
use crate::value::{self, Given};

/// The checked file, as a table the model deserializes, with where each key was.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub table: toml::Table,
    /// Where each value came from, by dotted key (`stanza.main.pg-port`).
    pub origins: Origins,
    /// Secrets written in the file (dotted keys).
    pub secrets: Vec<String>,
}

/// Where each key's value was given: a line of the file, or an environment variable.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub lines: BTreeMap<String, usize>,
    pub env: BTreeMap<String, String>,
}

impl Origins {
    /// The error for `key`, at its line or naming its variable.
    pub fn invalid(&self, path: &Path, key: &str, message: &str) -> ConfigError {
        match self.env.get(key) {
            Some(var) => ConfigError::Env {
                var: var.clone(),
                message: format!("{key} {message}"),
            },
            None => ConfigError::Invalid {
                path: path.to_path_buf(),
                line: self.lines.get(key).copied(),
                key: key.to_string(),
                message: message.to_string(),
            },
        }
    }
}

/// One-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    (line, column)
}

pub(crate) fn read(text: &str, path: &Path) -> Result<Document, ConfigError> {
    let root = DeTable::parse(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| position(text, s.start));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            // The parser's messages describe the syntax, never quote the input.
            message: e.message().lines().next().unwrap_or_default().to_string(),
        }
    })?;
    let mut w = Walker {
        text,
        path,
        doc: Document::default(),
    };
    for (k, v) in root.get_ref() {
        let name: &str = k.get_ref();
        let line = w.line(k.span().start);
        let DeValue::Table(t) = v.get_ref() else {
            return Err(w.error(line, name, "must be a section ([name]), not a value"));
        };
        if name == "stanza" {
            let mut stanzas = toml::Table::new();
            for (sk, sv) in t {
                let sname: &str = sk.get_ref();
                let line = w.line(sk.span().start);
                let dotted = format!("stanza.{sname}");
                let valid = !sname.is_empty()
                    && sname
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(w.error(
                        line,
                        &dotted,
                        "a stanza name uses letters, digits, '-' and '_' only",
                    ));
                }
                let DeValue::Table(st) = sv.get_ref() else {
                    return Err(w.error(line, &dotted, "must be a section [stanza.NAME]"));
                };
                let section = w.section("stanza.*", &dotted, st)?;
                for req in keys::section("stanza.*").filter(|k| k.required) {
                    if !section.contains_key(req.key) {
                        let key = format!("{dotted}.{}", req.key);
                        return Err(w.error(line, &key, "is missing"));
                    }
                }
                stanzas.insert(sname.to_string(), toml::Value::Table(section));
            }
            w.doc
                .table
                .insert("stanza".into(), toml::Value::Table(stanzas));
        } else if keys::is_section(name) && name != "stanza.*" {
            let section = w.section(name, name, t)?;
            w.doc
                .table
                .insert(name.to_string(), toml::Value::Table(section));
        } else {
            let mut top: Vec<&str> = KEYS
                .iter()
                .map(|k| k.section.split('.').next().unwrap_or(k.section))
                .collect();
            top.dedup();
            return Err(w.error(
                line,
                name,
                &format!("is not a known section{}", suggestion(name, &top)),
            ));
        }
    }
    Ok(w.doc)
}

struct Walker<'a> {
    text: &'a str,
    path: &'a Path,
    doc: Document,
}

impl Walker<'_> {
    fn line(&self, offset: usize) -> usize {
        position(self.text, offset).0
    }

    fn error(&self, line: usize, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: Some(line),
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    /// Checks the keys of one section (`schema` as in KEYS, `at` as written).
    fn section(
        &mut self,
        schema: &str,
        at: &str,
        t: &DeTable<'_>,
    ) -> Result<toml::Table, ConfigError> {
        let mut out = toml::Table::new();
        for (k, v) in t {
            let key: &str = k.get_ref();
            let line = self.line(k.span().start);
            let dotted = format!("{at}.{key}");
            if let DeValue::Table(sub) = v.get_ref() {
                let sub_schema = format!("{schema}.{key}");
                if keys::find(schema, key).is_none() && keys::is_section(&sub_schema) {
                    let inner = self.section(&sub_schema, &dotted, sub)?;
                    out.insert(key.to_string(), toml::Value::Table(inner));
                    continue;
                }
            }
            let Some(kd) = keys::find(schema, key) else {
                let known: Vec<&str> = keys::section(schema).map(|k| k.key).collect();
                let what = if v.get_ref().is_table() {
                    "section"
                } else {
                    "key"
                };
                return Err(self.error(
                    line,
                    &dotted,
                    &format!("is not a known {what}{}", suggestion(key, &known)),
                ));
            };
            let given = match v.get_ref() {
                DeValue::String(s) => Given::Str(s),
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => Given::Int(n),
                    Err(_) => Given::Other("a huge integer"),
                },
                DeValue::Boolean(b) => Given::Bool(*b),
                DeValue::Float(_) => Given::Other("a float"),
                DeValue::Datetime(_) => Given::Other("a date"),
                DeValue::Array(_) => Given::Other("an array"),
                DeValue::Table(_) => Given::Other("a table"),
            };
            let value = value::check(kd.kind, given).map_err(|m| self.error(line, &dotted, &m))?;
            if kd.kind == ValueKind::Secret {
                self.doc.secrets.push(dotted.clone());
            }
            self.doc.origins.lines.insert(dotted, line);
            out.insert(key.to_string(), value);
        }
        Ok(out)
    }
}

/// `; did you mean X?` for the closest known name, if close enough.
pub(crate) fn suggestion(name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (distance(name, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3.max(name.len() / 3) && d < name.len() => {
            format!("; did you mean {k}?")
        }
        _ => String::new(),
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("cipher-passwrd", "cipher-pass"), 3);
        assert_eq!(
            suggestion("cipher-passwrd", &["cipher-pass", "path"]),
            "; did you mean cipher-pass?"
        );
        assert_eq!(suggestion("zzz", &["cipher-pass", "path"]), "");
    }

    #[test]
    fn positions() {
        assert_eq!(position("a\nbc\nd", 3), (2, 2));
        assert_eq!(position("a", 0), (1, 1));
    }
}
