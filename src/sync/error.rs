//! [`SyncError`]: everything a pass, a restore or opening the engine can
//! fail with, the exit status each maps to, and — in one place — what to
//! do next about each ([`SyncError::disposition`]).

use std::path::PathBuf;

use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::{Problem, RemoteError, ServerError};
use crate::spec::RemoteSpec;
use crate::state_dir::StateDirError;

use super::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no sync target named '{name}' (known: {known})")]
    UnknownTarget { name: String, known: String },
    #[error(transparent)]
    Setup(Box<RemoteError>),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error(transparent)]
    State(#[from] StateError),
    /// A remote object (the manifest) written by a newer coltecd.
    #[error(transparent)]
    FormatTooNew(#[from] crate::version::FormatTooNew),
    #[error(
        "target '{target}': {op} failed on the remote: {source}. Check the endpoint, bucket and credentials, then retry"
    )]
    Remote {
        target: String,
        op: String,
        #[source]
        source: Box<opendal::Error>,
    },
    /// A remote failure diagnosed as one a user can act on (cannot reach
    /// the endpoint, not an S3 server, credentials, bucket).
    #[error("target '{target}': {op} failed: {error}")]
    Server {
        target: String,
        op: String,
        error: Box<ServerError>,
    },
    #[error("target '{target}': local directory {}: {source}", path.display())]
    Local {
        target: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "target '{target}': refusing to delete {count} of {total} {side} files in one pass \
         (the guard stops passes deleting more than {max_files} files and more than {pct}% of them; \
         an empty or unmounted directory looks like this). Nothing was changed for this target. \
         If the deletes are intended, re-run with --allow-mass-delete"
    )]
    MassDelete {
        target: String,
        count: u64,
        total: u64,
        side: &'static str,
        max_files: u64,
        pct: String,
    },
    #[error(
        "target '{target}': refusing to overwrite {count} of {total} remote files whose local \
         copies did not change since the last sync (the guard stops passes overwriting more than \
         {max_files} files and more than {pct}% of them; the remote was rewritten by another tool, \
         or the server reports something coltecd misreads). Nothing was changed for this target. \
         If the local versions should win, re-run with --allow-mass-delete"
    )]
    MassOverwrite {
        target: String,
        count: u64,
        total: u64,
        max_files: u64,
        pct: String,
    },
    #[error("target '{target}': remote writes are paused ({reason}); nothing more was written")]
    Fenced { target: String, reason: String },
    #[error("target '{target}' cannot be synced: {reason}")]
    Unavailable {
        target: String,
        reason: String,
        status: ExitStatus,
    },
    #[error("sync cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RemoteError> for SyncError {
    fn from(e: RemoteError) -> Self {
        SyncError::Setup(Box::new(e))
    }
}

impl SyncError {
    /// `source`, a failed `op` on `remote` for `target`: diagnosed when it
    /// is one of [`Problem`]'s cases, else as it came.
    pub fn remote(target: &str, remote: &RemoteSpec, op: &str, source: opendal::Error) -> Self {
        match ServerError::diagnose(remote, &source) {
            Some(error) => SyncError::Server {
                target: target.to_string(),
                op: op.to_string(),
                error: Box::new(error),
            },
            None => SyncError::Remote {
                target: target.to_string(),
                op: op.to_string(),
                source: Box::new(source),
            },
        }
    }
}

impl HasExitStatus for SyncError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SyncError::UnknownTarget { .. } => ExitStatus::Usage,
            SyncError::Setup(e) => e.exit_status(),
            SyncError::StateDir(e) => e.exit_status(),
            SyncError::Remote { .. } => ExitStatus::Remote,
            SyncError::Server { error, .. } => error.exit_status(),
            SyncError::Unavailable { status, .. } => *status,
            // The target's pass refused to run at all: a failure, not a
            // partial one (no file of that target was transferred).
            SyncError::MassDelete { .. }
            | SyncError::MassOverwrite { .. }
            | SyncError::FormatTooNew(_) => ExitStatus::Failure,
            SyncError::State(_)
            | SyncError::Local { .. }
            | SyncError::Fenced { .. }
            | SyncError::Cancelled
            | SyncError::Internal(_) => ExitStatus::Failure,
        }
    }
}

/// What to do after a pass failed with a [`SyncError`]: the one place
/// errors are classified by what happens next (the daemon's scheduler acts
/// on it; nothing else should parse error text to decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (the network, a busy server, writes paused while the
    /// lease is re-proven): run the pass again after a backoff.
    Retry,
    /// It fails the same way until something outside changes (the spec,
    /// credentials, permissions, the local directory, `--allow-mass-delete`
    /// for a guard refusal): no retry loop; `status` shows the error, which
    /// says what to do.
    NeedsHuman,
    /// Not a failure (the pass was cancelled, e.g. superseded or stopping):
    /// run it again when due, without backoff.
    Requeue,
    /// This process cannot go on serving the target safely (its state
    /// database or an internal invariant broke): stop.
    Stop,
}

