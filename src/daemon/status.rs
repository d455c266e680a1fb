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
//!   "leases": { "writes_allowed": true, "fenced_reason": null, "detail": [ ... ] },
//!   "targets": [{
//!     "name": "claude", "direction": "bidirectional", "local_path": "/home/u/.claude",
//!     "remote": "s3://bucket/acme/widget/dev-a/claude",
//!     "priority": 1, "interval_secs": 300,
//!     "watch": { "mode": "events", "reason": null },   // "events" | "polling"; reason:
//!                                    //  why polling, or what events miss (e.g. on NFS)
//!     "last_success_at": 1763900030, "last_attempt_at": 1763900030,
//!     "last_error": null,
//!     "pending_files": 2, "pending_bytes": 5120, "oldest_pending_at": 1763900040,
//!     "pass_running": false, "next_check_at": 1763900330,
//!     "in_flight": null,             // while a pass runs: {"files_planned", "files_done",
//!                                    //  "bytes_planned", "bytes_done"}
//!     "conflicts": ["notes.md.conflict-..."], "conflicts_total": 1,
//!     "last_pass": { "uploaded": 1, "downloaded": 0, "deleted_remote": 0, "deleted_local": 0,
//!                    "bytes_up": 5120, "bytes_down": 0, "failed": 0 }
//!   }]
//! }
//! ```
//!
//! Fields are only ever added, never renamed or removed, within one
//! `schema` number. `leases.detail` is the lease keeper's own snapshot
//! (per prefix: holder, held/lost, last renewal).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::ExitStatus;

/// Current version of the JSON shape.
pub const STATUS_SCHEMA: u32 = 1;

/// Name of the last-status file inside the state dir.
pub const STATUS_FILE: &str = "status.json";

/// A target counts as stale when its last success is older than this many
/// intervals (plus the debounce): it should have synced several times by then.
const STALE_INTERVALS: u32 = 3;

/// Whether the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
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
}

/// A path a target does not sync, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    pub path: String,
    pub reason: String,
}

/// The lease side of the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The write gate is open: every lease this daemon needs is held.
    pub writes_allowed: bool,
    /// Why writes are paused, when they are.
    pub fenced_reason: Option<String>,
    /// The lease keeper's snapshot, one entry per leased prefix.
    pub detail: serde_json::Value,
}

/// Everything `coltecd status` knows. See the module docs for the JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub schema: u32,
    pub state: RunState,
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
    pub leases: LeaseState,
    pub targets: Vec<TargetStatus>,
}

/// Now as unix seconds.
pub fn unix_now() -> u64 {
    to_unix(SystemTime::now())
}

