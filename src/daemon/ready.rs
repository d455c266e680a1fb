//! The readiness protocol between `coltecd start` and the daemon it spawns.
//!
//! `start` creates a pipe and passes its write end to `coltecd run
//! --ready-fd N`. The daemon writes exactly one JSON line ([`ReadyMsg`])
//! when it is ready (leases held, first passes done) or has failed, then
//! closes the pipe. EOF without a message means the daemon died; `start`
//! then reports its exit status and points at the log.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::ExitStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum ReadyMsg {
    /// Syncing; `summary` is the line `start` prints.
    Ready { pid: u32, summary: String },
    /// Another daemon already runs for this spec.
    Already { pid: u32 },
    /// Did not start: exit code and reason.
    Failed { code: u8, reason: String },
}

/// The daemon's end of the pipe. Dropping it unsent closes the pipe (start
/// then sees EOF).
#[derive(Debug)]
pub struct Readiness {
    file: Option<File>,
}

impl Readiness {
    /// Take ownership of an inherited fd. Returns `None` if `fd` is not open.
    pub fn from_fd(fd: i32) -> Option<Readiness> {
        if fd < 0 || nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return None;
        }
        // SAFETY: the fd was passed to us by `coltecd start` for exactly
        // this purpose, is open (checked above) and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Children we spawn (none today) must not inherit it.
        let _ = nix::fcntl::fcntl(
            &owned,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        Some(Readiness {
            file: Some(File::from(owned)),
        })
    }

    /// Send the one message; later calls do nothing.
    pub fn send(&mut self, msg: &ReadyMsg) {
        if let Some(mut f) = self.file.take()
            && let Ok(mut line) = serde_json::to_string(msg)
        {
            line.push('\n');
            let _ = f.write_all(line.as_bytes());
        }
    }

    pub fn failed(&mut self, status: ExitStatus, reason: &str) {
        self.send(&ReadyMsg::Failed {
            code: status.code(),
            reason: reason.to_string(),
        });
    }

    pub fn is_pending(&self) -> bool {
        self.file.is_some()
    }
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for an F_GETFD probe; an invalid fd yields EBADF.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// `start`'s side: read the one message, or `None` on EOF without one.
pub fn wait(read_end: File) -> Option<ReadyMsg> {
    let mut line = String::new();
    BufReader::new(read_end).read_line(&mut line).ok()?;
    serde_json::from_str(line.trim()).ok()
}