impl SyncError {
    /// What to do next about this error (see [`Disposition`]).
    pub fn disposition(&self) -> Disposition {
        match self {
            SyncError::Remote { source, .. } => remote_disposition(source),
            // An outage, a busy proxy's error page or credentials fixed on
            // the remote side go away without us; a bucket does not.
            SyncError::Server { error, .. } => match error.problem {
                Problem::NoSuchBucket | Problem::InvalidBucketName => Disposition::NeedsHuman,
                Problem::Unreachable(_) | Problem::NotS3(_) | Problem::Credentials(_) => {
                    Disposition::Retry
                }
            },
            SyncError::Fenced { .. } => Disposition::Retry,
            SyncError::Cancelled => Disposition::Requeue,
            SyncError::UnknownTarget { .. }
            | SyncError::Setup(_)
            | SyncError::Local { .. }
            | SyncError::MassDelete { .. }
            | SyncError::MassOverwrite { .. }
            | SyncError::FormatTooNew(_)
            | SyncError::Unavailable { .. } => Disposition::NeedsHuman,
            SyncError::StateDir(StateDirError::Locked { .. }) => Disposition::NeedsHuman,
            SyncError::StateDir(_) | SyncError::State(_) | SyncError::Internal(_) => {
                Disposition::Stop
            }
        }
    }
}

/// By the time an error reaches a pass, opendal's `RetryLayer` has retried
/// what `is_temporary()` allowed and marked *every* error it returns
/// persistent (opendal 0.59), so the temporary/persistent flags no longer
/// tell an outage from a verdict; the kind does. Only a configuration the
/// service rejects as such (`ConfigInvalid`, `Unsupported`) waits for a
/// human; anything else, access denied included (fixable on the remote
/// side without touching coltecd), is retried after a backoff.
fn remote_disposition(e: &opendal::Error) -> Disposition {
    match e.kind() {
        opendal::ErrorKind::ConfigInvalid | opendal::ErrorKind::Unsupported => {
            Disposition::NeedsHuman
        }
        _ => Disposition::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendal::ErrorKind;

    fn remote(e: opendal::Error) -> SyncError {
        SyncError::Remote {
            target: "t".into(),
            op: "listing".into(),
            source: Box::new(e),
        }
    }

    #[test]
    fn remote_errors_wait_for_a_human_only_when_the_configuration_is_refused() {
        let temporary = opendal::Error::new(ErrorKind::Unexpected, "503").set_temporary();
        assert_eq!(remote(temporary).disposition(), Disposition::Retry);
        // What the retry layer returns after giving up: persistent.
        let outlasted_retries = opendal::Error::new(ErrorKind::Unexpected, "reset")
            .set_temporary()
            .set_persistent();
        assert_eq!(remote(outlasted_retries).disposition(), Disposition::Retry);
        let slow_down = opendal::Error::new(ErrorKind::RateLimited, "SlowDown");
        assert_eq!(remote(slow_down).disposition(), Disposition::Retry);
        let denied = opendal::Error::new(ErrorKind::PermissionDenied, "no").set_persistent();
        assert_eq!(remote(denied).disposition(), Disposition::Retry);
        for kind in [ErrorKind::ConfigInvalid, ErrorKind::Unsupported] {
            let refused = opendal::Error::new(kind, "no").set_persistent();
            assert_eq!(
                remote(refused).disposition(),
                Disposition::NeedsHuman,
                "{kind}"
            );
        }
    }

    #[test]
    fn a_guard_refusal_and_an_unusable_target_wait_for_a_human() {
        let guard = SyncError::MassDelete {
            target: "t".into(),
            count: 90,
            total: 100,
            side: "remote",
            max_files: 50,
            pct: "25".into(),
        };
        assert_eq!(guard.disposition(), Disposition::NeedsHuman);
        let unavailable = SyncError::Unavailable {
            target: "t".into(),
            reason: "crypt".into(),
            status: ExitStatus::InvalidSpec,
        };
        assert_eq!(unavailable.disposition(), Disposition::NeedsHuman);
        let no_credentials = SyncError::from(RemoteError::MissingCredentials {
            remote: "r".into(),
            vars: "X".into(),
        });
        assert_eq!(no_credentials.disposition(), Disposition::NeedsHuman);
        let local = SyncError::Local {
            target: "t".into(),
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(local.disposition(), Disposition::NeedsHuman);
    }

    #[test]
    fn a_cancelled_pass_is_requeued_and_a_fenced_one_retried() {
        assert_eq!(SyncError::Cancelled.disposition(), Disposition::Requeue);
        let fenced = SyncError::Fenced {
            target: "t".into(),
            reason: "renewals failing".into(),
        };
        assert_eq!(fenced.disposition(), Disposition::Retry);
    }

    #[test]
    fn broken_local_state_stops() {
        let state = SyncError::State(StateError::Db {
            path: "/s/sync.redb".into(),
            source: redb::Error::DatabaseAlreadyOpen,
        });
        assert_eq!(state.disposition(), Disposition::Stop);
        assert_eq!(
            SyncError::Internal("panicked".into()).disposition(),
            Disposition::Stop
        );
    }
}
