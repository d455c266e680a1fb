//! `coltecd fleet gc [--dry-run]`: removes what nobody owns any more under
//! a remote root, and says what it kept and why.
//!
//! It walks the root like the fleet view (delimiter listings, never user
//! data) and, per object, applies the rules of [`super::gc_rules`]:
//!
//! - **nested-lease markers** (`A/.coltec/nested/<rel>@<lease id>.json`):
//!   removed when the prefix they point at has no lease, a released one, one
//!   held by another lease id, or one whose writer is gone by the takeover
//!   rule. After removing one, gc reads that lease again and puts the marker
//!   back if its writer acquired the prefix meanwhile.
//! - **dirty markers** (`.coltec/manifest.dirty`): removed only when the
//!   writer is gone *and* there is no manifest for it to guard.
//! - **probe objects** (`.coltec/probe-…`): removed when the target's
//!   holder is gone and the probe itself has been seen unchanged for a TTL.
//! - **trash generations** (`.coltec/trash/<stamp>/`): removed when older
//!   than this spec's `safety.trash_retention` and the target's daemon is
//!   gone (a live daemon prunes its own).
//!
//! Lease objects themselves and anything outside `.coltec/` are never
//! removed. Sightings of lease versions are saved in the state dir (as
//! `lease show` does), so a second run one TTL later can judge a crashed
//! holder gone; `--dry-run` removes nothing and writes nothing remote.

use std::time::Duration;

use opendal::Operator;
use serde::Serialize;

use super::gc_rules::{self, Holder, Verdict};
use super::walk::{self, FoundTarget, Requests};
use super::{FleetError, root_location};
use crate::lease::observe::Observations;
use crate::lease::store::{Prefix, Store};
use crate::spec::RemoteSpec;
use crate::sync::layout;

/// Current version of the `fleet gc --json` shape.
pub const GC_SCHEMA: u32 = 1;

/// Bound of every single lease-store call.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// What gc compares with.
#[derive(Debug, Clone, Copy)]
pub struct GcSettings {
    /// The spec's lease TTL (the larger of it and a record's is used).
    pub ttl: Duration,
    /// The spec's trash retention.
    pub trash_retention: Duration,
    pub dry_run: bool,
}

/// Kind of object gc looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcKind {
    NestedMarker,
    DirtyMarker,
    Probe,
    TrashGeneration,
}

impl GcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GcKind::NestedMarker => "nested marker",
            GcKind::DirtyMarker => "dirty marker",
            GcKind::Probe => "probe",
            GcKind::TrashGeneration => "trash",
        }
    }
}

/// One object (or trash generation) and what gc did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    pub remote: String,
    /// Full location, e.g. `s3://bucket/acme/.coltec/nested/…`.
    pub location: String,
    pub kind: GcKind,
    pub reason: String,
    /// Objects it stands for (a trash generation: every object in it).
    pub objects: u64,
    pub bytes: u64,
}

/// `coltecd fleet gc --json` (see README "fleet gc").
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub schema: u32,
    pub dry_run: bool,
    pub remotes: Vec<super::RemoteSummary>,
    /// Removed (with `--dry-run`: would be removed).
    pub removed: Vec<GcItem>,
    pub kept: Vec<GcItem>,
    /// Removals that failed (the object is still there).
    pub failed: Vec<GcItem>,
}

/// A lease judged: the verdict, the record, the version read.
type Judged = (Holder, Option<crate::lease::LeaseRecord>, Option<String>);

/// One remote's collection.
struct Gc<'a> {
    remote: &'a str,
    root: String,
    op: Operator,
    store: Store,
    base: Prefix,
    obs: &'a mut Observations,
    settings: GcSettings,
    report: &'a mut GcReport,
    req: Requests,
}

/// Collect under `remote` (+ `prefix`) into `report`.
pub async fn collect(
    remote: &RemoteSpec,
    prefix: &str,
    settings: GcSettings,
    obs: &mut Observations,
    report: &mut GcReport,
) -> Result<(), FleetError> {
    let location = root_location(remote, prefix)?;
    let root = location.to_string();
    let op = crate::remote::operator_at(remote, &location)?;
    let store = Store::for_location(remote, &location)?;
    let mut req = Requests::default();
    let found = walk::find_all(&op, &mut req)
        .await
        .map_err(|source| FleetError::Unreachable {
            root: root.clone(),
            source,
        })?;
    let mut gc = Gc {
        remote: &remote.name,
        root: root.clone(),
        op,
        store,
        base: Prefix::of(&location),
        obs,
        settings,
        report,
        req,
    };
    for dir in &found.nested_dirs {
        gc.nested_dir(dir).await?;
    }
    for t in &found.targets {
        gc.target(t).await?;
    }
    let requests = gc.req;
    report.remotes.push(super::RemoteSummary {
        remote: remote.name.clone(),
        root,
        requests,
    });
    Ok(())
}

