//! The sync engine: incremental, 3-way sync of each target's local
//! directory with its remote location.
//!
//! # Layout
//!
//! - [`scan`]: walking the local root (excluded dirs pruned, symlinks recorded).
//! - [`state`]: per-file base state in redb (`<state_dir>/sync.redb`).
//! - [`remote`]: key/metadata mapping (rclone-compatible), the manifest, hostile-key refusal.
//! - [`plan`]: the pure 3-way planner.
//! - `exec`: executing a plan (uploads, downloads, deletes, trash, conflicts).
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
//! A first sync (no base) never deletes. A missing local root never causes
//! remote deletes (push-only treats it as empty; pull-only/bidirectional
//! create it and restore). A pass that would delete more than
//! `safety.mass_delete_max_files` files AND more than
//! `safety.mass_delete_max_fraction` of a side's files stops before doing
//! anything ([`SyncError::MassDelete`], exit 1) unless `allow_mass_delete`.
//! Remote files coltecd deletes or overwrites are first copied to
//! `.coltec/trash/<YYYYmmddTHHMMSSZ>/<key>` (unless `trash_retention` is 0),
//! pruned at full reconciles once older than the retention.

pub mod plan;
pub mod remote;
pub mod scan;
pub mod state;

mod exec;
mod limits;
mod localfs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opendal::Operator;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::{RemoteError, WriteGate, target_operator};
use crate::spec::{Direction, Location, Spec, Target};
use crate::state_dir::{StateDir, StateDirError};

use plan::Action;
use remote::RemoteEntry;
use scan::LocalEntry;
use state::{BaseEntry, StateDb, StateError};

pub use localfs::conflict_name;

/// How many paths per action a [`PlanSummary`] lists.
pub const PLAN_FIRST_N: usize = 10;

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

/// The outcome of one pass over one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub target: String,
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_remote: u64,
    pub deleted_local: u64,
    /// Conflict copies created (their relative paths).
    pub conflicts: Vec<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub failed: Vec<FailedFile>,
    /// Whether this pass listed the remote (a full reconcile).
    pub remote_listed: bool,
    pub plan: PlanSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedFile {
    pub path: String,
    pub reason: String,
}

/// Counts, bytes and the first few paths of one kind of action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    pub files: u64,
    pub bytes: u64,
    pub first: Vec<String>,
}

impl ActionCount {
    fn add(&mut self, rel: &str, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        if self.first.len() < PLAN_FIRST_N {
            self.first.push(rel.to_string());
        }
    }
}

/// What a pass planned (and, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub upload: ActionCount,
    pub download: ActionCount,
    pub delete_remote: ActionCount,
    pub delete_local: ActionCount,
    pub conflict: ActionCount,
    /// Already identical on both sides: recorded without transfer.
    pub adopt: ActionCount,
}

impl PlanSummary {
    fn of(actions: &[Action]) -> PlanSummary {
        let mut s = PlanSummary::default();
        for a in actions {
            match a {
                Action::Upload { rel, local, .. } => s.upload.add(rel, local.size),
                Action::Download { rel, remote, .. } => s.download.add(rel, remote.size),
                Action::DeleteRemote { rel, remote } => s.delete_remote.add(rel, remote.size),
                Action::DeleteLocal { rel, local } => s.delete_local.add(rel, local.size),
                Action::Conflict { rel, local, remote } => {
                    s.conflict.add(rel, local.size + remote.size)
                }
                Action::Adopt { rel, local, .. } => s.adopt.add(rel, local.size),
                Action::Forget { .. } => {}
            }
        }
        s
    }

    /// Whether the plan moves or deletes anything.
    pub fn is_empty(&self) -> bool {
        self.upload.files
            + self.download.files
            + self.delete_remote.files
            + self.delete_local.files
            + self.conflict.files
            == 0
    }
}

/// Progress callbacks for interactive front ends (all optional).
pub trait PassObserver: Send + Sync {
    /// The plan is known; transfers start.
    fn planned(&self, _target: &str, _plan: &PlanSummary) {}
    /// `n` more bytes moved (either direction).
    fn bytes(&self, _n: u64) {}
    /// One more action finished.
    fn file_done(&self) {}
}

