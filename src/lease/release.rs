//! Release: graceful stop, after the final flush. The record is first
//! marked `released` with `If-Match` (R2 documents no conditional DELETE),
//! then deleted with a plain DELETE, then our nested markers are removed.
//! Best effort: a failure only means the lease goes stale after its TTL.

use super::error::LeaseError;
use super::record::LeaseRecord;
use super::set::{HeldVersion, HoldState, LeaseSet, lock, op_timeout};
use super::store::CondError;

impl LeaseSet {
    /// Release prefixes we hold: mark released with `If-Match`, then plain
    /// delete, then remove our markers. Best effort: a failure only means
    /// the lease goes stale after its TTL.
    pub(super) async fn release_prefixes(&self, which: &[usize]) {
        let t = op_timeout(self.inner.ttl);
        for &i in which {
            let leased = &self.inner.prefixes[i];
            let HeldVersion {
                etag,
                seq,
                acquired_at,
                taken_over,
            } = self.held_version(i);
            if let (Some(etag), false) = (etag, taken_over) {
                let (mut etag, mut seq) = (etag, seq);
                for _ in 0..4 {
                    let mut rec = self.new_record(i, seq.saturating_add(1), &acquired_at);
                    rec.released = true;
                    match leased
                        .store
                        .replace(&leased.key, &etag, rec.to_bytes(), t)
                        .await
                    {
                        Ok(_) => {
                            if let Err(e) = leased.store.delete_lease(&leased.key, t).await {
                                tracing::warn!(error = %e, "lease marked released but not deleted");
                            }
                            tracing::info!(location = %leased.location, "lease released");
                            break;
                        }
                        Err(CondError::Lost) => {
                            // A renewal of ours (still running, or whose
                            // answer was lost) moved the etag: retry on it.
                            let current = leased.store.read(&leased.key, t).await.ok().flatten();
                            let ours = current.and_then(|(v, b)| {
                                LeaseRecord::parse(&b)
                                    .filter(|r| self.identity().wrote(r) && !r.released)
                                    .map(|r| (v, r.seq))
                            });
                            match ours {
                                Some((v, s)) => (etag, seq) = (v, s),
                                None => {
                                    tracing::warn!(location = %leased.location, "lease changed under us before release; leaving it to its current holder");
                                    break;
                                }
                            }
                        }
                        Err(CondError::Failed(e)) => {
                            tracing::warn!(location = %leased.location, error = %e, "cannot release lease; it becomes stale after its TTL");
                            break;
                        }
                    }
                }
            }
            self.delete_markers(i, t).await;
            let mut holds = lock(&self.inner.holds);
            let st = &mut holds[i];
            if !st.taken_over {
                st.state = HoldState::Released;
                st.detail = None;
            }
            st.etag = None;
        }
    }

    /// Graceful stop, after the final flush: close the gate and release
    /// every lease.
    pub async fn release(&self) -> Result<(), LeaseError> {
        if !self.inner.enabled {
            return Ok(());
        }
        self.inner.gate.close("lease released");
        self.inner
            .releasing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<usize> = (0..self.inner.prefixes.len()).collect();
        self.release_prefixes(&all).await;
        self.save_observations();
        Ok(())
    }
}

/// What `lease release` found on one prefix.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseOutcome {
    pub location: String,
    pub targets: Vec<String>,
    /// `released` (ours, now free), `free` (nothing to release), `held`
    /// (another holder: nothing was released anywhere).
    pub state: &'static str,
    /// The other holder, when `held`.
    pub holder: Option<LeaseRecord>,
}

/// `lease release` without a running daemon: release the leases this state
/// dir holds (a record with our lease id and container id), all or
/// nothing: if another holder holds any prefix, nothing is released and
/// the outcomes say who. Never takes a lease over (`lease break --force`).
pub async fn release_own(
    spec: &crate::spec::Spec,
    state_dir: &crate::state_dir::StateDir,
    only: Option<&[String]>,
) -> Result<Vec<ReleaseOutcome>, LeaseError> {
    let targets = super::select_targets(spec, only)?;
    let set = LeaseSet::prepare(spec, state_dir, &targets, super::Clock::boot())?;
    let t = op_timeout(set.inner.ttl);
    let mut out = Vec::new();
    let mut ours = Vec::new();
    for (i, leased) in set.inner.prefixes.iter().enumerate() {
        let rec = leased
            .store
            .read(&leased.key, t)
            .await?
            .map(|(etag, bytes)| (etag, LeaseRecord::parse(&bytes)));
        let (state, holder) = match rec {
            None | Some((_, Some(LeaseRecord { released: true, .. }))) => ("free", None),
            Some((etag, Some(r))) if set.identity().owns(&r) => {
                ours.push((i, etag, r));
                ("released", None)
            }
            Some((_, r)) => ("held", r),
        };
        out.push(ReleaseOutcome {
            location: leased.location.clone(),
            targets: leased.targets.clone(),
            state,
            holder,
        });
    }
    if out.iter().any(|o| o.state == "held") {
        for o in out.iter_mut().filter(|o| o.state == "released") {
            o.state = "kept";
        }
        return Ok(out);
    }
    let which: Vec<usize> = ours.iter().map(|(i, _, _)| *i).collect();
    for (i, etag, r) in ours {
        set.set_held(i, etag, r, None);
    }
    set.release_prefixes(&which).await;
    // Best effort, like every release: report what the object says now.
    for (o, leased) in out.iter_mut().zip(set.inner.prefixes.iter()) {
        if o.state != "released" {
            continue;
        }
        if let Ok(Some((_, b))) = leased.store.read(&leased.key, t).await
            && LeaseRecord::parse(&b).is_some_and(|r| !r.released)
        {
            o.state = "kept";
        }
    }
    Ok(out)
}
