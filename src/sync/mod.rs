//! The sync engine: incremental, 3-way sync of each target's local
//! directory with its remote location.
//!
//! # Layout
//!
//! - `engine`: [`Engine`] (open, options, per-target setup).
//! - `flush`: writing deferred manifests when the daemon stops.
//! - `target`: what the engine holds per target and remembers between passes.
//! - `pass/`: one pass as explicit stages (scope → gather → remote view →
//!   plan/guard → execute → manifest); [`PassRequest`], [`PassScope`].
//! - `restore`: pulling a target's remote state into a directory.
//! - `local`: the local side of a pass (walk or path re-check, stale temps).
//! - `base`: the base rows a pass reads and writes.
//! - `pending`: the journal of planned and failed transfers (write-ahead,
//!   retries, reconciling uploads a crash interrupted).
//! - `root`: whether the local root can be trusted to say what was deleted
//!   (missing, replaced, empty roots restore instead).
//! - `guard`: the mass-delete guard.
//! - `error`: [`SyncError`]. `report`: [`PassReport`], [`PlanSummary`],
//!   [`PassObserver`].
//! - [`kind`]: entry kinds and the reserved names both sides share (a leaf,
//!   so `scan` and `layout` do not import each other).
//! - [`scan`]: walking the local root (excluded dirs pruned, symlinks recorded).
//! - [`state`]: per-file base state in redb (`<state_dir>/sync.redb`).
//! - [`layout`]: how a target is laid out on its remote: key/metadata
//!   mapping (rclone-compatible), the manifest format, hostile-key refusal.
//! - [`names`]: the one mapping between local file names (any bytes) and
//!   their encoded form in keys and relative paths (rclone's encoding).
//! - [`plan`]: the pure 3-way planner.
//! - `exec/`: the remote operations of a pass and executing its plan
//!   (reconcile, settle, apply, upload, snapshot, guard, download, control
//!   objects).
//! - `localfs`: temp-file + rename writes that never follow symlinks.
//! - `limits`: the process-wide bandwidth and request-rate budgets.
//!
//! # Passes
//!
//! The first pass after [`Engine::open`] for a target, a pass with
//! `verify: true`, and the first pass after the write gate's generation
//! changed do a *full reconcile*: one LIST of the target plus one GET of its
//! manifest (`.coltec/manifest.json`), and a HEAD only for objects the
//! manifest does not know. Every other pass trusts the base state in redb as
//! the remote's state and touches the remote only to transfer what changed
//! locally: an idle pass makes no remote request at all. Changes made on
//! the remote behind coltecd's back are therefore seen at the next full
//! reconcile (pull-only targets should be driven with `verify: true`).
//! A pass also lists the remote while the journal holds an interrupted
//! transfer or a failed download, after a write found the remote changed,
//! and when the local root is not trusted (see Safety).
//!
//! No per-file state stays in memory between passes: a path-scoped pass
//! reads only the base rows at and under its paths, a full pass loads the
//! target's rows and drops them at its end.
//!
//! The manifest is rewritten after a pass that changed the remote, or, with
//! [`EngineOptions::manifest_min_interval`] (the daemon), at most that
//! often, at full reconciles and in [`Engine::flush_manifests`]. Before the
//! first remote change that makes it stale, `.coltec/manifest.dirty` is
//! written, and it is removed once the manifest is current again: a host
//! that finds the marker never trusts the manifest to skip a LIST.
//!
//! # Safety
//!
//! A first sync (no base) never deletes. A root that is missing, empty,
//! or not the directory last synced (device, inode, birth time) while the
//! base has files never causes deletes either: the pass plans as a first
//! sync, restoring where the direction writes locally, and reports it
//! ([`PassReport::root_guard`]); see `root`. A pass that would delete more
//! than `safety.mass_delete_max_files` files AND more than
//! `safety.mass_delete_max_fraction` of a side's files stops before doing
//! anything ([`SyncError::MassDelete`], exit 1) unless `allow_mass_delete`.
//! Remote files coltecd deletes or overwrites are first copied to
//! `.coltec/trash/<YYYYmmddTHHMMSSZ>/<key>` (unless `trash_retention` is 0)
//! right before the write that replaces them (an attempt that fails first
//! leaves no copy), pruned at full reconciles once older than the
//! retention.
//!
//! Every data write says which version it expects (`If-None-Match: *` for
//! a key believed new, `If-Match: <etag>` for an overwrite; compared just
//! before on local remotes and before deletes): a write based on a stale
//! view becomes a conflict, never a silent overwrite. With `lease: off` on
//! S3 no condition is sent, and the log says so once.
//!
//! Every transfer is journaled before it starts and its outcome committed
//! with its base row (see `pending`): a failed one is retried by every
//! later pass until it succeeds ([`PassReport::pending`]), and after a
//! crash an upload found complete on the remote is taken as synced, so a
//! file deleted afterwards is deleted remotely, not resurrected.

pub mod kind;
pub mod layout;
pub mod names;
pub mod plan;
pub mod scan;
pub mod state;

mod base;
mod engine;
mod error;
mod exec;
mod flush;
mod guard;
mod limits;
mod local;
mod localfs;
mod pass;
mod pending;
mod report;
mod restore;
mod root;
mod target;

pub use engine::{Engine, EngineOptions};
pub use error::{Disposition, SyncError};
pub use localfs::conflict_name;
pub use pass::{PassRequest, PassScope};
pub use pending::{PendingFile, PendingSummary, Transfer};
pub use report::{
    ActionCount, FailedFile, PLAN_FIRST_N, PassObserver, PassReport, PlanSummary, PlanTotals,
    SkippedFile, UNDECRYPTABLE_FIRST_N, Undecryptable,
};
pub use root::{RootGuard, RootId, RootSuspect};

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn assert_send<T: Send>(_: &T) {}

    /// The daemon spawns passes on a multi-threaded runtime.
    #[allow(dead_code)]
    fn engine_and_pass_futures_are_send(e: &Engine, c: &CancellationToken) {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<Engine>();
        let req = PassRequest {
            scope: PassScope::Full { verify: false },
            dry_run: false,
            allow_mass_delete: false,
        };
        assert_send(&e.pass("t", req, c));
        assert_send(&e.restore("t", None, false, c));
    }
}
