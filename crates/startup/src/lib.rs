//! `cairn-startup`: the one startup path of cairn's binaries (`cairn`,
//! `cairn-archive-push`, `cairn-archive-get`).
//!
//! Each binary parses its arguments and hands the rest to [`main`], which
//!
//! 1. builds the tokio runtime the binary asks for ([`Runtime`]),
//! 2. sets up logging ([`logging`]: `tracing` to standard error at the command line's
//!    level, [`LogArgs`]),
//! 3. runs the binary's body, which loads the configuration with [`load_config`] (which
//!    applies `[log]` and prints the configuration's warnings once) and opens the
//!    repository with [`open_repo`] / [`open_or_create_repo`],
//! 4. and turns a [`Failure`] into its one-line message, `HINT:` and exit code (and logs
//!    it too when the log goes to a file, as a detached worker's does).
//!
//! It is also the only place that maps the configuration onto the repository:
//! [`backend_for`] builds the storage `[repo]` names (local directory, S3, GCS, Azure, with
//! `io-timeout` / `retry-max` / `retry-timeout`) and [`open_options`] the open options, so
//! `cairn-repo` does not depend on `cairn-config`.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use cairn_startup::Runtime;
//!
//! fn main() -> ExitCode {
//!     cairn_startup::main("cairn-example", Runtime::CurrentThread, || async {
//!         let cfg = cairn_startup::load_config(None)?;
//!         let repo = cairn_startup::open_repo(&cfg).await?;
//!         println!("repository {}", repo.repo_id());
//!         Ok(ExitCode::SUCCESS)
//!     })
//! }
//! ```

pub mod logging;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_config::{Config, ConfigError, Env};
use cairn_exit::{Classify, ErrorKind, Failure};
use cairn_repo::{KdfParams, OpenOptions, RepoError, Repository};

pub use logging::{
    LevelArg, LogArgs, LogFlags, LogRole, RecentErrors, recent_errors, worker_log_path,
};
pub use store::{AZURITE_ACCOUNT, AZURITE_KEY, StoreError, backend_for, retry_config};

/// The tokio runtime a binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One thread: a single `archive-push` or `archive-get` call.
    CurrentThread,
    /// Worker threads (`None`: one per core): `cairn` and the async workers.
    MultiThread { workers: Option<usize> },
}

impl Runtime {
    fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Runtime::MultiThread { workers } => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if let Some(n) = workers {
                    b.worker_threads(n);
                }
                b.enable_all().build()
            }
        }
    }
}

/// A binary, as [`run`] starts it.
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    /// Its name, as messages start (`cairn-archive-push`).
    pub name: &'a str,
    pub runtime: Runtime,
    /// `--log-level`, `-v`, `-q`.
    pub log: LogArgs,
    /// A detached worker logs to the spool's log file by default.
    pub role: LogRole,
}

