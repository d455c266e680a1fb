//! `coltecd status [--json]`: live from the daemon's control socket, else
//! the last status it wrote, marked "not running". Exit 0 healthy, 1
//! degraded, 3 not running (usable as a HEALTHCHECK / probe).

use crate::cli::{GlobalArgs, StatusArgs};
use crate::daemon::control::{self, ControlError, Request, Response};
use crate::daemon::status::{self, DaemonState, DaemonStatus, unix_now};
use crate::daemon::{self, pidfile};
use crate::error::{CmdResult, ExitStatus, Fail};

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> CmdResult {
    let now = unix_now();
    let (spec, dir) = daemon::locate(&global.config)?;
    let from_file = || -> Option<DaemonStatus> { status::read_file(dir.path()) };
    let fallback = |spec_state: DaemonState| -> DaemonStatus {
        match (&spec, from_file()) {
            (_, Some(f)) => f.as_stopped(now),
            (Some(spec), None) => daemon::status_for_spec(spec, spec_state),
            (None, None) => unreachable_without_spec(dir.path()),
        }
    };
    let mut st = if daemon::disabled() {
        let mut s = match &spec {
            Some(spec) => daemon::status_for_spec(spec, DaemonState::Disabled),
            None => from_file().unwrap_or_else(|| unreachable_without_spec(dir.path())),
        };
        s.state = DaemonState::Disabled;
        s.pid = None;
        s
    } else {
        match control::request(&dir, Request::Status) {
            Ok(Response::Status { status }) => *status,
            Ok(other) => {
                return Err(Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("unexpected answer from the daemon: {other:?}"),
                ));
            }
            Err(ControlError::NotRunning { .. }) => fallback(DaemonState::Stopped),
            Err(e) => match pidfile::live(dir.path()) {
                // Alive but not answering: show the last status as degraded.
                Some(pid) => {
                    let mut s = fallback(DaemonState::Stopped);
                    s.state = DaemonState::Running;
                    s.pid = Some(pid);
                    s.evaluate(now);
                    s.problems.push(format!("the daemon does not answer: {e}"));
                    s.health = status::Health::Degraded;
                    s
                }
                None => fallback(DaemonState::Stopped),
            },
        }
    };
    if st.state != DaemonState::Running || st.health != status::Health::Degraded {
        st.evaluate(now);
    }
    // A status from a daemon (live or its file) names the daemon's build;
    // otherwise the build of this binary.
    st.build.get_or_insert_with(crate::version::build_info);
    if args.json {
        let body =
            serde_json::to_string_pretty(&st).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        println!("{body}");
    } else {
        print!("{}", st.render_text(now));
    }
    Ok(st.health.exit_status())
}

/// Without a spec and without any status file there is nothing to show
/// but "not running".
fn unreachable_without_spec(dir: &std::path::Path) -> DaemonStatus {
    DaemonStatus {
        schema: status::STATUS_SCHEMA,
        state: DaemonState::Stopped,
        source: status::Source::File,
        health: status::Health::NotRunning,
        problems: Vec::new(),
        workspace: format!("(state dir {})", dir.display()),
        spec: Default::default(),
        pid: None,
        started_at: None,
        uptime_secs: None,
        updated_at: unix_now(),
        leases: status::StatusLeases {
            writes_allowed: false,
            fenced_reason: None,
            renew_every_secs: None,
            detail: Vec::new(),
        },
        targets: Vec::new(),
        stop: None,
        build: None,
    }
}
