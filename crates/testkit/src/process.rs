//! The processes of a cluster, read from `/proc`: is one alive, which are its children, and
//! killing a postmaster with all of them.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::command;
use crate::error::{Error, Result};
use crate::wait::wait_until;

/// SIGKILL to `pid` and its children at once; waits until all are gone.
pub(crate) fn kill_tree(pid: u32) -> Result<()> {
    let mut pids = vec![pid];
    pids.extend(child_pids(pid));
    let mut cmd = Command::new("kill");
    cmd.arg("-KILL").args(pids.iter().map(|p| p.to_string()));
    // Some may already have exited; what matters is that all are gone afterwards.
    let _ = command::run_unchecked(&mut cmd, None);
    wait_until(
        "the killed postmaster and its children to exit",
        Duration::from_secs(30),
        || Ok::<_, Error>(pids.iter().all(|&p| !pid_alive(p)).then_some(())),
    )
}

/// The process is a PostgreSQL server (its command line names `postgres`).
pub(crate) fn is_postgres(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("postgres"))
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...), if the process exists.
fn pid_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Exists and is not a zombie (this machine's init may never reap orphans).
pub(crate) fn pid_alive(pid: u32) -> bool {
    matches!(pid_state(pid), Some(s) if s != 'Z' && s != 'X')
}

fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()?;
                    Some(rest == parent)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_pid_is_alive_and_a_child_is_found() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(child_pids(std::process::id()).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!pid_alive(child.id()));
    }
}