impl<'a> Program<'a> {
    /// A command with default logging.
    pub fn new(name: &'a str, runtime: Runtime) -> Program<'a> {
        Program {
            name,
            runtime,
            log: LogArgs::default(),
            role: LogRole::Command,
        }
    }
}

/// Run a binary's `body` on `runtime` and return its exit code. A failure prints
/// `PROGRAM: ERROR: reason` and `HINT: ...` and exits with its kind's code.
pub fn main<F, Fut>(program: &str, runtime: Runtime, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ExitCode, Failure>>,
{
    run(Program::new(program, runtime), body, |f| f)
}

/// [`main`], with `map_failure` applied to a failure before it is printed: `archive-get` in
/// recovery turns every failure but "not in the archive" into one that stops PostgreSQL.
pub fn main_with<F, Fut>(
    program: &str,
    runtime: Runtime,
    body: F,
    map_failure: impl FnOnce(Failure) -> Failure,
) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ExitCode, Failure>>,
{
    run(Program::new(program, runtime), body, map_failure)
}

/// The one startup path: runtime, logging, body, failure to exit code.
pub fn run<F, Fut>(
    program: Program<'_>,
    body: F,
    map_failure: impl FnOnce(Failure) -> Failure,
) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ExitCode, Failure>>,
{
    logging::init(program.name, program.log, program.role);
    let runtime = match program.runtime.build() {
        Ok(r) => r,
        Err(e) => {
            let f = Failure::new(ErrorKind::Internal, format!("cannot start runtime: {e}"));
            return fail(program.name, map_failure(f));
        }
    };
    match runtime.block_on(body()) {
        Ok(code) => code,
        Err(f) => fail(program.name, map_failure(f)),
    }
}

fn fail(program: &str, f: Failure) -> ExitCode {
    // A worker's standard error goes nowhere: its log file is where the failure is seen.
    if logging::logs_to_file() {
        match &f.hint {
            Some(h) => tracing::error!(kind = f.kind.name(), hint = %h, "{}", f.message),
            None => tracing::error!(kind = f.kind.name(), "{}", f.message),
        }
    }
    f.exit(program)
}

/// Load the configuration: `explicit` (`--config`), else `CAIRN_CONFIG`, else
/// `/etc/cairn/cairn.toml`, with the process's `CAIRN_*` overrides. Applies `[log]` to
/// the process's logging and logs the configuration's warnings (once per process).
pub fn load_config(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let cfg = Config::load(explicit, &Env::from_process())?;
    logging::configure(&cfg);
    Ok(cfg)
}

/// Where derived key-encryption keys are cached: under the spool.
fn kek_cache(cfg: &Config) -> PathBuf {
    cfg.archive.spool_path.join("keys")
}

/// The repository's open options from the configuration.
pub fn open_options(cfg: &Config) -> OpenOptions {
    OpenOptions {
        compress_level: cfg.repo.compress_level,
        kek_cache: Some(kek_cache(cfg)),
        kdf: KdfParams::DEFAULT,
    }
}

/// Why the configured repository could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl Classify for OpenError {
    fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Store(e) => e.kind(),
            OpenError::Repo(e) => e.kind(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            OpenError::Store(e) => e.hint(),
            OpenError::Repo(e) => e.hint(),
        }
    }
}

/// Open the repository the configuration names.
pub async fn open_repo(cfg: &Config) -> Result<Repository, OpenError> {
    let backend = backend_for(&cfg.repo)?;
    let pass = cfg.repo.cipher_pass.as_ref().map(|p| p.expose());
    Ok(Repository::open(backend, pass, &open_options(cfg)).await?)
}

/// The same, creating the repository when there is none yet; also says whether it did.
pub async fn open_or_create_repo(cfg: &Config) -> Result<(Repository, bool), OpenError> {
    let backend = backend_for(&cfg.repo)?;
    let pass = cfg.repo.cipher_pass.as_ref().map(|p| p.expose());
    Ok(Repository::open_or_create(backend, pass, &open_options(cfg)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, "t.toml".as_ref(), &Env::empty()).unwrap()
    }

    #[test]
    fn open_options_follow_the_config() {
        let cfg =
            config("[repo]\npath = \"/r\"\ncompress-level = 9\n[archive]\nspool-path = \"/sp\"\n");
        let o = open_options(&cfg);
        assert_eq!(o.compress_level, 9);
        assert_eq!(o.kek_cache.as_deref(), Some(Path::new("/sp/keys")));
    }

    #[test]
    fn main_maps_a_failure_to_its_exit_code() {
        let code = main("t", Runtime::CurrentThread, || async {
            Err(Failure::new(ErrorKind::Locked, "held"))
        });
        assert_eq!(code, ExitCode::from(ErrorKind::Locked.code()));
        let code = main("t", Runtime::MultiThread { workers: Some(1) }, || async {
            Ok(ExitCode::from(42))
        });
        assert_eq!(code, ExitCode::from(42));
        let code = main_with(
            "t",
            Runtime::CurrentThread,
            || async { Err(Failure::new(ErrorKind::Config, "bad")) },
            |f| Failure::new(ErrorKind::Internal, f.message),
        );
        assert_eq!(code, ExitCode::from(ErrorKind::Internal.code()));
    }

    #[test]
    fn a_missing_repository_is_a_stanza_error_with_a_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cfg = config(&format!(
            "[repo]\npath = \"{}\"\n[archive]\nspool-path = \"{}/spool\"\n",
            dir.display(),
            dir.display()
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(open_repo(&cfg)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Stanza);
        assert!(e.hint().unwrap().contains("stanza-create"));
    }
}
