//! A configuration error names the file, the line and the key (or the variable), and
//! never shows the value: a passphrase typed into the wrong key must not reach a log.

use std::path::Path;

use cairn_config::{Config, ConfigError, Env};

const SECRET: &str = "correct-horse-battery-staple";
const FILE: &str = "/etc/cairn/cairn.toml";

fn load(text: &str, env: &Env) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new(FILE), env)
}

fn error(text: &str) -> String {
    let e = load(text, &Env::empty()).unwrap_err();
    let msg = e.to_string();
    let hint = cairn_exit::Classify::hint(&e).unwrap_or_default();
    assert!(!msg.contains(SECRET), "the value leaked: {msg}");
    assert!(!hint.contains(SECRET), "the value leaked: {hint}");
    assert!(
        !format!("{e:?}").contains(SECRET),
        "the value leaked: {e:?}"
    );
    msg
}

#[test]
fn a_misspelt_key_names_file_line_and_key() {
    let msg = error(&format!(
        "[repo]\npath = \"/r\"\n\ncipher-passwrd = \"{SECRET}\"\n"
    ));
    assert_eq!(
        msg,
        "/etc/cairn/cairn.toml, line 4: repo.cipher-passwrd is not a known key; did you mean cipher-pass?"
    );
    // In a stanza, and as a dotted key at the top.
    let msg = error(&format!(
        "[repo]\npath = \"/r\"\n[stanza.main]\npg-data = \"/d\"\npg-pasword = \"{SECRET}\"\n"
    ));
    assert!(
        msg.contains("line 5") && msg.contains("stanza.main.pg-pasword"),
        "{msg}"
    );
    let msg = error(&format!(
        "repo.path = \"/r\"\nrepo.s3.secret-acces-key = \"{SECRET}\"\n"
    ));
    assert!(
        msg.contains("line 2") && msg.contains("repo.s3.secret-acces-key"),
        "{msg}"
    );
}

#[test]
fn a_secret_in_a_key_of_another_type_is_not_shown() {
    for (text, key, line) in [
        (
            format!("[repo]\npath = \"/r\"\ncompress-level = \"{SECRET}\"\n"),
            "repo.compress-level",
            3,
        ),
        (
            format!(
                "[repo]\npath = \"/r\"\n[stanza.main]\npg-data = \"/d\"\npg-port = \"{SECRET}\"\n"
            ),
            "stanza.main.pg-port",
            5,
        ),
        (
            format!("[repo]\npath = \"/r\"\n[retention]\nrecovery-window = \"{SECRET}\"\n"),
            "retention.recovery-window",
            4,
        ),
        (
            format!("[repo]\npath = \"/r\"\n[schedule]\nexpire = \"{SECRET}\"\n"),
            "schedule.expire",
            4,
        ),
        (
            format!("[repo]\npath = \"/r\"\n[archive]\nget-queue-max = \"{SECRET}\"\n"),
            "archive.get-queue-max",
            4,
        ),
        (
            format!("[repo]\npath = \"/r\"\n[log]\nlevel = \"{SECRET}\"\n"),
            "log.level",
            4,
        ),
        (format!("[repo]\npath = \"{SECRET}\"\n"), "repo.path", 2),
        (format!("[repo]\nurl = \"{SECRET}\"\n"), "repo.url", 2),
    ] {
        let msg = error(&text);
        assert!(
            msg.contains(key) && msg.contains(&format!("line {line}:")) && msg.contains(FILE),
            "{msg}"
        );
    }
}