pub fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DaemonStatus {
    /// Recompute `health`, `problems` and `uptime_secs` from the rest, as of `now`.
    pub fn evaluate(&mut self, now: u64) {
        self.uptime_secs = match (self.state, self.started_at) {
            (RunState::Running, Some(s)) => Some(now.saturating_sub(s)),
            _ => None,
        };
        let mut problems = Vec::new();
        match self.state {
            RunState::Disabled => {
                self.health = Health::Disabled;
                self.problems = problems;
                return;
            }
            RunState::Stopped => {
                problems.push("the daemon is not running".to_string());
                self.health = Health::NotRunning;
                self.problems = problems;
                return;
            }
            RunState::Running => {}
        }
        if !self.leases.writes_allowed {
            problems.push(format!(
                "remote writes are paused (lease not held): {}",
                self.leases
                    .fenced_reason
                    .as_deref()
                    .unwrap_or("unknown reason")
            ));
        }
        for t in &self.targets {
            if let Some(err) = &t.last_error {
                problems.push(format!("{}: {err}", t.name));
            }
            let stale_after = t.interval_secs.saturating_mul(u64::from(STALE_INTERVALS));
            let reference = t.last_success_at.or(self.started_at);
            if let Some(at) = reference
                && now.saturating_sub(at) > stale_after
                && !t.pass_running
            {
                problems.push(format!(
                    "{}: no successful sync for {} (interval {})",
                    t.name,
                    ago(now, at),
                    human_secs(t.interval_secs)
                ));
            }
        }
        self.health = if problems.is_empty() {
            Health::Healthy
        } else {
            Health::Degraded
        };
        self.problems = problems;
    }

    /// The last status a daemon wrote, re-labelled as not running.
    pub fn as_stopped(mut self, now: u64) -> DaemonStatus {
        self.state = RunState::Stopped;
        self.source = Source::File;
        self.pid = None;
        for t in &mut self.targets {
            t.pass_running = false;
            t.in_flight = None;
            t.next_check_at = None;
        }
        self.evaluate(now);
        self
    }

    /// The short human rendering of `coltecd status`.
    pub fn render_text(&self, now: u64) -> String {
        let mut out = String::new();
        let state = match (self.state, self.pid) {
            (RunState::Running, Some(pid)) => {
                let up = self
                    .started_at
                    .map(|s| format!(", up {}", human_secs(now.saturating_sub(s))))
                    .unwrap_or_default();
                format!("running (pid {pid}{up})")
            }
            (RunState::Running, None) => "running".to_string(),
            (RunState::Stopped, _) => {
                format!(
                    "not running (last known state from {})",
                    ago(now, self.updated_at)
                )
            }
            (RunState::Disabled, _) => "disabled by COLTEC_DISABLED".to_string(),
        };
        let health = match self.health {
            Health::Healthy => "healthy",
            Health::Degraded => "DEGRADED",
            Health::NotRunning => "not running",
            Health::Disabled => "paused",
        };
        // "not running" already says it all; don't repeat it as the health.
        if self.health == Health::NotRunning {
            let _ = writeln!(out, "coltecd {}: {state}", self.workspace);
        } else {
            let _ = writeln!(out, "coltecd {}: {state} — {health}", self.workspace);
        }
        if self.state == RunState::Disabled {
            return out;
        }
        let lease = if self.state == RunState::Stopped {
            "not held (the daemon is not running)".to_string()
        } else if self.leases.writes_allowed {
            "held".to_string()
        } else {
            format!(
                "NOT held ({})",
                self.leases.fenced_reason.as_deref().unwrap_or("unknown")
            )
        };
        let _ = writeln!(out, "lease: {lease}");
        if let serde_json::Value::Array(items) = &self.leases.detail {
            for item in items {
                let _ = writeln!(out, "  {}", lease_line(item, now));
            }
        }
        for t in &self.targets {
            let last = match t.last_success_at {
                Some(at) => format!("synced {}", ago(now, at)),
                None => "never synced".to_string(),
            };
            let mode = match t.watch.mode {
                WatchModeState::Events => "events",
                WatchModeState::Polling => "polling",
            };
            let watch = match &t.watch.reason {
                Some(r) => format!("{mode} ({r})"),
                None => mode.to_string(),
            };
            let _ = writeln!(
                out,
                "{} [{}] {} → {}",
                t.name,
                t.direction,
                t.local_path.display(),
                t.remote
            );
            let _ = write!(out, "  {last}; watch: {watch}");
            if t.pending_files > 0 {
                let oldest = t
                    .oldest_pending_at
                    .map(|at| format!(", oldest {}", ago(now, at)))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "; pending {} file(s), {}{oldest}",
                    t.pending_files,
                    human_bytes(t.pending_bytes)
                );
            }
            if t.pass_running {
                match &t.in_flight {
                    Some(f) if f.files_planned > 0 => {
                        let _ = write!(
                            out,
                            "; transferring {}/{} file(s), {}/{}",
                            f.files_done,
                            f.files_planned,
                            human_bytes(f.bytes_done),
                            human_bytes(f.bytes_planned)
                        );
                    }
                    _ => {
                        let _ = write!(out, "; checking now");
                    }
                }
            } else if let Some(next) = t.next_check_at {
                let _ = write!(
                    out,
                    "; next check in {}",
                    human_secs(next.saturating_sub(now))
                );
            }
            out.push('\n');
            if t.conflicts_total > 0 {
                let _ = writeln!(
                    out,
                    "  conflicts: {} (latest: {})",
                    t.conflicts_total,
                    t.conflicts.last().map(String::as_str).unwrap_or("-")
                );
            }
            if let Some(s) = t.skipped.first() {
                let _ = writeln!(
                    out,
                    "  skipped: {} (e.g. {:?}: {})",
                    t.skipped.len(),
                    s.path,
                    s.reason
                );
            }
            if let Some(err) = &t.last_error {
                let _ = writeln!(out, "  last error: {err}");
            }
        }
        for p in &self.problems {
            if !out.contains(p.as_str()) {
                let _ = writeln!(out, "problem: {p}");
            }
        }
        out
    }
}

