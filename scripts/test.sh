#!/usr/bin/env bash
# cairn's test command, shared by the README and CI (.ci/run):
#   build every binary (the end-to-end tests run the real `cairn`, `cairn-archive-push` and
#   `cairn-archive-get`, which `cargo test` alone does not build), then run every test.
# Needs the test dependencies: run scripts/install-test-deps.sh once (as root).
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -- archive` to filter by name.
# With CI=true, Cargo.lock must be up to date (--locked). All test binaries run even when one fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

locked=()
if [ "${CI:-}" = true ]; then
    locked=(--locked)
fi

cargo build --workspace --bins "${locked[@]}"
cargo test --workspace --no-fail-fast "${locked[@]}" "$@"
