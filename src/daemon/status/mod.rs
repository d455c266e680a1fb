//! The daemon's status model: what `coltecd status` shows, live over the
//! control socket or from the last `status.json` the daemon wrote.
//!
//! # JSON shape (`coltecd status --json`, schema 1)
//!
//! ```json
//! {
//!   "schema": 1,
//!   "state": "running",            // "running" | "stopped" | "disabled"
//!   "source": "live",              // "live" (control socket) | "file" (last written status)
//!   "health": "healthy",           // "healthy" | "degraded" | "not-running" | "disabled"
//!   "problems": ["..."],           // why health is not "healthy" (human sentences)
//!   "workspace": "acme/widget/dev-a",
//!   "spec": "/workspace/.devcontainer/workspace-spec.yaml",
//!   "pid": 1234,                   // null when not running
//!   "started_at": 1763900000,      // unix seconds; null when unknown
//!   "uptime_secs": 42,             // null when not running
//!   "updated_at": 1763900042,      // unix seconds when this snapshot was taken
//!   "leases": { "writes_allowed": true, "fenced_reason": null,
//!               "renew_every_secs": 15,  // null when leasing is off
//!               "detail": [ ... ] },
//!   "targets": [{
//!     "name": "claude", "direction": "bidirectional", "local_path": "/home/u/.claude",
//!     "remote": "s3://bucket/acme/widget/dev-a/claude",
//!     "priority": 1, "interval_secs": 300,
//!     "watch": { "mode": "events", "reason": null },   // "events" | "polling"; reason:
//!                                    //  why polling, or what events miss (e.g. on NFS)
//!     "last_success_at": 1763900030, "last_attempt_at": 1763900030,
//!     "last_error": null,
//!     "failing_since": null,        // unix seconds of the first failed pass since the
//!                                    //  last success (passes failing: degraded)
//!     "pending_files": 2, "pending_bytes": 5120, "oldest_pending_at": 1763900040,
//!     "pass_running": false, "next_check_at": 1763900330,
//!     "in_flight": null,             // while a pass runs: {"files_planned", "files_done",
//!                                    //  "bytes_planned", "bytes_done"}
//!     "conflicts": ["notes.md.conflict-..."], "conflicts_total": 1,
//!     "last_pass": { "uploaded": 1, "downloaded": 0, "deleted_remote": 0, "deleted_local": 0,
//!                    "bytes_up": 5120, "bytes_down": 0, "failed": 0 }
//!   }],
//!   "stop": {                        // only in the status file of a daemon that stopped
//!     "exit_code": 4,                //  on an error: why, and the changes it never pushed
//!     "reason": "lease on ... taken over by ...",
//!     "unpushed": [{ "target": "claude", "paths": ["/home/u/.claude/notes.md"] }]
//!   },
//!   "build": {                       // the daemon's build (a stopped daemon: from its file;
//!     "version": "0.1.0",            //  no daemon ever ran: the `status` binary's own)
//!     "commit": "f701556", "target": "x86_64-unknown-linux-gnu"
//!   }
//! }
//! ```
//!
//! `health` is "degraded" as soon as something fails: a pass (since
//! `failing_since`), a lease renewal overdue (no renewal for
//! `renew_every_secs` plus a grace: the remote is unreachable), the write
//! gate closed, a target stale; each problem says since when and how much
//! is pending (files, oldest change's age).
//!
//! Fields are only ever added, never renamed or removed, within one
//! `schema` number. `leases.detail` is the lease keeper's own snapshot
//! (per prefix: holder, held/lost, last renewal).
//!
//! # Layout
//!
//! - `mod.rs`: the model.
//! - `health`: health evaluation (`evaluate`, `as_stopped`) and its
//!   problem sentences.
//! - `render`: the text of `coltecd status` and its ages and sizes.
//! - `file`: `status.json` in the state dir (atomic write, read back).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ExitStatus;
use crate::lease::LeaseRecord;

mod file;
mod health;
mod render;

/// Current version of the JSON shape.
pub const STATUS_SCHEMA: u32 = 1;

/// Name of the last-status file inside the state dir.
pub const STATUS_FILE: &str = "status.json";

