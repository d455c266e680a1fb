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
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::status::{InFlight, PassCounts};
use crate::error::ExitStatus;
use crate::remote::WriteGate;

/// What a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Scan the whole local target; `verify` also lists the remote (a full
    /// reconcile) instead of trusting the recorded sync state.
    Full { verify: bool },
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
    /// (path, reason) of paths deliberately not synced (special files).
    pub skipped: Vec<(String, String)>,
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
        // The error's message plus any causes it does not already spell out.
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        SeamError {
            status: e.exit_status(),
            message,
        }
    }
}

/// Live progress of the pass in flight of one target (what `status` shows
/// as in-flight transfers). Written by the engine's observer, read by
/// `status`; plain atomics so neither side ever waits.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    files_planned: AtomicU64,
    files_done: AtomicU64,
    bytes_planned: AtomicU64,
    bytes_done: AtomicU64,
}

impl Progress {
    pub fn reset(&self) {
        for a in [
            &self.files_planned,
            &self.files_done,
            &self.bytes_planned,
            &self.bytes_done,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
    pub fn planned(&self, files: u64, bytes: u64) {
        self.files_planned.store(files, Ordering::Relaxed);
        self.bytes_planned.store(bytes, Ordering::Relaxed);
    }
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }
    pub fn bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }
    pub fn view(&self) -> InFlight {
        InFlight {
            files_planned: self.files_planned.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_planned: self.bytes_planned.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
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
        progress: Arc<Progress>,
    ) -> BoxFuture<'static, Result<PassOutcome, SeamError>>;

    /// Write what passes deferred (the manifests) before the lease is
    /// released. Called once, after the last pass.
    fn finish(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>>;
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
