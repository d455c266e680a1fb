//! [`SyncError`]: everything a pass, a restore or opening the engine can
//! fail with, and the exit status each maps to.

use std::path::PathBuf;

use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::RemoteError;
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
    #[error(
        "target '{target}': {op} failed on the remote: {source}. Check the endpoint, bucket and credentials, then retry"
    )]
    Remote {
        target: String,
        op: String,
        #[source]
        source: Box<opendal::Error>,
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

impl HasExitStatus for SyncError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SyncError::UnknownTarget { .. } => ExitStatus::Usage,
            SyncError::Setup(e) => e.exit_status(),
            SyncError::StateDir(e) => e.exit_status(),
            SyncError::Remote { .. } => ExitStatus::Remote,
            SyncError::Unavailable { status, .. } => *status,
            // The target's pass refused to run at all: a failure, not a
            // partial one (no file of that target was transferred).
            SyncError::MassDelete { .. } => ExitStatus::Failure,
            SyncError::State(_)
            | SyncError::Local { .. }
            | SyncError::Fenced { .. }
            | SyncError::Cancelled
            | SyncError::Internal(_) => ExitStatus::Failure,
        }
    }
}
