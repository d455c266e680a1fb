//! Production wiring of the seam: [`crate::sync::Engine`] runs the passes,
//! [`crate::lease::LeaseSet`] holds the leases and owns the write gate the
//! engine checks before every remote write.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::backend::{Backends, LeaseSeam, PassOutcome, Progress, Scope, SeamError, SyncSeam};
use super::status::PassCounts;
use crate::lease::{self, AcquireOptions, LeaseSet};
use crate::remote::WriteGate;
use crate::spec::Spec;
use crate::state_dir::StateDir;
use crate::sync::{
    Engine, EngineOptions, PassObserver, PassReport, PassRequest, PassScope, PlanSummary,
};

/// How often the daemon rewrites a changed target's manifest (a full
/// listing of the target: ~13 MiB at 100k files). Between rewrites a dirty
/// marker stops other hosts from trusting it; a restore elsewhere after a
/// crash pays one HEAD per file changed in this window.
const MANIFEST_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Acquire the leases (all or nothing) and open the engine for `spec`.
pub(crate) async fn open(spec: Arc<Spec>, state: &StateDir) -> Result<Backends, SeamError> {
    let leases = lease::acquire(&spec, state, AcquireOptions::default())
        .await
        .map_err(|e| SeamError::from_err(&e))?;
    let options = EngineOptions {
        trust_manifest_on_open: false,
        manifest_min_interval: Some(MANIFEST_MIN_INTERVAL),
    };
    let engine = match Engine::open_with(spec.clone(), state, leases.gate(), options) {
        Ok(e) => e,
        Err(e) => {
            let _ = leases.release().await;
            return Err(SeamError::from_err(&e));
        }
    };
    Ok(Backends {
        sync: Arc::new(EngineSeam(engine)),
        lease: Arc::new(LeaseKeeper(leases)),
    })
}

struct EngineSeam(Engine);

impl SyncSeam for EngineSeam {
    fn pass(
        &self,
        target: &str,
        scope: Scope,
        cancel: CancellationToken,
        progress: Arc<Progress>,
    ) -> BoxFuture<'static, Result<PassOutcome, SeamError>> {
        let engine = self.0.clone();
        let target = target.to_string();
        Box::pin(async move {
            let req = PassRequest {
                scope: match scope {
                    Scope::Full { verify } => PassScope::Full { verify },
                    Scope::Paths(p) => PassScope::Paths(p),
                },
                dry_run: false,
                // The daemon never overrides the mass-delete guard: a
                // refused pass shows up in `status` for a human to decide.
                allow_mass_delete: false,
            };
            engine
                .pass_observed(&target, req, &cancel, &Observer(progress))
                .await
                .map(outcome)
                .map_err(|e| SeamError::from_err(&e))
        })
    }

    fn finish(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>> {
        let engine = self.0.clone();
        Box::pin(async move {
            engine
                .flush_manifests(&cancel)
                .await
                .map_err(|e| SeamError::from_err(&e))
        })
    }
}

/// Feeds the engine's progress callbacks into `status`.
struct Observer(Arc<Progress>);

impl PassObserver for Observer {
    fn planned(&self, _target: &str, plan: &PlanSummary) {
        let files = plan.upload.files
            + plan.download.files
            + plan.delete_remote.files
            + plan.delete_local.files
            + plan.conflict.files;
        self.0
            .planned(files, plan.upload.bytes + plan.download.bytes);
    }
    fn bytes(&self, n: u64) {
        self.0.bytes(n);
    }
    fn file_done(&self) {
        self.0.file_done();
    }
}

fn outcome(r: PassReport) -> PassOutcome {
    PassOutcome {
        counts: PassCounts {
            uploaded: r.uploaded,
            downloaded: r.downloaded,
            deleted_remote: r.deleted_remote,
            deleted_local: r.deleted_local,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            failed: r.failed.len() as u64,
        },
        conflicts: r.conflicts,
        failed: r.failed.into_iter().map(|f| (f.path, f.reason)).collect(),
        skipped: r.skipped.into_iter().map(|s| (s.path, s.reason)).collect(),
    }
}

struct LeaseKeeper(LeaseSet);

impl LeaseSeam for LeaseKeeper {
    fn gate(&self) -> WriteGate {
        self.0.gate()
    }

    fn maintain(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>> {
        let set = self.0.clone();
        Box::pin(async move {
            set.maintain(cancel)
                .await
                .map_err(|e| SeamError::from_err(&e))
        })
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(self.0.snapshot()).unwrap_or(serde_json::Value::Null)
    }

    fn release(&self) -> BoxFuture<'static, Result<(), SeamError>> {
        let set = self.0.clone();
        Box::pin(async move { set.release().await.map_err(|e| SeamError::from_err(&e)) })
    }
}
