//! What the engine holds for each target it serves ([`ServedTarget`]):
//! its operator (or why it has none), and [`TargetMemory`], what this
//! process remembers of the target between passes (last full reconcile,
//! manifest and dirty-marker state), behind a lock that makes passes of
//! one target run one at a time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use opendal::Operator;
use tokio::sync::MutexGuard;
use tokio_util::sync::CancellationToken;

use super::SyncError;
use super::report::SkipLog;
use crate::error::ExitStatus;
use crate::spec::Target;

pub(super) struct ServedTarget {
    pub(super) target: Target,
    /// The target's operator, or why it has none (e.g. a crypt remote,
    /// missing credentials): reported by the target's passes, so one
    /// unusable target does not stop the others.
    pub(super) op: Result<Operator, Unavailable>,
    /// For local remotes: the directory, so stored files get their real
    /// mtime and mode (what rclone's local backend does too).
    pub(super) local_dir: Option<PathBuf>,
    /// S3 carries mtime/mode as user metadata.
    pub(super) user_metadata: bool,
    /// How data writes are made conditional on the version last seen.
    pub(super) guarding: Guarding,
    /// What [`Guarding`] does not protect is logged once per process.
    pub(super) guarding_logged: std::sync::Once,
    pub(super) memory: tokio::sync::Mutex<TargetMemory>,
}

/// How a target's data writes carry the version the writer last saw
/// (`If-None-Match: *` for a key it believes new, `If-Match: <etag>` for an
/// overwrite), so a write based on a stale view fails instead of silently
/// replacing another writer's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Guarding {
    /// S3 with the lease on: the lease's acquire probe proved the server
    /// enforces both conditions (AWS S3, R2, MinIO). Multipart uploads
    /// carry them on CompleteMultipartUpload (AWS honours both there;
    /// moto only `If-None-Match`). DELETE carries none (R2 documents no
    /// conditional DELETE): the object is compared (HEAD) just before.
    Enforced,
    /// Local remotes: the object is compared (stat) just before the write,
    /// and a new key is created only if absent. Not atomic, but the lease
    /// (flock) serializes coltecd writers on one machine.
    Checked,
    /// No condition is sent (why, for the log).
    Off(&'static str),
}

/// Why a target has no operator.
#[derive(Debug, Clone)]
pub(super) struct Unavailable {
    pub(super) reason: String,
    pub(super) status: ExitStatus,
}

impl ServedTarget {
    pub(super) fn operator(&self) -> Result<Operator, SyncError> {
        self.op.clone().map_err(|u| SyncError::Unavailable {
            target: self.target.name.clone(),
            reason: u.reason,
            status: u.status,
        })
    }

    /// Wait for this target's other pass (if any) to end; a pass holds the
    /// guard for its whole run.
    pub(super) async fn lock(
        &self,
        cancel: &CancellationToken,
    ) -> Result<MutexGuard<'_, TargetMemory>, SyncError> {
        tokio::select! {
            g = self.memory.lock() => Ok(g),
            _ = cancel.cancelled() => Err(SyncError::Cancelled),
        }
    }
}

/// What this process knows of the target's `.coltec/manifest.dirty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Marker {
    #[default]
    Unknown,
    Present,
    Absent,
}

/// What this process remembers of one target between its passes.
#[derive(Default)]
pub(super) struct TargetMemory {
    /// Gate generation of the last full reconcile since open.
    pub(super) reconciled_gen: Option<u64>,
    /// The remote changed (or the manifest was found stale) since the
    /// manifest was last written.
    pub(super) manifest_dirty: bool,
    /// When this process last wrote the manifest.
    pub(super) manifest_written: Option<Instant>,
    pub(super) marker: Marker,
    /// Special files and foreign remote entries skipped (logged once each).
    pub(super) skips: SkipLog,
    /// Paths the remote holds as both a file and a symlink object, as of
    /// the last full reconcile: not synced until one is removed.
    pub(super) remote_conflicts: BTreeSet<String>,
    /// The last full reconcile found entries it could not sync (refused
    /// keys, conflicts, foreign entries): the manifest is not recorded as
    /// trusted, so the next process lists again and they stay visible.
    pub(super) remote_unsettled: bool,
    /// Crypt objects whose names do not decrypt, as of the last full
    /// reconcile (every pass reports them).
    pub(super) undecryptable: super::Undecryptable,
}

/// Which remote `t` syncs with, as a short digest of its location and
/// endpoint (the endpoint may carry userinfo: only the digest is stored).
pub(crate) fn remote_identity(t: &Target) -> String {
    use md5::Digest;
    fn endpoint(r: &crate::spec::RemoteSpec) -> Option<&str> {
        match &r.kind {
            crate::spec::RemoteKind::S3(s3) => s3.endpoint.as_deref(),
            crate::spec::RemoteKind::Crypt(c) => c.wrapped.as_deref().and_then(endpoint),
            crate::spec::RemoteKind::Local(_) => None,
        }
    }
    let mut h = md5::Md5::new();
    h.update(t.location().to_string().as_bytes());
    h.update(b"\n");
    h.update(endpoint(&t.remote).unwrap_or_default().as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}
