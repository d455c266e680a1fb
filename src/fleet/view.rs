//! One target's fleet entry, built from its lease record and the objects in
//! its `.coltec/`; the `--idle` filter, `--sort` and the human table.

use opendal::Operator;
use serde::Serialize;

use super::GatherOptions;
use super::walk::{FoundTarget, Requests, read_opt};
use crate::daemon::status::{human_bytes, human_secs};
use crate::lease::LeaseRecord;
use crate::sync::layout::Manifest;

/// Lease state as one look from this machine sees it (see the module doc
/// of [`crate::fleet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Held,
    Stale,
    Released,
    None,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Held => "held",
            LeaseState::Stale => "stale",
            LeaseState::Released => "released",
            LeaseState::None => "none",
        }
    }
}

/// Who holds (or last held) a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub host: String,
    pub container_id: String,
    pub slot: Option<String>,
    pub pid: u32,
    pub coltecd_version: String,
    pub lease_id: String,
}

/// One target of the fleet (JSON shape in the module doc of [`crate::fleet`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetEntry {
    pub remote: String,
    pub path: String,
    pub location: String,
    pub workspace: String,
    pub target: String,
    pub lease: LeaseState,
    pub holder: Option<Holder>,
    pub ttl_secs: Option<u64>,
    pub renewed_at: Option<String>,
    pub renewed_secs_ago: Option<u64>,
    pub daemon_state: Option<String>,
    pub last_local_change_at: Option<u64>,
    pub last_remote_change_at: Option<u64>,
    pub idle_secs: Option<u64>,
    pub pending_files: Option<u64>,
    pub last_success_at: Option<u64>,
    pub manifest_behind: bool,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub trash_objects: Option<u64>,
    pub trash_bytes: Option<u64>,
}

/// Parse an RFC 3339 time to unix seconds.
pub fn parse_unix(s: &str) -> Option<u64> {
    let t: jiff::Timestamp = s.parse().ok()?;
    u64::try_from(t.as_second()).ok()
}

/// Lease state of `rec` as of `now` (this machine's clock).
pub fn lease_state(rec: Option<&LeaseRecord>, now: u64) -> LeaseState {
    match rec {
        None => LeaseState::None,
        Some(r) if r.released => LeaseState::Released,
        Some(r) => {
            let renewed = parse_unix(&r.renewed_at).unwrap_or(0);
            if now.saturating_sub(renewed) > r.ttl().as_secs() {
                LeaseState::Stale
            } else {
                LeaseState::Held
            }
        }
    }
}

/// Build the entry of a found target (one GET of the lease when present;
/// the manifest and trash only when asked).
pub(super) async fn entry(
    op: &Operator,
    remote: &str,
    root: &str,
    t: &FoundTarget,
    opts: GatherOptions,
    now: u64,
    req: &mut Requests,
) -> Result<FleetEntry, opendal::Error> {
    let path = t.path.trim_end_matches('/').to_string();
    let rec = if t.has("lease.json") {
        read_opt(op, &format!("{}.coltec/lease.json", t.path), req)
            .await?
            .and_then(|b| LeaseRecord::parse(&b))
    } else {
        None
    };
    let (parent, last) = match path.rsplit_once('/') {
        Some((p, l)) => (p.to_string(), l.to_string()),
        None => (String::new(), path.clone()),
    };
    let location = if path.is_empty() {
        root.to_string()
    } else {
        format!("{}/{path}", root.trim_end_matches('/'))
    };
    let mut e = FleetEntry {
        remote: remote.to_string(),
        location,
        workspace: parent,
        target: last,
        lease: lease_state(rec.as_ref(), now),
        holder: None,
        ttl_secs: None,
        renewed_at: None,
        renewed_secs_ago: None,
        daemon_state: None,
        last_local_change_at: None,
        last_remote_change_at: None,
        idle_secs: None,
        pending_files: None,
        last_success_at: None,
        manifest_behind: t.has("manifest.dirty"),
        files: None,
        bytes: None,
        trash_objects: None,
        trash_bytes: None,
        path,
    };
    if let Some(r) = &rec {
        e.workspace = r.workspace.clone();
        if !r.targets.is_empty() {
            e.target = r.targets.join(",");
        }
        e.holder = Some(Holder {
            host: r.host.clone(),
            container_id: r.container_id.clone(),
            slot: r.slot.clone(),
            pid: r.pid,
            coltecd_version: r.coltecd_version.clone(),
            lease_id: r.lease_id.clone(),
        });
        e.ttl_secs = Some(r.ttl().as_secs());
        e.renewed_secs_ago = parse_unix(&r.renewed_at).map(|t| now.saturating_sub(t));
        e.renewed_at = Some(r.renewed_at.clone());
        if let Some(a) = &r.activity {
            e.daemon_state = Some(a.daemon_state.clone());
            e.last_local_change_at = a.last_local_change_at;
            e.last_remote_change_at = a.last_remote_change_at;
            e.pending_files = Some(a.pending_files);
            e.last_success_at = a.last_success_at;
            e.idle_secs = a
                .last_local_change_at
                .or(a.started_at)
                .map(|t| now.saturating_sub(t));
        }
    }
    if opts.sizes
        && t.has("manifest.json")
        && let Some(b) = read_opt(op, &format!("{}.coltec/manifest.json", t.path), req).await?
        && let Ok(m) = serde_json::from_slice::<Manifest>(&b)
    {
        e.files = Some(m.files.len() as u64);
        e.bytes = Some(m.files.values().map(|f| f.size).sum());
    }
    if opts.trash {
        let (n, bytes) = if t.has("trash/") {
            req.lists += 1;
            let all = op
                .list_with(&format!("{}.coltec/trash/", t.path))
                .recursive(true)
                .await?;
            let files = all.iter().filter(|x| !x.path().ends_with('/'));
            files.fold((0u64, 0u64), |(n, b), x| {
                (
                    n.saturating_add(1),
                    b.saturating_add(x.metadata().content_length()),
                )
            })
        } else {
            (0, 0)
        };
        e.trash_objects = Some(n);
        e.trash_bytes = Some(bytes);
    }
    Ok(e)
}

