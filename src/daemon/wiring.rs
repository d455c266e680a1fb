//! Production wiring of the seam: [`crate::sync::Engine`] runs the passes,
//! [`crate::lease::LeaseSet`] holds the leases and owns the write gate the
//! engine checks before every remote write. The only file of the daemon
//! that knows the engine's and the keeper's concrete types.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::seam::{LeaseSeam, PassProgress, PassResult, Scope, Seams, SyncSeam, fail_from};
use super::status::{PrefixLease, PrefixLeaseState};
use crate::error::Fail;
use crate::lease::{self, AcquireOptions, LeaseError, LeaseSet, LeaseStatus};
use crate::remote::WriteGate;
use crate::spec::Spec;
use crate::state_dir::StateDir;
use crate::sync::SyncError;
use crate::sync::{Engine, EngineOptions, PassObserver, PassRequest, PassScope, PlanSummary};

/// How often the daemon rewrites a changed target's manifest (a full
/// listing of the target: ~13 MiB at 100k files). Between rewrites a dirty
/// marker stops other hosts from trusting it; a restore elsewhere after a
/// crash pays one HEAD per file changed in this window.
const MANIFEST_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Acquire the leases (all or nothing) and open the engine for `spec`.
pub(crate) async fn open(spec: Arc<Spec>, state: &StateDir) -> Result<Seams, Fail> {
    let leases = lease::acquire(&spec, state, AcquireOptions::default())
        .await
        .map_err(|e| fail_from(&e))?;
    let options = EngineOptions {
        trust_manifest_on_open: false,
        manifest_min_interval: Some(MANIFEST_MIN_INTERVAL),
    };
    let engine = match Engine::open_with(spec.clone(), state, leases.gate(), options) {
        Ok(e) => e,
        Err(e) => {
            let _ = leases.release().await;
            return Err(fail_from(&e));
        }
    };
    Ok(Seams {
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
        progress: Arc<PassProgress>,
    ) -> BoxFuture<'static, PassResult> {
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
                .map_err(Arc::new)
        })
    }

    fn finish(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), SyncError>> {
        let engine = self.0.clone();
        Box::pin(async move { engine.flush_manifests(&cancel).await })
    }
}

/// Feeds the engine's progress callbacks into `status`.
struct Observer(Arc<PassProgress>);

impl PassObserver for Observer {
    fn planned(&self, _target: &str, plan: &PlanSummary) {
        let totals = plan.totals();
        self.0.planned(totals.files, totals.bytes);
    }
    fn bytes(&self, n: u64) {
        self.0.bytes(n);
    }
    fn file_done(&self) {
        self.0.file_done();
    }
}

struct LeaseKeeper(LeaseSet);

impl LeaseSeam for LeaseKeeper {
    fn gate(&self) -> WriteGate {
        self.0.gate()
    }

    fn maintain(&self, cancel: CancellationToken) -> BoxFuture<'static, Result<(), LeaseError>> {
        let set = self.0.clone();
        Box::pin(async move { set.maintain(cancel).await })
    }

    fn snapshot(&self) -> Vec<PrefixLease> {
        self.0.snapshot().into_iter().map(prefix_lease).collect()
    }

    fn release(&self) -> BoxFuture<'static, Result<(), LeaseError>> {
        let set = self.0.clone();
        Box::pin(async move { set.release().await })
    }
}

fn prefix_lease(s: LeaseStatus) -> PrefixLease {
    PrefixLease {
        targets: s.targets,
        location: s.location,
        state: match s.state {
            lease::HoldState::Held => PrefixLeaseState::Held,
            lease::HoldState::Lost => PrefixLeaseState::Lost,
            lease::HoldState::Released => PrefixLeaseState::Released,
            lease::HoldState::Off => PrefixLeaseState::Off,
        },
        last_renewal_secs_ago: s.last_renewal_secs_ago,
        lease_id: s.lease_id,
        holder: s.holder,
        detail: s.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{HoldState, LeaseRecord};

    fn keeper_view(state: HoldState, detail: Option<&str>) -> LeaseStatus {
        LeaseStatus {
            targets: vec!["claude".into()],
            location: "s3://b/o/p/e".into(),
            state,
            last_renewal_secs_ago: Some(4),
            lease_id: Some("l-1".into()),
            holder: Some(LeaseRecord {
                format: 1,
                lease_id: "l-1".into(),
                host: "h".into(),
                container_id: "c".into(),
                devcontainer_id: None,
                slot: Some("s".into()),
                pid: 7,
                coltecd_version: "0.1.0".into(),
                workspace: "o/p/e".into(),
                location: "s3://b/o/p/e".into(),
                acquired_at: "2025-01-01T00:00:00Z".into(),
                renewed_at: "2025-01-01T00:00:10Z".into(),
                ttl_ms: 30_000,
                session: "x".into(),
                seq: 3,
                released: false,
            }),
            detail: detail.map(String::from),
        }
    }

    #[test]
    fn the_status_shows_the_keepers_lease_view_as_the_same_json() {
        for (state, detail) in [
            (HoldState::Held, None),
            (HoldState::Lost, Some("taken over")),
            (HoldState::Released, None),
            (HoldState::Off, None),
        ] {
            let keeper = keeper_view(state, detail);
            let expected = serde_json::to_string(&keeper).unwrap();
            let shown = prefix_lease(keeper);
            assert_eq!(serde_json::to_string(&shown).unwrap(), expected);
            let back: PrefixLease = serde_json::from_str(&expected).unwrap();
            assert_eq!(back, shown);
        }
    }
}