#[test]
fn syntax_errors_do_not_quote_the_line() {
    for text in [
        format!("[repo]\ncipher-pass = \"{SECRET}\n"),
        format!("[repo]\ncipher-pass = {SECRET}\n"),
        format!("[repo]\ncipher-pass = \"{SECRET}\" \"{SECRET}\"\n"),
        format!("[repo]\ncipher-pass = \"{SECRET}\"\ncipher-pass = \"{SECRET}\"\n"),
    ] {
        let msg = error(&text);
        assert!(
            msg.starts_with("/etc/cairn/cairn.toml, line ") && msg.contains("not valid TOML"),
            "{msg}"
        );
    }
    let msg = error(&format!("[repo]\ncipher-pass = {SECRET}\n"));
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn environment_errors_name_the_variable_not_the_value() {
    let base = "[repo]\npath = \"/r\"\n[stanza.main]\npg-data = \"/d\"\n";
    for (var, expect) in [
        ("CAIRN_REPO_CIPHER_PASSWRD", "CAIRN_REPO_CIPHER_PASSWRD"),
        ("CAIRN_STANZA_MAIN_PG_PORT", "stanza.main.pg-port"),
        ("CAIRN_REPO_COMPRESS_LEVEL", "repo.compress-level"),
        ("CAIRN_RETENTION_FULL", "retention.full"),
        ("CAIRN_HEALTH_MAX_BACKUP_AGE", "health.max-backup-age"),
        ("CAIRN_SERVE_LISTEN", "serve.listen"),
        (
            "CAIRN_STANZA_OTHER_PG_PASSWORD",
            "CAIRN_STANZA_OTHER_PG_PASSWORD",
        ),
    ] {
        let e = load(base, &Env::empty().with(var, SECRET)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::Env { .. }), "{var}: {msg}");
        assert!(msg.contains(var) && msg.contains(expect), "{msg}");
        assert!(!msg.contains(SECRET), "the value leaked: {msg}");
    }
}

#[test]
fn a_secret_never_shows_in_debug_output() {
    let text = format!(
        "[repo]\npath = \"/r\"\ncipher-pass = \"{SECRET}\"\n[repo.s3]\nsecret-access-key = \"{SECRET}\"\n[stanza.main]\npg-data = \"/d\"\npg-password = \"{SECRET}\"\n"
    );
    let c = load(&text, &Env::empty()).unwrap();
    assert!(!format!("{c:?}").contains(SECRET));
    assert_eq!(c.repo.cipher_pass.unwrap().expose(), SECRET);
}

mod property {
    use super::*;
    use cairn_config::KEYS;
    use proptest::prelude::*;

    fn place(section: &str, line: &str) -> String {
        match section.strip_prefix("stanza.") {
            Some(_) => format!("[repo]\npath = \"/r\"\n[stanza.main]\npg-data = \"/d\"\n{line}\n"),
            None => format!("[repo]\npath = \"/r\"\n[{section}]\n{line}\n"),
        }
    }

    proptest! {
        /// Any key, misspelt or not, given a random secret as its value, in the file or
        /// in its variable: the error, if any, never holds the secret. (An absolute path
        /// is shown when the file it names cannot be read; secrets do not start with `/`.)
        #[test]
        fn no_error_holds_the_value(
            i in 0..KEYS.len(),
            secret in "[A-Za-z0-9][A-Za-z0-9+/=_.-]{11,39}",
            misspell in any::<bool>(),
            quoted in any::<bool>(),
        ) {
            let k = &KEYS[i];
            let key = if misspell { format!("{}x", k.key) } else { k.key.to_string() };
            let value = if quoted { format!("\"{secret}\"") } else { secret.clone() };
            let text = place(k.section, &format!("{key} = {value}"));
            if let Err(e) = load(&text, &Env::empty()) {
                prop_assert!(!e.to_string().contains(&secret), "{e}");
            }
            let var = match k.section {
                "stanza.*" => k.env_var_for_stanza("main"),
                _ => k.env_var(),
            };
            let var = if misspell { format!("{var}X") } else { var };
            let base = place("archive", "");
            if let Err(e) = load(&base, &Env::empty().with(&var, &secret)) {
                prop_assert!(!e.to_string().contains(&secret), "{e}");
            }
        }
    }
}
