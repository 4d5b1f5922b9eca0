//! What `cairn` asks a running PostgreSQL (over an ordinary SQL connection), and what it
//! reads from a stopped cluster's data directory instead.

use std::path::Path;

use cairn_config::StanzaConfig;
use cairn_exit::{ErrorKind, Failure};
use tokio_postgres::NoTls;

/// The identity of a cluster: what a stanza is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub system_id: u64,
    pub pg_major: u32,
}

pub async fn connect(st: &StanzaConfig) -> Result<tokio_postgres::Client, Failure> {
    let mut c = tokio_postgres::Config::new();
    c.host(&st.pg_host)
        .port(st.pg_port)
        .user(&st.pg_user)
        .dbname(&st.pg_database);
    c.application_name("cairn");
    c.connect_timeout(std::time::Duration::from_secs(10));
    if let Some(p) = &st.pg_password {
        c.password(p.expose());
    }
    match st.pg_sslmode.as_deref() {
        None | Some("disable") | Some("allow") | Some("prefer") => {}
        Some(other) => {
            return Err(Failure::new(
                ErrorKind::Config,
                format!("pg-sslmode '{other}' is not supported for SQL connections yet"),
            )
            .with_hint("use pg-sslmode = \"prefer\" or connect over the Unix socket"));
        }
    }
    let (client, conn) = c.connect(NoTls).await.map_err(|e| {
        Failure::new(ErrorKind::Postgres, format!("cannot connect to PostgreSQL at {}:{}: {}", st.pg_host, st.pg_port, flatten(&e)))
            .with_hint("check pg-host, pg-port and pg-user in the stanza section, and that the server is running")
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
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

/// Ask the running server who it is, and check it serves `pg-data`.
pub async fn identity_from_server(st: &StanzaConfig) -> Result<ClusterIdentity, Failure> {
    let client = connect(st).await?;
    let row = client
        .query_one(
            "SELECT system_identifier::text, current_setting('server_version_num')::int / 10000, \
             current_setting('data_directory') FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| sql_failure("cannot read the cluster identity", &e))?;
    let system_id: String = row.get(0);
    let pg_major: i32 = row.get(1);
    let data_dir: String = row.get(2);
    if !same_dir(Path::new(&data_dir), &st.pg_data) {
        return Err(Failure::new(
            ErrorKind::Config,
            format!(
                "pg-data is {}, but the server at {}:{} runs on {data_dir}",
                st.pg_data.display(),
                st.pg_host,
                st.pg_port
            ),
        )
        .with_hint("point pg-data and pg-host/pg-port at the same cluster"));
    }
    Ok(ClusterIdentity {
        system_id: system_id
            .parse()
            .map_err(|_| Failure::new(ErrorKind::Postgres, "unexpected system identifier"))?,
        pg_major: pg_major as u32,
    })
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