/// Whether the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaemonState {
    Running,
    Stopped,
    Disabled,
}

/// Where a status snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Asked the running daemon over its control socket.
    Live,
    /// Read the status file the daemon last wrote.
    File,
}

/// The verdict `status` turns into its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    Degraded,
    NotRunning,
    Disabled,
}

impl Health {
    /// 0 healthy (and disabled: a deliberate pause is not a fault), 1
    /// degraded, 3 not running.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Health::Healthy | Health::Disabled => ExitStatus::Ok,
            Health::Degraded => ExitStatus::Failure,
            Health::NotRunning => ExitStatus::NOT_RUNNING,
        }
    }
}

/// How changes of a target are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchModeState {
    /// File events (inotify), with the interval as a safety net.
    Events,
    /// Interval scans only.
    Polling,
}

/// Watch mode plus why it is what it is (set when events are not used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchState {
    pub mode: WatchModeState,
    pub reason: Option<String>,
}

/// Counters of the last completed pass of a target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassCounts {
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_remote: u64,
    pub deleted_local: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub failed: u64,
    /// Old remote versions the pass kept in `.coltec/trash/`.
    #[serde(default)]
    pub trashed: u64,
}

/// Transfers of the pass in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub files_planned: u64,
    pub files_done: u64,
    pub bytes_planned: u64,
    pub bytes_done: u64,
}

/// One sync target as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: String,
    pub direction: String,
    pub local_path: PathBuf,
    pub remote: String,
    pub priority: u32,
    pub interval_secs: u64,
    pub watch: WatchState,
    pub last_success_at: Option<u64>,
    pub last_attempt_at: Option<u64>,
    pub last_error: Option<String>,
    /// When passes started failing (the first failure since the last
    /// success; unix seconds).
    #[serde(default)]
    pub failing_since: Option<u64>,
    pub pending_files: u64,
    pub pending_bytes: u64,
    /// When the oldest change not yet on the remote was seen (unix seconds).
    pub oldest_pending_at: Option<u64>,
    /// A pass (transfers) is in flight right now ...
    pub pass_running: bool,
    /// ... and how far it got (once it has planned).
    #[serde(default)]
    pub in_flight: Option<InFlight>,
    pub next_check_at: Option<u64>,
    /// Conflict copies created by recent passes (most recent last, capped).
    pub conflicts: Vec<String>,
    pub conflicts_total: u64,
    pub last_pass: Option<PassCounts>,
    /// Paths deliberately not synced (FIFOs, sockets, devices; foreign
    /// entries in a local remote), as of the last pass.
    #[serde(default)]
    pub skipped: Vec<SkippedPath>,
    /// Crypt objects whose names do not decrypt with the target's
    /// password and salt, as of the last full pass: left alone.
    #[serde(default)]
    pub undecryptable: UndecryptableNames,
    /// Last pass that found local changes and pushed them (unix seconds).
    #[serde(default)]
    pub last_local_change_at: Option<u64>,
    /// Last pass that changed the remote or found it changed (unix seconds).
    #[serde(default)]
    pub last_remote_change_at: Option<u64>,
}

/// Objects of a crypt target whose names do not decrypt: how many, and
/// the first raw (encrypted) keys, relative to the target's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndecryptableNames {
    pub count: u64,
    pub first: Vec<String>,
}

/// A path a target does not sync, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    pub path: String,
    pub reason: String,
}

/// The lease side of the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusLeases {
    /// The write gate is open: every lease this daemon needs is held.
    pub writes_allowed: bool,
    /// Why writes are paused, when they are.
    pub fenced_reason: Option<String>,
    /// How often the lease is renewed (`None`: leasing is off), to tell an
    /// overdue renewal.
    #[serde(default)]
    pub renew_every_secs: Option<u64>,
    /// The lease keeper's snapshot, one entry per leased prefix.
    pub detail: Vec<PrefixLease>,
}

