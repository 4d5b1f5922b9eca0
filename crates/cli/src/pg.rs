//! What `cairn` asks a running PostgreSQL (over an ordinary SQL connection), and what it
//! reads from a stopped cluster's data directory instead.

use std::path::Path;

use cairn_basebackup::{ConnParams, ReplicationError};
use cairn_config::StanzaConfig;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{StanzaInfo, StanzaName};

/// The identity of a cluster: what a stanza is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub system_id: u64,
    pub pg_major: u32,
}

/// Where and as whom the stanza's cluster is reached, for replication and SQL alike.
pub fn conn_params(st: &StanzaConfig, application_name: &str) -> ConnParams {
    ConnParams {
        host: st.pg_host.clone(),
        port: st.pg_port,
        user: st.pg_user.clone(),
        password: st.pg_password.as_ref().map(|p| p.expose().to_string()),
        sslmode: st.pg_sslmode.clone(),
        application_name: application_name.into(),
    }
}

/// An SQL session on `pg-database`, with TLS per `pg-sslmode` as for `cairn backup`.
pub async fn connect(st: &StanzaConfig) -> Result<tokio_postgres::Client, Failure> {
    Ok(connect_sql(st).await?)
}

/// [`connect`], keeping the connection error's variant (a server that does not answer
/// at all is [`ReplicationError::Connect`]).
pub async fn connect_sql(st: &StanzaConfig) -> Result<tokio_postgres::Client, ReplicationError> {
    cairn_basebackup::connect_sql(&conn_params(st, "cairn"), &st.pg_database).await
}

pub fn flatten(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        }
    }
}

pub fn sql_failure(what: &str, e: &tokio_postgres::Error) -> Failure {
    Failure::new(ErrorKind::Postgres, format!("{what}: {}", flatten(e)))
}

/// Ask the running server who it is, and check it runs on `pg-data`.
pub async fn server_identity(
    client: &tokio_postgres::Client,
    st: &StanzaConfig,
) -> Result<ClusterIdentity, Failure> {
    let row = client
        .query_one(
            "SELECT system_identifier::text, current_setting('server_version_num')::int / 10000, \
             current_setting('data_directory') FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| {
            let f = sql_failure("cannot read the cluster identity", &e);
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                f.with_hint(format!(
                    "cairn compares the server's data_directory with pg-data: run GRANT pg_read_all_settings TO {} (or connect as a superuser)",
                    st.pg_user
                ))
            } else {
                f
            }
        })?;
    let system_id: String = row.get(0);
    let pg_major: i32 = row.get(1);
    let data_dir: String = row.get(2);
    if !same_dir(Path::new(&data_dir), &st.pg_data) {
        return Err(Failure::new(
            ErrorKind::Config,
            format!(
                "pg-data is {}, but the server at {} runs on {data_dir}",
                st.pg_data.display(),
                conn_params(st, "cairn").target(),
            ),
        )
        .with_hint("point pg-data and pg-host/pg-port of the stanza section at the same cluster"));
    }
    Ok(ClusterIdentity {
        system_id: system_id
            .parse()
            .map_err(|_| Failure::new(ErrorKind::Postgres, "unexpected system identifier"))?,
        pg_major: pg_major as u32,
    })
}

/// What `cairn check` and `cairn backup` both require of the server before relying on it:
/// it runs on `pg-data` and is the cluster the stanza was created for (system identifier
/// and major version).
pub async fn require_stanza_cluster(
    client: &tokio_postgres::Client,
    st: &StanzaConfig,
    name: &StanzaName,
    info: &StanzaInfo,
) -> Result<ClusterIdentity, Failure> {
    let id = server_identity(client, st).await?;
    let cur = info.current();
    if cur.system_id != id.system_id || cur.pg_major != id.pg_major {
        return Err(Failure::new(
            ErrorKind::Stanza,
            format!(
                "stanza '{name}' belongs to system {} (PostgreSQL {}), the server is system {} (PostgreSQL {})",
                cur.system_id, cur.pg_major, id.system_id, id.pg_major
            ),
        )
        .with_hint("run `cairn stanza-upgrade` after a major upgrade, or fix the stanza section"));
    }
    Ok(id)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Read the identity of a (possibly stopped) cluster from its data directory.
pub fn identity_from_data_dir(pg_data: &Path) -> Result<ClusterIdentity, Failure> {
    let read = |rel: &str| {
        std::fs::read(pg_data.join(rel)).map_err(|e| {
            Failure::new(
                ErrorKind::LocalIo,
                format!("cannot read {}: {e}", pg_data.join(rel).display()),
            )
            .with_hint("check pg-data, and that cairn runs as the user owning the cluster")
        })
    };
    let control = read("global/pg_control")?;
    let version = read("PG_VERSION")?;
    let prefix = cairn_pgformat::control::ControlFilePrefix::parse(&control)
        .map_err(|e| Failure::new(ErrorKind::InvalidInput, format!("global/pg_control: {e}")))?;
    let pg_major = cairn_pgformat::control::parse_pg_version_file(&version)
        .map_err(|e| Failure::new(ErrorKind::InvalidInput, format!("PG_VERSION: {e}")))?;
    Ok(ClusterIdentity {
        system_id: prefix.system_identifier,
        pg_major,
    })
}