struct NoObserver;
impl PassObserver for NoObserver {}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no sync target named '{name}' (known: {known})")]
    UnknownTarget { name: String, known: String },
    #[error(transparent)]
    Setup(Box<RemoteError>),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "target '{target}': {op} failed on the remote: {source}. Check the endpoint, bucket and credentials, then retry"
    )]
    Remote {
        target: String,
        op: String,
        #[source]
        source: Box<opendal::Error>,
    },
    #[error("target '{target}': local directory {}: {source}", path.display())]
    Local {
        target: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "target '{target}': refusing to delete {count} of {total} {side} files in one pass \
         (the guard stops passes deleting more than {max_files} files and more than {pct}% of them; \
         an empty or unmounted directory looks like this). Nothing was changed for this target. \
         If the deletes are intended, re-run with --allow-mass-delete"
    )]
    MassDelete {
        target: String,
        count: u64,
        total: u64,
        side: &'static str,
        max_files: u64,
        pct: String,
    },
    #[error("target '{target}': remote writes are paused ({reason}); nothing more was written")]
    Fenced { target: String, reason: String },
    #[error("target '{target}' cannot be synced: {reason}")]
    Unavailable {
        target: String,
        reason: String,
        status: ExitStatus,
    },
    #[error("sync cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RemoteError> for SyncError {
    fn from(e: RemoteError) -> Self {
        SyncError::Setup(Box::new(e))
    }
}

impl HasExitStatus for SyncError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SyncError::UnknownTarget { .. } => ExitStatus::Usage,
            SyncError::Setup(e) => e.exit_status(),
            SyncError::StateDir(e) => e.exit_status(),
            SyncError::Remote { .. } => ExitStatus::Remote,
            SyncError::Unavailable { status, .. } => *status,
            // The target's pass refused to run at all: a failure, not a
            // partial one (no file of that target was transferred).
            SyncError::MassDelete { .. } => ExitStatus::Failure,
            SyncError::State(_)
            | SyncError::Local { .. }
            | SyncError::Fenced { .. }
            | SyncError::Cancelled
            | SyncError::Internal(_) => ExitStatus::Failure,
        }
    }
}

/// Tuning of an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// On the first pass after open, skip the full reconcile (LIST) when the
    /// remote manifest is unchanged since this host's last pass (one
    /// conditional GET) and no dirty marker says a writer changed the
    /// target after writing it (one HEAD). Changes made behind coltecd's
    /// back are then only seen with `verify: true`. Used by the one-shot
    /// `coltecd sync`.
    pub trust_manifest_on_open: bool,
    /// Rewrite a target's manifest at most this often (`None`: after every
    /// pass that changed the remote). The manifest lists every file, so at
    /// 100k files each rewrite uploads ~13 MiB: the daemon, whose passes
    /// are seconds apart, rewrites it at this pace, at full reconciles and
    /// when it stops ([`Engine::flush_manifests`]). The dirty marker keeps
    /// a stale manifest from being trusted meanwhile.
    pub manifest_min_interval: Option<Duration>,
}

/// The sync engine: one per process, serving every target.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    spec: Arc<Spec>,
    options: EngineOptions,
    db: StateDb,
    gate: WriteGate,
    limits: limits::Limits,
    host: String,
    targets: BTreeMap<String, Arc<TargetCtx>>,
    /// Deferred manifest rewrites count from here until the first one.
    opened: Instant,
}

pub(crate) struct TargetCtx {
    target: Target,
    /// The target's operator, or why it has none (e.g. a crypt remote,
    /// missing credentials): reported by the target's passes, so one
    /// unusable target does not stop the others.
    op: Result<Operator, Unavailable>,
    /// For local remotes: the directory, so stored files get their real
    /// mtime and mode (what rclone's local backend does too).
    local_dir: Option<PathBuf>,
    /// S3 carries mtime/mode as user metadata.
    user_metadata: bool,
    run: tokio::sync::Mutex<RunState>,
}

#[derive(Debug, Clone)]
struct Unavailable {
    reason: String,
    status: ExitStatus,
}

impl TargetCtx {
    fn operator(&self) -> Result<Operator, SyncError> {
        self.op.clone().map_err(|u| SyncError::Unavailable {
            target: self.target.name.clone(),
            reason: u.reason,
            status: u.status,
        })
    }
}

type BaseMap = BTreeMap<String, BaseEntry>;

