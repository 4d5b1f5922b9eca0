//! `cairn-e2e`: the home of cairn's end-to-end tests (`tests/`) and benchmarks (`benches/`).
//!
//! It has no code of its own; the tests drive the real `cairn` binaries against real
//! PostgreSQL servers and a real S3-compatible server, through `cairn-testkit`.
