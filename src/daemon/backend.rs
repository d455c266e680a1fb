//! The daemon's seam to the sync engine and the lease.
//!
//! The scheduler only needs "run a pass of target X with this scope" and the
//! supervisor only needs "keep the lease, tell me when it is lost, release
//! it"; these two small traits say exactly that, so the scheduling,
//! debouncing and shutdown logic can be unit-tested against a recording
//! fake while production wires in `crate::sync::Engine` and
//! `crate::lease::LeaseSet` (see [`open`]).

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::status::PassCounts;
use crate::error::ExitStatus;
use crate::remote::WriteGate;

/// What a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Compare the whole target with the remote.
    Full,
    /// Re-check only these absolute local paths (from file events).
    Paths(Vec<PathBuf>),
}

/// The result of a pass that ran (possibly with failed files).
#[derive(Debug, Clone, Default)]
pub(crate) struct PassOutcome {
    pub counts: PassCounts,
    pub conflicts: Vec<String>,
    /// (path, reason) of files that failed.
    pub failed: Vec<(String, String)>,
}

/// A pass, lease renewal or release that failed as a whole.
#[derive(Debug, Clone)]
pub(crate) struct SeamError {
    pub status: ExitStatus,
    pub message: String,
}

impl std::fmt::Display for SeamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl SeamError {
    pub fn from_err<E>(e: &E) -> SeamError
    where
        E: crate::error::HasExitStatus + std::error::Error,
    {
        SeamError {
            status: e.exit_status(),
            message: format!("{:#}", anyhow::anyhow!(e.to_string())),
        }
    }
}

/// Runs passes.
pub(crate) trait SyncSeam: Send + Sync + 'static {
    fn pass(
        &self,
        target: &str,
        scope: Scope,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<PassOutcome, SeamError>>;
}

/// Holds the leases.
pub(crate) trait LeaseSeam: Send + Sync + 'static {
    /// Open while every lease is held.
    fn gate(&self) -> WriteGate;
    /// Renew until `cancel`; `Err` means the lease is definitively lost.
    fn maintain(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>>;
    /// The keeper's own view, shown by `status`.
    fn snapshot(&self) -> serde_json::Value;
    fn release(&self) -> BoxFuture<'static, Result<(), SeamError>>;
}

/// The engine and lease of a running daemon.
#[derive(Clone)]
pub(crate) struct Backends {
    pub sync: Arc<dyn SyncSeam>,
    pub lease: Arc<dyn LeaseSeam>,
}
