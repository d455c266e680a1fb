//! One sync pass over one target, as explicit stages that each do one
//! thing: **scope** (what to look at; whether to list the remote or trust
//! its manifest) → **gather** (the base rows and the local side) →
//! **remote view** (a LIST, or the base as the remote's state) →
//! **plan and guard** (the 3-way plan, settled, checked by the mass-delete
//! guard) → **execute** (dirty marker first, then the transfers) →
//! **manifest** (rewrite it, clear the marker, prune the trash).
//! [`Pass`] carries what the stages share.
//!
//! Two inputs can make a pass list the remote and change how it plans:
//! the journal of pending transfers (see [`super::pending`]: interrupted
//! or failed transfers are retried, uploads found stored after a crash
//! become the base) and a local root that cannot be trusted to say what
//! was deleted (see [`super::root`]: the pass restores instead).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tokio::sync::MutexGuard;
use tokio_util::sync::CancellationToken;

use super::base::PassBase;
use super::exec::Exec;
use super::guard::{self, SideTotals};
use super::layout::RemoteEntry;
use super::local::{LocalSide, create_root, gather_local, remove_stale_temps, root_is_dir};
use super::pending::{self, PendingChanges, PendingMap, PendingSummary, Transfer};
use super::plan::{self, Action};
use super::report::NoObserver;
use super::root::{self, RootGuard, RootId, RootSuspect};
use super::scan;
use super::state::{BaseChanges, BaseMap, TargetMeta};
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
        let (mut base, local) = pass.gather().await?;
        let remote = pass.remote_view(&base, &local).await?;
        pass.repair(&mut base, &remote);
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
    /// Why the local root is not trusted to say what was deleted.
    suspect: Option<RootSuspect>,
    /// The root's identity now (`None` while it does not exist).
    root_now: Option<RootId>,
    /// The journal rows of the target as the pass found them.
    pending: PendingMap,
    /// Base rows of uploads found stored after an interruption.
    repairs: BaseChanges,
    /// Journal rows this pass settles without an action.
    settled: PendingChanges,
    /// The remote was found to differ from the base: list it next pass.
    stale: bool,
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
        let mut req = req;
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
        let meta = engine.load_meta(&t.name).await?;
        let root_now = RootId::of(&root).await;
        let suspect =
            root::suspect_at_start(root_missing, meta.root, root_now, req.allow_mass_delete);
        let pending = engine.load_pending(&t.name).await?;
        // Interrupted transfers and failed downloads need the remote's
        // real state; failed uploads are re-checked by any pass.
        full |= suspect.is_some() || pending::forces_full(&pending);
        if let PassScope::Paths(paths) = &mut req.scope {
            paths.extend(
                pending
                    .iter()
                    .filter(|(_, p)| p.transfer == Transfer::Up)
                    .map(|(rel, _)| root.join(rel)),
            );
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
            suspect,
            root_now,
            pending,
            repairs: BaseChanges::new(),
            settled: PendingChanges::new(),
            stale: false,
            manifest_rid: meta.manifest_rid.clone(),
            meta,
            report: PassReport::default(),
        };
        pass.trust_manifest().await?;
        pass.report = PassReport::new(&t.name, pass.full);
        pass.report.pending = PendingSummary::of(&pass.pending);
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
            && !self.root_missing
            && self.suspect.is_none()
            && !pending::forces_full(&self.pending))
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
    /// A root found empty while the base has files makes the pass a
    /// protective full one (see [`super::root`]).
    async fn gather(&mut self) -> Result<(PassBase, LocalSide), SyncError> {
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

    async fn gather_scope(&mut self, scope: PassScope) -> Result<(PassBase, LocalSide), SyncError> {
        let t = &self.st.target;
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
        Ok((base, local))
    }

    /// Whether the existing root holds no file at all (a path-scoped pass
    /// looks only when one of its paths is gone from a non-empty base).
    async fn root_is_empty(
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
    fn repair(&mut self, base: &mut PassBase, remote: &RemoteMap) {
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
        self.report.failed.extend(rv.problems);
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
        let plan_base = self.plan_base(base, local);
        let mut actions =
            plan::plan(t.direction, &candidates, &local.entries, &plan_base, remote);
        if self.suspect == Some(RootSuspect::Empty) {
            // An emptied root that the mass-delete guard refuses is
            // reported as that refusal, as before.
            self.guard(base, local, remote, &plan::summarize(&actions))?;
        }
        if let Some(reason) = self.suspect {
            // A missing, replaced or empty root says nothing about what
            // should be deleted: plan as a first sync (no base), which
            // never deletes.
            actions = plan::plan(
                t.direction,
                &candidates,
                &local.entries,
                &BTreeMap::new(),
                remote,
            );
            self.report.root_guard = Some(RootGuard {
                reason,
                base_files: base.total,
            });
        }
        let actions = self.exec.settle_equal(actions).await;
        self.settled = self.settled_rows(&actions, &candidates, base, local, remote);
        self.report.plan = plan::summarize(&actions);
        self.guard(base, local, remote, &self.report.plan)?;
        Ok(actions)
    }

    /// The base to plan against: a path whose download is pending and
    /// that is absent locally was never there (a failed download is not a
    /// local delete), so it is planned without its base row.
    fn plan_base<'b>(&self, base: &'b PassBase, local: &LocalSide) -> Cow<'b, BaseMap> {
        let undelivered: Vec<&String> = self
            .pending
            .iter()
            .filter(|(rel, p)| {
                p.transfer == Transfer::Down
                    && !local.entries.contains_key(*rel)
                    && base.map.contains_key(*rel)
            })
            .map(|(rel, _)| rel)
            .collect();
        if undelivered.is_empty() {
            return Cow::Borrowed(&*base.map);
        }
        let mut map = (*base.map).clone();
        for rel in undelivered {
            map.remove(rel);
        }
        Cow::Owned(map)
    }

    /// The mass-delete guard, unless the caller allows mass deletes.
    fn guard(
        &self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
        plan: &super::PlanSummary,
    ) -> Result<(), SyncError> {
        if self.req.allow_mass_delete {
            return Ok(());
        }
        let totals = self.side_totals(base, local, remote);
        guard::check(
            &self.engine.inner.spec.safety,
            &self.st.target.name,
            plan,
            totals,
        )
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
        candidates
    }

    /// Journal rows that need no transfer any more: their path was planned
    /// without an action, is excluded now, or (full pass) is gone from
    /// every side.
    fn settled_rows(
        &self,
        actions: &[Action],
        candidates: &BTreeSet<String>,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> PendingChanges {
        let acted: BTreeSet<&str> = actions.iter().map(Action::rel).collect();
        let excludes = &self.st.target.excludes;
        self.pending
            .keys()
            .filter(|k| !acted.contains(k.as_str()))
            .filter(|k| {
                candidates.contains(*k)
                    || scan::excluded_with_parents(excludes, k, false)
                    || (self.full
                        && !local.entries.contains_key(*k)
                        && !remote.contains_key(*k)
                        && !base.map.contains_key(*k))
            })
            .map(|k| (k.clone(), None))
            .collect()
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
        let name = &st.target.name;
        self.observer.planned(name, &self.report.plan);
        self.void_base().await?;
        self.mark_dirty().await?;
        drop(local);
        let executed = self
            .exec
            .run(actions, &self.pending, &mut self.report)
            .await;
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
    async fn void_base(&mut self) -> Result<(), SyncError> {
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
        };
        self.engine.void_base(&self.st.target.name, meta.clone()).await?;
        self.meta = meta;
        Ok(())
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
        let meta = TargetMeta {
            manifest_rid: self.manifest_rid.clone(),
            root: self.root_now.or(self.meta.root),
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