/// One leased prefix as the lease keeper last saw it. The same JSON as the
/// keeper's own `crate::lease::LeaseStatus`, which the daemon's seam
/// converts from; this one also reads back (`status.json`, the control
/// socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixLease {
    /// Target names writing this prefix.
    pub targets: Vec<String>,
    pub location: String,
    pub state: PrefixLeaseState,
    /// Seconds since the last successful renewal was sent.
    pub last_renewal_secs_ago: Option<u64>,
    /// Our lease id (not a secret).
    pub lease_id: Option<String>,
    /// The current holder as last read (ours, or whoever took it over).
    pub holder: Option<LeaseRecord>,
    /// Why the lease is lost, or other context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether this daemon holds a prefix's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixLeaseState {
    Held,
    Lost,
    Released,
    /// Leasing is off (`lease: off` in the spec).
    Off,
}

impl PrefixLeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixLeaseState::Held => "held",
            PrefixLeaseState::Lost => "lost",
            PrefixLeaseState::Released => "released",
            PrefixLeaseState::Off => "off",
        }
    }
}

/// Everything `coltecd status` knows. See the module docs for the JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub schema: u32,
    pub state: DaemonState,
    pub source: Source,
    pub health: Health,
    pub problems: Vec<String>,
    pub workspace: String,
    pub spec: PathBuf,
    pub pid: Option<u32>,
    pub started_at: Option<u64>,
    /// Seconds since `started_at` while running.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    pub updated_at: u64,
    pub leases: StatusLeases,
    pub targets: Vec<TargetStatus>,
    /// Why the daemon stopped, when it stopped on an error (status file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopNote>,
    /// The build of the daemon that wrote this status (absent in files
    /// written before it was recorded): after an upgrade, `status` shows
    /// which binary is actually running, not which one asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::version::BuildInfo>,
}

/// Why a daemon stopped on an error, and what it could not push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopNote {
    pub exit_code: u8,
    pub reason: String,
    /// Local changes that never reached the remote (only on this disk).
    pub unpushed: Vec<UnpushedFiles>,
}

/// One target's changes that never reached the remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnpushedFiles {
    pub target: String,
    /// Absolute local paths.
    pub paths: Vec<PathBuf>,
}

pub use file::{read_file, write_file};
pub(crate) use health::name_paths;
pub use render::{ago, human_bytes, human_secs};

/// Seconds in a duration, for the JSON (`interval_secs`).
pub fn secs(d: Duration) -> u64 {
    d.as_secs()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn sample(now: u64) -> DaemonStatus {
        DaemonStatus {
            schema: STATUS_SCHEMA,
            state: DaemonState::Running,
            source: Source::Live,
            health: Health::Healthy,
            problems: vec![],
            workspace: "acme/widget/dev-a".into(),
            spec: "/w/spec.yaml".into(),
            pid: Some(42),
            started_at: Some(now - 100),
            uptime_secs: None,
            build: None,
            updated_at: now,
            leases: StatusLeases {
                writes_allowed: true,
                fenced_reason: None,
                renew_every_secs: Some(15),
                detail: vec![PrefixLease {
                    targets: vec!["claude".into()],
                    location: "s3://b/acme/widget/dev-a".into(),
                    state: PrefixLeaseState::Held,
                    last_renewal_secs_ago: Some(3),
                    lease_id: Some("l-1".into()),
                    holder: None,
                    detail: None,
                }],
            },
            targets: vec![TargetStatus {
                name: "claude".into(),
                direction: "bidirectional".into(),
                local_path: "/home/u/.claude".into(),
                remote: "local:/r".into(),
                priority: 1,
                interval_secs: 60,
                watch: WatchState {
                    mode: WatchModeState::Events,
                    reason: None,
                },
                last_success_at: Some(now - 12),
                last_attempt_at: Some(now - 12),
                last_error: None,
                failing_since: None,
                pending_files: 2,
                pending_bytes: 5120,
                oldest_pending_at: Some(now - 1),
                pass_running: false,
                in_flight: None,
                next_check_at: Some(now + 48),
                conflicts: vec![],
                conflicts_total: 0,
                last_pass: Some(PassCounts::default()),
                skipped: vec![],
                undecryptable: UndecryptableNames::default(),
                last_local_change_at: None,
                last_remote_change_at: None,
            }],
            stop: None,
        }
    }
}

#[cfg(test)]
mod tests;
