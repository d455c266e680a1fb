//! Nested prefixes: `a/b` and `a/b/c` conflict too.
//!
//! After creating its lease, a holder writes a marker
//! `A/.coltec/nested/<rel>@<lease id>.json` under every ancestor `A`
//! ([`NestedMarker`]), then reads the lease object of every ancestor
//! (bounded by depth), then LISTs its own `.coltec/nested/` and reads the
//! lease of each descendant found there. Of two racing nested acquirers at
//! least one sees the other (each writes before it reads). The marker name
//! is encoded and decoded here only ([`marker_name`], [`decode_marker_name`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{HeldBy, LeaseError};
use super::observe::Staleness;
use super::record::{LeaseRecord, RECORD_FORMAT};
use super::set::{LeaseSet, LeasedPrefix};
use super::store::Prefix;

/// Leases of descendant prefixes read at once by the nested check.
const NESTED_READS: usize = 8;

/// Written under every ancestor's `.coltec/nested/` by the holder of a
/// descendant prefix, so the holder of the ancestor can find it with one LIST.
/// It only says where to look: the truth is the descendant's lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NestedMarker {
    pub format: u32,
    /// The descendant prefix, as segments below the store root.
    pub segments: Vec<String>,
    pub location: String,
    pub lease_id: String,
}

