//! The SQL side of a drill, over the copy's private Unix socket: waiting for recovery to
//! reach its target, reading where it got to, and the sanity and `--sql` queries.

use std::time::Duration;

use cairn_pgformat::{Lsn, PgTimestamp};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::error::DrillError;
use crate::server::ServerSettings;

/// Whom the drill connects as, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAs {
    /// A role of the restored cluster (the stanza's `pg-user`).
    pub user: String,
    /// The stanza's `pg-database`.
    pub database: String,
}

pub(crate) async fn connect(
    settings: &ServerSettings,
    who: &ConnectAs,
) -> Result<Client, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host_path(&settings.socket)
        .port(settings.port)
        .user(&who.user)
        .dbname(&who.database)
        .application_name("cairn-drill")
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = c.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Where recovery is, as the server says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryState {
    pub in_recovery: bool,
    /// `pg_get_wal_replay_pause_state() = 'paused'`: stopped at the target.
    pub paused: bool,
}

pub(crate) async fn recovery_state(c: &Client) -> Result<RecoveryState, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    pg_is_in_recovery() AND pg_get_wal_replay_pause_state() = 'paused'",
            &[],
        )
        .await?;
    Ok(RecoveryState {
        in_recovery: row.get(0),
        paused: row.get(1),
    })
}

/// `pg_last_wal_replay_lsn()` and `pg_last_xact_replay_timestamp()`; both stay put after
/// recovery ends.
pub(crate) async fn replayed(
    c: &Client,
) -> Result<(Option<Lsn>, Option<PgTimestamp>), tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT pg_last_wal_replay_lsn()::text, \
                    (extract(epoch FROM pg_last_xact_replay_timestamp() \
                                        - timestamptz '2000-01-01 00:00:00+00') * 1000000)::int8",
            &[],
        )
        .await?;
    let lsn: Option<String> = row.get(0);
    let micros: Option<i64> = row.get(1);
    Ok((lsn.and_then(|l| l.parse().ok()), micros.map(PgTimestamp)))
}

/// The sanity query: the catalog is readable and not empty.
pub(crate) async fn relations(c: &Client) -> Result<i64, DrillError> {
    let row = c
        .query_one("SELECT count(*) FROM pg_class", &[])
        .await
        .map_err(|e| sql_error("the sanity query SELECT count(*) FROM pg_class failed", &e))?;
    let n: i64 = row.get(0);
    if n == 0 {
        return Err(DrillError::EmptyCatalog);
    }
    Ok(n)
}

/// Run the operator's query as given (simple protocol, so any statement) and count the
/// rows it returned; none is a failure naming the query.
pub(crate) async fn run_sql(c: &Client, sql: &str) -> Result<u64, DrillError> {
    let messages = c
        .simple_query(sql)
        .await
        .map_err(|e| sql_error(&format!("the --sql query failed ({sql})"), &e))?;
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count() as u64;
    if rows == 0 {
        return Err(DrillError::NoRow { sql: sql.into() });
    }
    Ok(rows)
}

pub(crate) fn sql_error(what: &str, e: &tokio_postgres::Error) -> DrillError {
    DrillError::Sql {
        what: what.into(),
        message: flatten(e),
    }
}

pub(crate) fn flatten(e: &tokio_postgres::Error) -> String {
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
