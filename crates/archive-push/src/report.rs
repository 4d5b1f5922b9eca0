//! The line each call leaves in PostgreSQL's log (at the default level, info): what was
//! archived, how large, how long it took. Failures are the caller's `ERROR:` line.

use std::path::Path;
use std::time::Duration;

use cairn_repo::PushOutcome;

/// `16.0 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Log the outcome of pushing `path`, which took `elapsed`.
pub fn pushed(path: &Path, outcome: &PushOutcome, elapsed: Duration) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let ms = elapsed.as_millis();
    match outcome {
        PushOutcome::Stored => tracing::info!("pushed {name} ({} in {ms} ms)", mib(size)),
        PushOutcome::AlreadyStored => tracing::info!(
            "pushed {name} ({} in {ms} ms; already archived with the same content)",
            mib(size)
        ),
        PushOutcome::Repaired { damage } => {
            tracing::warn!(
                "the stored copy of {name} {}; replaced by this good copy",
                damage.as_deref().map_or_else(
                    || "had vanished".to_string(),
                    |d| format!("was damaged ({d})")
                )
            );
            tracing::info!("pushed {name} ({} in {ms} ms)", mib(size));
        }
    }
}
