//! `stanza-create`, `stanza-upgrade`, `stanza-delete`.

use std::process::ExitCode;

use cairn_config::Config;
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{StanzaCreated, StanzaName};

use crate::pg::{self, ClusterIdentity};

pub fn stanza_name(cfg: &Config, stanza: Option<&str>) -> Result<StanzaName, Failure> {
    let (name, _) = cfg.stanza(stanza)?;
    StanzaName::new(name).map_err(|m| Failure::new(ErrorKind::Config, m))
}

/// The cluster's identity: from the running server, or from pg_control when it is down.
async fn identity(cfg: &Config, stanza: Option<&str>) -> Result<ClusterIdentity, Failure> {
    let (_, st) = cfg.stanza(stanza)?;
    match pg::identity_from_server(st).await {
        Ok(id) => Ok(id),
        Err(f) if f.kind == ErrorKind::Postgres => {
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
        Err(f) => Err(f),
    }
}

pub async fn create(cfg: &Config, stanza: Option<&str>) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    let id = identity(cfg, stanza).await?;
    let (repo, created_repo) = cairn_startup::open_or_create_repo(cfg).await?;
    if created_repo {
        if repo.keys().encrypts() {
            println!(
                "created repository at {} (encrypted)",
                repo.backend().location()
            );
        } else {
            println!(
                "created repository at {} (NOT encrypted)",
                repo.backend().location()
            );
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

pub async fn delete(cfg: &Config, stanza: Option<&str>, force: bool) -> Result<ExitCode, Failure> {
    let name = stanza_name(cfg, stanza)?;
    if !force {
        return Err(Failure::new(
            ErrorKind::Refused,
            format!("stanza-delete removes every backup and WAL file of '{name}'"),
        )
        .with_hint("add --force if that is what you want"));
    }
    let repo = cairn_startup::open_repo(cfg).await?;
    repo.require_stanza(&name).await?;
    let n = repo.delete_stanza(&name).await?;
    println!("deleted stanza '{name}' ({n} objects)");
    Ok(ExitCode::SUCCESS)
}