/// The base entries a pass works with. Nothing of it outlives the pass: an
/// idle daemon keeps no per-file state in memory (the rows stay in redb).
struct PassBase {
    /// Every entry (full scope) or those at and under the pass's paths.
    map: Arc<BaseMap>,
    /// Whether `map` holds every entry of the target.
    complete: bool,
    /// How many entries the target has in all (the mass-delete guard's
    /// denominator for path-scoped passes).
    total: u64,
}

/// What this process knows of the target's `.coltec/manifest.dirty`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Marker {
    #[default]
    Unknown,
    Present,
    Absent,
}

#[derive(Default)]
struct RunState {
    /// Gate generation of the last full reconcile since open.
    reconciled_gen: Option<u64>,
    /// The remote changed (or the manifest was found stale) since the
    /// manifest was last written.
    manifest_dirty: bool,
    /// When this process last wrote the manifest.
    manifest_written: Option<Instant>,
    marker: Marker,
}

impl RunState {
    /// Write the manifest listing `base` (the target's whole base); it is
    /// current from now on. Returns its identity.
    async fn write_manifest(
        &mut self,
        exec: &exec::Exec<'_>,
        base: &BaseMap,
    ) -> Result<String, SyncError> {
        let rid = exec.write_manifest(base).await?;
        self.manifest_dirty = false;
        self.manifest_written = Some(Instant::now());
        Ok(rid)
    }

    /// Remove the dirty marker (the manifest is current), unless it is
    /// known to be absent.
    async fn clear_marker(&mut self, exec: &exec::Exec<'_>) -> Result<(), SyncError> {
        if self.marker != Marker::Absent {
            exec.delete_dirty_marker().await?;
            self.marker = Marker::Absent;
        }
        Ok(())
    }
}

impl Engine {
    /// Open the sync state under `state_dir` and build one operator per target.
    ///
    /// Bandwidth: the smallest `bwlimit` up/down configured on any target
    /// becomes the one process-wide budget for that direction.
    pub fn open(
        spec: Arc<Spec>,
        state_dir: &StateDir,
        gate: WriteGate,
    ) -> Result<Engine, SyncError> {
        Engine::open_with(spec, state_dir, gate, EngineOptions::default())
    }

