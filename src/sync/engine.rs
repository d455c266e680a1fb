//! [`Engine`]: one per process, serving every target of a spec. Opening it
//! opens the state database and builds each target's operator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SyncError;
use super::limits::Limits;
use super::state::StateDb;
use super::target::{Guarding, ServedTarget, TargetMemory, Unavailable};
use crate::error::HasExitStatus;
use crate::remote::{WriteGate, target_operator};
use crate::spec::{Location, RemoteKind, Spec};
use crate::state_dir::StateDir;

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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) spec: Arc<Spec>,
    pub(super) options: EngineOptions,
    pub(super) db: StateDb,
    pub(super) gate: WriteGate,
    pub(super) limits: Limits,
    pub(super) host: String,
    pub(super) targets: BTreeMap<String, Arc<ServedTarget>>,
    /// Deferred manifest rewrites count from here until the first one.
    pub(super) opened: Instant,
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
        let targets = spec
            .targets
            .iter()
            .map(|t| (t.name.clone(), Arc::new(serve(t, spec.lease.enabled))))
            .collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                limits: Limits::from_spec(&spec),
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

    /// The served target named `name`.
    pub(super) fn served(&self, name: &str) -> Result<Arc<ServedTarget>, SyncError> {
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

    /// Whether a dirty manifest is to be rewritten now (see
    /// [`EngineOptions::manifest_min_interval`]).
    pub(super) fn manifest_due(&self, memory: &TargetMemory, full: bool) -> bool {
        match self.inner.options.manifest_min_interval {
            None => true,
            Some(every) => {
                full || memory
                    .manifest_written
                    .unwrap_or(self.inner.opened)
                    .elapsed()
                    >= every
            }
        }
    }
}

/// What the engine holds for `t`.
fn serve(t: &crate::spec::Target, lease_on: bool) -> ServedTarget {
    let op = target_operator(t).map_err(|e| Unavailable {
        reason: e.to_string(),
        status: e.exit_status(),
    });
    let local_dir = match t.location() {
        Location::Local { dir } => Some(dir),
        _ => None,
    };
    let guarding = guarding(&t.remote.kind, op.as_ref().ok(), lease_on);
    ServedTarget {
        target: t.clone(),
        op,
        local_dir,
        user_metadata: crate::remote::crypt::stores_user_metadata(&t.remote),
        guarding,
        guarding_logged: std::sync::Once::new(),
        memory: tokio::sync::Mutex::new(TargetMemory::default()),
    }
}

/// How `kind`'s data writes are guarded (see [`Guarding`]). On S3 the
/// lease's probe is what proves the server enforces the conditions: with
/// `lease: off` (the spec's way of saying it does not) none is sent, since
/// such a server may reject the headers outright.
fn guarding(kind: &RemoteKind, op: Option<&opendal::Operator>, lease_on: bool) -> Guarding {
    match kind {
        RemoteKind::Local(_) => Guarding::Checked,
        RemoteKind::S3(_) if !lease_on => Guarding::Off("the lease is off"),
        RemoteKind::S3(_) => match op.map(|o| o.info().capability()) {
            Some(c) if c.write_with_if_match && c.write_with_if_not_exists => Guarding::Enforced,
            _ => Guarding::Off("the S3 client cannot send If-Match/If-None-Match"),
        },
        // The crypt layer passes conditions and ETags through to the
        // wrapped S3 remote; over a local directory the stat-and-compare
        // would compare ciphertext identities the base does not hold.
        RemoteKind::Crypt(c) => match c.wrapped.as_deref().map(|w| &w.kind) {
            Some(w @ RemoteKind::S3(_)) => guarding(w, op, lease_on),
            _ => Guarding::Off("a crypt remote over a local directory"),
        },
    }
}
