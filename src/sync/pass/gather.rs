//! Stages 2 and 3 of a pass: gathering the base rows and the local side
//! (an emptied root makes the pass a protective full one), the remote
//! view, and reconciling uploads a crash interrupted with it.

use super::{Pass, RemoteMap};
use crate::sync::PassScope;
use crate::sync::base::PassBase;
use crate::sync::exec::RemoteView;
use crate::sync::layout::RemoteEntry;
use crate::sync::local::{LocalSide, gather_local, remove_stale_temps};
use crate::sync::pending;
use crate::sync::root::{self, RootSuspect};
use crate::sync::target::Marker;
use crate::sync::{SyncError, Undecryptable};

impl Pass<'_> {
    /// Stage 2, gather: the base rows and the local side the pass needs.
    /// A root found empty while the base has files makes the pass a
    /// protective full one (see [`super::root`]).
    pub(super) async fn gather(&mut self) -> Result<(PassBase, LocalSide), SyncError> {
        let scope = if self.full || self.root_missing {
            PassScope::Full { verify: self.full }
        } else {
            self.req.scope.clone()
        };
        let (base, local) = self.gather_scope(scope.clone()).await?;
        if base.total == 0 {
            // Nothing was synced before: nothing to protect.
            self.suspect = None;
        } else if self.suspect.is_none()
            && !self.req.allow_mass_delete
            && self.root_is_empty(&scope, &base, &local).await?
        {
            self.suspect = Some(RootSuspect::Empty);
            if !self.full {
                self.full = true;
                self.report.remote_listed = true;
                drop((base, local));
                return self.gather_scope(PassScope::Full { verify: true }).await;
            }
        }
        Ok((base, local))
    }

    pub(super) async fn gather_scope(
        &mut self,
        scope: PassScope,
    ) -> Result<(PassBase, LocalSide), SyncError> {
        let t = &self.st.target;
        let whole_root = matches!(scope, PassScope::Full { .. });
        let base = self.engine.pass_base(&t.name, &self.root, &scope).await?;
        let mut local = if self.root_missing {
            LocalSide::default()
        } else {
            gather_local(
                self.root.clone(),
                t.excludes.clone(),
                scope,
                base.map.clone(),
            )
            .await?
        };
        if !self.req.dry_run {
            remove_stale_temps(&t.name, std::mem::take(&mut local.stale_temps)).await;
        }
        self.report.failed.extend(local.problems.iter().cloned());
        let skipped = std::mem::take(&mut local.skipped);
        self.memory.skips.note(&t.name, skipped, whole_root, false);
        self.report.skipped = self.memory.skips.all();
        self.report.undecryptable = self.memory.undecryptable.clone();
        Ok((base, local))
    }

    /// Whether the existing root holds no file at all (a path-scoped pass
    /// looks only when one of its paths is gone from a non-empty base).
    pub(super) async fn root_is_empty(
        &self,
        scope: &PassScope,
        base: &PassBase,
        local: &LocalSide,
    ) -> Result<bool, SyncError> {
        if self.root_missing || !local.unreadable_dirs.is_empty() {
            return Ok(false);
        }
        match scope {
            PassScope::Full { .. } => Ok(local.entries.is_empty()),
            PassScope::Paths(_) => {
                let gone = base.map.keys().any(|k| !local.entries.contains_key(k));
                if !gone {
                    return Ok(false);
                }
                let root = self.root.clone();
                let excludes = self.st.target.excludes.clone();
                tokio::task::spawn_blocking(move || !root::has_entries(&root, &excludes))
                    .await
                    .map_err(|e| SyncError::Internal(e.to_string()))
            }
        }
    }

    /// After a full reconcile: pending uploads the remote shows finished
    /// (a crash came before their base rows) become the base.
    pub(super) fn repair(&mut self, base: &mut PassBase, remote: &RemoteMap) {
        if !self.full || self.suspect.is_some() || self.pending.is_empty() {
            return;
        }
        let fixes = pending::repair(&self.pending, &base.map, remote);
        if fixes.is_empty() {
            return;
        }
        tracing::info!(
            target_name = %self.st.target.name,
            files = fixes.len(),
            "uploads interrupted by a stop were found complete on the remote; recorded as synced"
        );
        let map = std::sync::Arc::make_mut(&mut base.map);
        for (k, v) in &fixes {
            if let Some(b) = v {
                map.insert(k.clone(), b.clone());
            }
        }
        self.repairs = fixes;
    }

    /// Stage 3, remote view: a full reconcile lists the remote; any other
    /// pass takes the base as the remote's state.
    pub(super) async fn remote_view(
        &mut self,
        base: &PassBase,
        local: &LocalSide,
    ) -> Result<RemoteMap, SyncError> {
        if !self.full {
            return Ok(local
                .candidates
                .iter()
                .filter_map(|rel| {
                    base.map
                        .get(rel)
                        .map(|b| (rel.clone(), RemoteEntry::from_base(b)))
                })
                .collect());
        }
        let rv = self.exec.reconcile(&base.map).await?;
        Ok(self.take_view(rv))
    }

    /// What a full reconcile found, kept in the target's memory and the
    /// report; the remote's entries.
    pub(super) fn take_view(&mut self, rv: RemoteView) -> RemoteMap {
        self.memory.remote_unsettled = !(rv.problems.is_empty()
            && rv.conflicted.is_empty()
            && rv.skipped.is_empty()
            && rv.undecryptable.is_empty());
        let found = Undecryptable::of(&rv.undecryptable);
        if found != self.memory.undecryptable {
            found.log(&self.st.target.name);
        }
        self.memory.undecryptable = found;
        self.report.undecryptable = self.memory.undecryptable.clone();
        self.report.failed.extend(rv.problems);
        let t = &self.st.target;
        self.memory.skips.note(&t.name, rv.skipped, true, true);
        self.report.skipped = self.memory.skips.all();
        self.memory.remote_conflicts = rv.conflicted;
        self.manifest_rid = rv.manifest_rid;
        self.memory.marker = if rv.dirty_marker {
            Marker::Present
        } else {
            Marker::Absent
        };
        self.memory.manifest_dirty |= rv.manifest_stale;
        rv.entries
    }
}
