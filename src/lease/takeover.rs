//! `lease break --force`: take over the leases of the selected targets
//! whoever holds them, then release them so the next `start` acquires at
//! once. The previous holder's next renewal fails and fences it for good.

use serde::Serialize;

use super::error::LeaseError;
use super::observe::Clock;
use super::record::LeaseRecord;
use super::select_targets;
use super::set::LeaseSet;
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// A lease taken over by `lease break --force`.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    pub location: String,
    /// Who held it (`None`: nobody held it, or the object was unreadable).
    pub previous: Option<LeaseRecord>,
}

/// Take over the leases of the selected targets whoever holds them, then
/// release them so the next `start` acquires at once. The previous holder's
/// next renewal fails and fences it for good.
pub async fn break_leases(
    spec: &Spec,
    state_dir: &StateDir,
    only: Option<&[String]>,
) -> Result<Vec<Broken>, LeaseError> {
    let targets = select_targets(spec, only)?;
    let set = LeaseSet::prepare(spec, state_dir, &targets, Clock::boot())?;
    let mut out = Vec::new();
    for i in 0..set.inner.prefixes.len() {
        let previous = set.acquire_prefix(i, true).await?;
        set.release_prefixes(&[i]).await;
        let previous = previous.filter(|p| !p.released);
        if let Some(p) = &previous {
            tracing::warn!(location = %set.inner.prefixes[i].location, holder = %p.describe_holder(), "lease broken");
        }
        out.push(Broken {
            location: set.inner.prefixes[i].location.clone(),
            previous,
        });
    }
    set.save_observations();
    Ok(out)
}
