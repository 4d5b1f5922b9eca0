//! `stanza-create`, `stanza-upgrade`, `stanza-delete`.

use std::process::ExitCode;

use cairn_basebackup::ReplicationError;
use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{StanzaCreated, StanzaName};

use crate::pg::{self, ClusterIdentity};

pub fn stanza_name(cfg: &Config, stanza: Option<&str>) -> Result<StanzaName, Failure> {
    let (name, _) = cfg.stanza(stanza)?;
    StanzaName::new(name).map_err(|m| Failure::new(ErrorKind::Config, m))
}

/// The cluster's identity: from the running server, or from pg_control when no server
/// answers (a refused connection, e.g. a TLS or password failure, is an error).
async fn identity(cfg: &Config, stanza: Option<&str>) -> Result<ClusterIdentity, Failure> {
    let (_, st) = cfg.stanza(stanza)?;
    match pg::connect_sql(st).await {
        Ok(client) => pg::server_identity(&client, st).await,
        Err(e @ ReplicationError::Connect { .. }) => {
            let f = Failure::from_error(&e);
            let id = pg::identity_from_data_dir(&st.pg_data).map_err(|e| {
                Failure::new(
                    e.kind,
                    format!(
                        "{}; and the server is not reachable: {}",
                        e.message, f.message
                    ),
                )
                .with_hint("start the cluster, or check pg-data")
            })?;
            eprintln!(
                "cairn: server not reachable ({}); read the identity from {}/global/pg_control",
                f.message,
                st.pg_data.display()
            );
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(cfg: &Config, stanza: Option<&str>) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let id = identity(cfg, stanza).await?;
    let (repo, created_repo) = cairn_startup::open_or_create_repo(cfg).await?;
    if created_repo {
        if repo.keys().encrypts() {
            println!("created repository at {} (encrypted)", repo.location());
        } else {
            println!("created repository at {} (NOT encrypted)", repo.location());
            println!(
                "WARNING: without repo.cipher-pass, anyone who can read the repository can read \
                 every backup and WAL file, and its key is stored in the clear: checks detect \
                 accidental damage (a bad disk, a misplaced file), not deliberate tampering by \
                 someone who can write to it"
            );
        }
    }
    match repo.create_stanza(&name, id.system_id, id.pg_major).await? {
        StanzaCreated::Created => {
            println!(
                "created stanza '{name}' for system {} (PostgreSQL {})",
                id.system_id, id.pg_major
            )
        }
        StanzaCreated::AlreadyExists => {
            println!("stanza '{name}' already exists for this cluster; nothing to do")
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn upgrade(cfg: &Config, stanza: Option<&str>) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let id = identity(cfg, stanza).await?;
    let repo = cairn_startup::open_repo(cfg).await?;
    if repo
        .upgrade_stanza(&name, id.system_id, id.pg_major)
        .await?
    {
        println!(
            "stanza '{name}' now protects system {} (PostgreSQL {})",
            id.system_id, id.pg_major
        );
    } else {
        println!("stanza '{name}' already protects this cluster; nothing to do");
    }
    Ok(ExitCode::SUCCESS)
}

/// Deleting the archive of a cluster that runs would leave it archiving into nothing:
/// refuse when the configured server answers as the stanza's cluster, or its data
/// directory holds a `postmaster.pid`.
async fn refuse_if_running(
    st: &cairn_config::StanzaConfig,
    name: &StanzaName,
    info: &cairn_repo::StanzaInfo,
) -> Result<(), Failure> {
    let ours = |system_id: u64| info.history.iter().any(|g| g.system_id == system_id);
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let client = pg::connect(st).await?;
        pg::server_identity(&client, st).await
    })
    .await;
    let running = match answered {
        Ok(Ok(id)) if ours(id.system_id) => Some(format!(
            "the server at {}:{} answers as system {}",
            st.pg_host, st.pg_port, id.system_id
        )),
        _ => st
            .pg_data
            .join("postmaster.pid")
            .exists()
            .then(|| format!("{} holds postmaster.pid", st.pg_data.display())),
    };
    match running {
        None => Ok(()),
        Some(why) => Err(Failure::new(
            ErrorKind::Refused,
            format!("stanza '{name}' belongs to a cluster that is running ({why}); refusing to delete its archive"),
        )
        .with_hint(
            "stop the cluster (or take cairn out of its archive_command) first; stanza-delete removes every backup and WAL file",
        )),
    }
}

pub async fn delete(cfg: &Config, stanza: Option<&str>, force: bool) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    if !force {
        return Err(Failure::new(
            ErrorKind::Refused,
            format!("stanza-delete removes every backup and WAL file of '{name}'"),
        )
        .with_hint("add --force if that is what you want"));
    }
    let (_, st) = cfg.stanza(stanza)?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let info = repo.require_stanza(&name).await?;
    refuse_if_running(st, &name, &info).await?;
    let n = repo.delete_stanza(&name).await?;
    println!("deleted stanza '{name}' ({n} objects)");
    Ok(ExitCode::SUCCESS)
}
