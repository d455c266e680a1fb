//! One sync pass over one target, as explicit stages that each do one
//! thing: **scope** (what to look at; whether to list the remote or trust
//! its manifest) → **gather** (the base rows and the local side) →
//! **remote view** (a LIST, or the base as the remote's state) →
//! **plan and guard** (the 3-way plan, settled, checked by the mass-delete
//! guard) → **execute** (dirty marker first, then the transfers) →
//! **manifest** (rewrite it, clear the marker, prune the trash).
//! [`Pass`] carries what the stages share.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tokio::sync::MutexGuard;
use tokio_util::sync::CancellationToken;

use super::base::PassBase;
use super::exec::Exec;
use super::guard::{self, SideTotals};
use super::layout::RemoteEntry;
use super::local::{LocalSide, create_root, gather_local, remove_stale_temps, root_is_dir};
use super::names;
use super::plan::{self, Action};
use super::report::NoObserver;
use super::scan;
use super::state::BaseChanges;
use super::state::TargetMeta;
use super::target::{Marker, ServedTarget, TargetMemory};
use super::{Engine, PassObserver, PassReport, SyncError};

/// What one pass should look at.
#[derive(Debug, Clone)]
pub struct PassRequest {
    pub scope: PassScope,
    /// Plan only: report what would happen, change nothing.
    pub dry_run: bool,
    /// Let a pass delete more than the mass-delete guard allows.
    pub allow_mass_delete: bool,
}

#[derive(Debug, Clone)]
pub enum PassScope {
    /// Scan the whole local root; `verify` forces a full remote reconcile.
    Full { verify: bool },
    /// Re-check only these absolute local paths (from file events).
    Paths(Vec<PathBuf>),
}

type RemoteMap = BTreeMap<String, RemoteEntry>;

impl Engine {
    /// One sync pass for one target.
    pub async fn pass(
        &self,
        target: &str,
        req: PassRequest,
        cancel: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        self.pass_observed(target, req, cancel, &NoObserver).await
    }

    /// [`Engine::pass`] with progress callbacks.
    pub async fn pass_observed(
        &self,
        target: &str,
        req: PassRequest,
        cancel: &CancellationToken,
        observer: &dyn PassObserver,
    ) -> Result<PassReport, SyncError> {
        let st = self.served(target)?;
        let mut pass = Pass::scope(self, &st, req, cancel, observer).await?;
        let (base, local) = pass.gather().await?;
        let remote = pass.remote_view(&base, &local).await?;
        let actions = pass.plan_and_guard(&base, &local, &remote).await?;
        if pass.req.dry_run {
            return Ok(pass.report);
        }
        drop(remote);
        let changes = pass.execute(actions, local).await?;
        pass.manifest(base, changes).await?;
        Ok(pass.report)
    }
}

/// A pass in progress: what its stages share.
struct Pass<'a> {
    engine: &'a Engine,
    st: &'a ServedTarget,
    /// Held for the whole pass: passes of one target run one at a time.
    memory: MutexGuard<'a, TargetMemory>,
    exec: Exec<'a>,
    observer: &'a dyn PassObserver,
    req: PassRequest,
    root: PathBuf,
    /// The write gate's generation when the pass started.
    generation: u64,
    /// This pass lists the remote (a full reconcile).
    full: bool,
    /// An unchanged manifest stood in for the LIST.
    trusted: bool,
    /// The local root did not exist when the pass started.
    root_missing: bool,
    /// The target's stored meta as the pass found it.
    meta: TargetMeta,
    /// The manifest's identity as of now.
    manifest_rid: Option<String>,
    report: PassReport,
}

