//! `cairn-basebackup`: a PostgreSQL physical-replication client on `postgres-protocol`
//! framing over tokio TCP and Unix sockets (`tokio-postgres` cannot open replication
//! connections), TLS per `sslmode`: startup with `replication=true`, trust / password / md5 /
//! SCRAM-SHA-256,
//! `IDENTIFY_SYSTEM`, `SHOW`, PostgreSQL 17's `UPLOAD_MANIFEST`, and `BASE_BACKUP` with its
//! tar streams parsed (by `cairn-pgformat`) into file events, so consumers see files, not
//! tar blocks, and memory stays bounded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_basebackup::ReplicationError> {
//! use cairn_basebackup::{BaseBackupOptions, ConnParams, ReplicationConnection};
//! let params = ConnParams { host: "/var/run/postgresql".into(), port: 5432, user: "postgres".into(),
//!     password: None, sslmode: None, application_name: "cairn".into() };
//! let mut conn = ReplicationConnection::connect(&params).await?;
//! let id = conn.identify_system().await?;
//! let mut stream = conn.base_backup(&BaseBackupOptions { label: "demo".into(), fast_checkpoint: true, incremental: false }).await?;
//! while let Some(event) = stream.next_event().await? {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

mod conn;
mod error;
mod stream;
mod tls;

pub use conn::{ConnParams, IdentifySystem, ReplicationConnection};
pub use error::ReplicationError;
pub use stream::{BackupEvent, BaseBackupOptions, BaseBackupStream, TablespaceInfo};
