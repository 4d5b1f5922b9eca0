//! `cairn serve`: start the server of cairn-serve, log to stderr, stop on SIGTERM.

use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::Failure;

pub async fn run(cfg: Config) -> Result<ExitCode, Failure> {
    // One line per event on stderr (journald and container logs keep it).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    // Before anything can announce the server: a SIGTERM from then on is a clean stop.
    let stop = cairn_serve::termination();
    let repo = cairn_startup::open_repo(&cfg).await?;
    let server = cairn_serve::Server::start(cfg, repo)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    eprintln!("cairn: serving on http://{}", server.local_addr());
    server
        .run_until(stop)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    Ok(ExitCode::SUCCESS)
}
