//! The fleet view: every coltecd target under a remote root, who holds it,
//! how idle it is and how much it stores, from the objects coltecd already
//! writes (`coltecd fleet`), and the housekeeping of what nobody owns any
//! more (`coltecd fleet gc`, see [`gc`]).
//!
//! # Request cost
//!
//! One delimiter listing per directory on the way to the targets (root,
//! `org/`, `org/project/`, …; one per 1000 entries), per target one listing
//! of the target directory and one of its `.coltec/` (never of user data or
//! trash), plus one GET of `.coltec/lease.json` when the listing shows one.
//! `--sizes` adds one GET of the manifest per target (large: ~13 MiB at 100k
//! files); `--trash` adds one recursive listing of the target's trash. With
//! the default layout `{org}/{project}/{env}/{target}` and one target per
//! workspace, N workspaces cost about 2N+3 listings and N GETs. A running
//! daemon makes no request for the fleet view: what the view shows of it
//! (last local change, pending changes, last successful pass, daemon state)
//! rides on the lease renewal it makes anyway.
//!
//! # Lease states
//!
//! - `held`: renewed within its TTL as seen by *this* machine's clock. One
//!   look can only compare the record's renewal time (the holder's clock)
//!   with the local clock, so across machines the state is approximate by
//!   their clock skew; the lease protocol itself never relies on it.
//! - `stale`: not renewed for longer than its TTL (a crashed or frozen
//!   holder, or a skewed clock).
//! - `released`: marked released by its holder (the moment of a clean stop;
//!   the object is deleted right after).
//! - `none`: no lease object: never leased (`lease: off`, pull-only), or
//!   released and deleted by a clean stop.
//!
//! # JSON shape (`coltecd fleet --json`, schema 1)
//!
//! ```json
//! {
//!   "schema": 1,
//!   "generated_at": 1763900000,         // unix seconds (this machine)
//!   "remotes": [{ "remote": "r2", "root": "s3://bucket/prefix",
//!                 "requests": { "lists": 13, "gets": 5 } }],
//!   "targets": [{
//!     "remote": "r2",
//!     "path": "acme/widget/dev-a/claude",  // below the root
//!     "location": "s3://bucket/prefix/acme/widget/dev-a/claude",
//!     "workspace": "acme/widget/dev-a",    // from the lease, else the parent path
//!     "target": "claude",                  // from the lease, else the last path segment
//!     "lease": "held",                     // "held" | "stale" | "released" | "none"
//!     "holder": { "host": "h", "container_id": "…", "slot": null, "pid": 42,
//!                 "coltecd_version": "0.1.0", "lease_id": "…" },   // null without a lease
//!     "ttl_secs": 60, "renewed_at": "2025-…Z", "renewed_secs_ago": 3,
//!     "daemon_state": "running",           // "running" | "syncing" | "degraded" | null
//!     "last_local_change_at": 1763899000,  // null when unknown
//!     "last_remote_change_at": 1763899000,
//!     "idle_secs": 1000,                   // since the last local change (or daemon start)
//!     "pending_files": 0, "last_success_at": 1763899990,
//!     "manifest_behind": false,            // a dirty marker is present
//!     "files": null, "bytes": null,        // with --sizes (from the manifest)
//!     "trash_objects": null, "trash_bytes": null   // with --trash
//!   }]
//! }
//! ```
//!
//! Fields are only added within one `schema` number.
//!
//! # Layout
//!
//! - `walk`: discovering targets with delimiter listings.
//! - `view`: one target's entry from its lease record and control objects;
//!   filtering, sorting and the table.
//! - `gc`: `fleet gc`: the walk, the removals, the report.
//! - `gc_rules`: what gc may remove, per kind of object (pure, tested).

pub mod gc;
mod gc_rules;
pub mod view;
pub mod walk;

use serde::Serialize;

use crate::error::{ExitStatus, HasExitStatus};
use crate::spec::{Location, RemoteKind, RemoteSpec};
pub use view::{FleetEntry, Holder, LeaseState, SortKey};
pub use walk::Requests;

/// Current version of the JSON shape.
pub const FLEET_SCHEMA: u32 = 1;

/// What to gather besides the lease records.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatherOptions {
    /// Read every manifest for files and bytes.
    pub sizes: bool,
    /// List every target's trash.
    pub trash: bool,
}

/// One remote's part of the view.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteSummary {
    pub remote: String,
    pub root: String,
    pub requests: Requests,
}

/// `coltecd fleet --json`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub schema: u32,
    pub generated_at: u64,
    pub remotes: Vec<RemoteSummary>,
    pub targets: Vec<FleetEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("cannot list {root}: {source}")]
    Unreachable {
        root: String,
        source: opendal::Error,
    },
    #[error("remote '{0}' is of type crypt, which the fleet view cannot read")]
    Crypt(String),
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
}

impl HasExitStatus for FleetError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            FleetError::Remote(e) => e.exit_status(),
            FleetError::Unreachable { .. } => ExitStatus::Remote,
            FleetError::Crypt(_) => ExitStatus::InvalidSpec,
            FleetError::Lease(e) => e.exit_status(),
        }
    }
}

/// Where the fleet of `remote` lives: its root plus `prefix`.
pub fn root_location(remote: &RemoteSpec, prefix: &str) -> Result<Location, FleetError> {
    let prefix = prefix.trim_matches('/');
    Ok(match &remote.kind {
        RemoteKind::S3(s3) => Location::S3 {
            bucket: s3.bucket.clone(),
            key_prefix: [s3.path_prefix.trim_matches('/'), prefix]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/"),
        },
        RemoteKind::Local(l) => Location::Local {
            dir: if prefix.is_empty() {
                l.root.clone()
            } else {
                l.root.join(prefix)
            },
        },
        RemoteKind::Crypt(_) => return Err(FleetError::Crypt(remote.name.clone())),
    })
}

/// Every target under `remote` (+ `prefix`), as of `now`.
pub async fn gather(
    remote: &RemoteSpec,
    prefix: &str,
    opts: GatherOptions,
    now: u64,
) -> Result<(RemoteSummary, Vec<FleetEntry>), FleetError> {
    let location = root_location(remote, prefix)?;
    let root = location.to_string();
    let op = crate::remote::operator_at(remote, &location)?;
    let mut req = Requests::default();
    let unreachable = |source| FleetError::Unreachable {
        root: root.clone(),
        source,
    };
    let found = walk::find_targets(&op, &mut req)
        .await
        .map_err(unreachable)?;
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(&found)
        .map(|t| {
            let (op, name, root) = (&op, &remote.name, &root);
            async move {
                let mut r = Requests::default();
                let e = view::entry(op, name, root, t, opts, now, &mut r).await;
                (r, e)
            }
        })
        .buffered(walk::CONCURRENCY)
        .collect()
        .await;
    let mut entries = Vec::with_capacity(found.len());
    for (r, e) in results {
        req.lists = req.lists.saturating_add(r.lists);
        req.gets = req.gets.saturating_add(r.gets);
        entries.push(e.map_err(unreachable)?);
    }
    Ok((
        RemoteSummary {
            remote: remote.name.clone(),
            root,
            requests: req,
        },
        entries,
    ))
}