    /// [`Engine::open`] with non-default [`EngineOptions`].
    pub fn open_with(
        spec: Arc<Spec>,
        state_dir: &StateDir,
        gate: WriteGate,
        options: EngineOptions,
    ) -> Result<Engine, SyncError> {
        state_dir.ensure()?;
        let db = StateDb::open(&state_dir.path().join("sync.redb"))?;
        let mut targets = BTreeMap::new();
        for t in &spec.targets {
            let op = target_operator(t).map_err(|e| Unavailable {
                reason: e.to_string(),
                status: e.exit_status(),
            });
            let local_dir = match t.location() {
                Location::Local { dir } => Some(dir),
                _ => None,
            };
            targets.insert(
                t.name.clone(),
                Arc::new(TargetCtx {
                    target: t.clone(),
                    op,
                    local_dir,
                    user_metadata: crate::remote::crypt::stores_user_metadata(&t.remote),
                    run: tokio::sync::Mutex::new(RunState::default()),
                }),
            );
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                limits: limits::Limits::from_spec(&spec),
                options,
                spec,
                db,
                gate,
                host: crate::state_dir::hostname(),
                targets,
                opened: Instant::now(),
            }),
        })
    }

    /// The spec this engine serves.
    pub fn spec(&self) -> &Arc<Spec> {
        &self.inner.spec
    }

    fn ctx(&self, name: &str) -> Result<Arc<TargetCtx>, SyncError> {
        self.inner
            .targets
            .get(name)
            .cloned()
            .ok_or_else(|| SyncError::UnknownTarget {
                name: name.to_string(),
                known: self
                    .inner
                    .targets
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

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
        let ctx = self.ctx(target)?;
        let op = ctx.operator()?;
        let mut run = tokio::select! {
            g = ctx.run.lock() => g,
            _ = cancel.cancelled() => return Err(SyncError::Cancelled),
        };
        let t = &ctx.target;
        let generation = self.inner.gate.generation();
        let mut full = matches!(req.scope, PassScope::Full { verify: true })
            || run.reconciled_gen != Some(generation);

        let root = t.local_path.clone();
        let root_missing = !root_is_dir(&root, &t.name).await?;
        if root_missing && t.direction.writes_local() {
            // The container may be new: restore into a fresh root.
            full = true;
            if !req.dry_run {
                tokio::fs::create_dir_all(&root)
                    .await
                    .map_err(|source| SyncError::Local {
                        target: t.name.clone(),
                        path: root.clone(),
                        source,
                    })?;
            }
        }

        let exec = exec::Exec::new(
            &self.inner,
            &ctx,
            op,
            root.clone(),
            !req.dry_run,
            cancel,
            observer,
        );
        let meta = self.load_meta(&t.name).await?;
        let mut trusted = false;
        if full
            && run.reconciled_gen.is_none()
            && self.inner.options.trust_manifest_on_open
            && !matches!(req.scope, PassScope::Full { verify: true })
            && !root_missing
            && let Some(rid) = &meta.manifest_rid
            && exec.manifest_unchanged(rid).await?
            && !exec.dirty_marker_exists().await?
        {
            // Nobody (no coltecd) wrote since this host's last pass: the
            // base is the remote's state, no LIST needed.
            full = false;
            trusted = true;
            run.marker = Marker::Absent;
        }

        let scope = if full || root_missing {
            PassScope::Full { verify: full }
        } else {
            req.scope.clone()
        };
        let mut base = self.pass_base(&t.name, &root, &scope).await?;
        let mut local = if root_missing {
            LocalSide::default()
        } else {
            gather_local(root.clone(), t.excludes.clone(), scope, base.map.clone()).await?
        };
        if !req.dry_run {
            remove_stale_temps(&t.name, std::mem::take(&mut local.stale_temps)).await;
        }

        let mut report = PassReport {
            target: t.name.clone(),
            remote_listed: full,
            ..PassReport::default()
        };
        report.failed.extend(local.problems.iter().cloned());

        let mut manifest_rid = meta.manifest_rid.clone();
        let (remote, manifest_stale) = if full {
            let rv = exec.reconcile(&base.map).await?;
            report.failed.extend(rv.problems);
            manifest_rid = rv.manifest_rid;
            run.marker = if rv.dirty_marker {
                Marker::Present
            } else {
                Marker::Absent
            };
            (rv.entries, rv.manifest_stale)
        } else {
            let remote = local
                .candidates
                .iter()
                .filter_map(|rel| {
                    base.map
                        .get(rel)
                        .map(|b| (rel.clone(), RemoteEntry::from_base(b)))
                })
                .collect();
            (remote, false)
        };
        run.manifest_dirty |= manifest_stale;

        let mut candidates = local.candidates.clone();
        if full {
            candidates.extend(local.entries.keys().cloned());
            candidates.extend(base.map.keys().cloned());
            candidates.extend(remote.keys().cloned());
        }
        // Excluded paths are ignored on both sides (rclone semantics): an
        // exclude added later never deletes what was stored before.
        candidates.retain(|rel| !scan::excluded_with_parents(&t.excludes, rel, false));
        // Paths under a directory we could not read are not "deleted".
        candidates.retain(|rel| {
            local.entries.contains_key(rel)
                || !local.unreadable_dirs.iter().any(|d| {
                    d.is_empty()
                        || rel == d
                        || rel
                            .strip_prefix(d.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
        });

        // A missing root says nothing about what should be deleted: plan
        // as a first sync (no base), which never deletes.
        let empty = BTreeMap::new();
        let plan_base = if root_missing { &empty } else { &*base.map };
        let actions = plan::plan(t.direction, &candidates, &local.entries, plan_base, &remote);
        let actions = exec.settle_equal(actions).await;
        report.plan = PlanSummary::of(&actions);

        if !req.allow_mass_delete {
            let remote_total = if full {
                remote.len() as u64
            } else {
                base.total
            };
            let local_total = if full || matches!(req.scope, PassScope::Full { .. }) {
                local.entries.len() as u64
            } else {
                base.total
            };
            self.guard(t, report.plan.delete_remote.files, remote_total, "remote")?;
            self.guard(
                t,
                report.plan.delete_local.files,
                local_total.max(report.plan.delete_local.files),
                "local",
            )?;
        }
        if req.dry_run {
            return Ok(report);
        }
        observer.planned(&t.name, &report.plan);

        let p = &report.plan;
        if t.direction.writes_remote()
            && p.upload.files + p.delete_remote.files + p.conflict.files > 0
            && run.marker != Marker::Present
        {
            // From now until the manifest is rewritten it does not describe
            // the remote: say so first, so a crash in between never lets
            // another host trust it.
            exec.write_dirty_marker().await?;
            run.marker = Marker::Present;
        }
        drop(local);
        let outcome = exec.run(actions, &mut report).await;
        // Record what did happen even when the pass was cut short, so the
        // next pass neither repeats nor forgets finished transfers.
        let changes = outcome.changes;
        self.save_base(&t.name, &changes).await?;
        run.manifest_dirty |= outcome.remote_changed;
        outcome.fatal.map_or(Ok(()), Err)?;

        if t.direction.writes_remote() {
            if run.manifest_dirty && self.manifest_due(&run, full) {
                if base.complete {
                    apply_changes(Arc::make_mut(&mut base.map), changes);
                } else {
                    drop(base);
                    base = self
                        .pass_base(&t.name, &root, &PassScope::Full { verify: false })
                        .await?;
                }
                manifest_rid = Some(run.write_manifest(&exec, &base.map).await?);
            }
            if !run.manifest_dirty {
                run.clear_marker(&exec).await?;
            }
        }
        if manifest_rid != meta.manifest_rid {
            self.save_meta(&t.name, state::TargetMeta { manifest_rid })
                .await?;
        }
        if full && t.direction.writes_remote() {
            exec.prune_trash(&mut report).await?;
        }
        if full || trusted {
            run.reconciled_gen = Some(generation);
        }
        Ok(report)
    }

    /// Pull the target's remote state into `to` (default: the target's own
    /// path). Never deletes local files; files that differ are replaced.
    pub async fn restore(
        &self,
        target: &str,
        to: Option<&Path>,
        dry_run: bool,
        cancel: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        self.restore_observed(target, to, dry_run, cancel, &NoObserver)
            .await
    }

    /// [`Engine::restore`] with progress callbacks.
    pub async fn restore_observed(
        &self,
        target: &str,
        to: Option<&Path>,
        dry_run: bool,
        cancel: &CancellationToken,
        observer: &dyn PassObserver,
    ) -> Result<PassReport, SyncError> {
        let ctx = self.ctx(target)?;
        let op = ctx.operator()?;
        let run = tokio::select! {
            g = ctx.run.lock() => g,
            _ = cancel.cancelled() => return Err(SyncError::Cancelled),
        };
        let t = &ctx.target;
        let root = to
            .map(Path::to_path_buf)
            .unwrap_or_else(|| t.local_path.clone());
        let own = root == t.local_path;
        let exists = root_is_dir(&root, &t.name).await?;
        if !exists && !dry_run {
            tokio::fs::create_dir_all(&root)
                .await
                .map_err(|source| SyncError::Local {
                    target: t.name.clone(),
                    path: root.clone(),
                    source,
                })?;
        }
        let base = Arc::new(self.load_base(&t.name).await?);
        let local = if exists {
            gather_local(
                root.clone(),
                t.excludes.clone(),
                PassScope::Full { verify: true },
                base.clone(),
            )
            .await?
        } else {
            LocalSide::default()
        };
        let exec = exec::Exec::new(
            &self.inner,
            &ctx,
            op,
            root.clone(),
            own && !dry_run,
            cancel,
            observer,
        );
        let rv = exec.reconcile(&base).await?;
        let mut report = PassReport {
            target: t.name.clone(),
            remote_listed: true,
            ..PassReport::default()
        };
        report.failed.extend(local.problems.iter().cloned());
        report.failed.extend(rv.problems);
        let mut candidates: BTreeSet<String> = rv.entries.keys().cloned().collect();
        candidates.retain(|rel| !scan::excluded_with_parents(&t.excludes, rel, false));
        let actions = plan::plan(
            Direction::PullOnly,
            &candidates,
            &local.entries,
            &BTreeMap::new(),
            &rv.entries,
        );
        report.plan = PlanSummary::of(&actions);
        if dry_run {
            return Ok(report);
        }
        observer.planned(&t.name, &report.plan);
        drop((local, base));
        let outcome = exec.run(actions, &mut report).await;
        if own {
            self.save_base(&t.name, &outcome.changes).await?;
        }
        // A restore never writes the remote; it only holds the lock so no
        // pass of the same target runs meanwhile.
        drop(run);
        outcome.fatal.map_or(Ok(()), Err)?;
        Ok(report)
    }

    /// Write the manifest of every target whose remote changed since its
    /// manifest was last written (see
    /// [`EngineOptions::manifest_min_interval`]), then remove its dirty
    /// marker. The daemon calls this when it stops, before releasing the
    /// lease. Every target is tried; the first error is returned.
    pub async fn flush_manifests(&self, cancel: &CancellationToken) -> Result<(), SyncError> {
        let mut first_err = None;
        for ctx in self.inner.targets.values() {
            if let Err(e) = self.flush_manifest(ctx, cancel).await {
                tracing::warn!(target_name = %ctx.target.name, error = %e, "manifest not written");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn flush_manifest(
        &self,
        ctx: &Arc<TargetCtx>,
        cancel: &CancellationToken,
    ) -> Result<(), SyncError> {
        let t = &ctx.target;
        if !t.direction.writes_remote() {
            return Ok(());
        }
        let mut run = tokio::select! {
            g = ctx.run.lock() => g,
            _ = cancel.cancelled() => return Err(SyncError::Cancelled),
        };
        if !run.manifest_dirty {
            return Ok(());
        }
        let exec = exec::Exec::new(
            &self.inner,
            ctx,
            ctx.operator()?,
            t.local_path.clone(),
            false,
            cancel,
            &NoObserver,
        );
        let base = self.load_base(&t.name).await?;
        let rid = run.write_manifest(&exec, &base).await?;
        drop(base);
        self.save_meta(
            &t.name,
            state::TargetMeta {
                manifest_rid: Some(rid),
            },
        )
        .await?;
        run.clear_marker(&exec).await
    }

    fn manifest_due(&self, run: &RunState, full: bool) -> bool {
        match self.inner.options.manifest_min_interval {
            None => true,
            Some(every) => {
                full || run.manifest_written.unwrap_or(self.inner.opened).elapsed() >= every
            }
        }
    }

    /// The base entries a pass of `scope` needs (see [`PassBase`]).
    async fn pass_base(
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

    fn guard(
        &self,
        t: &Target,
        count: u64,
        total: u64,
        side: &'static str,
    ) -> Result<(), SyncError> {
        let s = &self.inner.spec.safety;
        if count > s.mass_delete_max_files
            && (count as f64) > s.mass_delete_max_fraction * total as f64
        {
            return Err(SyncError::MassDelete {
                target: t.name.clone(),
                count,
                total,
                side,
                max_files: s.mass_delete_max_files,
                pct: format!("{:.0}", s.mass_delete_max_fraction * 100.0),
            });
        }
        Ok(())
    }

    async fn load_base(&self, target: &str) -> Result<BaseMap, SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.load(&target))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    async fn load_meta(&self, target: &str) -> Result<state::TargetMeta, SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.load_meta(&target))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    async fn save_meta(&self, target: &str, meta: state::TargetMeta) -> Result<(), SyncError> {
        let inner = self.inner.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || inner.db.save_meta(&target, &meta))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }

    async fn save_base(
        &self,
        target: &str,
        changes: &BTreeMap<String, Option<BaseEntry>>,
    ) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let target = target.to_string();
        let changes = changes.clone();
        tokio::task::spawn_blocking(move || inner.db.apply(&target, &changes))
            .await
            .map_err(|e| SyncError::Internal(e.to_string()))?
            .map_err(SyncError::from)
    }
}

fn apply_changes(base: &mut BaseMap, changes: BTreeMap<String, Option<BaseEntry>>) {
    for (k, v) in changes {
        match v {
            Some(b) => base.insert(k, b),
            None => base.remove(&k),
        };
    }
}

/// The root-relative paths of a path-scoped pass, as [`gather_paths`] sees
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

/// `p` (absolute, or relative to `root`) as an absolute path and as a
/// root-relative path without trailing `/` (empty for the root); `None`
/// outside the root or when not UTF-8.
fn root_relative(root: &Path, p: &Path) -> Option<(PathBuf, String)> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let rel = abs.strip_prefix(root).ok()?.to_str()?;
    let rel = rel.trim_end_matches('/').to_string();
    Some((abs, rel))
}

async fn root_is_dir(root: &Path, target: &str) -> Result<bool, SyncError> {
    match tokio::fs::metadata(root).await {
        Ok(md) if md.is_dir() => Ok(true),
        Ok(_) => Err(SyncError::Local {
            target: target.to_string(),
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SyncError::Local {
            target: target.to_string(),
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// The local side of a pass.
#[derive(Debug, Default)]
struct LocalSide {
    entries: BTreeMap<String, LocalEntry>,
    /// Paths this pass must plan (for a path-scoped pass: only those).
    candidates: BTreeSet<String>,
    problems: Vec<FailedFile>,
    unreadable_dirs: Vec<String>,
    /// Partial downloads left by a killed process (see [`scan::Scan`]).
    stale_temps: Vec<PathBuf>,
}

impl LocalSide {
    /// Add a walk's findings; its files become candidates.
    fn absorb(&mut self, s: scan::Scan) {
        self.candidates.extend(s.entries.keys().cloned());
        self.entries.extend(s.entries);
        self.problems.extend(s.problems);
        self.unreadable_dirs.extend(s.unreadable_dirs);
        self.stale_temps.extend(s.stale_temps);
    }
}

/// Delete the partial downloads a killed process left (never user data:
/// see [`scan::is_temp_name`]).
async fn remove_stale_temps(target: &str, paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let target = target.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!(target_name = %target, path = %p.display(), "removed a partial download left by an interrupted run"),
                Err(e) => tracing::warn!(target_name = %target, path = %p.display(), error = %e, "cannot remove a partial download left by an interrupted run"),
            }
        }
    })
    .await;
}

async fn gather_local(
    root: PathBuf,
    excludes: crate::spec::Excludes,
    scope: PassScope,
    base: Arc<BaseMap>,
) -> Result<LocalSide, SyncError> {
    tokio::task::spawn_blocking(move || match scope {
        PassScope::Full { .. } => {
            let mut side = LocalSide::default();
            side.absorb(scan::walk(&root, "", &excludes));
            side.candidates.extend(base.keys().cloned());
            side
        }
        // For path-scoped passes the base entries under each path are candidates.
        PassScope::Paths(paths) => gather_paths(&root, &excludes, &paths, &base),
    })
    .await
    .map_err(|e| SyncError::Internal(e.to_string()))
}

fn gather_paths(
    root: &Path,
    excludes: &crate::spec::Excludes,
    paths: &[PathBuf],
    base: &BTreeMap<String, BaseEntry>,
) -> LocalSide {
    let mut side = LocalSide::default();
    for p in paths {
        let Some((abs, rel)) = root_relative(root, p) else {
            continue;
        };
        if rel.is_empty() {
            side.absorb(scan::walk(root, "", excludes));
            side.candidates.extend(base.keys().cloned());
            continue;
        }
        if rel.split('/').next() == Some(scan::RESERVED)
            || rel.rsplit('/').next().is_some_and(scan::is_temp_name)
        {
            continue;
        }
        // Base entries at and under this path must be re-checked (a
        // deleted directory deletes its files).
        side.candidates.insert(rel.clone());
        let prefix = format!("{rel}/");
        side.candidates.extend(
            base.range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        // Anything but a real directory above the path means the path is
        // not in the tree (the walker never follows symlinks).
        let mut inside = true;
        let mut cur = root.to_path_buf();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(md) if md.is_dir() => {}
                _ => {
                    inside = false;
                    break;
                }
            }
        }
        if !inside {
            continue;
        }
        match std::fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => {
                if scan::excluded_with_parents(excludes, &rel, true) {
                    continue;
                }
                side.absorb(scan::walk(root, &rel, excludes));
            }
            Ok(_) => {
                if scan::excluded_with_parents(excludes, &rel, false) {
                    continue;
                }
                match LocalEntry::read(&abs) {
                    Ok(Some(e)) => {
                        side.entries.insert(rel, e);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        side.problems.push(FailedFile {
                            path: rel.clone(),
                            reason: format!("cannot read: {e}"),
                        });
                        // Unknown state: do not treat as deleted.
                        side.unreadable_dirs.push(rel);
                    }
                }
            }
            Err(_) => {}
        }
    }
    side
}

#[cfg(test)]
mod tests {
    use super::*;

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