impl LeaseSet {
    /// Our markers under every ancestor's `.coltec/nested/`, written side
    /// by side (each is its own object; a one-shot `sync` waits for them).
    pub(super) async fn write_markers(&self, i: usize, t: Duration) -> Result<(), LeaseError> {
        let leased = &self.inner.prefixes[i];
        let id = &self.identity().lease_id;
        let marker = NestedMarker {
            format: RECORD_FORMAT,
            segments: leased.prefix.0.clone(),
            location: leased.location.clone(),
            lease_id: id.clone(),
        };
        let body = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        let writes = leased.ancestors().into_iter().map(|anc| {
            let key = marker_key(&leased.prefix, &anc, id);
            let body = body.clone();
            async move { (leased.store.put(&key, body, t).await, anc) }
        });
        for (written, anc) in futures::future::join_all(writes).await {
            match written {
                Err(e) if leased.tolerable(&anc, &e) => {
                    tracing::warn!(location = %leased.store.display(&anc), error = %e, "cannot mark this enclosing prefix (outside the remote's path_prefix); a holder there will not see this lease");
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Remove our markers, side by side (best effort: a stale marker only
    /// costs one read).
    pub(super) async fn delete_markers(&self, i: usize, t: Duration) {
        let leased = &self.inner.prefixes[i];
        let id = &self.identity().lease_id;
        let deletes = leased.ancestors().into_iter().map(|anc| {
            let key = marker_key(&leased.prefix, &anc, id);
            async move { leased.store.delete(&key, t).await }
        });
        for deleted in futures::future::join_all(deletes).await {
            if let Err(e) = deleted {
                tracing::debug!(error = %e, "cannot delete a nested-prefix marker");
            }
        }
    }

    /// The nested check for every leased prefix: any live holder of an enclosing or
    /// nested prefix is a conflict.
    pub(super) async fn check_nested_all(&self, t: Duration) -> Result<(), LeaseError> {
        for i in 0..self.inner.prefixes.len() {
            self.check_nested(i, t).await?;
        }
        Ok(())
    }

    /// The reads of the nested check (every marker is written before any of
    /// them starts) go out side by side: the lease of each enclosing
    /// prefix and the LIST of our own marker folder, then the lease of
    /// each descendant that LIST names.
    async fn check_nested(&self, i: usize, t: Duration) -> Result<(), LeaseError> {
        let leased = &self.inner.prefixes[i];
        let ours: Vec<&Prefix> = self.inner.prefixes.iter().map(|s| &s.prefix).collect();
        // Enclosing prefixes: one read each, bounded by depth.
        let enclosing = leased
            .ancestors()
            .into_iter()
            .filter(|anc| !ours.contains(&anc))
            .map(|anc| async move { (self.check_foreign(leased, &anc, t).await, anc) });
        // Nested prefixes: one LIST of our own marker folder.
        let marker_folder = marker_dir(&leased.prefix);
        let (checked, names) = futures::join!(
            futures::future::join_all(enclosing),
            leased.store.list(&marker_folder, t)
        );
        for (result, anc) in checked {
            match result {
                Err(e) if leased.tolerable(&anc, &e) => {
                    tracing::warn!(location = %leased.store.display(&anc), error = %e, "cannot check for a lease on this enclosing prefix (outside the remote's path_prefix)");
                }
                other => other?,
            }
        }
        let mut descendants: Vec<Prefix> = Vec::new();
        for name in names? {
            let Some(rel) = decode_marker_name(&name) else {
                continue;
            };
            let mut segs = leased.prefix.0.clone();
            segs.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
            let d = Prefix(segs);
            if d.is_strictly_inside(&leased.prefix)
                && !ours.contains(&&d)
                && !descendants.contains(&d)
            {
                descendants.push(d);
            }
        }
        // Whoever can write the bucket can plant markers: a bounded number
        // of reads at once, however many there are.
        use futures::StreamExt;
        let mut nested = futures::stream::iter(descendants)
            .map(|d| async move { self.check_foreign(leased, &d, t).await })
            .buffer_unordered(NESTED_READS);
        while let Some(result) = nested.next().await {
            result?;
        }
        Ok(())
    }

    /// Fail if `other` (an ancestor or descendant of `leased`) is held live by
    /// someone else.
    async fn check_foreign(
        &self,
        leased: &LeasedPrefix,
        other: &Prefix,
        t: Duration,
    ) -> Result<(), LeaseError> {
        let key = other.child(&[".coltec", "lease.json"]);
        let Some((etag, bytes)) = leased.store.read(&key, t).await? else {
            return Ok(());
        };
        let rec = LeaseRecord::parse(&bytes);
        if let Some(r) = &rec
            && (r.released || self.identity().owns(r))
        {
            return Ok(());
        }
        let held = leased.store.display(other);
        match self.judge(&held, &etag, rec.as_ref()) {
            (Staleness::Stale { unchanged_for }, _) => {
                tracing::warn!(location = %held, unchanged_secs = unchanged_for.as_secs(), "ignoring a stale lease on an overlapping prefix");
                Ok(())
            }
            (
                Staleness::Live {
                    unchanged_for,
                    stale_in,
                },
                ttl,
            ) => Err(LeaseError::HeldElsewhere(Box::new(HeldBy {
                wanted: leased.location.clone(),
                held,
                record: rec,
                unchanged_for,
                stale_in,
                ttl,
            }))),
        }
    }
}

/// The folder of markers under `ancestor`.
fn marker_dir(ancestor: &Prefix) -> Prefix {
    ancestor.child(&[".coltec", "nested"])
}

/// The key of `prefix`'s marker (written by lease `lease_id`) under `ancestor`.
fn marker_key(prefix: &Prefix, ancestor: &Prefix, lease_id: &str) -> Prefix {
    marker_dir(ancestor).child(&[&marker_name(prefix, ancestor, lease_id)])
}

/// `<rel>@<lease id>.json`, a single path segment: `rel` is `prefix`
/// relative to `ancestor`, with `%` written `%25` and `/` written `%2F`.
fn marker_name(prefix: &Prefix, ancestor: &Prefix, lease_id: &str) -> String {
    let rel = prefix.0[ancestor.0.len().min(prefix.0.len())..].join("/");
    let mut out = String::new();
    for c in rel.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out.push('@');
    out.push_str(lease_id);
    out.push_str(".json");
    out
}

/// [`marker_name`] -> `rel`; `None` for anything else (or a `rel` that is
/// empty or climbs with `..`).
fn decode_marker_name(name: &str) -> Option<String> {
    parse_marker_name(name).map(|(rel, _)| rel)
}

/// [`marker_name`] -> (`rel`, lease id of its writer); `None` for anything
/// else (or a `rel` that is empty or climbs with `..`). `fleet gc` uses it.
pub(crate) fn parse_marker_name(name: &str) -> Option<(String, String)> {
    let stem = name.strip_suffix(".json")?;
    let (enc, id) = stem.rsplit_once('@')?;
    let rel = enc.replace("%2F", "/").replace("%25", "%");
    if rel.is_empty() || rel.split('/').any(|s| s == "..") || id.is_empty() {
        return None;
    }
    Some((rel, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_round_trip() {
        let p = Prefix(vec!["a".into(), "b".into(), "c%x@y".into()]);
        let anc = Prefix(vec!["a".into()]);
        let name = marker_name(&p, &anc, "abc");
        assert_eq!(name, "b%2Fc%25x@y@abc.json");
        assert_eq!(decode_marker_name(&name).as_deref(), Some("b/c%x@y"));
        let tricky = Prefix(vec!["a".into(), "%2F".into()]);
        let name = marker_name(&tricky, &anc, "abc");
        assert_eq!(decode_marker_name(&name).as_deref(), Some("%2F"));
        assert_eq!(
            marker_key(&p, &anc, "abc"),
            Prefix(vec![
                "a".into(),
                ".coltec".into(),
                "nested".into(),
                "b%2Fc%25x@y@abc.json".into()
            ])
        );
        assert_eq!(decode_marker_name("junk"), None);
        assert_eq!(decode_marker_name("@abc.json"), None);
        assert_eq!(decode_marker_name("..%2Fx@abc.json"), None);
    }
}
