//! `lease show`: read the leases of the selected targets and say, per
//! prefix, who holds it and how stale it looks from here ([`LeaseView`]).
//! No writes except the local sightings file.

use serde::Serialize;

use super::error::LeaseError;
use super::observe::Clock;
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
    pub state: LeaseViewState,
    pub holder: Option<LeaseRecord>,
    /// How long this machine has seen the current version unchanged.
    pub unchanged_for_secs: Option<u64>,
    /// When it would be considered stale here if not renewed.
    pub stale_in_secs: Option<u64>,
}

/// Who a prefix's lease belongs to, as seen from here. Serialized (and
/// displayed) as the lowercase word users see in `lease show --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseViewState {
    /// No lease object.
    Free,
    /// Held by this container's state dir.
    Mine,
    /// Held by someone else, renewed recently enough (as observed here).
    Held,
    /// Held by someone else, unchanged here for longer than its TTL.
    Stale,
    /// Marked released by its last holder.
    Released,
    /// Leasing is off in the spec.
    Off,
}

impl LeaseViewState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseViewState::Free => "free",
            LeaseViewState::Mine => "mine",
            LeaseViewState::Held => "held",
            LeaseViewState::Stale => "stale",
            LeaseViewState::Released => "released",
            LeaseViewState::Off => "off",
        }
    }
}

impl std::fmt::Display for LeaseViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
                state: LeaseViewState::Off,
                holder: None,
                unchanged_for_secs: None,
                stale_in_secs: None,
            })
            .collect());
    }
    let set = LeaseSet::prepare(spec, state_dir, &targets, Clock::boot())?;
    let t = op_timeout(set.inner.ttl);
    let mut out = Vec::new();
    for leased in &set.inner.prefixes {
        let cur = leased.store.read(&leased.key, t).await?;
        let mut view = LeaseView {
            targets: leased.targets.clone(),
            location: leased.location.clone(),
            state: LeaseViewState::Free,
            holder: None,
            unchanged_for_secs: None,
            stale_in_secs: None,
        };
        if let Some((etag, bytes)) = cur {
            let rec = LeaseRecord::parse(&bytes);
            let (verdict, _) = set.judge(&leased.location, &etag, rec.as_ref());
            view.state = match &rec {
                Some(r) if r.released => LeaseViewState::Released,
                Some(r) if set.identity().owns(r) => LeaseViewState::Mine,
                _ => match verdict {
                    Staleness::Live { .. } => LeaseViewState::Held,
                    Staleness::Stale { .. } => LeaseViewState::Stale,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_states_serialize_and_display_as_the_words_users_see() {
        use LeaseViewState::*;
        for (state, word) in [
            (Free, "free"),
            (Mine, "mine"),
            (Held, "held"),
            (Stale, "stale"),
            (Released, "released"),
            (Off, "off"),
        ] {
            assert_eq!(state.to_string(), word);
            assert_eq!(serde_json::to_value(state).unwrap(), word);
        }
    }
}
