//! `cairn-basebackup`: cairn's PostgreSQL connections: a physical-replication client, base
//! backups over it, and ordinary SQL sessions with the same TLS.
//!
//! `tokio-postgres` cannot open replication connections, so this crate speaks the protocol
//! itself, on `postgres-protocol`'s message framing over tokio Unix or TCP sockets:
//!
//! - [`ReplicationConnection::connect`]: startup with `replication=true`, authentication by
//!   trust, password, md5 or SCRAM-SHA-256, TLS per libpq's `sslmode` ([`SslMode`]:
//!   `verify-ca`/`verify-full` trust the roots in `PGSSLROOTCERT` or
//!   `~/.postgresql/root.crt`, as libpq does). Server notices are kept for
//!   [`ReplicationConnection::take_notices`].
//!   Refusals keep their SQLSTATE and carry a hint for the usual causes (wrong password,
//!   no `replication` line in pg_hba.conf, no REPLICATION attribute, WAL senders used up,
//!   server not running) through [`cairn_exit::Classify`].
//! - [`connect_sql`]: an ordinary SQL session (a `tokio_postgres::Client`) over the same
//!   socket and TLS negotiation, so `pg-sslmode` means the same for `cairn check` and
//!   `stanza-create` as for `cairn backup`.
//! - `IDENTIFY_SYSTEM` ([`ReplicationConnection::identify_system`]) and `SHOW`.
//! - [`ReplicationConnection::base_backup`]: `BASE_BACKUP` (PostgreSQL 15+), whose tar
//!   archives are parsed on the fly by `cairn_pgformat::tar`, so a consumer sees files as
//!   [`BackupEvent`]s, and memory stays bounded whatever the database size.
//! - PostgreSQL 17+ incremental backups: [`ReplicationConnection::upload_manifest`] with the
//!   prior backup's `backup_manifest`, then `BASE_BACKUP` with
//!   [`BaseBackupOptions::incremental`]; changed relation segments then arrive as
//!   `INCREMENTAL.*` files (`cairn_pgformat::incremental`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_basebackup::ReplicationError> {
//! use cairn_basebackup::{BackupEvent, BaseBackupOptions, ConnParams, ReplicationConnection};
//! let params = ConnParams {
//!     host: "/var/run/postgresql".into(),
//!     port: 5432,
//!     user: "postgres".into(),
//!     password: None,
//!     sslmode: None,
//!     application_name: "cairn".into(),
//! };
//! let mut conn = ReplicationConnection::connect(&params).await?;
//! let id = conn.identify_system().await?;
//! println!("cluster {} on timeline {} at {}", id.system_id, id.timeline, id.xlogpos);
//! let opts = BaseBackupOptions { label: "demo".into(), fast_checkpoint: true, incremental: false };
//! let mut stream = conn.base_backup(&opts).await?;
//! let mut manifest = Vec::new();
//! while let Some(event) = stream.next_event().await? {
//!     match event {
//!         BackupEvent::Entry(e) => println!("{} ({} bytes)", e.path, e.size),
//!         BackupEvent::Data(bytes) => { /* the current file's next bytes */ }
//!         BackupEvent::ManifestData(bytes) => manifest.extend_from_slice(&bytes),
//!         BackupEvent::Finished { end_lsn, .. } => println!("consistent at {end_lsn}"),
//!         _ => {}
//!     }
//! }
//! let manifest = cairn_pgformat::backup_manifest::PgBackupManifest::parse(&manifest).unwrap();
//!
//! // SQL, with the same TLS: what a replication connection cannot ask.
//! let sql = cairn_basebackup::connect_sql(&params, "postgres").await?;
//! let row = sql.query_one("SELECT current_setting('data_directory')", &[]).await.unwrap();
//! println!("data directory {}", row.get::<_, String>(0));
//! # Ok(()) }
//! ```

mod auth;
mod base_backup;
mod conn;
mod error;
mod params;
#[cfg(test)]
mod scripted_server;
mod sql;
mod tls;

pub use base_backup::{
    BackupEvent, BaseBackupOptions, BaseBackupStream, INCREMENTAL_SERVER_VERSION,
    MIN_SERVER_VERSION, TablespaceInfo,
};
pub use conn::{CONNECT_TIMEOUT, IdentifySystem, ReplicationConnection};
pub use error::{ReplicationError, Session};
pub use params::{ConnParams, SslMode};
pub use sql::connect_sql;
