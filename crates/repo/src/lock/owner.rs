//! Who holds a lock, and whether this process can prove that holder has exited.
//!
//! A pid alone proves nothing: pids are reused, containers have their own pid spaces, and
//! two machines may share a host name. So the owner records, besides host name and pid,
//! the kernel's boot id, the pid namespace and the process start time (clock ticks after
//! boot, field 22 of `/proc/<pid>/stat`). Only a process on the same boot of the same
//! kernel, in the same pid namespace, can look the holder up, and only then is "gone"
//! a proof.

use std::fs;

use serde::{Deserialize, Serialize};

/// The process that holds (or held) a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
    /// Start time of the process in clock ticks after boot: tells a reused pid apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id`: the same kernel, booted once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// `/proc/self/ns/pid` (`pid:[4026531836]`): the same pid space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

impl LockOwner {
    /// This process.
    pub fn current() -> LockOwner {
        let pid = std::process::id();
        LockOwner {
            host: host_name(),
            pid,
            pid_start: process_stat(pid).map(|s| s.start),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            pid_ns: fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }

    /// The owner of process `pid` as seen from this process (same host, boot and pid
    /// namespace), if it exists: for tests that stand a lock in for another process.
    pub fn of_process(pid: u32) -> Option<LockOwner> {
        let stat = process_stat(pid)?;
        Some(LockOwner {
            pid,
            pid_start: Some(stat.start),
            ..LockOwner::current()
        })
    }

    /// Why `holder` has certainly exited, when this process can tell: it must share
    /// this host's boot and pid namespace, and its pid must be free, a zombie, or belong
    /// to a process started at another time. `None`: it may still run.
    pub fn proves_gone(&self, holder: &LockOwner) -> Option<String> {
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        if self.host != holder.host
            || !same(&self.boot_id, &holder.boot_id)
            || !same(&self.pid_ns, &holder.pid_ns)
        {
            return None;
        }
        let pid = holder.pid;
        match process_stat(pid) {
            Some(stat) if matches!(stat.state, 'Z' | 'X') => {
                Some(format!("its process {pid} has exited"))
            }
            Some(stat) => match holder.pid_start {
                Some(start) if start != stat.start => Some(format!(
                    "its process {pid} is gone (the pid now belongs to another process)"
                )),
                _ => None,
            },
            // /proc may hide other users' processes (hidepid): only ESRCH proves it.
            None if process_absent(pid) => Some(format!("its process {pid} is gone")),
            None => None,
        }
    }
}

/// The host name (`uname -n`).
fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessStat {
    state: char,
    start: u64,
}

fn process_stat(pid: u32) -> Option<ProcessStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Fields of `/proc/<pid>/stat`: `pid (comm) state ppid ... starttime(22) ...`. The
/// command name may hold spaces and parentheses, so fields count from the last `)`.
fn parse_stat(text: &str) -> Option<ProcessStat> {
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), starttime is field 22: 18 fields further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some(ProcessStat { state, start })
}

/// `kill(pid, 0)` says no such process.
fn process_absent(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(e) if e == rustix::io::Errno::SRCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line = "4242 (cairn (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcessStat {
                state: 'S',
                start: 987654
            })
        );
        assert_eq!(parse_stat("4242 (cairn) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_is_alive_and_identified() {
        let me = LockOwner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.pid_start.is_some() && me.boot_id.is_some() && me.pid_ns.is_some());
        assert_eq!(me.proves_gone(&me), None);
        assert_eq!(LockOwner::of_process(me.pid), Some(me));
    }

    #[test]
    fn an_exited_child_is_proven_gone_and_a_reused_pid_too() {
        let me = LockOwner::current();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let holder = LockOwner::of_process(child.id()).unwrap();
        assert_eq!(me.proves_gone(&holder), None, "a running child is alive");
        child.kill().unwrap();
        child.wait().unwrap();
        let why = me.proves_gone(&holder).expect("an exited child is gone");
        assert!(why.contains(&holder.pid.to_string()), "{why}");

        // Our own pid with another start time: the pid was reused.
        let reused = LockOwner {
            pid_start: me.pid_start.map(|s| s + 1),
            ..me.clone()
        };
        assert!(me.proves_gone(&reused).unwrap().contains("another process"));
    }

    #[test]
    fn nothing_is_proven_from_another_host_boot_or_pid_space() {
        let me = LockOwner::current();
        let gone = LockOwner {
            pid: i32::MAX as u32,
            ..me.clone()
        };
        assert!(me.proves_gone(&gone).is_some());
        for other in [
            LockOwner {
                host: "elsewhere".into(),
                ..gone.clone()
            },
            LockOwner {
                boot_id: Some("another-boot".into()),
                ..gone.clone()
            },
            LockOwner {
                pid_ns: None,
                ..gone.clone()
            },
            LockOwner {
                pid_ns: Some("pid:[1]".into()),
                ..gone.clone()
            },
        ] {
            assert_eq!(me.proves_gone(&other), None, "{other:?}");
        }
    }
}
