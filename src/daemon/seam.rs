//! The daemon ↔ engine seam: what the daemon needs from the sync engine and
//! the lease, as two small traits carrying typed values.
//!
//! The scheduler only needs "run a pass of target X with this scope" and the
//! supervisor only needs "keep the lease, tell me when it is lost, release
//! it"; [`SyncSeam`] and [`LeaseSeam`] say exactly that, so the scheduling,
//! debouncing and shutdown logic can be unit-tested against a recording fake
//! while production wires in `crate::sync::Engine` and
//! `crate::lease::LeaseSet` (see `wiring`).
//!
//! Errors cross the seam as the engine's own types ([`SyncError`],
//! [`LeaseError`]), so what happens next (retry, wait for a human, requeue,
//! stop) is decided from the error's type, in one place: [`disposition`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::status::{InFlight, PrefixLease};
use crate::error::{ExitStatus, Fail, HasExitStatus};
use crate::lease::LeaseError;
use crate::remote::WriteGate;
use crate::sync::{PassReport, SyncError};

/// What a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Scan the whole local target; `verify` also lists the remote (a full
    /// reconcile) instead of trusting the recorded sync state.
    Full { verify: bool },
    /// Re-check only these absolute local paths (from file events).
    Paths(Vec<PathBuf>),
}

/// What a pass returns: its report (possibly with failed files), or why it
/// failed as a whole. Shared, because the scheduler hands one error to the
/// board, the `sync --now` callers and readiness.
pub(crate) type PassResult = Result<PassReport, Arc<SyncError>>;

/// Live progress of the pass in flight of one target (what `status` shows
/// as in-flight transfers). Written by the engine's observer, read by
/// `status`; plain atomics so neither side ever waits.
#[derive(Debug, Default)]
pub(crate) struct PassProgress {
    files_planned: AtomicU64,
    files_done: AtomicU64,
    bytes_planned: AtomicU64,
    bytes_done: AtomicU64,
}

impl PassProgress {
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
        progress: Arc<PassProgress>,
    ) -> BoxFuture<'static, PassResult>;

    /// Write what passes deferred (the manifests) before the lease is
    /// released. Called once, after the last pass.
    fn finish(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SyncError>>;
}

/// Holds the leases.
pub(crate) trait LeaseSeam: Send + Sync + 'static {
    /// Open while every lease is held.
    fn gate(&self) -> WriteGate;
    /// Renew until `cancel`; `Err` means the lease is definitively lost.
    fn maintain(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), LeaseError>>;
    /// The keeper's own view, one entry per leased prefix, shown by `status`.
    fn snapshot(&self) -> Vec<PrefixLease>;
    fn release(&self) -> BoxFuture<'static, Result<(), LeaseError>>;
    /// Where renewals read the daemon's activity from (fleet view).
    fn set_activity(&self, _source: crate::lease::record::ActivitySource) {}
}

/// The engine and lease of a running daemon.
#[derive(Clone)]
pub(crate) struct Seams {
    pub sync: Arc<dyn SyncSeam>,
    pub lease: Arc<dyn LeaseSeam>,
}

pub(crate) use crate::sync::Disposition;

/// Classify a failed pass by what to do next: the engine's own
/// classification ([`SyncError::disposition`]), the one place it is decided.
pub(crate) fn disposition(e: &SyncError) -> Disposition {
    e.disposition()
}

/// What a human should do about a pass that waits for one (see
/// [`Disposition::NeedsHuman`]), for `status`.
pub(crate) fn advice(e: &SyncError, target: &str) -> String {
    let retry =
        "the daemon tries again on the next local change, on SIGHUP or on `coltecd sync --now`";
    match e {
        SyncError::MassOverwrite { .. } => format!(
            "waiting for you: if the local versions should win, run `coltecd stop`, then \
             `coltecd sync --only {target} --allow-mass-delete`, then `coltecd start`; \
             if not, restore the directory from the remote (`coltecd restore --only {target}`): {retry}"
        ),
        SyncError::MassDelete { .. } => format!(
            "waiting for you: if the deletes are intended, run `coltecd stop`, then \
             `coltecd sync --only {target} --allow-mass-delete`, then `coltecd start`; \
             if not, restore the directory: {retry}"
        ),
        _ => format!(
            "waiting for you: fix what the error names (spec, credentials or remote), then \
             restart coltecd (`coltecd stop`, `coltecd start`); {retry}"
        ),
    }
}

/// An error's message plus any causes it does not already spell out.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
    message
}

/// A daemon failure from an engine or lease error: its exit status, and
/// its message with causes (see [`error_chain`]).
pub(crate) fn fail_from<E>(e: &E) -> Fail
where
    E: HasExitStatus + std::error::Error + 'static,
{
    Fail::new(e.exit_status(), anyhow::anyhow!(error_chain(e)))
}

/// A daemon failure from a plain message.
pub(crate) fn fail(status: ExitStatus, msg: impl Into<String>) -> Fail {
    Fail::new(status, anyhow::anyhow!(msg.into()))
}
