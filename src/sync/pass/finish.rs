//! Stages 5 and 6 of a pass: executing the plan (the untrusted root's
//! base forgotten first, the dirty marker, the transfers, base and journal
//! committed together) and the manifest (rewritten when due, marker
//! cleared, trash pruned, root identity recorded).

use super::Pass;
use crate::sync::SyncError;
use crate::sync::base::PassBase;
use crate::sync::local::LocalSide;
use crate::sync::pending::PendingSummary;
use crate::sync::plan::Action;
use crate::sync::root::RootSuspect;
use crate::sync::state::{BaseChanges, TargetMeta};
use crate::sync::target::Marker;

impl Pass<'_> {
    /// Stage 5, execute: mark the manifest dirty, run the plan, record what
    /// did happen (even when the pass was cut short, so the next pass
    /// neither repeats nor forgets finished transfers).
    pub(super) async fn execute(
        &mut self,
        actions: Vec<Action>,
        local: LocalSide,
    ) -> Result<BaseChanges, SyncError> {
        let st = self.st;
        let name = &st.target.name;
        self.observer.planned(name, &self.report.plan);
        self.void_base().await?;
        self.mark_dirty().await?;
        drop(local);
        let mut executed = self
            .exec
            .run(actions, &self.pending, &mut self.report)
            .await;
        if let Some(mut early) = self.early.take() {
            early.absorb(executed);
            executed = early;
        }
        let mut changes = std::mem::take(&mut self.repairs);
        changes.extend(executed.changes);
        let mut journal = std::mem::take(&mut self.settled);
        journal.extend(executed.pending);
        self.engine.save_base(name, &changes, &journal).await?;
        self.report.pending = PendingSummary::of(&self.engine.load_pending(name).await?);
        self.memory.manifest_dirty |= executed.remote_changed;
        self.stale |= executed.remote_stale;
        executed.fatal.map_or(Ok(()), Err)?;
        Ok(changes)
    }

    /// A root not trusted to say what was deleted: say so, and when it is
    /// another directory (missing, replaced) forget the base (it describes
    /// the old one) and take this root as the target's, in one
    /// transaction, before anything is transferred. From then on the
    /// restored paths are first syncs, which never delete.
    pub(super) async fn void_base(&mut self) -> Result<(), SyncError> {
        let Some(guard) = &self.report.root_guard else {
            return Ok(());
        };
        tracing::warn!(target_name = %self.st.target.name, "{}", guard.describe());
        if guard.reason == RootSuspect::Empty {
            // Still the directory the base describes: keep the base, so
            // deletes confirmed later (`--allow-mass-delete`) still apply.
            return Ok(());
        }
        let meta = TargetMeta {
            manifest_rid: self.meta.manifest_rid.clone(),
            root: self.root_now,
            remote: self.meta.remote.clone(),
        };
        self.engine
            .void_base(&self.st.target.name, meta.clone())
            .await?;
        self.meta = meta;
        Ok(())
    }

    /// From now until the manifest is rewritten it does not describe the
    /// remote: say so first, so a crash in between never lets another host
    /// trust it.
    pub(super) async fn mark_dirty(&mut self) -> Result<(), SyncError> {
        let p = &self.report.plan;
        if self.st.target.direction.writes_remote()
            && p.upload.files + p.delete_remote.files + p.conflict.files > 0
            && self.memory.marker != Marker::Present
        {
            self.exec.write_dirty_marker().await?;
            self.memory.marker = Marker::Present;
        }
        Ok(())
    }

    /// Stage 6, manifest: rewrite it when due, clear the dirty marker once
    /// it is current, remember its identity, prune the trash (full passes).
    pub(super) async fn manifest(
        &mut self,
        mut base: PassBase,
        changes: BaseChanges,
    ) -> Result<(), SyncError> {
        let st = self.st;
        let t = &st.target;
        if self
            .report
            .root_guard
            .as_ref()
            .is_some_and(|g| g.reason != RootSuspect::Empty)
        {
            // The rows this pass loaded were forgotten: the manifest is
            // written from what the database holds now.
            base.complete = false;
        }
        if t.direction.writes_remote() {
            if self.memory.manifest_dirty && self.engine.manifest_due(&self.memory, self.full) {
                let whole = base.into_complete(self.engine, &t.name, changes).await?;
                self.manifest_rid =
                    Some(self.exec.rewrite_manifest(&mut self.memory, &whole).await?);
            }
            if !self.memory.manifest_dirty {
                self.exec.clear_marker(&mut self.memory).await?;
            }
        }
        // Unsettled remote entries must be seen (listed) again next time.
        let trusted_rid = if self.memory.remote_unsettled {
            None
        } else {
            self.manifest_rid.clone()
        };
        let meta = TargetMeta {
            manifest_rid: trusted_rid,
            root: self.root_now.or(self.meta.root),
            remote: Some(crate::sync::target::remote_identity(t)),
        };
        if meta != self.meta {
            self.engine.save_meta(&t.name, meta).await?;
        }
        if self.full && t.direction.writes_remote() {
            self.exec.prune_trash(&mut self.report).await?;
        }
        if self.stale {
            // The base proved older than the remote: list it next time.
            self.memory.reconciled_gen = None;
        } else if self.full || self.trusted {
            self.memory.reconciled_gen = Some(self.generation);
        }
        Ok(())
    }
}