/// What `--sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortKey {
    /// Remote, then path (the default).
    #[default]
    Path,
    /// Workspace, then target.
    Workspace,
    /// Longest idle first (unknown last).
    Idle,
    /// Largest first (with --sizes).
    Bytes,
    /// Lease state (held, stale, released, none), then path.
    Lease,
    /// Host of the holder.
    Host,
}

pub fn sort(entries: &mut [FleetEntry], key: SortKey) {
    let rank = |s: LeaseState| s as u8;
    entries.sort_by(|a, b| {
        let by_path = (&a.remote, &a.path).cmp(&(&b.remote, &b.path));
        let primary = match key {
            SortKey::Path => std::cmp::Ordering::Equal,
            SortKey::Workspace => (&a.workspace, &a.target).cmp(&(&b.workspace, &b.target)),
            SortKey::Idle => b.idle_secs.cmp(&a.idle_secs),
            SortKey::Bytes => b.bytes.cmp(&a.bytes),
            SortKey::Lease => rank(a.lease).cmp(&rank(b.lease)),
            SortKey::Host => {
                let h = |e: &FleetEntry| e.holder.as_ref().map(|h| h.host.clone());
                h(a).cmp(&h(b))
            }
        };
        primary.then(by_path)
    });
}

/// Keep the entries idle for at least `secs` (unknown idleness is dropped:
/// only a daemon's lease says when its workspace last changed).
pub fn filter_idle(entries: &mut Vec<FleetEntry>, secs: u64) {
    entries.retain(|e| e.idle_secs.is_some_and(|i| i >= secs));
}

fn opt_secs(s: Option<u64>) -> String {
    s.map_or("-".into(), human_secs)
}

/// The human table.
pub fn render_table(entries: &[FleetEntry]) -> String {
    let mut rows = vec![
        [
            "WORKSPACE",
            "TARGET",
            "LEASE",
            "HOLDER",
            "RENEWED",
            "IDLE",
            "PENDING",
            "FILES",
            "BYTES",
            "TRASH",
            "BEHIND",
        ]
        .map(String::from),
    ];
    for e in entries {
        let holder = e.holder.as_ref().map_or("-".into(), |h| {
            format!(
                "{}/{}/{} v{}",
                h.host,
                short(&h.container_id),
                h.pid,
                h.coltecd_version
            )
        });
        rows.push([
            e.workspace.clone(),
            e.target.clone(),
            e.lease.as_str().into(),
            holder,
            e.renewed_secs_ago
                .map_or("-".into(), |s| format!("{} ago", human_secs(s))),
            opt_secs(e.idle_secs),
            e.pending_files.map_or("-".into(), |n| n.to_string()),
            e.files.map_or("-".into(), |n| n.to_string()),
            e.bytes.map_or("-".into(), human_bytes),
            match (e.trash_objects, e.trash_bytes) {
                (Some(n), Some(b)) => format!("{n} ({})", human_bytes(b)),
                _ => "-".into(),
            },
            if e.manifest_behind { "yes" } else { "no" }.into(),
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
