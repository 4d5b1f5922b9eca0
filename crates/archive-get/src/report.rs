//! The line each call leaves in PostgreSQL's log (at the default level, info): what was
//! served, or that the archive does not have it. Failures are the caller's `ERROR:` line.

use std::path::Path;
use std::time::Duration;

use crate::GetOutcome;

/// Log the outcome of fetching `name` into `dest`, which took `elapsed`.
pub fn served(name: &str, dest: &Path, outcome: GetOutcome, elapsed: Duration) {
    match outcome {
        GetOutcome::Written => {
            let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
            tracing::info!(
                "served {name} ({:.1} MiB in {} ms)",
                size as f64 / 1_048_576.0,
                elapsed.as_millis()
            );
        }
        GetOutcome::NotInArchive => tracing::info!("not in archive {name}"),
    }
}
