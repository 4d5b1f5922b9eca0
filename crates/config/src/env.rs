use std::collections::BTreeMap;

use crate::document::{Origins, suggestion};
use crate::error::ConfigError;
use crate::keys::{self, KEYS, KeyDoc, env_part};
use crate::value;

/// A snapshot of the environment variables cairn reads, so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment (only `CAIRN_*` and `AWS_*` variables are kept).
    pub fn from_process() -> Self {
        let vars = std::env::vars()
            .filter(|(k, _)| k.starts_with("CAIRN_") || k.starts_with("AWS_"))
            .collect();
        Env { vars }
    }

    pub fn empty() -> Self {
        Env::default()
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// Keys of which an override of one replaces the file's value of the other.
const EITHER: [(&str, &str); 2] = [
    ("repo.cipher-pass", "repo.cipher-pass-file"),
    ("repo.path", "repo.url"),
];

/// Applies `CAIRN_<SECTION>_<KEY>` overrides to the file's table. A variable that starts
/// like a section's (`CAIRN_REPO_...`) but names no key is refused, so a typo does not
/// silently leave the file's value in force. Errors name the variable, never its value.
pub(crate) fn apply_overrides(
    table: &mut toml::Table,
    origins: &mut Origins,
    env: &Env,
) -> Result<(), ConfigError> {
    let stanza_names: Vec<String> = table
        .get("stanza")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let mut prefixes: Vec<String> = KEYS
        .iter()
        .map(|k| {
            format!(
                "CAIRN_{}_",
                env_part(k.section.split('.').next().unwrap_or(""))
            )
        })
        .collect();
    prefixes.dedup();
    for (var, text) in &env.vars {
        let Some((kd, path)) = resolve(var, &stanza_names) else {
            if var.starts_with("CAIRN_STANZA_") {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: "names no stanza of the configuration file, or no stanza key".into(),
                });
            }
            if prefixes.iter().any(|p| var.starts_with(p.as_str())) {
                let known: Vec<String> = KEYS
                    .iter()
                    .filter(|k| !k.section.starts_with("stanza."))
                    .map(KeyDoc::env_var)
                    .collect();
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!(
                        "is not a cairn configuration variable{}",
                        suggestion(var, &known)
                    ),
                });
            }
            continue;
        };
        let dotted = path.join(".");
        let v = value::from_env(kd.kind, text)
            .and_then(|g| value::check(kd.kind, g))
            .map_err(|m| ConfigError::Env {
                var: var.clone(),
                message: format!("{dotted} {m}"),
            })?;
        for (a, b) in EITHER {
            let other = if dotted == a {
                b
            } else if dotted == b {
                a
            } else {
                continue;
            };
            if let Some(ov) = origins.env.get(other) {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!("set either {var} or {ov}, not both"),
                });
            }
            remove(table, other);
        }
        insert(table, &path, v);
        origins.env.insert(dotted, var.clone());
    }
    Ok(())
}

/// The key a variable names, with its path in the table.
fn resolve(var: &str, stanza_names: &[String]) -> Option<(&'static KeyDoc, Vec<String>)> {
    if var.starts_with("CAIRN_STANZA_") {
        // `main` and `main_db` both prefix `CAIRN_STANZA_MAIN_DB_PG_PORT`: the key decides.
        for name in stanza_names {
            for kd in keys::section("stanza.*") {
                if kd.env_var_for_stanza(name) == var {
                    let path = vec!["stanza".to_string(), name.clone(), kd.key.to_string()];
                    return Some((kd, path));
                }
            }
        }
        return None;
    }
    let kd = KEYS
        .iter()
        .find(|k| !k.section.starts_with("stanza.") && k.env_var() == var)?;
    let mut path: Vec<String> = kd.section.split('.').map(str::to_string).collect();
    path.push(kd.key.to_string());
    Some((kd, path))
}

fn insert(table: &mut toml::Table, path: &[String], v: toml::Value) {
    let (last, parents) = path.split_last().expect("a key path is never empty");
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("made a table above");
    }
    t.insert(last.clone(), v);
}

fn remove(table: &mut toml::Table, dotted: &str) {
    let parts: Vec<&str> = dotted.split('.').collect();
    let (last, parents) = parts.split_last().expect("a dotted key is never empty");
    let mut t = table;
    for p in parents {
        match t.get_mut(*p).and_then(toml::Value::as_table_mut) {
            Some(inner) => t = inner,
            None => return,
        }
    }
    t.remove(*last);
}