impl<'a> Pass<'a> {
    /// Stage 1, scope: take the target's lock and decide whether this pass
    /// lists the remote (first pass since open or since the gate changed,
    /// `verify`, a missing root to restore into) or trusts its manifest.
    async fn scope(
        engine: &'a Engine,
        st: &'a ServedTarget,
        req: PassRequest,
        cancel: &'a CancellationToken,
        observer: &'a dyn PassObserver,
    ) -> Result<Pass<'a>, SyncError> {
        let op = st.operator()?;
        let memory = st.lock(cancel).await?;
        let t = &st.target;
        let generation = engine.inner.gate.generation();
        let mut full = matches!(req.scope, PassScope::Full { verify: true })
            || memory.reconciled_gen != Some(generation);
        let root = t.local_path.clone();
        let root_missing = !root_is_dir(&root, &t.name).await?;
        if root_missing && t.direction.writes_local() {
            // The container may be new: restore into a fresh root.
            full = true;
            if !req.dry_run {
                create_root(&root, &t.name).await?;
            }
        }
        let exec = Exec::new(
            &engine.inner,
            st,
            op,
            root.clone(),
            !req.dry_run,
            cancel,
            observer,
        );
        let meta = engine.load_meta(&t.name).await?;
        let mut pass = Pass {
            engine,
            st,
            memory,
            exec,
            observer,
            req,
            root,
            generation,
            full,
            trusted: false,
            root_missing,
            manifest_rid: meta.manifest_rid.clone(),
            meta,
            report: PassReport::default(),
        };
        pass.trust_manifest().await?;
        pass.report = PassReport::new(&t.name, pass.full);
        Ok(pass)
    }

    /// On the first pass after open (with `trust_manifest_on_open`): when
    /// nobody (no coltecd) wrote since this host's last pass, the base is
    /// the remote's state and no LIST is needed.
    async fn trust_manifest(&mut self) -> Result<(), SyncError> {
        if !(self.full
            && self.memory.reconciled_gen.is_none()
            && self.engine.inner.options.trust_manifest_on_open
            && !matches!(self.req.scope, PassScope::Full { verify: true })
            && !self.root_missing)
        {
            return Ok(());
        }
        let Some(rid) = &self.meta.manifest_rid else {
            return Ok(());
        };
        if self.exec.manifest_unchanged(rid).await? && !self.exec.dirty_marker_exists().await? {
            self.full = false;
            self.trusted = true;
            self.memory.marker = Marker::Absent;
        }
        Ok(())
    }

    /// Stage 2, gather: the base rows and the local side the pass needs.
    async fn gather(&mut self) -> Result<(PassBase, LocalSide), SyncError> {
        let t = &self.st.target;
        let scope = if self.full || self.root_missing {
            PassScope::Full { verify: self.full }
        } else {
            self.req.scope.clone()
        };
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
        Ok((base, local))
    }

    /// Stage 3, remote view: a full reconcile lists the remote; any other
    /// pass takes the base as the remote's state.
    async fn remote_view(
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
        self.memory.remote_unsettled =
            !(rv.problems.is_empty() && rv.conflicted.is_empty() && rv.skipped.is_empty());
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
        Ok(rv.entries)
    }

    /// Stage 4, plan and guard: the 3-way plan of the candidates, would-be
    /// conflicts of equal content settled, refused when it deletes too much.
    async fn plan_and_guard(
        &mut self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> Result<Vec<Action>, SyncError> {
        let t = &self.st.target;
        let candidates = self.candidates(base, local, remote);
        // A missing root says nothing about what should be deleted: plan
        // as a first sync (no base), which never deletes.
        let empty = BTreeMap::new();
        let plan_base = if self.root_missing {
            &empty
        } else {
            &*base.map
        };
        let mut actions = plan::plan(t.direction, &candidates, &local.entries, plan_base, remote);
        actions.extend(
            base.map
                .keys()
                .filter(|rel| !names::is_canonical(rel))
                .map(|rel| Action::Forget { rel: rel.clone() }),
        );
        let actions = self.exec.settle_equal(actions).await;
        self.report.plan = plan::summarize(&actions);
        if !self.req.allow_mass_delete {
            let totals = self.side_totals(base, local, remote);
            guard::check(
                &self.engine.inner.spec.safety,
                &t.name,
                &self.report.plan,
                totals,
            )?;
        }
        Ok(actions)
    }

    /// The paths to plan.
    fn candidates(
        &self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> BTreeSet<String> {
        let mut candidates = local.candidates.clone();
        if self.full {
            candidates.extend(local.entries.keys().cloned());
            candidates.extend(base.map.keys().cloned());
            candidates.extend(remote.keys().cloned());
        }
        let excludes = &self.st.target.excludes;
        // Excluded paths are ignored on both sides (rclone semantics): an
        // exclude added later never deletes what was stored before.
        candidates.retain(|rel| !scan::excluded_with_parents(excludes, rel, false));
        // Paths under a directory we could not read are not "deleted".
        candidates.retain(|rel| local.entries.contains_key(rel) || !local.under_unreadable(rel));
        // Held by both a file and a symlink object on the remote: untouched.
        // Base rows of an earlier version under a name that has another form
        // now are never acted on (they are forgotten in `plan_and_guard`).
        candidates
            .retain(|rel| !self.memory.remote_conflicts.contains(rel) && names::is_canonical(rel));
        candidates
    }

    /// How many files each side holds, as far as this pass knows.
    fn side_totals(&self, base: &PassBase, local: &LocalSide, remote: &RemoteMap) -> SideTotals {
        SideTotals {
            remote: if self.full {
                remote.len() as u64
            } else {
                base.total
            },
            local: if self.full || matches!(self.req.scope, PassScope::Full { .. }) {
                local.entries.len() as u64
            } else {
                base.total
            },
        }
    }

    /// Stage 5, execute: mark the manifest dirty, run the plan, record what
    /// did happen (even when the pass was cut short, so the next pass
    /// neither repeats nor forgets finished transfers).
    async fn execute(
        &mut self,
        actions: Vec<Action>,
        local: LocalSide,
    ) -> Result<BaseChanges, SyncError> {
        let st = self.st;
        self.observer.planned(&st.target.name, &self.report.plan);
        self.mark_dirty().await?;
        drop(local);
        let executed = self.exec.run(actions, &mut self.report).await;
        self.engine
            .save_base(&st.target.name, &executed.changes)
            .await?;
        self.memory.manifest_dirty |= executed.remote_changed;
        executed.fatal.map_or(Ok(()), Err)?;
        Ok(executed.changes)
    }

    /// From now until the manifest is rewritten it does not describe the
    /// remote: say so first, so a crash in between never lets another host
    /// trust it.
    async fn mark_dirty(&mut self) -> Result<(), SyncError> {
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
    async fn manifest(&mut self, base: PassBase, changes: BaseChanges) -> Result<(), SyncError> {
        let st = self.st;
        let t = &st.target;
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
        if trusted_rid != self.meta.manifest_rid {
            let meta = TargetMeta {
                manifest_rid: trusted_rid,
            };
            self.engine.save_meta(&t.name, meta).await?;
        }
        if self.full && t.direction.writes_remote() {
            self.exec.prune_trash(&mut self.report).await?;
        }
        if self.full || self.trusted {
            self.memory.reconciled_gen = Some(self.generation);
        }
        Ok(())
    }
}
