//! Flushing deferred manifests: with
//! [`EngineOptions::manifest_min_interval`](super::EngineOptions) a
//! target's manifest may lag its remote; the daemon writes every such
//! manifest (and clears its dirty marker) when it stops.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::exec::Exec;
use super::report::NoObserver;
use super::state::TargetMeta;
use super::target::ServedTarget;
use super::{Engine, SyncError};

impl Engine {
    /// Write the manifest of every target whose remote changed since its
    /// manifest was last written (see
    /// [`EngineOptions::manifest_min_interval`]), then remove its dirty
    /// marker. The daemon calls this when it stops, before releasing the
    /// lease. Every target is tried; the first error is returned.
    pub async fn flush_manifests(&self, cancel: &CancellationToken) -> Result<(), SyncError> {
        let mut first_err = None;
        for st in self.inner.targets.values() {
            if let Err(e) = self.flush_manifest(st, cancel).await {
                tracing::warn!(target_name = %st.target.name, error = %e, "manifest not written");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn flush_manifest(
        &self,
        st: &Arc<ServedTarget>,
        cancel: &CancellationToken,
    ) -> Result<(), SyncError> {
        let t = &st.target;
        if !t.direction.writes_remote() {
            return Ok(());
        }
        let mut memory = st.lock(cancel).await?;
        if !memory.manifest_dirty {
            return Ok(());
        }
        let exec = Exec::new(
            &self.inner,
            st,
            st.operator()?,
            t.local_path.clone(),
            false,
            cancel,
            &NoObserver,
        );
        let base = self.load_base(&t.name).await?;
        let rid = exec.rewrite_manifest(&mut memory, &base).await?;
        drop(base);
        let meta = TargetMeta {
            manifest_rid: Some(rid),
            ..self.load_meta(&t.name).await?
        };
        self.save_meta(&t.name, meta).await?;
        exec.clear_marker(&mut memory).await
    }
}
