//! `cairn rekey`: a new passphrase for the repository's master key.

use std::path::Path;
use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};

/// The new passphrase: from `--new-pass-file` (first line), else `CAIRN_NEW_CIPHER_PASS`.
/// Never echoed in an error.
fn new_passphrase(file: Option<&Path>) -> Result<String, Failure> {
    let pass = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Failure::new(
                    ErrorKind::LocalIo,
                    format!("cannot read --new-pass-file {}: {e}", f.display()),
                )
            })?;
            if std::os::unix::fs::MetadataExt::mode(
                &std::fs::metadata(f).map_err(|e| {
                    Failure::new(ErrorKind::LocalIo, format!("{}: {e}", f.display()))
                })?,
            ) & 0o077
                != 0
            {
                eprintln!(
                    "cairn: WARNING: {} is readable by other users; it holds a passphrase (chmod 600 it)",
                    f.display()
                );
            }
            text.lines().next().unwrap_or("").to_string()
        }
        None => std::env::var("CAIRN_NEW_CIPHER_PASS").map_err(|_| {
            Failure::new(ErrorKind::Usage, "no new passphrase given")
                .with_hint("give --new-pass-file FILE or set CAIRN_NEW_CIPHER_PASS")
        })?,
    };
    if pass.is_empty() {
        return Err(Failure::new(
            ErrorKind::Usage,
            "the new passphrase is empty",
        ));
    }
    Ok(pass)
}

pub async fn run(cfg: &Config, new_pass_file: Option<&Path>) -> Result<ExitCode, Failure> {
    let new_pass = new_passphrase(new_pass_file)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    if !repo.keys().encrypts() {
        return Err(cairn_repo::RepoError::NotEncrypted.into());
    }
    let old_pass = cfg
        .repo
        .cipher_pass
        .as_ref()
        .map(|p| p.expose().to_string())
        .unwrap_or_default();
    if old_pass == new_pass {
        return Err(Failure::new(
            ErrorKind::Usage,
            "the new passphrase is the one in force",
        ));
    }
    let done = repo
        .rekey(&old_pass, &new_pass, cairn_repo::KdfParams::DEFAULT)
        .await?;
    println!(
        "rekeyed {}: key file generation {} replaces {}; no data object was rewritten",
        repo.location(),
        done.to,
        done.from
    );
    println!(
        "the old passphrase no longer opens the repository: put the new one in repo.cipher-pass \
         (or cipher-pass-file) of every configuration that uses this repository, including the \
         one archive_command runs with"
    );
    Ok(ExitCode::SUCCESS)
}
