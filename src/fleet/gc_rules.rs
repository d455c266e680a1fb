//! What `fleet gc` may remove, decided per object from what it read: the
//! liveness of a lease by the takeover rule, and the verdict on each kind
//! of control object. Pure (no I/O), so every rule is unit-tested.
//!
//! "Gone" is exactly what `start` would take over: a lease object that is
//! marked released, or whose version this machine has seen unchanged for
//! longer than its TTL (the larger of the record's and the spec's) on its
//! own `CLOCK_BOOTTIME` ([`Observations`], shared with `start` and `lease
//! show` through the state dir). The first sighting always counts as fresh,
//! so a crashed holder's objects go at the earliest one TTL after this
//! machine first looked: run `fleet gc` periodically.

use std::time::Duration;

use crate::lease::LeaseRecord;
use crate::lease::observe::{Observations, Staleness};

/// Whoever holds (held) a target's lease, as judged here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Renewed within its TTL as seen here (or first seen now).
    Live(String),
    /// Released, stale by the takeover rule, or no lease object at all.
    Gone(String),
    /// An unreadable lease object: nothing of the target is touched.
    Unknown(String),
}

/// Judge a target's lease object (`read`: its version and bytes, `None`
/// when absent), recording the sighting in `obs` under `location`.
pub fn judge_lease(
    obs: &mut Observations,
    location: &str,
    read: Option<&(String, Vec<u8>)>,
    spec_ttl: Duration,
) -> (Holder, Option<LeaseRecord>) {
    let Some((version, bytes)) = read else {
        return (
            Holder::Gone("no lease object (released, broken, or never leased)".into()),
            None,
        );
    };
    let Some(rec) = LeaseRecord::parse(bytes) else {
        return (
            Holder::Unknown("its lease object is unreadable: left alone".into()),
            None,
        );
    };
    if rec.released {
        return (
            Holder::Gone(format!("released by {}", rec.describe_holder())),
            Some(rec),
        );
    }
    let ttl = rec.ttl().max(spec_ttl);
    let holder = match obs.observe(location, version, ttl) {
        Staleness::Live {
            unchanged_for,
            stale_in,
        } => Holder::Live(format!(
            "held by {} (unchanged here for {}s; gone if not renewed within {}s)",
            rec.describe_holder(),
            unchanged_for.as_secs(),
            stale_in.as_secs()
        )),
        Staleness::Stale { unchanged_for } => Holder::Gone(format!(
            "{} has not renewed for {}s as seen here (TTL {}s): gone",
            rec.describe_holder(),
            unchanged_for.as_secs(),
            ttl.as_secs()
        )),
    };
    (holder, Some(rec))
}

/// The verdict on one object: remove it (and why) or keep it (and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Remove(String),
    Keep(String),
}

/// A nested-lease marker written by lease `marker_id` for the prefix whose
/// lease is judged `holder` (`rec` its record, when readable).
pub fn nested_marker(marker_id: &str, holder: &Holder, rec: Option<&LeaseRecord>) -> Verdict {
    match (holder, rec) {
        (Holder::Unknown(why), _) => Verdict::Keep(why.clone()),
        (_, Some(r)) if !r.released && r.lease_id != marker_id => Verdict::Remove(format!(
            "its writer (lease {marker_id}) no longer holds that prefix; now held by lease {}",
            r.lease_id
        )),
        (Holder::Live(why), _) => Verdict::Keep(format!("its writer is live: {why}")),
        (Holder::Gone(why), _) => Verdict::Remove(format!("its writer is gone: {why}")),
    }
}

/// A target's `.coltec/manifest.dirty`. It says the manifest may not
/// describe the remote, which the *next* writer needs to know: it is only
/// removed when there is no manifest for it to guard.
pub fn dirty_marker(holder: &Holder, has_manifest: bool) -> Verdict {
    match holder {
        Holder::Live(why) => Verdict::Keep(format!("the target's holder is live: {why}")),
        Holder::Unknown(why) => Verdict::Keep(why.clone()),
        Holder::Gone(_) if has_manifest => Verdict::Keep(
            "it guards a manifest that may not describe the remote; the next pass lists the \
             target, rewrites the manifest and removes it"
                .into(),
        ),
        Holder::Gone(why) => Verdict::Remove(format!(
            "no manifest to guard and the writer is gone: {why}"
        )),
    }
}

/// A conditional-write probe object (`.coltec/probe-…`), judged by its own
/// version seen unchanged here (`probe`) as well as by the target's holder:
/// an acquire may be probing right now.
pub fn probe(holder: &Holder, probe: Staleness) -> Verdict {
    match (holder, probe) {
        (Holder::Live(why), _) => Verdict::Keep(format!("the target's holder is live: {why}")),
        (Holder::Unknown(why), _) => Verdict::Keep(why.clone()),
        (Holder::Gone(_), Staleness::Live { unchanged_for, .. }) => Verdict::Keep(format!(
            "an acquire may still be probing (unchanged here for {}s, less than a TTL)",
            unchanged_for.as_secs()
        )),
        (Holder::Gone(why), Staleness::Stale { unchanged_for }) => Verdict::Remove(format!(
            "left by an acquire that never finished (unchanged here for {}s); {why}",
            unchanged_for.as_secs()
        )),
    }
}

/// One trash generation `age` old, under `retention` (0: the trash is off
/// in this spec, so nothing is known to be expired).
pub fn trash_generation(holder: &Holder, age: Option<Duration>, retention: Duration) -> Verdict {
    let human = |d: Duration| crate::daemon::status::human_secs(d.as_secs());
    match holder {
        Holder::Live(why) => {
            return Verdict::Keep(format!("the holder's daemon prunes its own trash: {why}"));
        }
        Holder::Unknown(why) => return Verdict::Keep(why.clone()),
        Holder::Gone(_) => {}
    }
    if retention.is_zero() {
        return Verdict::Keep(
            "this spec has no trash retention (trash_retention: 0): nothing is known to be expired"
                .into(),
        );
    }
    match age {
        None => Verdict::Keep("not a trash generation coltecd names (no timestamp)".into()),
        Some(a) if a < retention => Verdict::Keep(format!(
            "{} old, within the retention of {}",
            human(a),
            human(retention)
        )),
        Some(a) => Verdict::Remove(format!(
            "{} old, past the retention of {}, and the target's daemon is gone",
            human(a),
            human(retention)
        )),
    }
}

#[cfg(test)]
#[path = "gc_rules_tests.rs"]
mod tests;