/// One lease of the keeper's snapshot: where, held/lost, last renewal,
/// holder. Unknown shapes fall back to `key=value` pairs.
fn lease_line(v: &serde_json::Value, now: u64) -> String {
    let Some(location) = v.get("location").and_then(|l| l.as_str()) else {
        return compact(v);
    };
    let _ = now;
    let state = v.get("state").and_then(|s| s.as_str()).unwrap_or("unknown");
    let mut line = format!("{location}: {state}");
    if let Some(secs) = v.get("last_renewal_secs_ago").and_then(|s| s.as_u64()) {
        let _ = write!(line, ", renewed {} ago", human_secs(secs));
    }
    if let Some(h) = v.get("holder").filter(|h| !h.is_null()) {
        let host = h.get("host").and_then(|x| x.as_str()).unwrap_or("?");
        let _ = write!(line, ", holder {host}");
        if let Some(c) = h.get("container_id").and_then(|x| x.as_str()) {
            let _ = write!(line, " ({c})");
        }
    }
    if let Some(d) = v.get("detail").and_then(|x| x.as_str()) {
        let _ = write!(line, " — {d}");
    }
    line
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// "12 s ago", "3 min ago".
pub fn ago(now: u64, then: u64) -> String {
    if then > now {
        return "just now".to_string();
    }
    format!("{} ago", human_secs(now - then))
}

/// A short duration: "12 s", "4 min", "2 h", "3 d".
pub fn human_secs(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Write `status` to `<state_dir>/status.json` atomically (temp file +
/// rename), so a reader never sees half a file even after `kill -9`.
pub fn write_file(state_dir: &Path, status: &DaemonStatus) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(STATUS_FILE);
    let tmp = state_dir.join(format!(".{STATUS_FILE}.tmp"));
    let body = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_data()?;
    std::fs::rename(&tmp, &path)
}

/// The last status written, if any and readable.
pub fn read_file(state_dir: &Path) -> Option<DaemonStatus> {
    let body = std::fs::read(state_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&body).ok()
}

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
            state: RunState::Running,
            source: Source::Live,
            health: Health::Healthy,
            problems: vec![],
            workspace: "acme/widget/dev-a".into(),
            spec: "/w/spec.yaml".into(),
            pid: Some(42),
            started_at: Some(now - 100),
            uptime_secs: None,
            updated_at: now,
            leases: LeaseState {
                writes_allowed: true,
                fenced_reason: None,
                detail: serde_json::json!([{"prefix": "acme/widget/dev-a", "held": true}]),
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
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;

    #[test]
    fn healthy_renders_ages_and_pending() {
        let now = 1_000_000;
        let mut s = sample(now);
        s.evaluate(now);
        assert_eq!(s.health, Health::Healthy);
        let text = s.render_text(now);
        assert!(
            text.contains("running (pid 42, up 100 s) — healthy"),
            "{text}"
        );
        assert!(text.contains("synced 12 s ago"), "{text}");
        assert!(
            text.contains("pending 2 file(s), 5.0 KiB, oldest 1 s ago"),
            "{text}"
        );
        assert!(text.contains("next check in 48 s"), "{text}");
    }

    #[test]
    fn errors_lost_lease_and_staleness_degrade() {
        let now = 1_000_000;
        let mut s = sample(now);
        s.targets[0].last_success_at = Some(now - 1000);
        s.evaluate(now);
        assert_eq!(s.health, Health::Degraded);
        assert!(
            s.problems[0].contains("no successful sync for 16 min"),
            "{:?}",
            s.problems
        );

        let mut s = sample(now);
        s.leases.writes_allowed = false;
        s.leases.fenced_reason = Some("renewal failed".into());
        s.targets[0].last_error = Some("boom".into());
        s.evaluate(now);
        assert_eq!(s.health.exit_status(), ExitStatus::Failure);
        assert_eq!(s.problems.len(), 2);
    }

    #[test]
    fn stopped_and_disabled_exit_codes() {
        let now = 1_000_000;
        let s = sample(now).as_stopped(now + 5);
        assert_eq!(s.health.exit_status().code(), 3);
        assert!(
            s.render_text(now + 5)
                .contains("not running (last known state from 5 s ago)")
        );
        let mut d = sample(now);
        d.state = RunState::Disabled;
        d.evaluate(now);
        assert_eq!(d.health.exit_status().code(), 0);
    }

    #[test]
    fn status_file_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let s = sample(1_000_000);
        write_file(tmp.path(), &s).unwrap();
        assert_eq!(read_file(tmp.path()).unwrap(), s);
    }
}
