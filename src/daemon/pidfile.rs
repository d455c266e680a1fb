//! The daemon's pidfile (`coltecd.pid` in the state dir).
//!
//! The pidfile is advice, the state-dir `flock` is the truth: a pidfile left
//! by a `kill -9`ed daemon names a dead (or reused) pid, so readers check the
//! process is alive *and* is a coltecd before believing it.
//!
//! Format: the pid on the first line; a second line `init` when the daemon
//! runs inside `coltecd init` (then the pid is the init process, which must
//! not be signalled to stop the daemon: that would stop the container's
//! command too).
//!
//! Which container the daemon runs in is what the state-dir lock file
//! records (`pid N on host H, container C`, written by the lock holder).
//! Two containers sharing one state volume see each other's pidfile and
//! control socket; `status` and `stop` act only on a daemon of their own
//! container ([`foreign`]), and a pid from another container's pid
//! namespace is never signalled.

use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

pub const PID_FILE: &str = "coltecd.pid";

/// Removes the pidfile on drop if it still names this process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// Write our pid (atomically: [`crate::fsutil::write_atomic_mode`]); `under_init` marks a daemon
/// running inside `coltecd init`. Call only while holding the state-dir lock.
pub fn write(state_dir: &Path, under_init: bool) -> std::io::Result<PidFile> {
    let pid = std::process::id();
    let path = state_dir.join(PID_FILE);
    let body = if under_init {
        format!("{pid}\ninit\n")
    } else {
        format!("{pid}\n")
    };
    crate::fsutil::write_atomic_mode(&path, body.as_bytes(), 0o644)?;
    Ok(PidFile { path, pid })
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_at(&self.path) == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_at(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether the pidfile says the daemon runs inside `coltecd init`.
pub fn under_init(state_dir: &Path) -> bool {
    std::fs::read_to_string(state_dir.join(PID_FILE))
        .is_ok_and(|s| s.lines().nth(1).is_some_and(|l| l.trim() == "init"))
}

/// The process holding (or last holding) a state dir, and its container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub container: String,
    pub host: String,
}

impl Owner {
    /// This process, in this container.
    pub fn current() -> Owner {
        Owner {
            pid: std::process::id(),
            container: crate::lease::container_id(),
            host: crate::state_dir::hostname(),
        }
    }

    /// The lock file's line: `pid N on host H, container C`.
    pub fn to_line(&self) -> String {
        format!(
            "pid {} on host {}, container {}",
            self.pid, self.host, self.container
        )
    }

    /// Read back [`Owner::to_line`]; `None` for anything else (a lock file
    /// written by an older coltecd names no container).
    pub fn parse(line: &str) -> Option<Owner> {
        let rest = line.trim().strip_prefix("pid ")?;
        let (pid, rest) = rest.split_once(" on host ")?;
        let (host, container) = rest.rsplit_once(", container ")?;
        let container = container.trim();
        if container.is_empty() {
            return None;
        }
        Some(Owner {
            pid: pid.parse().ok()?,
            container: container.to_string(),
            host: host.to_string(),
        })
    }

    /// "pid 12, container 0123456789ab, host dev-a" (names escaped).
    pub fn describe(&self) -> String {
        let short: String = self.container.chars().take(12).collect();
        format!(
            "pid {}, container {}, host {}",
            self.pid,
            crate::escape::name(&short),
            crate::escape::name(&self.host)
        )
    }
}

/// Who holds, or last held, the state dir (its lock file's record).
pub fn owner(state_dir: &Path) -> Option<Owner> {
    let text = std::fs::read_to_string(state_dir.join(crate::state_dir::LOCK_FILE)).ok()?;
    Owner::parse(text.lines().next()?)
}

/// The state dir's holder (or last holder) when it is another container:
/// its pid means nothing here, and the control socket reaches that
/// container's daemon, not ours.
pub fn foreign(state_dir: &Path) -> Option<Owner> {
    owner(state_dir).filter(|o| o.container != crate::lease::container_id())
}

/// The pid recorded in the pidfile, unchecked.
pub fn recorded(state_dir: &Path) -> Option<u32> {
    read_at(&state_dir.join(PID_FILE))
}

/// The pid of the live daemon named by the pidfile, or `None` when there is
/// no pidfile or it is stale (dead process, or the pid now belongs to
/// something that is not coltecd).
pub fn live(state_dir: &Path) -> Option<u32> {
    if foreign(state_dir).is_some() {
        return None;
    }
    let pid = recorded(state_dir)?;
    is_coltecd(pid).then_some(pid)
}

/// Whether `pid` is alive and runs the coltecd binary.
pub fn is_coltecd(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie is dead for our purposes.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some(after) = stat.rsplit(')').next()
        && after.trim_start().starts_with('Z')
    {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .next()
            .map(|argv0| String::from_utf8_lossy(argv0).contains("coltecd"))
            .unwrap_or(false),
        // No /proc: the signal check is all we have.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_live_and_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let guard = write(tmp.path(), false).unwrap();
        assert_eq!(recorded(tmp.path()), Some(std::process::id()));
        assert!(!under_init(tmp.path()));
        // The unit-test binary is named coltecd-<hash>.
        assert_eq!(live(tmp.path()), Some(std::process::id()));
        drop(guard);
        assert_eq!(recorded(tmp.path()), None);
        let guard = write(tmp.path(), true).unwrap();
        assert_eq!(recorded(tmp.path()), Some(std::process::id()));
        assert!(under_init(tmp.path()));
        drop(guard);
    }

    #[test]
    fn another_containers_lock_record_is_foreign_and_its_pid_never_live() {
        let tmp = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        std::fs::write(tmp.path().join(PID_FILE), format!("{pid}\n")).unwrap();
        let lock = tmp.path().join(crate::state_dir::LOCK_FILE);
        let mut me = Owner::current();
        std::fs::write(&lock, me.to_line()).unwrap();
        assert_eq!(owner(tmp.path()), Some(me.clone()));
        assert_eq!(foreign(tmp.path()), None);
        assert_eq!(live(tmp.path()), Some(pid));
        me.container = "some-other-container".into();
        std::fs::write(&lock, me.to_line()).unwrap();
        assert_eq!(foreign(tmp.path()), Some(me));
        assert_eq!(live(tmp.path()), None);
        // An older lock record names no container: not known to be foreign.
        std::fs::write(&lock, format!("pid {pid} on host h")).unwrap();
        assert_eq!(foreign(tmp.path()), None);
        assert_eq!(live(tmp.path()), Some(pid));
    }
}
