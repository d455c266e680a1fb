//! Lease errors, classified by what the operator should do next.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::RemoteError;

use super::record::LeaseRecord;

/// Who holds a prefix we wanted, as seen from here.
#[derive(Debug, Clone)]
pub struct HeldBy {
    /// The prefix we wanted.
    pub wanted: String,
    /// The prefix actually held (differs when it encloses or is nested in ours).
    pub held: String,
    /// The holder's record; `None` when the object is not a readable lease.
    pub record: Option<LeaseRecord>,
    /// How long this machine has seen that version unchanged.
    pub unchanged_for: Duration,
    /// When it would be considered stale here if not renewed.
    pub stale_in: Duration,
    /// The TTL used for that judgement.
    pub ttl: Duration,
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rel = if self.held == self.wanted {
            String::new()
        } else if self.held.len() < self.wanted.len() {
            format!(" (it encloses {})", self.wanted)
        } else {
            format!(" (it is nested inside {})", self.wanted)
        };
        writeln!(
            f,
            "the lease on {}{rel} is held by another container:",
            self.held
        )?;
        match &self.record {
            Some(r) => {
                writeln!(f, "  holder: {}", r.describe_holder())?;
                writeln!(
                    f,
                    "  since {} (holder's clock), last renewal seen {}, lease id {}",
                    r.acquired_at, r.renewed_at, r.lease_id
                )?;
            }
            None => writeln!(f, "  holder: unknown (the lease object is not readable)")?,
        }
        writeln!(
            f,
            "  this version has been seen unchanged here for {}s; it would be considered stale in {}s if not renewed",
            self.unchanged_for.as_secs(),
            self.stale_in.as_millis().div_ceil(1000).max(1)
        )?;
        writeln!(
            f,
            "  (rule: a lease is stale once this machine has seen the same version unchanged for longer than its TTL of {}s on its own clock; clocks are never compared)",
            self.ttl.as_secs_f64()
        )?;
        write!(
            f,
            "Ways out: stop coltecd in that container (`coltecd stop`), wait and run this again after that time, \
             or take the lease over with `coltecd lease break --force` (only if that container is really gone: \
             two writers overwrite each other's state)."
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{0}")]
    HeldElsewhere(Box<HeldBy>),

    #[error(
        "the lease on {location} was taken over by another holder ({holder}); remote writes from this container stay stopped. \
         Check `coltecd lease show`; restart coltecd here only once the other container no longer writes this prefix"
    )]
    TakenOver { location: String, holder: String },

    #[error(
        "remote '{remote}' ({location}) does not honour conditional writes: {detail}. \
         Without them two containers could both believe they hold the lease and overwrite each other's state. \
         Use a backend that supports If-None-Match/If-Match on PUT (AWS S3, R2, MinIO, ...), \
         or opt out explicitly with `lease: off` in the spec (at your own risk)"
    )]
    NoConditionalWrites {
        remote: String,
        location: String,
        detail: String,
    },

    #[error("lease {op} on {location} failed: {source}")]
    Remote {
        op: &'static str,
        location: String,
        #[source]
        source: Box<opendal::Error>,
    },

    #[error("lease {op} on {location} failed: {source}")]
    LocalIo {
        op: &'static str,
        location: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "lease {op} on {location} did not finish within {}s; the remote is unreachable or too slow",
        .after.as_secs_f64()
    )]
    Timeout {
        op: &'static str,
        location: String,
        after: Duration,
    },

    #[error(
        "lease on {location} keeps changing under us (another container is contending); try again"
    )]
    Contended { location: String },

    #[error(transparent)]
    Setup(#[from] RemoteError),

    #[error("cannot use lease state file {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    UnknownTarget(#[from] crate::spec::UnknownTarget),

    /// The lease record was written by a newer coltecd: this one neither
    /// takes it over nor breaks it (it might drop fields that matter).
    #[error(transparent)]
    FormatTooNew(#[from] crate::version::FormatTooNew),
}

impl HasExitStatus for LeaseError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            LeaseError::HeldElsewhere(_) | LeaseError::TakenOver { .. } => ExitStatus::LeaseHeld,
            LeaseError::NoConditionalWrites { .. }
            | LeaseError::Remote { .. }
            | LeaseError::LocalIo { .. }
            | LeaseError::Timeout { .. }
            | LeaseError::Contended { .. } => ExitStatus::Remote,
            LeaseError::Setup(e) => e.exit_status(),
            LeaseError::StateDir { .. } | LeaseError::FormatTooNew(_) => ExitStatus::Failure,
            LeaseError::UnknownTarget(e) => e.exit_status(),
        }
    }
}

impl LeaseError {
    /// Access denied by the remote (e.g. a token scoped to a path prefix).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            LeaseError::Remote { source, .. } => {
                source.kind() == opendal::ErrorKind::PermissionDenied
            }
            LeaseError::LocalIo { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }

    /// The holder named in a refusal, if this is one.
    pub fn held_by(&self) -> Option<&HeldBy> {
        match self {
            LeaseError::HeldElsewhere(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LeaseRecord {
        LeaseRecord {
            format: 1,
            lease_id: "0123456789abcdef0123456789abcdef".into(),
            host: "widget-dev-b".into(),
            container_id: "c".repeat(64),
            devcontainer_id: None,
            slot: Some("dev-b".into()),
            pid: 42,
            coltecd_version: "0.1.0".into(),
            workspace: "acme/widget/dev".into(),
            location: "s3://b/ws/acme/widget/dev".into(),
            acquired_at: "2026-01-02T03:04:05Z".into(),
            renewed_at: "2026-01-02T03:14:05Z".into(),
            ttl_ms: 60_000,
            session: "s".into(),
            seq: 7,
            released: false,
        }
    }

    #[test]
    fn refusal_names_prefix_holder_staleness_and_ways_out() {
        let e = LeaseError::HeldElsewhere(Box::new(HeldBy {
            wanted: "s3://b/ws/acme/widget/dev/workspace".into(),
            held: "s3://b/ws/acme/widget/dev".into(),
            record: Some(record()),
            unchanged_for: Duration::from_millis(12_300),
            stale_in: Duration::from_millis(47_700),
            ttl: Duration::from_secs(60),
        }));
        assert_eq!(e.exit_status(), ExitStatus::LeaseHeld);
        assert_eq!(
            e.to_string(),
            "the lease on s3://b/ws/acme/widget/dev (it encloses s3://b/ws/acme/widget/dev/workspace) is held by another container:\n\
             \x20 holder: host widget-dev-b, container cccccccccccc, slot dev-b, pid 42, coltecd 0.1.0, workspace acme/widget/dev\n\
             \x20 since 2026-01-02T03:04:05Z (holder's clock), last renewal seen 2026-01-02T03:14:05Z, lease id 0123456789abcdef0123456789abcdef\n\
             \x20 this version has been seen unchanged here for 12s; it would be considered stale in 48s if not renewed\n\
             \x20 (rule: a lease is stale once this machine has seen the same version unchanged for longer than its TTL of 60s on its own clock; clocks are never compared)\n\
             Ways out: stop coltecd in that container (`coltecd stop`), wait and run this again after that time, or take the lease over with `coltecd lease break --force` (only if that container is really gone: two writers overwrite each other's state)."
        );
    }
}
