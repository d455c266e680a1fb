//! `lease show`: read the leases of the selected targets and say, per
//! prefix, who holds it and how stale it looks from here ([`LeaseView`]).
//! No writes except the local sightings file.

use serde::Serialize;

use super::error::LeaseError;
use super::observe::Staleness;
use super::record::LeaseRecord;
use super::select_targets;
use super::set::{LeaseSet, op_timeout};
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// What `lease show` prints per prefix.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub targets: Vec<String>,
    pub location: String,
    /// `free`, `mine` (held by this container's state dir), `held`, `stale`,
    /// `released` or `off`.
    pub state: &'static str,
    pub holder: Option<LeaseRecord>,
    /// How long this machine has seen the current version unchanged.
    pub unchanged_for_secs: Option<u64>,
    /// When it would be considered stale here if not renewed.
    pub stale_in_secs: Option<u64>,
}

/// Read the leases of the selected targets (no writes except the local
/// sightings file, which makes repeated `lease show` a staleness clock).
pub async fn inspect(
    spec: &Spec,
    state_dir: &StateDir,
    only: Option<&[String]>,
) -> Result<Vec<LeaseView>, LeaseError> {
    let targets = select_targets(spec, only)?;
    if !spec.lease.enabled {
        return Ok(LeaseSet::off(spec, &targets)
            .inner
            .prefixes
            .iter()
            .map(|s| LeaseView {
                targets: s.targets.clone(),
                location: s.location.clone(),
                state: "off",
                holder: None,
                unchanged_for_secs: None,
                stale_in_secs: None,
            })
            .collect());
    }
    let set = LeaseSet::prepare(spec, state_dir, &targets)?;
    let t = op_timeout(set.inner.ttl);
    let mut out = Vec::new();
    for leased in &set.inner.prefixes {
        let cur = leased.store.read(&leased.key, t).await?;
        let mut view = LeaseView {
            targets: leased.targets.clone(),
            location: leased.location.clone(),
            state: "free",
            holder: None,
            unchanged_for_secs: None,
            stale_in_secs: None,
        };
        if let Some((etag, bytes)) = cur {
            let rec = LeaseRecord::parse(&bytes);
            let (verdict, _) = set.judge(&leased.location, &etag, rec.as_ref());
            view.state = match &rec {
                Some(r) if r.released => "released",
                Some(r) if set.identity().owns(r) => "mine",
                _ => match verdict {
                    Staleness::Live { .. } => "held",
                    Staleness::Stale { .. } => "stale",
                },
            };
            match verdict {
                Staleness::Live {
                    unchanged_for,
                    stale_in,
                } => {
                    view.unchanged_for_secs = Some(unchanged_for.as_secs());
                    view.stale_in_secs = Some(stale_in.as_secs());
                }
                Staleness::Stale { unchanged_for } => {
                    view.unchanged_for_secs = Some(unchanged_for.as_secs());
                    view.stale_in_secs = Some(0);
                }
            }
            view.holder = rec;
        }
        out.push(view);
    }
    set.save_observations();
    Ok(out)
}
