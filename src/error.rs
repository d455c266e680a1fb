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

impl Fail {
    /// The report on one line, as the terminal shows it (see [`render`]).
    pub fn message(&self) -> String {
        render(self.report.as_ref())
    }
}

/// An error and its causes on one line, `what: why: why`, leaving out a
/// cause the line already says. Many error types put their source into
/// their own message (`cannot open {path}: {source}`) *and* return it from
/// `source()`, so printing the chain as such (`{:#}`) said every cause
/// twice: "Permission denied (os error 13): Permission denied (os error 13)".
pub fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// What every subcommand returns.
pub type CmdResult = Result<ExitStatus, Fail>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open /x/lock: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(13);
        let e = anyhow::Error::new(Repeats { source: io }).context("cannot start");
        let line = render(e.as_ref());
        assert_eq!(
            line,
            "cannot start: cannot open /x/lock: Permission denied (os error 13)"
        );
        let fail = Fail::new(ExitStatus::Failure, anyhow::anyhow!("plain"));
        assert_eq!(fail.message(), "plain");
    }
}
