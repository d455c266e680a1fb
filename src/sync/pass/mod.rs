//! One sync pass over one target, as explicit stages that each do one
//! thing: **scope** (what to look at; whether to list the remote or trust
//! its manifest) → **gather** (the base rows and the local side) →
//! **remote view** (a LIST, or the base as the remote's state; a root
//! created for a target never synced here starts downloading meanwhile:
//! `early`) →
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

mod early;
mod finish;
mod gather;
mod planning;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::MutexGuard;
use tokio_util::sync::CancellationToken;

use super::exec::{Exec, Executed};
use super::layout::RemoteEntry;
use super::local::{create_root, root_is_dir};
use super::pending::{self, PendingChanges, PendingMap, PendingSummary, Transfer};
use super::report::NoObserver;
use super::root::{self, RootId, RootSuspect};
use super::state::{BaseChanges, TargetMeta};
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
        let remote = if pass.fetches_early(&base, &local) {
            pass.remote_view_fetching(&base, &local).await?
        } else {
            pass.remote_view(&base, &local).await?
        };
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
    /// What the downloads started while listing did (see `early`).
    early: Option<Executed>,
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
        let mut meta = engine.load_meta(&t.name).await?;
        let remote_now = super::target::remote_identity(t);
        if meta.remote.as_ref().is_some_and(|r| *r != remote_now) && !req.dry_run {
            // The spec now points this target at another remote: the base
            // describes the old one. Read against it, the new remote's
            // missing files would be deletions to apply locally. Forget it:
            // this pass is a first sync (it never deletes) of both sides.
            tracing::warn!(
                target_name = %t.name,
                location = %t.location(),
                "this target now points at a different remote than its sync state describes; \
                 that state is discarded and both sides are merged like a first sync (nothing is deleted)"
            );
            meta = TargetMeta {
                manifest_rid: None,
                root: meta.root,
                remote: Some(remote_now),
            };
            engine.void_base(&t.name, meta.clone()).await?;
            full = true;
        }
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
                    .map(|(rel, _)| crate::sync::names::local_path(&root, rel)),
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
            early: None,
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
        // Both HEADs at once: on the usual path (nothing changed) both are
        // needed, and a one-shot `sync` waits for them.
        let (unchanged, dirty) = futures::join!(
            self.exec.manifest_unchanged(rid),
            self.exec.dirty_marker_exists()
        );
        if unchanged? && !dirty? {
            self.full = false;
            self.trusted = true;
            self.memory.marker = Marker::Absent;
        }
        Ok(())
    }
}
