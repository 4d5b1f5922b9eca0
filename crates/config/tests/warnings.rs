//! Warnings for secrets other users can read, with real files and modes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_config::{Config, ConfigWarning, Env};

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_readable_pass_file_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    let cfg = dir.path().join("cairn.toml");
    write(
        &cfg,
        &format!(
            "[repo]\npath = \"/r\"\ncipher-pass-file = \"{}\"\n",
            pass.display()
        ),
        0o600,
    );
    for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o644, true)] {
        write(&pass, "s3cret\n", mode);
        let c = Config::load(Some(&cfg), &Env::empty()).unwrap();
        assert_eq!(c.repo.cipher_pass.as_ref().unwrap().expose(), "s3cret");
        match (&c.warnings[..], warned) {
            ([], false) => {}
            ([ConfigWarning::SecretFileReadable { key, path, mode: m }], true) => {
                assert_eq!(
                    (key.as_str(), path.as_path()),
                    ("repo.cipher-pass-file", pass.as_path())
                );
                assert_eq!(m & 0o777, mode);
                let line = c.warnings[0].to_string();
                assert!(
                    line.contains(&pass.display().to_string())
                        && line.contains(&format!("{mode:04o}")),
                    "{line}"
                );
                assert!(!line.contains("s3cret"));
                assert_eq!(
                    c.warnings[0].hint(),
                    format!("chmod 600 {}", pass.display())
                );
            }
            (w, _) => panic!("mode {mode:o}: {w:?}"),
        }
    }
}

#[test]
fn a_config_file_with_secrets_readable_by_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cairn.toml");
    let with_secrets = "[repo]\npath = \"/r\"\ncipher-pass = \"p\"\n[stanza.main]\npg-data = \"/d\"\npg-password = \"q\"\n";
    for (mode, warned) in [(0o600, false), (0o640, false), (0o604, true), (0o644, true)] {
        write(&cfg, with_secrets, mode);
        let c = Config::load(Some(&cfg), &Env::empty()).unwrap();
        match &c.warnings[..] {
            [] => assert!(!warned, "mode {mode:o}"),
            [ConfigWarning::ConfigReadable { path, keys, .. }] => {
                assert!(warned, "mode {mode:o}");
                assert_eq!(path, &cfg);
                assert_eq!(keys, &["repo.cipher-pass", "stanza.main.pg-password"]);
            }
            w => panic!("{w:?}"),
        }
    }
    // Without secrets, a world-readable file is fine.
    write(&cfg, "[repo]\npath = \"/r\"\n", 0o644);
    assert!(
        Config::load(Some(&cfg), &Env::empty())
            .unwrap()
            .warnings
            .is_empty()
    );
    // A secret given by the environment is not in the file.
    let env = Env::empty().with("CAIRN_REPO_CIPHER_PASS", "p");
    assert!(Config::load(Some(&cfg), &env).unwrap().warnings.is_empty());
}

#[test]
fn a_readable_token_file_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("api-token");
    let text = format!(
        "[repo]\npath = \"/r\"\n[serve]\ntoken-file = \"{}\"\n",
        token.display()
    );
    let load = || Config::from_toml_str(&text, Path::new("inline"), &Env::empty()).unwrap();
    // Not there yet: serve reports that when it starts; no warning here.
    assert!(load().warnings.is_empty());
    write(&token, "t0ken", 0o600);
    assert!(load().warnings.is_empty());
    write(&token, "t0ken", 0o604);
    let w = load().warnings;
    assert!(
        matches!(&w[..], [ConfigWarning::SecretFileReadable { key, .. }] if key == "serve.token-file"),
        "{w:?}"
    );
}
