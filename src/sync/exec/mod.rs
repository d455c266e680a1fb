//! Executing a plan against one target, and the remote-facing operations
//! of a pass (reconcile, manifest, dirty marker, trash).
//!
//! Every remote call first takes a slot from the shared request limiter and
//! races the pass's cancellation token; every remote write first checks the
//! write gate, and uploads abort when the gate closes mid-transfer.
//! Transfers run `transfers` at a time, remote checks `checkers` at a time.
//!
//! # Layout
//!
//! - `mod.rs`: [`Exec`] and the plumbing every remote call goes through
//!   (request budget, cancellation, write gate, error mapping).
//! - `reconcile`: the full reconcile (LIST + manifest) into a `RemoteView`.
//! - `streamed`: a restore's reconcile that starts downloads while it lists.
//! - `list`: the recursive LIST of a target, without the trash.
//! - `settle`: would-be conflicts of equal content become adoptions.
//! - `apply`: running a plan's actions, checkpointing the base.
//! - `upload`: storing local files on the remote, deleting remote ones.
//! - `snapshot`: a consistent in-memory copy of a small local file.
//! - `guard`: conditional data writes (`If-Match` / `If-None-Match`, or a
//!   compare just before the write) and what a refused one becomes.
//! - `download`: fetching remote files into the root, local deletes and
//!   conflict copies.
//! - `memory`: the budget bounding uploads' buffers.
//! - `control`: coltecd's control objects: the manifest, its dirty marker,
//!   the trash.

mod apply;
mod control;
mod download;
mod guard;
mod list;
mod memory;
mod reconcile;
mod settle;
mod snapshot;
mod streamed;
mod upload;

pub(super) use apply::Executed;
pub(super) use reconcile::RemoteView;

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::engine::Inner;
use super::layout;
use super::target::ServedTarget;
use super::{PassObserver, SyncError};

/// How one action failed.
enum FileErr {
    /// Ends the pass (cancelled, fenced).
    Fatal(SyncError),
    /// Reported for this file; the pass goes on.
    File(String),
    /// Not started because the pass is stopping.
    Skipped,
    /// The remote object is not the version this pass expected (a
    /// conditional write was refused): another writer changed it.
    RemoteChanged,
}

impl From<SyncError> for FileErr {
    fn from(e: SyncError) -> Self {
        FileErr::Fatal(e)
    }
}

fn ferr(what: &str, e: impl std::fmt::Display) -> FileErr {
    FileErr::File(format!("{what}: {e}"))
}

/// The local file changed while a transfer used it.
fn changed_locally() -> FileErr {
    FileErr::File("changed locally during the pass; retried next pass".into())
}

/// Runs one pass's (or restore's) remote operations and transfers.
pub(super) struct Exec<'a> {
    inner: &'a Arc<Inner>,
    op: opendal::Operator,
    /// Persist base changes while the plan runs (not for restores elsewhere).
    persist: bool,
    ctx: &'a ServedTarget,
    root: PathBuf,
    cancel: &'a CancellationToken,
    observer: &'a dyn PassObserver,
    /// Timestamp of this pass (trash dir, conflict names).
    stamp: String,
    /// Old versions copied into the trash by this run (the report's `trashed`).
    trashed: std::sync::atomic::AtomicU64,
    /// New local files written since the last durability barrier
    /// (`download`).
    unsynced: std::sync::atomic::AtomicBool,
    /// Memory for uploads' file content (`memory`).
    memory: memory::Budget,
}

impl<'a> Exec<'a> {
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        ctx: &'a ServedTarget,
        op: opendal::Operator,
        root: PathBuf,
        persist: bool,
        cancel: &'a CancellationToken,
        observer: &'a dyn PassObserver,
    ) -> Exec<'a> {
        Exec {
            inner,
            op,
            persist,
            ctx,
            root,
            cancel,
            observer,
            stamp: layout::stamp(jiff::Timestamp::now()),
            trashed: Default::default(),
            unsynced: Default::default(),
            memory: Default::default(),
        }
    }

    fn name(&self) -> &str {
        &self.ctx.target.name
    }

    /// One remote call: a request slot, then the call raced against cancellation.
    async fn net<T>(
        &self,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<opendal::Result<T>, SyncError> {
        self.request_slot().await?;
        self.cancellable(fut).await
    }

    /// A call that sends no request of its own (e.g. building a reader),
    /// raced against cancellation but not charged to the request budget.
    async fn cancellable<T>(
        &self,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<opendal::Result<T>, SyncError> {
        tokio::select! {
            r = fut.into_future() => Ok(r),
            _ = self.cancel.cancelled() => Err(SyncError::Cancelled),
        }
    }

    /// The request-rate limit protects shared buckets; a local directory
    /// has no rate to protect.
    async fn request_slot(&self) -> Result<(), SyncError> {
        if self.ctx.local_dir.is_none() {
            self.inner.limits.request(self.cancel).await?;
        }
        Ok(())
    }

    fn gate(&self) -> Result<(), SyncError> {
        self.inner.gate.check().map_err(|f| SyncError::Fenced {
            target: self.name().to_string(),
            reason: f.reason,
        })
    }

    /// Why the gate closed (or, if it opened again meanwhile, cancelled).
    fn gate_closed(&self) -> SyncError {
        self.gate().err().unwrap_or(SyncError::Cancelled)
    }

    fn remote_err(&self, op: &str, source: opendal::Error) -> SyncError {
        SyncError::remote(self.name(), &self.ctx.target.remote, op, source)
    }
}

/// An object's identity: its ETag, else `size:mtime`.
fn object_rid(meta: &opendal::Metadata) -> String {
    meta.etag().map(str::to_string).unwrap_or_else(|| {
        layout::fallback_rid(
            meta.content_length(),
            meta.last_modified().and_then(layout::opendal_ns),
        )
    })
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))
}