impl Gc<'_> {
    fn unreachable(&self, source: opendal::Error) -> FleetError {
        FleetError::Unreachable {
            root: self.root.clone(),
            source,
        }
    }

    /// The store prefix of `path` (`a/b/`) below the root.
    fn prefix(&self, path: &str, more: &[&str]) -> Prefix {
        let mut p = self.base.clone();
        p.0.extend(path.split('/').filter(|s| !s.is_empty()).map(String::from));
        p.0.extend(more.iter().map(|s| s.to_string()));
        p
    }

    fn location(&self, path: &str) -> String {
        format!("{}/{path}", self.root.trim_end_matches('/'))
    }

    /// Read a lease-store object with its version; an error is a remote
    /// problem (exit 5).
    async fn read(&mut self, key: &Prefix) -> Result<Option<(String, Vec<u8>)>, FleetError> {
        self.req.gets = self.req.gets.saturating_add(1);
        Ok(self.store.read(key, OP_TIMEOUT).await?)
    }

    /// Judge the lease of the target at `path` (below the root).
    /// Also returns the version judged (`None`: no lease object).
    async fn holder(&mut self, path: &str) -> Result<Judged, FleetError> {
        let read = self
            .read(&self.prefix(path, &[".coltec", "lease.json"]))
            .await?;
        let location = self.store.display(&self.prefix(path, &[]));
        let (holder, rec) =
            gc_rules::judge_lease(self.obs, &location, read.as_ref(), self.settings.ttl);
        Ok((holder, rec, read.map(|r| r.0)))
    }

    fn push(&mut self, kind: GcKind, path: &str, v: Verdict, objects: u64, bytes: u64) -> bool {
        let (remove, reason) = match v {
            Verdict::Remove(r) => (true, r),
            Verdict::Keep(r) => (false, r),
        };
        let item = GcItem {
            remote: self.remote.to_string(),
            location: self.location(path),
            kind,
            reason,
            objects,
            bytes,
        };
        if remove {
            self.report.removed.push(item);
        } else {
            self.report.kept.push(item);
        }
        remove && !self.settings.dry_run
    }

    /// Delete `path` (below the root; always inside a `.coltec/`). On
    /// failure the last removed item moves to `failed`.
    async fn delete(&mut self, path: &str) {
        debug_assert!(path.contains(".coltec/"));
        if !(path.starts_with(".coltec/") || path.contains("/.coltec/")) {
            return;
        }
        if let Err(e) = self.op.delete(path).await
            && e.kind() != opendal::ErrorKind::NotFound
        {
            self.fail(format!("cannot remove: {e}"));
        }
    }

    fn fail(&mut self, why: String) {
        if let Some(mut item) = self.report.removed.pop() {
            item.reason = why;
            self.report.failed.push(item);
        }
    }

    /// The last removed item turned out to be needed and is back.
    fn unremove(&mut self, why: String) {
        if let Some(mut item) = self.report.removed.pop() {
            item.reason = why;
            self.report.kept.push(item);
        }
    }

    /// The markers in `dir/.coltec/nested/`.
    async fn nested_dir(&mut self, dir: &str) -> Result<(), FleetError> {
        let ndir = format!("{dir}.coltec/nested/");
        let entries = walk::list_dir(&self.op, &ndir, &mut self.req)
            .await
            .map_err(|e| self.unreachable(e))?;
        for e in entries {
            let Some(name) = e.path().strip_prefix(&ndir).map(String::from) else {
                continue;
            };
            let Some((rel, marker_id)) = crate::lease::parse_marker_name(&name) else {
                continue;
            };
            let target = format!("{dir}{rel}/");
            let (holder, rec, version) = self.holder(&target).await?;
            let verdict = gc_rules::nested_marker(&marker_id, &holder, rec.as_ref());
            let path = format!("{ndir}{name}");
            let size = e.metadata().content_length();
            if !self.push(GcKind::NestedMarker, &path, verdict, 1, size) {
                continue;
            }
            let body = self.op.read(&path).await.map(|b| b.to_vec());
            self.delete(&path).await;
            // Its writer may have (re)acquired the prefix since we read the
            // lease (a new version of it): then the marker is needed again.
            let again = self
                .read(&self.prefix(&target, &[".coltec", "lease.json"]))
                .await?;
            let back = again.is_some_and(|(v, b)| {
                Some(&v) != version.as_ref()
                    && crate::lease::LeaseRecord::parse(&b)
                        .is_some_and(|r| !r.released && r.lease_id == marker_id)
            });
            if back && let Ok(body) = body {
                match self.op.write(&path, body).await {
                    Ok(_) => self.unremove(
                        "its writer acquired the prefix during gc: marker put back".into(),
                    ),
                    Err(e) => self.fail(format!(
                        "its writer acquired the prefix during gc and the marker could not be put back: {e}"
                    )),
                }
            }
        }
        Ok(())
    }

    /// A target's dirty marker, probes and trash.
    async fn target(&mut self, t: &FoundTarget) -> Result<(), FleetError> {
        let wants = t.has("manifest.dirty")
            || t.has("trash/")
            || t.control.iter().any(|c| c.name.starts_with("probe-"));
        if !wants {
            return Ok(());
        }
        let (holder, _, _) = self.holder(&t.path).await?;
        if let Some(c) = t.control.iter().find(|c| c.name == "manifest.dirty") {
            let v = gc_rules::dirty_marker(&holder, t.has("manifest.json"));
            let path = format!("{}{}", t.path, layout::DIRTY_KEY);
            if self.push(GcKind::DirtyMarker, &path, v, 1, c.size) {
                self.delete(&path).await;
            }
        }
        for c in t.control.iter().filter(|c| c.name.starts_with("probe-")) {
            let key = self.prefix(&t.path, &[".coltec", &c.name]);
            let Some((version, _)) = self.read(&key).await? else {
                continue;
            };
            let location = self.store.display(&key);
            let seen = self.obs.observe(&location, &version, self.settings.ttl);
            let path = format!("{}.coltec/{}", t.path, c.name);
            if self.push(
                GcKind::Probe,
                &path,
                gc_rules::probe(&holder, seen),
                1,
                c.size,
            ) {
                self.delete(&path).await;
            }
        }
        if t.has("trash/") {
            self.trash(t, &holder).await?;
        }
        Ok(())
    }

    /// The trash generations of a target.
    async fn trash(&mut self, t: &FoundTarget, holder: &Holder) -> Result<(), FleetError> {
        let tdir = format!("{}{}", t.path, layout::TRASH_PREFIX);
        let gens = walk::list_dir(&self.op, &tdir, &mut self.req)
            .await
            .map_err(|e| self.unreachable(e))?;
        let now = jiff::Timestamp::now();
        for g in gens.iter().filter(|g| g.path().ends_with('/')) {
            let path = g.path().to_string();
            let name = path
                .strip_prefix(&tdir)
                .unwrap_or(&path)
                .trim_end_matches('/');
            let age = layout::parse_stamp(name)
                .and_then(|at| Duration::try_from(now.duration_since(at)).ok());
            let verdict = gc_rules::trash_generation(holder, age, self.settings.trash_retention);
            let objects = if matches!(verdict, Verdict::Remove(_)) {
                self.req.lists = self.req.lists.saturating_add(1);
                let all = self
                    .op
                    .list_with(&path)
                    .recursive(true)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                all.into_iter()
                    .filter(|x| !x.path().ends_with('/'))
                    .map(|x| (x.path().to_string(), x.metadata().content_length()))
                    .collect()
            } else {
                Vec::new()
            };
            let n = objects.len() as u64;
            let bytes = objects.iter().fold(0u64, |b, o| b.saturating_add(o.1));
            if !self.push(GcKind::TrashGeneration, &path, verdict, n, bytes) {
                continue;
            }
            let keys: Vec<String> = objects.into_iter().map(|o| o.0).collect();
            if let Err(e) = self.op.delete_iter(keys).await {
                self.fail(format!("cannot remove: {e}"));
                continue;
            }
            // Local remotes keep emptied directories: drop them (best effort).
            if self.store.is_local() {
                let _ = self.op.delete_with(&path).recursive(true).await;
            }
        }
        Ok(())
    }
}
