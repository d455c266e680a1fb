//! Exit codes: the one table that maps what went wrong to what a script sees.
//!
//! Every error type in the library knows its [`ExitStatus`]; `main` turns it
//! into a process exit code. Nothing below `main` calls `process::exit`.

use std::process::ExitCode;

/// The documented exit codes of `coltecd` (see README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// 0: success (for `status`: healthy).
    Ok,
    /// 1: an unexpected failure; for `status`: degraded.
    Failure,
    /// 2: bad command line.
    Usage,
    /// 3: the spec is invalid; for `status`: the daemon is not running.
    InvalidSpec,
    /// 4: a lease on one of the spec's prefixes is held by another container.
    LeaseHeld,
    /// 5: the remote is unreachable, refuses our credentials, or credentials are missing.
    Remote,
    /// 6: the run finished but some files failed.
    PartialFailure,
    /// `coltecd init`: the supervised command's own exit code (128+signal
    /// when it was killed), passed through unchanged.
    Child(u8),
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::InvalidSpec => 3,
            ExitStatus::LeaseHeld => 4,
            ExitStatus::Remote => 5,
            ExitStatus::PartialFailure => 6,
            ExitStatus::Child(code) => code,
        }
    }

    /// `status` reuses 3 for "not running".
    pub const NOT_RUNNING: ExitStatus = ExitStatus::InvalidSpec;
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// Implemented by every error that can end a command, so `main` can pick the
/// exit code from the error's kind and never from its message.
pub trait HasExitStatus {
    fn exit_status(&self) -> ExitStatus;
}

/// How a command failed: the exit status plus a report for the terminal.
///
/// Typed library errors convert into it with `?` (their kind picks the exit
/// status); ad-hoc failures use [`Fail::new`].
#[derive(Debug)]
pub struct Fail {
    pub status: ExitStatus,
    pub report: anyhow::Error,
}

impl Fail {
    pub fn new(status: ExitStatus, report: impl Into<anyhow::Error>) -> Self {
        Fail {
            status,
            report: report.into(),
        }
    }
}

impl<E> From<E> for Fail
where
    E: HasExitStatus + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        Fail {
            status: e.exit_status(),
            report: anyhow::Error::new(e),
        }
    }
}

/// What every subcommand returns.
pub type CmdResult = Result<ExitStatus, Fail>;
