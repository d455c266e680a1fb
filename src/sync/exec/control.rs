//! coltecd's control objects on the remote: the manifest
//! (`.coltec/manifest.json`), its dirty marker (`.coltec/manifest.dirty`)
//! and the trash (`.coltec/trash/<stamp>/<key>`: old versions of what a
//! pass overwrote or deleted, pruned once older than the retention).

use std::sync::atomic::Ordering;

use opendal::ErrorKind;

use super::{Exec, FileErr, blocking, ferr, object_rid};
use crate::sync::layout::{self, DIRTY_KEY, MANIFEST_KEY, Manifest, TRASH_PREFIX};
use crate::sync::state::BaseMap;
use crate::sync::target::{Marker, TargetMemory};
use crate::sync::{FailedFile, PassReport, SyncError};

impl Exec<'_> {
    /// Write the manifest; returns its identity.
    async fn write_manifest(&self, base: &BaseMap) -> Result<String, SyncError> {
        let m = layout::ManifestRef {
            version: Manifest::VERSION,
            writer: &self.inner.host,
            files: base,
        };
        let body = serde_json::to_vec(&m).map_err(|e| SyncError::Internal(e.to_string()))?;
        self.gate()?;
        let meta = self
            .net(self.op.write(MANIFEST_KEY, body))
            .await?
            .map_err(|e| self.remote_err("writing the manifest", e))?;
        Ok(object_rid(&meta))
    }

    /// Write the manifest listing `base` (the target's whole base) and
    /// remember it is current from now on. Returns its identity.
    pub(in crate::sync) async fn rewrite_manifest(
        &self,
        memory: &mut TargetMemory,
        base: &BaseMap,
    ) -> Result<String, SyncError> {
        let rid = self.write_manifest(base).await?;
        memory.manifest_dirty = false;
        memory.manifest_written = Some(std::time::Instant::now());
        Ok(rid)
    }

    /// Remove the dirty marker (the manifest is current), unless it is
    /// known to be absent.
    pub(in crate::sync) async fn clear_marker(
        &self,
        memory: &mut TargetMemory,
    ) -> Result<(), SyncError> {
        if memory.marker != Marker::Absent {
            self.delete_dirty_marker().await?;
            memory.marker = Marker::Absent;
        }
        Ok(())
    }

    /// Mark the manifest as not describing the remote (see [`DIRTY_KEY`]).
    pub(in crate::sync) async fn write_dirty_marker(&self) -> Result<(), SyncError> {
        let body = serde_json::json!({
            "writer": self.inner.host,
            "since": crate::clock::rfc3339_now(),
        })
        .to_string();
        self.gate()?;
        self.net(self.op.write(DIRTY_KEY, body))
            .await?
            .map_err(|e| self.remote_err("writing the manifest's dirty marker", e))?;
        Ok(())
    }

    /// The manifest describes the remote again.
    async fn delete_dirty_marker(&self) -> Result<(), SyncError> {
        self.gate()?;
        match self.net(self.op.delete(DIRTY_KEY)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.remote_err("removing the manifest's dirty marker", e)),
        }
    }

    /// Whether `.coltec/manifest.dirty` exists (one HEAD).
    pub(in crate::sync) async fn dirty_marker_exists(&self) -> Result<bool, SyncError> {
        match self.net(self.op.stat(DIRTY_KEY)).await? {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.remote_err("checking the manifest's dirty marker", e)),
        }
    }

    /// Whether the manifest still has identity `rid` (one HEAD on S3, a
    /// stat of a local file on local remotes): then no other coltecd wrote
    /// this target since this host last saw it. Not a conditional GET: a
    /// server that ignores `If-None-Match` on GET (s3s-fs) answers 200 to
    /// an unchanged manifest, and a HEAD's ETag is compared on every server.
    pub(in crate::sync) async fn manifest_unchanged(&self, rid: &str) -> Result<bool, SyncError> {
        let op = &self.op;
        match self.net(op.stat(MANIFEST_KEY)).await? {
            Ok(m) => Ok(object_rid(&m) == rid),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.remote_err("checking the manifest", e)),
        }
    }

    /// Copy `key` into this pass's trash dir (if the trash is enabled);
    /// returns the copy's key.
    pub(super) async fn trash(&self, key: &str) -> Result<Option<String>, FileErr> {
        if self.inner.spec.safety.trash_retention.is_zero() {
            return Ok(None);
        }
        self.gate()?;
        let to = format!("{TRASH_PREFIX}{}/{key}", self.stamp);
        match self.net(self.op.copy(key, &to)).await? {
            Ok(_) => {
                self.trashed.fetch_add(1, Ordering::SeqCst);
                Ok(Some(to))
            }
            // Already gone behind our back: nothing to keep.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ferr("cannot move the old version to the trash", e)),
        }
    }

    /// Drop a trash copy whose original was not replaced after all (its
    /// write was refused): the trash holds only what was replaced.
    pub(super) async fn untrash(&self, copy: Option<String>) {
        let Some(copy) = copy else { return };
        let _ = self
            .trashed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if let Ok(Err(e)) = self.net(self.op.delete(&copy)).await
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(target_name = self.name(), key = %copy, error = %e, "cannot remove a trash copy of a version that was not replaced");
        }
    }

    /// Delete trash generations older than the retention.
    pub(in crate::sync) async fn prune_trash(
        &self,
        report: &mut PassReport,
    ) -> Result<(), SyncError> {
        let retention = self.inner.spec.safety.trash_retention;
        let dirs = match self.net(self.op.list(TRASH_PREFIX)).await? {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.remote_err("listing the trash", e)),
        };
        let now = jiff::Timestamp::now();
        for dir in dirs {
            let name = dir.name().trim_end_matches('/');
            let Some(at) = layout::parse_stamp(name) else {
                continue;
            };
            let age = now.duration_since(at);
            let keep = std::time::Duration::try_from(age)
                .map(|a| a < retention)
                .unwrap_or(true);
            if keep && !retention.is_zero() {
                continue;
            }
            let prefix = dir.path().to_string();
            if !prefix.starts_with(TRASH_PREFIX) || prefix.len() <= TRASH_PREFIX.len() {
                continue;
            }
            if let Err(f) = self.prune_generation(&prefix).await? {
                report.failed.push(f);
            }
        }
        Ok(())
    }

    /// Delete one expired trash generation (`prefix`, ending in `/`).
    async fn prune_generation(&self, prefix: &str) -> Result<Result<(), FailedFile>, SyncError> {
        let failed = |what: &str, e: opendal::Error| FailedFile {
            path: prefix.to_string(),
            reason: format!("{what}: {e}"),
        };
        let keys = match self.net(self.op.list_with(prefix).recursive(true)).await? {
            Ok(l) => l,
            Err(e) => return Ok(Err(failed("cannot list expired trash", e))),
        };
        self.gate()?;
        let paths: Vec<String> = keys.into_iter().map(|e| e.path().to_string()).collect();
        let deleted = match self.net(self.op.delete_iter(paths)).await? {
            Ok(()) => Ok(()),
            Err(e) => Err(failed("cannot prune expired trash", e)),
        };
        // Local remotes keep the emptied directories; drop them too.
        if let Some(root) = &self.ctx.local_dir {
            let (root, prefix) = (root.clone(), prefix.to_string());
            let _ = blocking(move || crate::remote::local_guard::remove_tree(&root, &prefix)).await;
        }
        Ok(deleted)
    }
}
