//! The daemon: what `coltecd start`/`run`/`init` run and what `status`,
//! `stop` and `sync --now` talk to.
//!
//! # Layout
//!
//! - [`supervisor`]: one daemon's life: lock, pidfile, leases, workers,
//!   readiness; its `stop` part: manifests, workers, what was not flushed,
//!   lease release, each inside the stop budget.
//! - `workers`: the supervisor's named workers (control socket, lease
//!   keeper, watcher, status file, watchdog, signals) and how they end.
//! - `reload`: what a SIGHUP may change ([`reload_verdict`]).
//! - [`scheduler`]: debounce, interval safety net, priority, flush, the
//!   status board.
//! - `watcher`: notify (inotify) per directory, fallback to polling.
//! - [`control`]: the unix control socket (`Status`, `SyncNow`, `Stop`).
//! - [`status`]: the status model, its JSON shape and text rendering.
//! - [`pidfile`], [`ready`] (the `start` ↔ daemon readiness pipe),
//!   [`sdnotify`] (systemd), [`init`] (PID-1 mode).
//! - `seam`/`wiring`: the typed seam to the sync engine and the lease (and
//!   what to do after a failed pass), and its production wiring.
//! - `memory`: malloc arenas and trimming (idle RSS).
//! - `stop_budget`: `flush_deadline` as the budget of the whole stop,
//!   sliced by phase.
//! - `unpushed`: changes a daemon that lost its lease could not push, kept
//!   as conflict copies at the next start.

pub mod control;
pub mod init;
pub(crate) mod memory;
pub mod pidfile;
pub mod ready;
mod reload;
pub(crate) mod scheduler;
pub mod sdnotify;
pub(crate) mod seam;
pub mod status;
pub(crate) mod stop_budget;
pub mod supervisor;
pub(crate) mod unpushed;
pub(crate) mod watcher;
mod wiring;
mod workers;

use std::path::Path;

pub use reload::reload_verdict;

use crate::error::Fail;
use crate::spec::Spec;
use crate::state_dir::{STATE_DIR_ENV, StateDir};

/// The spec and state dir a command about the daemon (`status`, `stop`)
/// refers to. When the spec does not load but `COLTEC_STATE_DIR` names the
/// state dir, the daemon can still be asked (spec `None`).
pub fn locate(config: &Path) -> Result<(Option<Spec>, StateDir), Fail> {
    match crate::spec::load(config) {
        Ok(spec) => {
            let dir = StateDir::for_spec(&spec);
            Ok((Some(spec), dir))
        }
        Err(e) => match std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => {
                tracing::warn!(error = %e, "spec does not load; using {STATE_DIR_ENV}");
                Ok((None, StateDir::at(dir)))
            }
            None => Err(e.into()),
        },
    }
}

/// The environment variable that pauses coltecd.
pub const DISABLED_ENV: &str = "COLTEC_DISABLED";
/// What `start`/`run`/`init` print when paused.
pub const DISABLED_MESSAGE: &str = "coltecd: disabled by COLTEC_DISABLED";

/// `COLTEC_DISABLED` is `true`, `1` or `yes` (any case).
pub fn disabled() -> bool {
    std::env::var(DISABLED_ENV).is_ok_and(|v| is_truthy(&v))
}

fn is_truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
}

/// The status of `spec` before (or without) a daemon: every target known,
/// nothing synced yet.
pub fn status_for_spec(spec: &Spec, state: status::DaemonState) -> status::DaemonStatus {
    use status::{WatchModeState, WatchState};
    let now = crate::clock::unix_now();
    let targets = spec
        .targets
        .iter()
        .map(|t| {
            let watch = if !t.direction.writes_remote() {
                WatchState {
                    mode: WatchModeState::Polling,
                    reason: Some("pull-only: the remote is checked every interval".into()),
                }
            } else if spec.daemon.watch == crate::spec::WatchMode::Poll {
                WatchState {
                    mode: WatchModeState::Polling,
                    reason: Some("watch: poll in the spec".into()),
                }
            } else {
                WatchState {
                    mode: WatchModeState::Events,
                    reason: None,
                }
            };
            scheduler::initial_target_status(t, watch)
        })
        .collect();
    let mut s = status::DaemonStatus {
        schema: status::STATUS_SCHEMA,
        state,
        source: status::Source::File,
        health: status::Health::Healthy,
        problems: Vec::new(),
        workspace: spec.workspace.slug(),
        spec: spec.path.clone(),
        pid: None,
        started_at: None,
        uptime_secs: None,
        updated_at: now,
        leases: status::StatusLeases {
            writes_allowed: state == status::DaemonState::Running,
            fenced_reason: None,
            renew_every_secs: renew_every_secs(spec),
            detail: Vec::new(),
        },
        targets,
        stop: None,
        build: Some(crate::version::build_info()),
    };
    if state == status::DaemonState::Running {
        s.source = status::Source::Live;
    }
    s.evaluate(now);
    s
}

/// How often the lease keeper renews (as it clamps the spec's value), in
/// whole seconds (at least 1); `None` when leasing is off.
fn renew_every_secs(spec: &Spec) -> Option<u64> {
    if !spec.lease.enabled {
        return None;
    }
    let ttl = spec.lease.ttl.max(std::time::Duration::from_millis(100));
    let every = spec
        .lease
        .renew_every
        .clamp(std::time::Duration::from_millis(10), ttl / 3);
    Some(every.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn truthy_values() {
        for v in ["true", "1", "yes", "TRUE", " Yes "] {
            assert!(super::is_truthy(v), "{v}");
        }
        for v in ["", "0", "false", "no", "off"] {
            assert!(!super::is_truthy(v), "{v}");
        }
    }
}
