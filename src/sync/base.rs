//! The base state a pass reads and writes: the per-file rows in redb
//! (through [`StateDb`](super::state::StateDb), off the async threads) and
//! [`PassBase`], the part of them one pass works with.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::local::root_relative;
use super::pending::{PendingChanges, PendingMap, PendingSummary};
use super::state::{BaseChanges, BaseMap, StateDb, StateError, TargetMeta};
use super::{Engine, PassScope, SyncError};

/// The base entries a pass works with. Nothing of it outlives the pass: an
/// idle daemon keeps no per-file state in memory (the rows stay in redb).
pub(super) struct PassBase {
    /// Every entry (full scope) or those at and under the pass's paths.
    pub(super) map: Arc<BaseMap>,
    /// Whether `map` holds every entry of the target.
    pub(super) complete: bool,
    /// How many entries the target has in all (the mass-delete guard's
    /// denominator for path-scoped passes).
    pub(super) total: u64,
}

impl PassBase {
    /// The target's whole base after `changes`: reuses this one when it is
    /// complete, reloads it otherwise.
    pub(super) async fn into_complete(
        mut self,
        engine: &Engine,
        target: &str,
        changes: BaseChanges,
    ) -> Result<Arc<BaseMap>, SyncError> {
        if self.complete {
            apply_changes(Arc::make_mut(&mut self.map), changes);
            return Ok(self.map);
        }
        drop(self);
        Ok(Arc::new(engine.load_base(target).await?))
    }
}

impl Engine {
    /// The base entries a pass of `scope` needs (see [`PassBase`]).
    pub(super) async fn pass_base(
        &self,
        target: &str,
        root: &Path,
        scope: &PassScope,
    ) -> Result<PassBase, SyncError> {
        let rels = match scope {
            PassScope::Full { .. } => None,
            PassScope::Paths(paths) => scope_rels(root, paths),
        };
        let Some(rels) = rels else {
            let map = self.load_base(target).await?;
            return Ok(PassBase {
                total: map.len() as u64,
                map: Arc::new(map),
                complete: true,
            });
        };
        let inner = self.inner.clone();
        let target = target.to_string();
        let (map, total) = tokio::task::spawn_blocking(move || inner.db.load_under(&target, &rels))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))??;
        Ok(PassBase {
            map: Arc::new(map),
            complete: false,
            total,
        })
    }

    pub(super) async fn load_base(&self, target: &str) -> Result<BaseMap, SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.load(&target))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    pub(super) async fn load_meta(&self, target: &str) -> Result<TargetMeta, SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.load_meta(&target))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    pub(super) async fn save_meta(&self, target: &str, meta: TargetMeta) -> Result<(), SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.save_meta(&target, &meta))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    /// Commit base and journal changes in one transaction.
    pub(super) async fn save_base(
        &self,
        target: &str,
        changes: &BaseChanges,
        pending: &PendingChanges,
    ) -> Result<(), SyncError> {
        if changes.is_empty() && pending.is_empty() {
            return Ok(());
        }
        let (changes, pending) = (changes.clone(), pending.clone());
        self.db(target, move |db, t| {
            db.apply_with_pending(t, &changes, &pending)
        })
        .await
    }

    /// The target's pending transfers as of now (for `status` between
    /// passes; every pass also reports them).
    pub async fn pending(&self, target: &str) -> Result<PendingSummary, SyncError> {
        self.served(target)?;
        Ok(PendingSummary::of(&self.load_pending(target).await?))
    }

    pub(super) async fn load_pending(&self, target: &str) -> Result<PendingMap, SyncError> {
        self.db(target, |db, t| db.load_pending(t)).await
    }

    pub(super) async fn void_base(&self, target: &str, meta: TargetMeta) -> Result<(), SyncError> {
        self.db(target, move |db, t| db.void_base(t, &meta)).await
    }

    /// Run `f` on the state database off the async threads.
    async fn db<T: Send + 'static>(
        &self,
        target: &str,
        f: impl FnOnce(&StateDb, &str) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || f(&inner.db, &target))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }
}

fn apply_changes(base: &mut BaseMap, changes: BaseChanges) {
    for (k, v) in changes {
        match v {
            Some(b) => base.insert(k, b),
            None => base.remove(&k),
        };
    }
}

/// The root-relative paths of a path-scoped pass, as the local gather sees
/// them; `None` when one of them is the root itself (a full scan).
fn scope_rels(root: &Path, paths: &[PathBuf]) -> Option<BTreeSet<String>> {
    let mut rels = BTreeSet::new();
    for p in paths {
        let Some((_, rel)) = root_relative(root, p) else {
            continue;
        };
        if rel.is_empty() {
            return None;
        }
        rels.insert(rel);
    }
    Some(rels)
}
